"""``/v1/classifications`` and ``/v1/chat/classifications``: score texts or conversations with a
fine-tuned classifier (a model trained on texts reads conversations and the other way round:
both reach the encoder as one string).

``async``: a request waits for its shared batch without holding a thread (see scoring.py). The
response header ``X-Moderation-Graph`` names the graph that scored (``int8`` or ``fp32``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from moderation_helpers.factory.api.responses import classification_out, invalid
from moderation_helpers.factory.api.routes.chat import conversations_of
from moderation_helpers.factory.api.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.api.routes.models import model_or_404
from moderation_helpers.factory.api.schemas import ChatClassificationIn, ClassificationIn
from moderation_helpers.factory.serving.chat_inputs import conversation_texts
from moderation_helpers.factory.serving.scoring import score_texts_async

router = APIRouter(prefix="/v1", tags=["classifications"])


def texts_of(inputs: str | list[str]) -> list[str]:
    """The texts of a ``ClassificationRequest``'s ``input``, or a 422 when there are none."""
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not texts:
        raise invalid(["input"], "no input to classify", inputs)
    return texts


@router.post("/classifications")
async def classify(
    body: ClassificationIn, store: StoreDep, models: ModelsDep, response: Response
) -> dict[str, Any]:
    texts = texts_of(body.inputs)
    record = model_or_404(store, body.model)  # a WAL read: sub-millisecond, never waits on writers
    scores = await score_texts_async(models, record, texts, response=response)
    return classification_out(record, scores)


@router.post("/chat/classifications")
async def classify_chat(
    body: ChatClassificationIn, store: StoreDep, models: ModelsDep, response: Response
) -> dict[str, Any]:
    conversations = conversations_of(body.inputs)
    record = model_or_404(store, body.model)
    texts = conversation_texts(record, conversations)
    scores = await score_texts_async(models, record, texts, response=response)
    return classification_out(record, scores)

"""``/v1/classifications``: score texts with a fine-tuned classifier.

``async``: the request waits for its shared batch without holding a thread (see scoring.py)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from moderation_helpers.factory.responses import invalid, not_found
from moderation_helpers.factory.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.schemas import ClassificationIn
from moderation_helpers.factory.scoring import score_texts_async

router = APIRouter(prefix="/v1", tags=["classifications"])


@router.post("/classifications")
async def classify(body: ClassificationIn, store: StoreDep, models: ModelsDep) -> dict[str, Any]:
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise invalid(["input"], "no input to classify", body.inputs)
    record = store.get_model(body.model)  # a WAL read: sub-millisecond, never waits on writers
    if record is None:
        raise not_found("model", body.model)
    predictions = await score_texts_async(models, record, texts)
    results = [
        {target: {"scores": scores} for target, scores in per_text.items()}
        for per_text in predictions
    ]
    return {"id": uuid.uuid4().hex, "model": record["id"], "results": results}

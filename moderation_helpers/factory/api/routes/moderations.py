"""``/v1/moderations`` and ``/v1/chat/moderations``: the moderation API's answer, given by a
fine-tuned classifier, so that an application written against Mistral's moderation API can
switch to the team's own model by changing the model id.

Each result has ``category_scores`` (category -> score) and ``categories`` (category -> flagged)
over every label of the model. A category is the label's name when the model has one target,
``target/label`` when it has several. A label is flagged when its score reaches its threshold:
the one ``04_infer`` tuned on validation and published with
``PUT /v1/fine_tuning/models/{id}/thresholds`` (:mod:`.fine_tuned_models`), else
:data:`~moderation_helpers.core.flags.DEFAULT_THRESHOLD`. The safe label (``safe`` unless the
published thresholds name another) is scored but never flagged: it means "nothing to flag"
(the one rule, :func:`~moderation_helpers.core.flags.flag_mask`). The response header
``X-Moderation-Thresholds`` says which thresholds were used: ``tuned`` (some published) or
``default-0.5``; ``X-Moderation-Graph`` which graph scored (``int8`` or ``fp32``).
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Response

from moderation_helpers.core.flags import (
    DEFAULT_THRESHOLD,
    SAFE_LABEL,
    ThresholdTable,
    category,
    flag_mask,
    thresholds_table,
)
from moderation_helpers.factory.api.routes.chat import conversations_of
from moderation_helpers.factory.api.routes.classifications import texts_of
from moderation_helpers.factory.api.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.api.schemas import ChatClassificationIn, ClassificationIn
from moderation_helpers.factory.serving.chat_inputs import conversation_texts
from moderation_helpers.factory.serving.scoring import Scores, score_texts_async
from moderation_helpers.factory.store.db import Store

router = APIRouter(prefix="/v1", tags=["moderations"])

THRESHOLDS_HEADER = "X-Moderation-Thresholds"


def moderation_model(store: Store, model_id: str) -> dict[str, Any]:
    """The fine-tuned model that moderates, or a 404 explaining what the factory can serve."""
    record = store.get_model(model_id)
    if record is None:
        raise HTTPException(
            status_code=404,
            detail=(
                f"model {model_id!r} not found: the local factory moderates with its own "
                "fine-tuned classifiers (ids from GET /v1/models); Mistral's general moderation "
                "model (mistral-moderation-latest) exists only on the Mistral API"
            ),
        )
    return record


def flags_rule(record: dict[str, Any]) -> tuple[ThresholdTable, str, str]:
    """The model's thresholds (published, else the default), its safe label, and the
    ``X-Moderation-Thresholds`` value: ``tuned`` when any was published, else ``default-0.5``."""
    meta = record.get("meta") or {}
    targets = {t["name"]: t["labels"] for t in record["targets"]}
    table = thresholds_table(targets, meta.get("thresholds"), default=DEFAULT_THRESHOLD)
    source = "tuned" if len(table.defaulted) < len(table.limits) else f"default-{table.default}"
    return table, meta.get("safe_label") or SAFE_LABEL, source


def moderation_out(
    record: dict[str, Any], predictions: list[Scores], response: Response
) -> dict[str, Any]:
    """``ModerationResponse`` for the model's scores of each input."""
    table, safe_label, source = flags_rule(record)
    n_targets = len(record["targets"])
    results: list[dict[str, Any]] = [{"categories": {}, "category_scores": {}} for _ in predictions]
    for target, label_scores in (predictions[0] if predictions else {}).items():
        labels = list(label_scores)
        scores = np.array([[p[target][lab] for lab in labels] for p in predictions])
        flags = flag_mask(scores, labels, table.row(target, labels), safe_label)
        for result, per_input, row in zip(results, predictions, flags, strict=True):
            for label, flagged in zip(labels, row, strict=True):
                name = category(target, label, n_targets)
                result["category_scores"][name] = per_input[target][label]
                result["categories"][name] = bool(flagged)
    response.headers[THRESHOLDS_HEADER] = source
    return {"id": f"mod-{uuid.uuid4().hex}", "model": record["id"], "results": results}


@router.post("/moderations")
async def moderate(
    body: ClassificationIn, store: StoreDep, models: ModelsDep, response: Response
) -> dict[str, Any]:
    texts = texts_of(body.inputs)
    record = moderation_model(store, body.model)
    scores = await score_texts_async(models, record, texts, response=response)
    return moderation_out(record, scores, response)


@router.post("/chat/moderations")
async def moderate_chat(
    body: ChatClassificationIn, store: StoreDep, models: ModelsDep, response: Response
) -> dict[str, Any]:
    conversations = conversations_of(body.inputs)
    record = moderation_model(store, body.model)
    texts = conversation_texts(record, conversations)
    scores = await score_texts_async(models, record, texts, response=response)
    return moderation_out(record, scores, response)

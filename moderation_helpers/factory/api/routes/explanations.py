"""``POST /v1/moderations/explain`` (a local extension; Mistral's API has no such route): the
answer of ``POST /v1/moderations`` for the same body, each result with ``spans`` beside
``categories`` and ``category_scores``: per flagged category, the character spans of the input
that drove its score (``[{"start", "end", "weight"}]``, see
:func:`moderation_helpers.model.explain.explain`), so that a moderation team can state the
reasons for a removal.

The flags are the moderation route's own (its scores, the published thresholds:
:func:`.moderations.flags_rule`); the spans come from a
:class:`~moderation_helpers.model.moderator.Moderator` on the model's exported folder, running
the graph that scored (``X-Moderation-Graph``), loaded once per model and kept for the next
requests. Explaining costs a few times what scoring does, so it runs in a worker thread: the
event loop goes on serving. Limits, errors and headers are ``/v1/moderations``'; 409 when the
model has no exported folder and none can be made.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from starlette.concurrency import run_in_threadpool

from moderation_helpers.export.onnx import ExportRefused
from moderation_helpers.factory.api.routes.classifications import texts_of
from moderation_helpers.factory.api.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.api.routes.moderations import moderation_model, moderation_out
from moderation_helpers.factory.api.schemas import ClassificationIn
from moderation_helpers.factory.exports import exported_folder
from moderation_helpers.factory.serving.scoring import GRAPH_HEADER, score_texts_async
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.explain_flagged import explain_flagged
from moderation_helpers.model.moderator import Moderator

router = APIRouter(prefix="/v1", tags=["moderations"])

EXPLAINERS_KEPT = 2  # Moderators kept loaded (the model cache keeps as many runtimes)


@functools.lru_cache(maxsize=EXPLAINERS_KEPT)
def explainer(folder: str, graph: str) -> Moderator:
    """The Moderator that explains with ``graph`` (``int8`` or ``fp32``) of an exported folder."""
    return Moderator.load(folder, variant=graph)


def model_spans(
    store: Store,
    model_id: str,
    texts: Sequence[str],
    graph: str,
    results: Sequence[dict[str, Any]],
) -> list[dict[str, list[dict[str, Any]]]]:
    """Per text, the spans of each category its moderation result flags (blocking: run it in
    a thread)."""
    try:
        folder = exported_folder(store, model_id)
    except ExportRefused as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    flagged = [[name for name, hit in r["categories"].items() if hit] for r in results]
    return explain_flagged(explainer(str(folder), graph), texts, flagged)


@router.post("/moderations/explain")
async def explain_moderations(
    body: ClassificationIn, store: StoreDep, models: ModelsDep, response: Response
) -> dict[str, Any]:
    texts = texts_of(body.inputs)
    record = moderation_model(store, body.model)
    scores = await score_texts_async(models, record, texts, response=response)
    out = moderation_out(record, scores, response)
    graph = response.headers[GRAPH_HEADER]
    spans = await run_in_threadpool(model_spans, store, record["id"], texts, graph, out["results"])
    for result, text_spans in zip(out["results"], spans, strict=True):
        result["spans"] = text_spans
    return out

"""The one way a route scores texts with a fine-tuned model: every classification and moderation
route calls :func:`score_texts_async` (``async def`` routes) or :func:`score_texts` (sync routes,
which FastAPI runs in its thread pool), so that how scoring is done is decided in one place:
limits (422 / 503) → the model's batcher (shared batches, one inference thread) → runtime.
Given the route's ``Response``, it sets :data:`GRAPH_HEADER` to the graph that answered
(``int8`` or ``fp32``: see :mod:`.runtime` for which one serves).

Async routes are the better choice: a request waiting for its batch holds no thread, so waiting
classifications cannot use up the thread pool that file uploads and job polling need, and the
queue limit (503), not the pool's size, decides how many requests wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from fastapi import Response

from moderation_helpers.factory.api.limits import check_texts, queue_full
from moderation_helpers.factory.serving.batcher import Batcher, BatcherClosed, QueueFull
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.factory.serving.runtime import graph_of

Scores = dict[str, dict[str, float]]  # {target: {label: score}} for one input
GRAPH_HEADER = "X-Moderation-Graph"


def _submit(
    models: ModelCache, record: dict[str, Any], texts: Sequence[str], field: str
) -> tuple[Batcher, concurrent.futures.Future]:
    texts = list(texts)
    check_texts(texts, models.config, field)
    for _ in range(2):  # a batcher evicted between lookup and submit: ask again, once
        try:
            batcher = models.batcher(record["id"], record["path"])
            return batcher, batcher.submit(texts)
        except QueueFull as exc:
            raise queue_full(exc) from exc
        except BatcherClosed:
            continue
    raise RuntimeError(f"model {record['id']} was evicted twice while submitting")


async def score_texts_async(
    models: ModelCache,
    record: dict[str, Any],
    texts: Sequence[str],
    *,
    field: str = "input",
    response: Response | None = None,
) -> list[Scores]:
    """Scores for each of ``texts`` (encoder inputs: texts, or rendered conversations); with
    ``response``, its :data:`GRAPH_HEADER` names the graph that scored them.

    Raises 422 (too many texts, one too long: ``field`` names the request's field) or 503 (the
    model's queue is full) before any work is done.
    """
    batcher, future = _submit(models, record, texts, field)
    scores = await asyncio.wrap_future(future)
    if response is not None:
        response.headers[GRAPH_HEADER] = graph_of(batcher.runtime())
    return scores


def score_texts(
    models: ModelCache, record: dict[str, Any], texts: Sequence[str], *, field: str = "input"
) -> list[Scores]:
    """Blocking :func:`score_texts_async`, for sync routes (run in FastAPI's thread pool)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _submit(models, record, texts, field)[1].result()
    raise RuntimeError(
        "score_texts blocks: call it from a sync route, or await score_texts_async in an async one"
    )

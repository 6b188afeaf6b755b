"""The one way a route scores texts with a fine-tuned model: every classification and moderation
route calls :func:`score_texts`, so that how scoring is done (the runtime, batching of concurrent
requests) is decided in one place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moderation_helpers.factory.model_cache import ModelCache

Scores = dict[str, dict[str, float]]  # {target: {label: score}} for one input


def score_texts(models: ModelCache, record: dict[str, Any], texts: Sequence[str]) -> list[Scores]:
    """Scores for each of ``texts`` (encoder inputs: texts, or rendered conversations)."""
    return models.get(record["id"], record["path"]).predict(list(texts))

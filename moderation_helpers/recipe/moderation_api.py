"""The baseline: Mistral's general moderation endpoint, scored on the labels it has a category
for, beside the fine-tuned classifier."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from moderation_helpers.core.flags import DEFAULT_THRESHOLD
from moderation_helpers.recipe.api_errors import call_with_retry
from moderation_helpers.recipe.classify import COLUMN_NAMES, as_plain
from moderation_helpers.recipe.evaluate import label_metrics

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto falls back to the text bar, with a warning we don't need.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

# Mistral's general moderation categories that mean the same as a civil_comments label.
MODERATION_API_CATEGORIES = {
    "threat": "violence_and_threats",
    "identity_attack": "hate_and_discrimination",
    "sexual_explicit": "sexual",
}


def moderation_api_scores(
    client: Any,
    texts: Sequence[str],
    *,
    model: str = "mistral-moderation-latest",
    batch_size: int = 64,
    max_attempts: int = 3,
    retry_wait: float = 2.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Category scores of Mistral's general moderation endpoint, one column per category."""
    texts = list(texts)
    rows: list[dict[str, float]] = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="moderation API", disable=not progress):
        batch = texts[start : start + batch_size]
        what = f"moderating texts {start}..{start + len(batch) - 1} with {model!r}"
        response = call_with_retry(
            lambda b=batch: client.classifiers.moderate(model=model, inputs=b),
            what,
            max_attempts,
            retry_wait,
        )
        rows.extend((r.get("category_scores") or {}) for r in as_plain(response)["results"])
    return pd.DataFrame.from_records(rows).astype(float)


def compare_with_moderation_api(
    truth: pd.DataFrame,
    api_scores: pd.DataFrame,
    *,
    target: str = "moderation",
    categories: Mapping[str, str] = MODERATION_API_CATEGORIES,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """Baseline figures of the general moderation endpoint on the labels it has a category for.

    Only labels present in ``truth`` and categories present in ``api_scores`` are compared;
    P/R/F1 use the endpoint's scores at ``threshold``.
    """
    pairs = [
        (label, cat)
        for label, cat in categories.items()
        if (target, label) in truth.columns and cat in api_scores.columns
    ]
    rows = {
        (target, label): {
            "category": cat,
            **label_metrics(truth[(target, label)], api_scores[cat], threshold),
        }
        for label, cat in pairs
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if not frame.empty:
        frame.index = frame.index.set_names(COLUMN_NAMES)
    return frame

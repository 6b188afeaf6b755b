"""Classify texts in batches with a fine-tuned classifier; its answers as score frames.

A score frame has one column per ``(target, label)`` (a two-level column index named ``target``
/ ``label``) and one row per text, so that multi-target classifiers need no special case. The
Classifier Factory answers one dict per text keyed by target, each holding ``{"scores": {label:
float}}``. On the Mistral API a target's scores are a softmax over its labels (they sum to 1 even
for multi-label targets); the local factory gives multi-label targets a sigmoid per label.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from moderation_helpers.recipe.api_errors import call_with_retry

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto falls back to the text bar, with a warning we don't need.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

COLUMN_NAMES = ["target", "label"]


def as_plain(obj: Any) -> Any:
    """An SDK response (a pydantic model) as plain data; fakes and recordings already are."""
    return obj.model_dump() if hasattr(obj, "model_dump") else obj


def score_columns(pairs: Sequence[tuple[str, str]]) -> pd.MultiIndex:
    """The two-level ``target`` / ``label`` column index of a score or truth frame."""
    return pd.MultiIndex.from_tuples(list(pairs), names=COLUMN_NAMES)


def targets_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The ``{target: [labels]}`` layout of a score or truth frame, in column order."""
    out: dict[str, list[str]] = {}
    for target, label in frame.columns:
        out.setdefault(target, []).append(label)
    return out


def score_frame(
    results: Sequence[Mapping[str, Any]], targets: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """Turn the ``results`` of a classification response into a score frame.

    ``targets`` fixes the column order and checks that every expected label was scored; by
    default the layout of the first result is used, labels sorted.
    """
    # ``response.results`` holds plain dicts of SDK models: convert both levels.
    results = [{t: as_plain(v) for t, v in as_plain(r).items()} for r in results]
    if targets is None:
        first = results[0] if results else {}
        targets = {t: sorted(v["scores"]) for t, v in sorted(first.items())}
    parts = []
    for target, labels in targets.items():
        try:
            rows = [r[target]["scores"] for r in results]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"classification result without scores for target {target!r}: {exc!r}"
            ) from exc
        part = pd.DataFrame.from_records(rows, columns=list(labels))
        missing = part.columns[part.isna().any()].tolist()
        if missing:
            raise ValueError(f"classification results lack scores for {target}/{missing}")
        parts.append(part.set_axis(score_columns([(target, lab) for lab in labels]), axis=1))
    if not parts:
        return pd.DataFrame(columns=score_columns([]), dtype=float)
    return pd.concat(parts, axis=1).astype(float)


def classify_texts(
    client: Any,
    model: str,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    targets: Mapping[str, Sequence[str]] | None = None,
    max_attempts: int = 3,
    retry_wait: float = 2.0,
    progress: bool = True,
    desc: str = "classify",
) -> pd.DataFrame:
    """Classify ``texts`` with ``client.classifiers.classify`` in batches; one score row each.

    The client's own retry_config already retries 429/5xx and connection errors; a batch whose
    failure escapes it (a dropped connection mid-response) is retried here ``max_attempts``
    times in all. Anything else (a 4xx: bad model id, bad input) raises a RuntimeError naming
    the model and the rows of the batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    frames = []
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
    with bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            what = f"classifying texts {start}..{start + len(batch) - 1} with model {model!r}"
            response = call_with_retry(
                lambda b=batch: client.classifiers.classify(model=model, inputs=b),
                what,
                max_attempts,
                retry_wait,
            )
            results = as_plain(response)["results"]
            if len(results) != len(batch):
                raise RuntimeError(f"{what}: got {len(results)} results for {len(batch)} texts")
            frame = score_frame(results, targets)
            targets = targets or targets_of(frame)
            frames.append(frame)
            bar.update(len(batch))
    if not frames:
        return score_frame([], targets or {})
    return pd.concat(frames, ignore_index=True)

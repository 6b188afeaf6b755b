"""A split's predictions: what the flag rule (:mod:`moderation_helpers.core.flags`) makes of a
score frame and tuned thresholds, and the flat ``predictions.parquet`` of the run folder."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moderation_helpers.core.files import atomic_path
from moderation_helpers.core.flags import SAFE_LABEL, flag_mask, flagged_lists, reaches
from moderation_helpers.recipe.classify import targets_of

Column = tuple[str, str]


def _limits(columns: Sequence[Column], thresholds: Mapping[Column, float]) -> np.ndarray:
    return np.array([float(thresholds[c]) for c in columns], dtype=np.float64)


def predict(scores: pd.DataFrame, thresholds: Mapping[Column, float]) -> pd.DataFrame:
    """Bool frame: whether each label's score reaches its threshold (safe included)."""
    reached = reaches(scores.to_numpy(), _limits(scores.columns, thresholds))
    return pd.DataFrame(reached, index=scores.index, columns=scores.columns)


def flag_frame(
    scores: pd.DataFrame, thresholds: Mapping[Column, float], *, safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """Bool frame: True where the flag rule flags a label (never the safe label)."""
    labels = list(scores.columns.get_level_values("label"))
    mask = flag_mask(scores.to_numpy(), labels, _limits(scores.columns, thresholds), safe_label)
    return pd.DataFrame(mask, index=scores.index, columns=scores.columns)


def flagged_labels(
    scores: pd.DataFrame, thresholds: Mapping[Column, float], *, safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """Per text and target, the labels the flag rule flags (safe never), highest score first."""
    layout = targets_of(scores)
    lists = {
        target: flagged_lists(
            scores[target].to_numpy(),
            labels,
            _limits([(target, lab) for lab in labels], thresholds),
            safe_label,
        )
        for target, labels in layout.items()
    }
    frame = pd.DataFrame(index=scores.index, columns=list(layout), dtype=object)
    for target, values in lists.items():
        frame[target] = pd.Series(values, index=scores.index, dtype=object)
    return frame


def _flat_name(kind: str, column: tuple[str, ...]) -> str:
    return "/".join((kind, *column))


def predictions_frame(
    texts: Sequence[str],
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: Mapping[Column, float],
    *,
    split: str = "test",
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """One split's predictions, flat for parquet: ``split``, ``row``, ``text``, then per label
    ``truth/<target>/<label>``, ``score/...``, ``pred/...`` (score >= threshold, safe included)
    and per target ``flagged/<target>`` (the list a moderator acts on, safe excluded)."""
    flags = flagged_labels(scores, thresholds, safe_label=safe_label)
    parts = {
        "truth": truth.reindex(columns=scores.columns),
        "score": scores,
        "pred": predict(scores, thresholds),
    }
    flat = [
        frame.set_axis([_flat_name(kind, c) for c in frame.columns], axis=1)
        for kind, frame in parts.items()
    ]
    flat.append(flags.set_axis([_flat_name("flagged", (t,)) for t in flags.columns], axis=1))
    head = pd.DataFrame({"split": split, "row": range(len(texts)), "text": list(texts)})
    return pd.concat([head, *(f.reset_index(drop=True) for f in flat)], axis=1)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a frame as parquet, all or nothing."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)

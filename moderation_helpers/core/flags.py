"""The safe label, thresholds and the one flag rule every scorer applies.

A label is **flagged** when its score is at or above its threshold; the safe label (``safe``
unless a model says otherwise) is scored but never a flag: it means "nothing to flag". The
notebooks, the factory's moderation routes, the Moderator and moderate-corpus all call
:func:`flag_mask`, so they cannot disagree on the same scores and thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SAFE_LABEL = "safe"
DEFAULT_THRESHOLD = 0.5
FLAG_RULE = "flag a label when its score >= its threshold; the safe label is never a flag"

Column = tuple[str, str]  # (target, label)
Thresholds = Mapping[str, Mapping[str, float]]  # thresholds.json's {target: {label: value}}


@dataclass(frozen=True)
class ThresholdTable:
    """A threshold for every ``(target, label)`` a model scores, and where each came from."""

    limits: dict[Column, float]
    defaulted: tuple[str, ...]  # "target/label" names that got the default
    default: float | None

    @property
    def source(self) -> str:
        """``tuned`` when every threshold was given, ``default-0.5`` when none was, else
        ``tuned; default-0.5 for [...]``."""
        if not self.defaulted:
            return "tuned"
        if len(self.defaulted) == len(self.limits):
            return f"default-{self.default}"
        return f"tuned; default-{self.default} for {list(self.defaulted)}"

    def row(self, target: str, labels: Sequence[str]) -> np.ndarray:
        """One target's thresholds in the order of ``labels``."""
        return np.array([self.limits[(target, lab)] for lab in labels], dtype=np.float64)


def thresholds_table(
    targets: Mapping[str, Sequence[str]],
    *layers: Thresholds | None,
    default: float | None = DEFAULT_THRESHOLD,
) -> ThresholdTable:
    """The threshold of each label of ``targets`` (``{target: [labels]}``): later ``layers``
    (``{target: {label: value}}``) override earlier ones, a label none gives gets ``default``.

    Raises ValueError for thresholds of labels the model does not score, and, with
    ``default=None``, for labels without one."""
    columns = [(t, lab) for t, labels in targets.items() for lab in labels]
    given: dict[Column, float] = {}
    for layer in layers:
        for target, labels in (layer or {}).items():
            for label, value in labels.items():
                given[(target, label)] = float(value)
    unknown = sorted(f"{t}/{lab}" for t, lab in set(given) - set(columns))
    if unknown:
        raise ValueError(f"thresholds given for {unknown}, which this model does not score")
    defaulted = tuple(f"{t}/{lab}" for t, lab in columns if (t, lab) not in given)
    if defaulted and default is None:
        raise ValueError(f"no threshold for {list(defaulted)}")
    limits = {c: given.get(c, default) for c in columns}
    return ThresholdTable(limits=limits, defaulted=defaulted, default=default)


def category(target: str, label: str, n_targets: int) -> str:
    """A label's moderation category, as the factory's ``/v1/moderations`` names it: the label
    alone for a one-target model, else ``target/label``."""
    return label if n_targets == 1 else f"{target}/{label}"


def reaches(scores: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """``score >= threshold`` per label (the safe label included); NaN scores reach nothing."""
    with np.errstate(invalid="ignore"):
        return np.asarray(scores, dtype=np.float64) >= np.asarray(limits, dtype=np.float64)


def flag_mask(
    scores: np.ndarray, labels: Sequence[str], limits: np.ndarray, safe_label: str = SAFE_LABEL
) -> np.ndarray:
    """The flag rule, for a ``(texts, labels)`` score matrix: True where a label is flagged."""
    is_flag = np.array([label != safe_label for label in labels], dtype=bool)
    return reaches(scores, limits) & is_flag


def ranked_flags(
    scores: np.ndarray, labels: Sequence[str], mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The flagged labels of every row, highest score first (ties by name), as one flat array
    in row order, and the number of flags per row (split it with their cumulative sum)."""
    scores = np.asarray(scores, dtype=np.float64)
    names = np.asarray(labels, dtype=object)
    rank = np.broadcast_to(np.argsort(np.argsort(names.astype(str))), scores.shape)
    order = np.lexsort((rank, -np.where(mask, scores, -np.inf)), axis=1)
    sorted_mask = np.take_along_axis(mask, order, axis=1)
    return names[order[sorted_mask]], sorted_mask.sum(axis=1)


def flagged_lists(
    scores: np.ndarray, labels: Sequence[str], limits: np.ndarray, safe_label: str = SAFE_LABEL
) -> list[list[str]]:
    """Per row, the labels the flag rule flags, highest score first."""
    values, counts = ranked_flags(scores, labels, flag_mask(scores, labels, limits, safe_label))
    return [list(part) for part in np.split(values, np.cumsum(counts)[:-1])] if len(counts) else []

"""What moderation says about each text: the flag rule of ``core.flags`` applied to scores.

Numpy only: the Moderator, the recipe's ``moderate`` and 04_infer all turn scores into
:class:`Decision` objects here, so they give the same answer for the same scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from moderation_helpers.core.flags import SAFE_LABEL, ThresholdTable, flag_mask, ranked_flags


@dataclass(frozen=True)
class Decision:
    """What moderation says about one text.

    ``flagged`` lists, per target, the labels whose score reached their threshold, highest
    score first; the safe label is never a flag. ``scores`` holds every label's score.
    """

    text: str
    flagged: dict[str, list[str]]
    scores: dict[str, dict[str, float]] = field(repr=False)

    @property
    def is_flagged(self) -> bool:
        """True when any target flags any label."""
        return any(self.flagged.values())


def decide(
    texts: Sequence[str],
    scores_by_target: Mapping[str, np.ndarray],
    labels_by_target: Mapping[str, Sequence[str]],
    table: ThresholdTable,
    safe_label: str = SAFE_LABEL,
) -> list[Decision]:
    """One :class:`Decision` per text from ``{target: scores (texts, labels)}`` whose columns
    are ``labels_by_target[target]``, flagged with the thresholds of ``table``."""
    texts = list(texts)
    if not texts:
        return []
    flagged: dict[str, list[np.ndarray]] = {}
    rows: dict[str, list[dict[str, float]]] = {}
    for target, labels in labels_by_target.items():
        labels = list(labels)
        scores = np.asarray(scores_by_target[target], dtype=np.float64)
        if scores.shape != (len(texts), len(labels)):
            raise ValueError(
                f"scores of {target!r} have shape {scores.shape}, expected "
                f"{(len(texts), len(labels))} (texts, labels)"
            )
        mask = flag_mask(scores, labels, table.row(target, labels), safe_label)
        values, counts = ranked_flags(scores, labels, mask)
        flagged[target] = np.split(values, np.cumsum(counts)[:-1])
        rows[target] = [dict(zip(labels, row, strict=True)) for row in scores.tolist()]
    return [
        Decision(
            text=text,
            flagged={t: [str(label) for label in flagged[t][i]] for t in labels_by_target},
            scores={t: rows[t][i] for t in labels_by_target},
        )
        for i, text in enumerate(texts)
    ]

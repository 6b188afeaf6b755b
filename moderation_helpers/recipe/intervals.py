"""What a count on a small set leaves open: the Wilson interval of a proportion.

The project reads most of its figures off small sets: a validation split with about 40 benign
comments, behaviours of 15 to 50 hand-written cases. ``k`` of ``n`` is a point; the interval
says which true rates those counts cannot rule out. Wilson's (scipy's ``binomtest``) rather
than the normal approximation: it stays inside [0, 1] and is not zero-width at 0 of ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson(
    k: Sequence[int] | np.ndarray, n: Sequence[int] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Per entry, the Wilson interval ``(low, high)`` of ``k`` of ``n`` at ``confidence``;
    NaN where ``n`` is 0."""
    k, n = np.asarray(k, dtype=int), np.asarray(n, dtype=int)
    low, high = np.full(n.shape, np.nan), np.full(n.shape, np.nan)
    for i in np.flatnonzero(n):
        ci = binomtest(int(k.flat[i]), int(n.flat[i])).proportion_ci(confidence, method="wilson")
        low.flat[i], high.flat[i] = ci.low, ci.high
    return low, high

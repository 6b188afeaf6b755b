"""What a count on a small set leaves open: the Wilson interval of a proportion.

The project reads most of its figures off small sets: a validation split with about 40 benign
comments, behaviours of 15 to 50 hand-written cases. ``k`` of ``n`` is a point; the interval
says which true rates those counts cannot rule out. Wilson's (scipy's ``binomtest``) rather
than the normal approximation: it stays inside [0, 1] and is not zero-width at 0 of ``n``.
:func:`above_rate` asks the other question a report of many small counts raises: which of
them lie above a rate by more than chance explains.
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


def above_rate(
    k: Sequence[int] | np.ndarray,
    n: Sequence[int] | np.ndarray,
    rate: float,
    confidence: float = CONFIDENCE,
) -> np.ndarray:
    """Per entry, whether ``k`` of ``n`` is more than ``rate`` explains, for the entries as a
    family: a one-sided exact binomial test (scipy's ``binomtest``) at ``1 - confidence``
    divided by their number (Bonferroni), so that where every entry's true rate is ``rate``
    one is named by chance in about 5% of draws (1 to 7% for 04's 27 terms, the rate read off
    the same counts). The exact test rather than a Wilson end: at 40 cases and a few percent,
    Wilson's one-sided tail is too short and names one of the 27 in 9 to 12% of fair draws
    (``benchmarks/bench_identity_spread.py``). It takes an entry's cases as equally likely to
    count; where they are not (04's identity sentences, whose flags gather in a few templates)
    it hardly ever fires, and the identity report tests within the templates instead
    (:func:`.identity_shift.within_template_p`; ``benchmarks/bench_identity_shift.py``)."""
    k, n = np.asarray(k, dtype=int), np.asarray(n, dtype=int)
    level = (1 - confidence) / max(k.size, 1)
    out = np.zeros(k.shape, dtype=bool)
    for i in np.flatnonzero(n):
        test = binomtest(int(k.flat[i]), int(n.flat[i]), float(rate), alternative="greater")
        out.flat[i] = test.pvalue < level
    return out

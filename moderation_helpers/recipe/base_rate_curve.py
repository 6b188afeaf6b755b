"""F1 at a base rate for one label's scores: the traffic's mix, the reweighted and the
smoothed F1 curves, the threshold at their peak, and what to expect at a threshold, with the
range that the split's size leaves open.

Functions here take one label's truth and scores as arrays; :mod:`.base_rate` applies them to
every label of a frame and explains the method.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit, ndtr

from moderation_helpers.core.flags import reaches
from moderation_helpers.recipe.intervals import CONFIDENCE, wilson


def prior_weights(y: np.ndarray, base_rate: float) -> np.ndarray:
    """Per example, the prior-ratio weight that makes a split with rate ``mean(y)`` look like
    traffic at ``base_rate``: positives x pi / pi_val, negatives x (1 - pi) / (1 - pi_val)."""
    return mix_weights(*traffic_mix(y, base_rate))


def traffic_mix(
    y: np.ndarray,
    base_rate: float,
    reference: np.ndarray | None = None,
    reference_rate: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's cell and each cell's share of the traffic: ``(cells, shares)``.

    A cell is ``2 x label + reference`` (0: neither, 1: reference only, 2: label only, 3: both).
    The label's positives get ``base_rate`` (split between toxic and not as in validation),
    toxic negatives what is left of ``reference_rate``, benign ones the rest: traffic's mix of
    negatives, not validation's (why: :mod:`.base_rate`). Without ``reference``, or where the
    label's rate cannot fit inside the reference's as validation splits it (a label unrelated
    to toxicity, given a high rate), the cells are the label's two classes. A cell validation
    lacks hands its share to its class's other cell.
    """
    y = np.asarray(y, dtype=bool)
    rate, fits = float(base_rate), False
    if reference is not None:
        r = np.asarray(reference, dtype=bool)
        ref_rate = rate if reference_rate is None else float(reference_rate)
        toxic_share = float(r[y].mean()) if y.any() else 1.0
        toxic, benign = rate * toxic_share, rate * (1 - toxic_share)
        fits = toxic <= ref_rate + 1e-9 and benign <= 1 - ref_rate + 1e-9
    if not fits:
        r, ref_rate, toxic_share = y, rate, 1.0
    cells = 2 * y.astype(int) + r.astype(int)
    counts = np.bincount(cells, minlength=4)
    both = rate * toxic_share
    reference_only = float(np.clip(ref_rate - both, 0.0, 1.0 - rate))
    shares = np.array([1.0 - rate - reference_only, reference_only, rate - both, both])
    for cell, mate in ((0, 1), (1, 0), (2, 3), (3, 2)):
        if counts[cell] == 0 and counts[mate] > 0:
            shares[mate], shares[cell] = shares[mate] + shares[cell], 0.0
    return cells, np.clip(shares, 0.0, 1.0)


def mix_weights(cells: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per example, its cell's traffic share over the cell's share of the split."""
    counts = np.bincount(cells, minlength=4)
    per_cell = np.divide(shares * cells.size, counts, out=np.zeros(4), where=counts > 0)
    return per_cell[cells]


def weighted_f1_curve(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F1 with sample weights at every distinct score as threshold (flag ``score >= t``).

    Returns ``(thresholds, f1)``, thresholds in decreasing order. One sort and cumulative sums
    (as sklearn's ``precision_recall_curve`` does), no loop over rows. With unit weights the
    sums are exact integers, so equal F1s compare equal like ``best_f1_threshold``'s.
    """
    y = np.asarray(y, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], w[order]
    # The last row of each run of equal scores: a threshold flags the whole run.
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.empty(0, int)
    tp = np.cumsum(np.where(y, w, 0.0))[ends]
    predicted = np.cumsum(w)[ends]
    positives = float(np.where(y, w, 0.0).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(predicted + positives > 0, 2 * tp / (predicted + positives), 0.0)
    return s[ends], f1


def best_weighted_threshold(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> tuple[float | None, float | None]:
    """The threshold maximizing the weighted F1, and that F1; ``(None, None)`` when no positive
    has weight. As in ``evaluate.best_f1_threshold``: ties go to the higher threshold (fewer
    flags), and the threshold sits halfway between the chosen score and the next lower one."""
    y = np.asarray(y, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not (y & (np.asarray(weights) > 0)).any():
        return None, None
    thresholds, f1 = weighted_f1_curve(y, s, weights)
    best = int(np.flatnonzero(f1 == f1.max())[0])  # decreasing thresholds: first = highest
    chosen = float(thresholds[best])
    threshold = (chosen + float(thresholds[best + 1])) / 2 if best + 1 < thresholds.size else chosen
    return threshold, float(f1[best])


# The smoothed curve's thresholds: a logit grid (scores 0.0003 to 0.9997); scores are binned
# on it, so the cost does not grow with the split.
_LOGIT_GRID = np.linspace(-8.0, 8.0, 801)
_MIN_SPREAD = 0.3  # logit units: the bandwidth of a class whose scores are (almost) all equal
# Silverman's rule assumes one bell-shaped class; a fine-tuned model's benign scores are a spike
# near 0 and a few strays far up, and those strays decide the threshold. A kernel 2.5x as wide
# reads one stray less literally: by cross-validation (docs/benchmarks.md, bench_thresholds.py)
# the threshold's spread between splits halves and F1 at 8% rises a little.
BANDWIDTH_SCALE = 2.5
# Every other label (insult, threat, identity_attack, ...): Silverman's own. Measured the same
# way on 6 fold models (two seeds, every label's scores; docs/benchmarks.md), F1 at each label's
# rate is flat from 0.5x to 1.25x and falls beyond: identity_attack 0.710 at 1x, 0.689 at 1.5x,
# 0.623 at 2.5x; insult 0.377, 0.373, 0.324; threat 0.750, 0.747, 0.723. At a 2% rate the peak
# sits in the benign scores' upper tail, which a wider kernel fattens. (That F1 weighted each
# label's own classes; read with the traffic's mix, as the bench reads it now, 1x against 2.5x:
# identity_attack 0.661 / 0.413, insult 0.568 / 0.547, threat 0.788 / 0.635.)
LABEL_BANDWIDTH_SCALE = 1.0


def _smoothed_share_above(z: np.ndarray, scale: float) -> np.ndarray:
    """P(score >= each grid threshold) for one class's logit scores ``z``, Gaussian-kernel
    smoothed with ``scale`` x Silverman's bandwidth (1.06 x sd x n^-1/5)."""
    bandwidth = scale * 1.06 * max(float(z.std()), _MIN_SPREAD) * z.size**-0.2
    step = _LOGIT_GRID[1] - _LOGIT_GRID[0]
    bins = np.clip(np.rint((z - _LOGIT_GRID[0]) / step), 0, _LOGIT_GRID.size - 1).astype(int)
    counts = np.bincount(bins, minlength=_LOGIT_GRID.size) / z.size
    centers = _LOGIT_GRID[:, None] - _LOGIT_GRID[None, :]
    return ndtr(-centers / bandwidth) @ counts


def smoothed_f1_curve(
    y: np.ndarray,
    scores: np.ndarray,
    base_rate: float,
    bandwidth_scale: float = BANDWIDTH_SCALE,
    *,
    reference: np.ndarray | None = None,
    reference_rate: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """F1 at ``base_rate`` at every threshold of a logit grid, from kernel-smoothed score
    distributions of each cell of :func:`traffic_mix` (``bandwidth_scale`` x Silverman's
    bandwidth), mixed at the traffic's shares: ``(thresholds, f1)``, thresholds in decreasing
    order. Needs two rows of each class."""
    y = np.asarray(y, dtype=bool)
    z = logit(np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6))
    cells, shares = traffic_mix(y, base_rate, reference, reference_rate)
    above = {
        c: shares[c] * _smoothed_share_above(z[cells == c], bandwidth_scale)
        for c in range(4)
        if shares[c] > 0 and (cells == c).any()
    }
    zero = np.zeros(_LOGIT_GRID.size)
    caught = sum((above.get(c, zero) for c in (2, 3)), zero)
    flagged = caught + sum((above.get(c, zero) for c in (0, 1)), zero)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(flagged + base_rate > 0, 2 * caught / (flagged + base_rate), 0.0)
    return expit(_LOGIT_GRID)[::-1], f1[::-1]


def base_rate_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    base_rate: float,
    *,
    smooth: bool = True,
    bandwidth_scale: float = BANDWIDTH_SCALE,
    reference: np.ndarray | None = None,
    reference_rate: float | None = None,
) -> float | None:
    """The threshold with the best F1 at ``base_rate``: the smoothed curve's peak (the highest
    on a tie; :func:`smoothed_f1_curve`), or with ``smooth=False`` or fewer than two rows of a
    class, the reweighted split's (:func:`best_weighted_threshold`). None when validation has
    no positive. ``reference`` (toxicity's truth) and its rate set the traffic's mix of
    negatives (:func:`traffic_mix`)."""
    y = np.asarray(y, dtype=bool)
    mix = dict(reference=reference, reference_rate=reference_rate)
    if smooth and min(y.sum(), (~y).sum()) >= 2 and base_rate > 0:
        thresholds, f1 = smoothed_f1_curve(y, scores, base_rate, bandwidth_scale, **mix)
        return float(thresholds[int(np.argmax(f1))])
    weights = mix_weights(*traffic_mix(y, base_rate, **mix))
    threshold, _ = best_weighted_threshold(y, scores, weights)
    return threshold


def expected_metrics(
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    base_rate: float,
    *,
    reference: np.ndarray | None = None,
    reference_rate: float | None = None,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """At ``threshold``, for traffic at ``base_rate``: share flagged, precision, recall, F1, and
    the range of precision and recall (``*_low``, ``*_high``).

    The share flagged within each cell of :func:`traffic_mix` (for a label alone: recall and
    the false-positive rate) is measured on the split and does not depend on the mix, so
    ``flag_rate`` is their sum weighted by the cells' traffic shares, and precision the flagged
    positives' part of it. The range takes each cell's share at the end of its Wilson interval
    (``confidence``) that is worst, then best, for the figure: a validation split with no false
    positive among 40 benign comments reads as precision 1.0, yet cannot rule out 9% of benign
    comments flagged, which on traffic 8% toxic is precision near 0.5. An end is wrong only if
    some cell's true share lies beyond its interval on that side (at 0.95: at most 2.5% a cell,
    so each end holds at least 90% of the time), and only for traffic whose comments of each
    cell are like validation's. NaN where the split cannot tell (no positives: recall; no
    negatives: the false-positive rate)."""
    y = np.asarray(y, dtype=bool)
    hits = reaches(np.asarray(scores, dtype=np.float64), np.float64(threshold))
    cells, shares = traffic_mix(y, base_rate, reference, reference_rate)
    counts = np.bincount(cells, minlength=4)
    flagged_counts = np.bincount(cells[hits], minlength=4)
    hit_rate = np.divide(flagged_counts, counts, out=np.full(4, np.nan), where=counts > 0)
    low, high = wilson(flagged_counts, counts, confidence)
    point = _at_rate(hit_rate, shares, base_rate)
    # worst for precision and recall: positives' cells low, negatives' cells high
    positive = np.array([False, False, True, True])
    worst = _at_rate(np.where(positive, low, high), shares, base_rate)
    best = _at_rate(np.where(positive, high, low), shares, base_rate)
    precision, recall = point["precision"], point["recall"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else np.nan
    return {
        "expected_flag_rate": point["flag_rate"],
        "expected_precision": precision,
        "expected_precision_low": worst["precision"],
        "expected_precision_high": best["precision"],
        "expected_recall": recall,
        "expected_recall_low": worst["recall"],
        "expected_recall_high": best["recall"],
        "expected_f1": float(f1),
    }


def _at_rate(hit_rate: np.ndarray, shares: np.ndarray, base_rate: float) -> dict[str, float]:
    """Share flagged, precision and recall on traffic with ``shares``, given each cell's share
    flagged."""
    # A cell absent from the traffic contributes nothing, even where the split can't tell.
    flagged = np.where(shares > 0, shares * hit_rate, 0.0)
    flagged_pos = float(flagged[2] + flagged[3])
    flag_rate = flagged_pos + float(flagged[0] + flagged[1])
    return {
        "flag_rate": float(flag_rate),
        "precision": flagged_pos / flag_rate if flag_rate > 0 else np.nan,
        "recall": flagged_pos / base_rate if base_rate > 0 else np.nan,
    }

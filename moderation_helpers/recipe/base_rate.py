"""Thresholds for the traffic a team will see, not for the validation split.

The prepare step balances the data: on the civil_comments mirror about 60% of validation rows
are toxic, while about 8% of the comments of the full corpus are. A threshold that maximizes F1
on the balanced split flags far too much at the natural rate, because the negatives it lets
through are multiplied by ten. Under a pure change of prior (the scores of toxic comments and
of clean comments keep their distributions, only their mix changes) the validation split still
tells the truth once each example is weighted by the prior ratio:

* positives x ``pi / pi_val``, negatives x ``(1 - pi) / (1 - pi_val)``,

where ``pi`` is the target base rate of the label and ``pi_val`` its rate in validation. The
threshold chosen here maximizes that F1, and the table says what to expect at it: the share of
comments flagged, precision and recall at the target rate.

A validation split of ~100 rows has ~40 negatives, each weighted ~15x, and where they happen
to lie decides the threshold: with none scored between 0.17 and 0.96, every threshold in that
gap has the same false positives, and the raw peak sits just under the lowest positive. So the
peak is taken on a **smoothed** curve (:func:`smoothed_f1_curve`): each class's scores are
spread by a Gaussian kernel on the logit scale, which reads the gap as "negatives thin out", not
"no negative until 0.96". For toxicity (the reference label) the kernel is
:data:`BANDWIDTH_SCALE` (2.5) times Silverman's bandwidth, so that one benign comment the model
scores high does not set the threshold alone. By cross-validation on the mirror (30 fold models
of 10 recipes, 100-row tuning draws, F1 at 8% measured on the fold's other rows;
``benchmarks/bench_thresholds.py``) it lifts that F1 from 0.701 (raw) to 0.733 and cuts the
threshold's spread from 0.124 to 0.023 (sd; Silverman's kernel: 0.722 and 0.055). The other
labels, tuned for rates of 2-4%, keep Silverman's own (:data:`LABEL_BANDWIDTH_SCALE`): the wider
kernel lifts their thresholds past their peak (:func:`bandwidth_scale_for`).
``smooth=False`` gives the raw reweighted peak.

Frames are the two-level ``(target, label)`` score and truth frames of
:mod:`moderation_helpers.recipe.evaluate`; the result is indexed like its
``best_f1_thresholds`` table, so its ``threshold`` column can be used the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, logit, ndtr

from moderation_helpers.core.flags import DEFAULT_THRESHOLD, SAFE_LABEL, reaches

# Share of Civil Comments (the full corpus, ~1.8M comments) rated toxic by at least half of
# its raters (toxicity >= 0.5): about 8%.
TOXICITY_BASE_RATE = 0.08
REFERENCE_LABEL = ("moderation", "toxicity")
COLUMNS = [
    "threshold",
    "base_rate",
    "validation_rate",
    "expected_flag_rate",
    "expected_precision",
    "expected_recall",
    "expected_f1",
    "note",
]

Column = tuple[str, str]


def _rate(values: pd.Series) -> float:
    return float(np.asarray(values, dtype=bool).mean()) if len(values) else float("nan")


def default_base_rates(
    truth: pd.DataFrame,
    *,
    reference: Column = REFERENCE_LABEL,
    reference_rate: float = TOXICITY_BASE_RATE,
    safe_label: str = SAFE_LABEL,
) -> dict[Column, float]:
    """A target base rate for every column of ``truth``, from one known rate.

    The ``reference`` label (toxicity) gets ``reference_rate``; every other label is scaled
    by the same factor ``reference_rate / rate_val(reference)``: ``pi = rate_val x factor``.
    That assumes the labels' shares among toxic comments are the same in validation as in the
    corpus; it is a rough default (the balancing caps frequent labels, so rare labels come out
    too high) and a caller who knows a label's corpus rate should pass it. The safe label is
    the complement: its rate of "anything flagged" is scaled, ``1 - (1 - rate_val) x factor``.
    Rates are clipped to [0, 1].
    """
    if reference not in truth.columns:
        raise ValueError(f"reference label {reference} is not a column of the truth frame")
    reference_val = _rate(truth[reference])
    if not reference_val > 0:
        raise ValueError(f"reference label {reference} has no positive in validation")
    factor = reference_rate / reference_val
    rates = {}
    for column in truth.columns:
        val = _rate(truth[column])
        if column == reference:
            rate = reference_rate
        elif column[1] == safe_label:
            rate = 1.0 - (1.0 - val) * factor
        else:
            rate = val * factor
        rates[tuple(column)] = float(np.clip(rate, 0.0, 1.0))
    return rates


def prior_weights(y: np.ndarray, base_rate: float) -> np.ndarray:
    """Per example, the prior-ratio weight that makes a split with rate ``mean(y)`` look like
    traffic at ``base_rate``: positives x pi / pi_val, negatives x (1 - pi) / (1 - pi_val)."""
    y = np.asarray(y, dtype=bool)
    val = float(y.mean()) if y.size else 0.0
    w_pos = base_rate / val if val > 0 else 0.0
    w_neg = (1.0 - base_rate) / (1.0 - val) if val < 1 else 0.0
    return np.where(y, w_pos, w_neg)


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
# sits in the benign scores' upper tail, which a wider kernel fattens.
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
    y: np.ndarray, scores: np.ndarray, base_rate: float, bandwidth_scale: float = BANDWIDTH_SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """F1 at ``base_rate`` at every threshold of a logit grid, from kernel-smoothed score
    distributions of each class (``bandwidth_scale`` x Silverman's bandwidth): ``(thresholds,
    f1)``, thresholds in decreasing order. Needs two rows of each class."""
    y = np.asarray(y, dtype=bool)
    z = logit(np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6))
    recall = _smoothed_share_above(z[y], bandwidth_scale)
    false_flags = _smoothed_share_above(z[~y], bandwidth_scale)
    flagged = base_rate * recall + (1.0 - base_rate) * false_flags
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(flagged + base_rate > 0, 2 * base_rate * recall / (flagged + base_rate), 0.0)
    return expit(_LOGIT_GRID)[::-1], f1[::-1]


def base_rate_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    base_rate: float,
    *,
    smooth: bool = True,
    bandwidth_scale: float = BANDWIDTH_SCALE,
) -> float | None:
    """The threshold with the best F1 at ``base_rate``: the smoothed curve's peak (the highest
    on a tie; :func:`smoothed_f1_curve`), or with ``smooth=False`` or fewer than two rows of a
    class, the reweighted split's (:func:`best_weighted_threshold`). None when validation has
    no positive."""
    y = np.asarray(y, dtype=bool)
    if smooth and min(y.sum(), (~y).sum()) >= 2 and base_rate > 0:
        thresholds, f1 = smoothed_f1_curve(y, scores, base_rate, bandwidth_scale)
        return float(thresholds[int(np.argmax(f1))])
    threshold, _ = best_weighted_threshold(y, scores, prior_weights(y, base_rate))
    return threshold


def bandwidth_scale_for(column: Column, reference: Column = REFERENCE_LABEL) -> float:
    """The smoothing kernel's width for a label, in Silverman's bandwidths:
    :data:`BANDWIDTH_SCALE` for the ``reference`` label (toxicity), :data:`LABEL_BANDWIDTH_SCALE`
    for every other."""
    return BANDWIDTH_SCALE if tuple(column) == tuple(reference) else LABEL_BANDWIDTH_SCALE


def _thresholds_of(
    thresholds: pd.DataFrame | Mapping[Column, float], columns: pd.Index
) -> dict[Column, float]:
    if isinstance(thresholds, pd.DataFrame):
        thresholds = thresholds["threshold"]
    return {tuple(c): float(thresholds[c]) for c in columns}


def expected_metrics(
    y: np.ndarray, scores: np.ndarray, threshold: float, base_rate: float
) -> dict[str, float]:
    """At ``threshold``, for traffic at ``base_rate``: share flagged, precision, recall, F1.

    Recall (TPR) and the false-positive rate are measured on the split; they do not depend on
    the mix, so ``flag_rate = pi * TPR + (1 - pi) * FPR`` and precision ``pi * TPR /
    flag_rate``. NaN where the split cannot tell (no positives: TPR; no negatives: FPR)."""
    y = np.asarray(y, dtype=bool)
    hits = reaches(np.asarray(scores, dtype=np.float64), np.float64(threshold))
    tpr = float(hits[y].mean()) if y.any() else np.nan
    fpr = float(hits[~y].mean()) if (~y).any() else np.nan
    # A class absent from the traffic contributes nothing, even where the split can't tell.
    flagged_pos = base_rate * tpr if base_rate > 0 else 0.0
    flagged_neg = (1.0 - base_rate) * fpr if base_rate < 1 else 0.0
    flag_rate = flagged_pos + flagged_neg
    precision = flagged_pos / flag_rate if flag_rate > 0 else np.nan
    recall = tpr if base_rate > 0 else np.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else np.nan
    return {
        "expected_flag_rate": float(flag_rate),
        "expected_precision": float(precision),
        "expected_recall": float(recall),
        "expected_f1": float(f1),
    }


def _rates(truth: pd.DataFrame, base_rates: Mapping[Column, float] | None) -> dict[Column, float]:
    """The caller's rates over the default ones (the default needs the reference label only
    where the caller leaves a label out)."""
    given = {tuple(k): float(v) for k, v in (base_rates or {}).items()}
    missing = [tuple(c) for c in truth.columns if tuple(c) not in given]
    return {**(default_base_rates(truth) if missing else {}), **given}


def expected_at_rate(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: pd.DataFrame | Mapping[Column, float],
    base_rates: Mapping[Column, float] | None = None,
) -> pd.DataFrame:
    """Per ``(target, label)``: what the given thresholds do at the target base rates.

    ``thresholds`` is a frame with a ``threshold`` column (``best_f1_thresholds``, or this
    module's table) or a ``{(target, label): threshold}`` mapping; ``base_rates`` the same kind
    of mapping, labels it leaves out get :func:`default_base_rates`. Columns: :data:`COLUMNS`.
    """
    return _table(truth, scores, _thresholds_of(thresholds, scores.columns), base_rates, {})


def _table(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    limits: Mapping[Column, float],
    base_rates: Mapping[Column, float] | None,
    notes: Mapping[Column, str],
) -> pd.DataFrame:
    rates = _rates(truth, base_rates)
    rows = []
    for column in scores.columns:
        key = tuple(column)
        y = truth[column].to_numpy(dtype=bool)
        row: dict[str, Any] = {
            "threshold": limits[key],
            "base_rate": rates[key],
            "validation_rate": _rate(truth[column]),
        }
        row.update(expected_metrics(y, scores[column].to_numpy(), limits[key], rates[key]))
        row["note"] = notes.get(key, None if y.any() else "no positive examples in validation")
        rows.append(row)
    table = pd.DataFrame(rows, index=scores.columns, columns=COLUMNS)
    # Keep None (not NaN) for "no note", as evaluate's tables do.
    table["note"] = pd.Series([r["note"] for r in rows], index=table.index, dtype=object)
    return table


def tune_for_base_rate(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    base_rates: Mapping[Column, float] | None = None,
    *,
    default: float = DEFAULT_THRESHOLD,
    smooth: bool = True,
) -> pd.DataFrame:
    """Per ``(target, label)``: the threshold that maximizes F1 at the label's target base
    rate (:func:`base_rate_threshold`: smoothed with the label's kernel,
    :func:`bandwidth_scale_for`, unless ``smooth=False``), and what validation
    reweighted to that rate expects at it (columns :data:`COLUMNS`).

    ``base_rates`` maps ``(target, label)`` to the share of positives in the traffic the model
    will see; labels it leaves out get :func:`default_base_rates` (toxicity at
    :data:`TOXICITY_BASE_RATE`, the others scaled alike). Unsmoothed at ``pi == pi_val``, every
    weight is 1 and the threshold is ``evaluate.best_f1_threshold``'s. A label without
    positives in validation gets ``default``, with a note. ``expected_f1`` is the reweighted F1.
    """
    rates = _rates(truth, base_rates)
    chosen, notes = {}, {}
    for column in scores.columns:
        key = tuple(column)
        y = truth[column].to_numpy(dtype=bool)
        threshold = base_rate_threshold(
            y,
            scores[column].to_numpy(),
            rates[key],
            smooth=smooth,
            bandwidth_scale=bandwidth_scale_for(key),
        )
        chosen[key] = default if threshold is None else threshold
        if threshold is None:
            notes[key] = f"nothing to tune in validation: default threshold {default} used"
    return _table(truth, scores, chosen, rates, notes)

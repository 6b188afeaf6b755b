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
comments flagged, precision and recall at the target rate, each of the last two with the range
that validation's few comments leave open (``*_low``, ``*_high``;
:func:`base_rate_curve.expected_metrics`).

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

A label that comes with toxicity (insult, threat, identity_attack...) has two kinds of
negatives: toxic comments without it, and benign ones. Validation holds about as many of each;
traffic holds some twenty benign comments for each toxic one. So what a threshold is expected to
do on traffic (the table's ``expected_*`` columns) is read with the traffic's mix
(:func:`base_rate_curve.traffic_mix`): weighting the label's own two classes kept validation's
mix and told a team that its insult flags would be four in five wrong, when every false insult
flag in validation was a toxic comment. The thresholds are still tuned on the label's own
classes: tuned for the traffic's mix they fall (insult 0.73 -> 0.60, identity_attack 0.66 ->
0.50 across the default's folds) and F1 at the rate rises for three labels of five (falls for
threat), but validation's benign comments rarely name a group, so they cannot show what that
costs: more of the behavioural suite's identity sentences, negations and counter-speech get
flagged (docs/benchmarks.md). ``tune_for_traffic_mix=True`` tunes for the mix anyway.

Frames are the two-level ``(target, label)`` score and truth frames of
:mod:`moderation_helpers.recipe.evaluate`; the result is indexed like its
``best_f1_thresholds`` table, so its ``threshold`` column can be used the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from moderation_helpers.core.flags import DEFAULT_THRESHOLD, SAFE_LABEL
from moderation_helpers.core.ranges import format_range
from moderation_helpers.recipe.base_rate_curve import (
    BANDWIDTH_SCALE,
    LABEL_BANDWIDTH_SCALE,
    base_rate_threshold,
    expected_metrics,
)

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
    "expected_precision_low",
    "expected_precision_high",
    "expected_recall",
    "expected_recall_low",
    "expected_recall_high",
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


def bandwidth_scale_for(column: Column, reference: Column = REFERENCE_LABEL) -> float:
    """The smoothing kernel's width for a label, in Silverman's bandwidths:
    ``BANDWIDTH_SCALE`` for the ``reference`` label (toxicity), ``LABEL_BANDWIDTH_SCALE`` for
    every other (:mod:`.base_rate_curve`)."""
    return BANDWIDTH_SCALE if tuple(column) == tuple(reference) else LABEL_BANDWIDTH_SCALE


def _thresholds_of(
    thresholds: pd.DataFrame | Mapping[Column, float], columns: pd.Index
) -> dict[Column, float]:
    if isinstance(thresholds, pd.DataFrame):
        thresholds = thresholds["threshold"]
    return {tuple(c): float(thresholds[c]) for c in columns}


def _rates(truth: pd.DataFrame, base_rates: Mapping[Column, float] | None) -> dict[Column, float]:
    """The caller's rates over the default ones (the default needs the reference label only
    where the caller leaves a label out)."""
    given = {tuple(k): float(v) for k, v in (base_rates or {}).items()}
    missing = [tuple(c) for c in truth.columns if tuple(c) not in given]
    return {**(default_base_rates(truth) if missing else {}), **given}


def _mix(
    truth: pd.DataFrame, column: Column, rates: Mapping[Column, float], reference: Column | None
) -> dict[str, Any]:
    """The ``reference`` / ``reference_rate`` arguments for one label: toxicity's truth and
    rate, for every label but toxicity itself (none where truth has no toxicity column)."""
    if reference is None or tuple(reference) == tuple(column) or reference not in truth.columns:
        return {}
    return {
        "reference": truth[reference].to_numpy(dtype=bool),
        "reference_rate": rates[tuple(reference)],
    }


def expected_at_rate(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: pd.DataFrame | Mapping[Column, float],
    base_rates: Mapping[Column, float] | None = None,
    *,
    reference: Column | None = REFERENCE_LABEL,
) -> pd.DataFrame:
    """Per ``(target, label)``: what the given thresholds do at the target base rates.

    ``thresholds`` is a frame with a ``threshold`` column (``best_f1_thresholds``, or this
    module's table) or a ``{(target, label): threshold}`` mapping; ``base_rates`` the same kind
    of mapping, labels it leaves out get :func:`default_base_rates`. Every label but
    ``reference`` is read with the traffic's mix of toxic and benign negatives
    (``base_rate_curve.traffic_mix``; ``reference=None``: its own two classes). Columns:
    :data:`COLUMNS`.
    """
    limits = _thresholds_of(thresholds, scores.columns)
    return _table(truth, scores, limits, _rates(truth, base_rates), {}, reference)


def _table(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    limits: Mapping[Column, float],
    rates: Mapping[Column, float],
    notes: Mapping[Column, str],
    reference: Column | None,
) -> pd.DataFrame:
    rows = []
    for column in scores.columns:
        key = tuple(column)
        y = truth[column].to_numpy(dtype=bool)
        row: dict[str, Any] = {
            "threshold": limits[key],
            "base_rate": rates[key],
            "validation_rate": _rate(truth[column]),
        }
        mix = _mix(truth, key, rates, reference)
        row.update(expected_metrics(y, scores[column].to_numpy(), limits[key], rates[key], **mix))
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
    reference: Column | None = REFERENCE_LABEL,
    tune_for_traffic_mix: bool = False,
) -> pd.DataFrame:
    """Per ``(target, label)``: the threshold that maximizes F1 at the label's target base
    rate on its own two classes (``base_rate_curve.base_rate_threshold``: smoothed with the
    label's kernel, :func:`bandwidth_scale_for`, unless ``smooth=False``), and what it is
    expected to do on traffic at that rate (columns :data:`COLUMNS`, as
    :func:`expected_at_rate` reads them).

    ``base_rates`` maps ``(target, label)`` to the share of positives in the traffic the model
    will see; labels it leaves out get :func:`default_base_rates` (toxicity at
    :data:`TOXICITY_BASE_RATE`, the others scaled alike). ``tune_for_traffic_mix`` tunes every
    label but ``reference`` for the traffic's mix of negatives instead (see the module's
    docstring for why it is off). Unsmoothed at ``pi == pi_val``, every weight is 1 and the
    threshold is ``evaluate.best_f1_threshold``'s. A label without positives in validation gets
    ``default``, with a note.
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
            **_mix(truth, key, rates, reference if tune_for_traffic_mix else None),
        )
        chosen[key] = default if threshold is None else threshold
        if threshold is None:
            notes[key] = f"nothing to tune in validation: default threshold {default} used"
    return _table(truth, scores, chosen, rates, notes, reference)


def readable_table(at_rate: pd.DataFrame, best_f1: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`tune_for_base_rate`'s (or :func:`expected_at_rate`'s) table as a reader takes it
    in: one row per label, short headers, each expected figure next to its range
    (``format_range``), validation's best-F1 threshold first when ``best_f1`` is given, the
    target level dropped when there is one target and ``note`` only when a label has one."""
    view = pd.DataFrame(index=at_rate.index)
    if best_f1 is not None:
        view["best F1 threshold"] = best_f1["threshold"].reindex(at_rate.index)
    view["threshold"] = at_rate["threshold"]
    view["base rate"] = at_rate["base_rate"]
    view["validation rate"] = at_rate["validation_rate"]
    view["flagged"] = at_rate["expected_flag_rate"]
    for figure in ("precision", "recall"):
        view[figure] = at_rate[f"expected_{figure}"]
        view[f"{figure} range"] = [
            format_range(low, high)
            for low, high in zip(
                at_rate[f"expected_{figure}_low"], at_rate[f"expected_{figure}_high"], strict=True
            )
        ]
    view["F1"] = at_rate["expected_f1"]
    if at_rate["note"].notna().any():
        view["note"] = at_rate["note"]
    if isinstance(view.index, pd.MultiIndex) and view.index.get_level_values(0).nunique() == 1:
        view = view.droplevel(0)
    return view

"""Measure per-label quality and choose a threshold per label.

Scores and truths are frames of :mod:`moderation_helpers.recipe.classify`'s layout (one column
per ``(target, label)``, one row per text). Each label gets its own threshold, tuned on the
validation split, instead of a fixed 0.5.

Metrics that a split cannot define (ROC-AUC without negatives, anything without positives) are
``None`` with a ``note``, and are left out of the macro means rather than turned into NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from moderation_helpers.core.flags import DEFAULT_THRESHOLD, SAFE_LABEL
from moderation_helpers.recipe.classify import COLUMN_NAMES, score_columns

METRICS = ["roc_auc", "average_precision", "precision", "recall", "f1"]


def labels_matrix(
    examples: Sequence[Mapping[str, Any]], target: str, labels: Sequence[str]
) -> pd.DataFrame:
    """Truth of one target as a bool frame (one column per label) from parsed JSONL examples.

    A target's value may be one label (single_class) or a list (multi_class); an example that
    does not label this target counts as negative for all its labels. A label outside
    ``labels`` is an error: the model could never have predicted it.
    """
    given = pd.Series([ex.get("labels", {}) for ex in examples], dtype=object)
    exploded = given.str.get(target).explode().dropna()
    unknown = sorted(set(exploded) - set(labels))
    if unknown:
        raise ValueError(
            f"target {target!r}: label(s) {unknown} in the data but not among the model's "
            f"labels {list(labels)}"
        )
    truth = pd.crosstab(exploded.index, exploded).astype(bool)
    truth = truth.rename_axis(index=None, columns=None)
    return truth.reindex(index=range(len(examples)), columns=list(labels), fill_value=False)


def truth_frame(
    examples: Sequence[Mapping[str, Any]], targets: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Truth for every target, with the same two-level columns as a score frame."""
    parts = [
        labels_matrix(examples, t, labels).set_axis(
            score_columns([(t, lab) for lab in labels]), axis=1
        )
        for t, labels in targets.items()
    ]
    return pd.concat(parts, axis=1)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold that maximizes F1 on one label, or why there is none."""

    threshold: float | None
    f1: float | None
    note: str | None = None


def best_f1_threshold(y_true: Sequence[bool], scores: Sequence[float]) -> ThresholdChoice:
    """The score threshold (flag when ``score >= threshold``) that maximizes F1.

    Candidates come from ``precision_recall_curve``. The threshold returned sits halfway
    between the chosen score and the next lower score, so that it separates the classes
    instead of touching the lowest flagged example. Ties in F1 go to the higher threshold:
    same quality, fewer texts flagged. Without positives there is nothing to tune (``None``).
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos = int(y.sum())
    if n_pos == 0:
        return ThresholdChoice(None, None, "no positive examples to tune on")
    precision, recall, thresholds = precision_recall_curve(y, s)
    # Exact counts make equal F1s compare equal (IEEE division rounds a/b == c/d alike).
    tp = np.rint(recall[:-1] * n_pos)
    predicted = y.size - np.searchsorted(np.sort(s), thresholds, side="left")
    f1 = 2 * tp / (predicted + n_pos)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    chosen = float(thresholds[best])
    below = s[s < chosen]
    threshold = (chosen + float(below.max())) / 2 if below.size else chosen
    note = None if n_pos < y.size else "no negative examples: every text is flagged"
    return ThresholdChoice(threshold, float(f1[best]), note)


def best_f1_thresholds(
    truth: pd.DataFrame, scores: pd.DataFrame, *, default: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """Per label: the F1-maximizing threshold on this split (usually validation).

    Columns: ``threshold``, ``source`` ("validation_f1" or "default" where the split has no
    positives, which then gets ``default``), ``validation_f1``, ``note``.
    """
    rows = []
    for column in scores.columns:
        choice = best_f1_threshold(truth[column].to_numpy(), scores[column].to_numpy())
        tuned = choice.threshold is not None
        note = choice.note
        if not tuned:
            note = f"{note} in validation: default threshold {default} used"
        rows.append(
            {
                "threshold": choice.threshold if tuned else default,
                "source": "validation_f1" if tuned else "default",
                "validation_f1": choice.f1,
                "note": note,
            }
        )
    return pd.DataFrame(rows, index=scores.columns)


def label_metrics(
    y_true: Sequence[bool], scores: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Quality of one label on one split: ranking (ROC-AUC, AP) and P/R/F1 at ``threshold``.

    A metric the split cannot define is ``None`` and ``note`` says why: without positives
    nothing is defined; without negatives ROC-AUC is not. Precision with no text flagged is 0.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    support, negatives = int(y.sum()), int((~y).sum())
    out: dict[str, Any] = {"support": support, "negatives": negatives}
    out.update(dict.fromkeys(METRICS))
    out["note"] = None
    if support == 0:
        out["note"] = "no positive examples in this split: metrics undefined, left out of macro"
        return out
    predicted = s >= threshold
    p, r, f, _ = precision_recall_fscore_support(y, predicted, average="binary", zero_division=0.0)
    out.update(precision=float(p), recall=float(r), f1=float(f))
    out["average_precision"] = float(average_precision_score(y, s))
    if negatives == 0:
        out["note"] = "no negative examples in this split: ROC-AUC undefined"
    else:
        out["roc_auc"] = float(roc_auc_score(y, s))
    return out


def evaluate_labels(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: pd.DataFrame | Mapping[tuple[str, str], float],
    *,
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """One row per ``(target, label)``: threshold, support and the metrics of ``label_metrics``.

    ``thresholds`` is the frame of ``best_f1_thresholds`` (its source/validation_f1/note are
    carried along) or a plain ``{(target, label): threshold}`` mapping. ``is_flag`` is False for
    the safe label, which is reported but kept out of the flag labels' macro.
    """
    table = (
        thresholds.copy()
        if isinstance(thresholds, pd.DataFrame)
        else pd.DataFrame({"threshold": pd.Series(thresholds)}).reindex(scores.columns)
    )
    table.index = table.index.set_names(COLUMN_NAMES)
    rows = [
        label_metrics(truth[c].to_numpy(), scores[c].to_numpy(), float(table.at[c, "threshold"]))
        for c in scores.columns
    ]
    metrics = pd.DataFrame(rows, index=scores.columns)
    if "note" in table:
        notes = pd.concat([table.pop("note"), metrics.pop("note")], axis=1)
        metrics["note"] = notes.apply(lambda r: "; ".join(r.dropna()) or None, axis=1)
    report = pd.concat([table, metrics], axis=1)
    report.insert(0, "is_flag", report.index.get_level_values("label") != safe_label)
    return report


def macro_means(report: pd.DataFrame) -> dict[str, Any]:
    """Macro means over the flag labels (safe excluded) of the metrics each label defines.

    ``n_labels`` says how many labels each mean covers; a mean over no label is ``None``.
    """
    flags = report[report["is_flag"]]
    values = flags[METRICS].apply(pd.to_numeric, errors="coerce")
    means = values.mean()
    out: dict[str, Any] = {m: (None if pd.isna(means[m]) else float(means[m])) for m in METRICS}
    out["n_labels"] = {m: int(values[m].notna().sum()) for m in METRICS}
    out["labels"] = [f"{t}/{lab}" for t, lab in flags.index]
    return out


def table_to_records(report: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{target: {label: {field: value}}}`` with None (never NaN) for undefined figures."""
    clean = report.astype(object).where(report.notna(), None)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (target, label), row in clean.iterrows():
        out.setdefault(target, {})[label] = {
            k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()
        }
    return out


def evaluation_record(
    report: pd.DataFrame,
    *,
    model: str,
    backend: str,
    split_sizes: Mapping[str, int],
    job_id: str | None = None,
    safe_label: str = SAFE_LABEL,
    **extra: Any,
) -> dict[str, Any]:
    """The ``evaluation.json`` document: per-label figures, flag macro, safe label apart."""
    per_label = table_to_records(report)
    return {
        "model": model,
        "backend": backend,
        "job_id": job_id,
        "evaluated_on": "test",
        "thresholds_tuned_on": "validation",
        "split_sizes": dict(split_sizes),
        "safe_label": safe_label,
        "per_label": per_label,
        "macro": macro_means(report),
        "safe": {t: labels[safe_label] for t, labels in per_label.items() if safe_label in labels},
        **extra,
    }

"""Figures of the infer step: PR and ROC curves per label, and per-label quality bars.

Inputs are the score and truth frames of ``moderation_helpers.recipe.evaluate`` (columns
``(target, label)``) and its per-label report. A label whose split lacks positives (or, for
ROC, negatives) has no curve; the legend says so instead of drawing a meaningless line.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

PR_CURVES_PNG = "pr_curves.png"
ROC_CURVES_PNG = "roc_curves.png"
LABEL_METRICS_PNG = "label_metrics.png"
BAR_METRICS = ["precision", "recall", "f1", "average_precision", "roc_auc"]


def _name(column: tuple[str, str], n_targets: int) -> str:
    target, label = column
    return label if n_targets == 1 else f"{target}/{label}"


def plot_pr_curves(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: Mapping[tuple[str, str], float] | None = None,
    *,
    title: str = "Precision-recall per label (test split)",
) -> Figure:
    """One precision-recall curve per label; a dot marks the operating point of its threshold."""
    n_targets = scores.columns.get_level_values(0).nunique()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for column in scores.columns:
        y, s = truth[column].to_numpy(bool), scores[column].to_numpy(float)
        name = _name(column, n_targets)
        if not y.any():
            ax.plot([], [], " ", label=f"{name}: no positives, no curve")
            continue
        display = PrecisionRecallDisplay.from_predictions(y, s, name=name, ax=ax)
        if thresholds is not None:
            flagged = s >= thresholds[column]
            precision = (y & flagged).sum() / max(flagged.sum(), 1)
            recall = (y & flagged).sum() / y.sum()
            ax.plot(recall, precision, "o", color=display.line_.get_color())
    ax.set(title=title, xlim=(0, 1.01), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.tight_layout()
    return fig


def plot_roc_curves(
    truth: pd.DataFrame, scores: pd.DataFrame, *, title: str = "ROC per label (test split)"
) -> Figure:
    """One ROC curve per label, with the chance diagonal."""
    n_targets = scores.columns.get_level_values(0).nunique()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for column in scores.columns:
        y = truth[column].to_numpy(bool)
        name = _name(column, n_targets)
        if y.all() or not y.any():
            ax.plot([], [], " ", label=f"{name}: one class only, no curve")
            continue
        RocCurveDisplay.from_predictions(y, scores[column].to_numpy(float), name=name, ax=ax)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.tight_layout()
    return fig


def plot_label_bars(
    report: pd.DataFrame, *, title: str = "Per-label quality on the test split"
) -> Figure:
    """Grouped bars of precision, recall, F1, AP and ROC-AUC per label; undefined ones are gaps.

    The safe label is drawn apart, after a dashed line: it is not part of the flag macro.
    """
    order = pd.concat([report[report["is_flag"]], report[~report["is_flag"]]])
    n_targets = order.index.get_level_values(0).nunique()
    values = order[BAR_METRICS].apply(pd.to_numeric, errors="coerce")
    values.index = [_name(c, n_targets) for c in order.index]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(values)), 4.5))
    values.plot.bar(ax=ax, width=0.8, rot=30)
    n_flags = int(order["is_flag"].sum())
    if n_flags < len(order):
        ax.axvline(n_flags - 0.5, linestyle="--", color="grey")
    undefined = values.isna().all(axis=1).to_numpy()
    for x in np.flatnonzero(undefined):
        ax.text(x, 0.02, "undefined", rotation=90, ha="center", va="bottom", fontsize="small")
    ax.set(title=title, ylim=(0, 1.05), ylabel="score")
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize="small")
    fig.tight_layout()
    return fig

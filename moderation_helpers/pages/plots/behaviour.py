"""Infer (04): accuracy per behaviour with the range its few cases leave open.

A behaviour has 15 to 50 cases, so its accuracy is a count; drawn as a dot with its 95% range
as a line, two behaviours whose lines overlap are visibly not told apart, which a table of
three columns per row hides.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

COLORS = {True: "#c44e52", False: "#4c72b0"}  # to flag, to leave alone
KINDS = {True: "to flag: accuracy = share caught", False: "to leave alone: share left alone"}


def plot_behaviours(report: pd.DataFrame, title: str | None = None) -> Figure:
    """One row per behaviour of ``behaviour.behaviour_report``'s table (``toxic``, ``n``,
    ``correct``, ``accuracy``, ``accuracy_low``, ``accuracy_high``): its accuracy as a dot, its
    95% range as a line, ``correct/n`` beside it; behaviours to flag first, then those to leave
    alone, each kind in its own colour; the ``overall`` row as a dashed line."""
    rows = report[report["toxic"].notna()]
    rows = pd.concat([rows[rows["toxic"].astype(bool)], rows[~rows["toxic"].astype(bool)]])
    fig = Figure(figsize=(7.5, 0.35 * len(rows) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]  # the first row on top
    for toxic in (True, False):
        mine = rows["toxic"].astype(bool).to_numpy() == toxic
        if not mine.any():
            continue
        part = rows[mine]
        ax.errorbar(
            part["accuracy"],
            y[mine],
            xerr=[
                part["accuracy"] - part["accuracy_low"],
                part["accuracy_high"] - part["accuracy"],
            ],
            fmt="o",
            color=COLORS[toxic],
            capsize=3,
            label=KINDS[toxic],
        )
    for y_row, (_, row) in zip(y, rows.iterrows(), strict=True):
        ax.text(1.03, y_row, f"{row['correct']}/{row['n']}", va="center", fontsize="small")
    if "overall" in report.index:
        ax.axvline(float(report.loc["overall", "accuracy"]), linestyle="--", color="grey")
    ax.set_yticks(y, rows.index)
    ax.set_xlim(0, 1.12)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("accuracy with its 95% range (dashed: all cases)")
    ax.set_title(title or "Behaviours: where the model errs, and what the counts leave open")
    ax.grid(axis="x", alpha=0.3)
    # below the axis label, so that no dot hides under it
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    return fig

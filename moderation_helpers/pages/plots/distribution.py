"""The prepare step's figure: how labels are distributed in each split after balancing.

One row of three panels per split, as in the recipe: the share of each category (rows with no
flag count as one category), flagged vs not flagged, and per label a bar of flagged rows
stacked on the rows without that label.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from moderation_helpers.core.files import atomic_path

FLAGGED_COLOR = "#d62728"
NOT_FLAGGED_COLOR = "#1f77b4"
SAFE_COLOR = "#bbbbbb"
# tab10 without its red and blue, which mean flagged / not flagged here
CATEGORY_COLORS = [
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#7f7f7f",
    "#393b79",
    "#637939",
]


def _pie(
    ax: Axes, counts: pd.Series, title: str, colors: Mapping[str, str], *, largest_first: bool
) -> None:
    """A pie of the non-zero counts; says so when there is nothing to show."""
    counts = counts[counts > 0]
    if largest_first:
        counts = counts.sort_values(ascending=False, kind="stable")
    ax.set_title(title)
    if counts.empty:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.pie(
        counts.to_numpy(),
        labels=list(counts.index),
        autopct="%1.1f%%",
        startangle=140,
        colors=[colors[name] for name in counts.index],
    )


def _stacked_bars(ax: Axes, flags: pd.DataFrame, title: str) -> None:
    """Per label: rows flagged with it (top) on rows without it (bottom), most flagged first."""
    flagged = flags.sum().sort_values(ascending=False)
    not_flagged = len(flags) - flagged
    names = [str(label) for label in flagged.index]
    ax.bar(names, not_flagged.to_numpy(), label="not flagged", color=NOT_FLAGGED_COLOR)
    ax.bar(
        names,
        flagged.to_numpy(),
        bottom=not_flagged.to_numpy(),
        label="flagged",
        color=FLAGGED_COLOR,
    )
    ax.set_title(title)
    ax.set_ylabel("rows")
    ax.set_ylim(0, max(len(flags), 1) * 1.15)  # headroom so the legend covers no bar
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="upper right", ncol=2)


def plot_distribution(
    flags_by_split: Mapping[str, pd.DataFrame],
    path: str | os.PathLike | None = None,
    *,
    safe_label: str = "safe",
) -> Figure:
    """Draw the label distribution of each split (boolean label frames); save as PNG if
    ``path`` is given.

    Built on a bare ``Figure`` (no pyplot), so it works on any backend, headless included, and
    leaves no global figure behind.
    """
    safe = f"{safe_label} (no flag)"
    labels = list(dict.fromkeys(str(c) for f in flags_by_split.values() for c in f.columns))
    # One colour per label in every split, so the pies can be compared at a glance.
    palette = {name: CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i, name in enumerate(labels)}
    palette.update({safe: SAFE_COLOR, "not flagged": NOT_FLAGGED_COLOR, "flagged": FLAGGED_COLOR})
    n_splits = max(len(flags_by_split), 1)
    fig = Figure(figsize=(18, 5.5 * n_splits), layout="constrained")
    axes = fig.subplots(n_splits, 3, squeeze=False)
    for row, (split, flags) in enumerate(flags_by_split.items()):
        n_flagged = int(flags.any(axis=1).sum())
        categories = pd.concat([pd.Series({safe: len(flags) - n_flagged}), flags.sum()])
        categories.index = categories.index.map(str)
        name = split.capitalize()
        _pie(
            axes[row, 0],
            categories,
            f"{name}: categories ({len(flags)} rows)",
            palette,
            largest_first=True,
        )
        _pie(
            axes[row, 1],
            pd.Series({"not flagged": len(flags) - n_flagged, "flagged": n_flagged}),
            f"{name}: flagged vs not flagged",
            palette,
            largest_first=False,
        )
        _stacked_bars(axes[row, 2], flags, f"{name}: rows per label")
    if path is not None:
        _save_png(fig, Path(path))
    return fig


def _save_png(fig: Figure, path: Path) -> None:
    """Save through a temporary file and a rename, so a failure leaves no half-written PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")

"""The prepare step's figure: how labels are distributed in each split after balancing.

One row of three panels per split: the share of the split's rows that carry each label (a row
may carry several, so the shares do not add up to 100%; rows with no flag are the safe
category), flagged vs not flagged, and per label a bar of flagged rows stacked on the rows
without that label. Labels keep one order in every split (the first split's, most frequent
first), so splits can be compared at a glance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from moderation_helpers.pages.plots.save import save_figure

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


def _pie(ax: Axes, counts: pd.Series, title: str, colors: Mapping[str, str]) -> None:
    """A pie of the non-zero counts; says so when there is nothing to show."""
    counts = counts[counts > 0]
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


def _row_shares(
    ax: Axes, shares: pd.Series, title: str, colors: Mapping[str, str], n_rows: int
) -> None:
    """Per category, the share of rows carrying it, as horizontal bars in the given order."""
    ax.set_title(title)
    if not n_rows:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    names = list(shares.index)[::-1]  # barh draws bottom-up: the first category on top
    values = (shares.to_numpy() * 100)[::-1]
    bars = ax.barh(names, values, color=[colors[name] for name in names])
    ax.bar_label(bars, labels=[f"{v:.1f}%" for v in values], padding=3)
    ax.set_xlim(0, 115)  # room for the last bar's label
    ax.set_xlabel("% of rows (a row may carry several labels)")


def _stacked_bars(ax: Axes, flags: pd.DataFrame, title: str, order: list[str]) -> None:
    """Per label, in ``order``: rows flagged with it (top) on rows without it (bottom)."""
    flagged = flags.sum().reindex(order, fill_value=0)
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
    labels = _label_order(flags_by_split)
    # One colour per label in every split, so the splits can be compared at a glance.
    palette = {name: CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i, name in enumerate(labels)}
    palette.update({safe: SAFE_COLOR, "not flagged": NOT_FLAGGED_COLOR, "flagged": FLAGGED_COLOR})
    n_splits = max(len(flags_by_split), 1)
    fig = Figure(figsize=(18, 5.5 * n_splits), layout="constrained")
    axes = fig.subplots(n_splits, 3, squeeze=False)
    for row, (split, flags) in enumerate(flags_by_split.items()):
        flags = flags.rename(columns=str)
        n_flagged = int(flags.any(axis=1).sum())
        counts = flags.sum().reindex(labels, fill_value=0)
        shares = pd.concat([counts, pd.Series({safe: len(flags) - n_flagged})]) / max(len(flags), 1)
        name = split.capitalize()
        _row_shares(
            axes[row, 0],
            shares,
            f"{name}: share of rows per label ({len(flags)} rows)",
            palette,
            len(flags),
        )
        _pie(
            axes[row, 1],
            pd.Series({"not flagged": len(flags) - n_flagged, "flagged": n_flagged}),
            f"{name}: flagged vs not flagged",
            palette,
        )
        _stacked_bars(axes[row, 2], flags, f"{name}: rows per label", labels)
    if path is not None:
        save_figure(fig, path, dpi=80)
    return fig


def _label_order(flags_by_split: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every label once: the first split's, most frequent first, then any others."""
    labels = list(dict.fromkeys(str(c) for f in flags_by_split.values() for c in f.columns))
    first = next(iter(flags_by_split.values()), pd.DataFrame())
    counts = first.rename(columns=str).sum().reindex(labels, fill_value=0)
    return list(counts.sort_values(ascending=False, kind="stable").index)

"""Deploy (05): texts per second of each way to run the model, as horizontal bars."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

SPEED_PNG = "speed.png"


def plot_speeds(speeds: pd.DataFrame, title: str | None = None) -> Figure:
    """One bar per engine (``speeds`` indexed by engine, column ``texts_per_second``; an
    optional ``note`` is written at the bar's end). Engines without a figure are left out."""
    shown = speeds.dropna(subset=["texts_per_second"])
    fig = Figure(figsize=(7.5, 0.6 * len(shown) + 1.4))
    ax = fig.subplots()
    bars = ax.barh(shown.index[::-1], shown["texts_per_second"][::-1], color="#4c72b0")
    notes = shown["note"][::-1] if "note" in shown else [""] * len(shown)
    for bar, value, note in zip(bars, shown["texts_per_second"][::-1], notes, strict=True):
        label = f" {value:,.0f}" + (f"  ({note})" if isinstance(note, str) and note else "")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    ax.set_xlabel("texts per second (higher is better)")
    ax.set_xlim(0, float(shown["texts_per_second"].max()) * 1.6 if len(shown) else 1)
    ax.set_title(title or "Ways to run the model, on the same texts")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig

"""Loss curves: train and validation loss against training step.

:class:`LiveLossPlot` redraws one figure in place while a job trains: in a notebook it updates a
single display (``display_id``), so JupyterLab shows one moving plot and an executed notebook
keeps one final figure; outside IPython it only draws, and :meth:`LiveLossPlot.finish` saves
``loss.png`` either way.
"""

from __future__ import annotations

import os

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from moderation_helpers.pages.plots.save import png_bytes, save_figure


def draw_loss(ax, metrics: pd.DataFrame, title: str | None = None) -> None:
    """Draw ``train_loss`` and ``valid_loss`` against ``step`` on ``ax`` (cleared first)."""
    ax.clear()
    for column, label, style in (
        ("train_loss", "train loss", "-o"),
        ("valid_loss", "validation loss", "-s"),
    ):
        points = metrics[["step", column]].dropna() if column in metrics else metrics.iloc[:0]
        ax.plot(points["step"], points[column], style, label=label, markersize=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.set_title(title or "Loss during fine-tuning")
    ax.grid(alpha=0.3)
    if len(metrics):
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no checkpoint yet", ha="center", va="center", transform=ax.transAxes)


def plot_loss(metrics: pd.DataFrame, title: str | None = None) -> Figure:
    """A new figure of the loss curves (not registered with pyplot: no duplicate display)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    draw_loss(fig.add_subplot(), metrics, title)
    return fig


def _ipython_display():
    """IPython's display function when running inside a kernel, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with the notebook stack
        return None
    return display if get_ipython() is not None else None


class LiveLossPlot:
    """A loss plot that redraws in place as metrics arrive.

    ``update(metrics)`` redraws the curves; in IPython the first call displays the figure and
    later calls replace that same output. ``finish(path)`` draws the final state, saves it
    (``loss.png``) and returns the figure.
    """

    def __init__(self, title: str | None = None, display: bool = True):
        self.title = title
        self.figure = Figure(figsize=(7, 4), layout="constrained")
        self.ax = self.figure.add_subplot()
        self._display = _ipython_display() if display else None
        self._handle = None
        self._drawn: pd.DataFrame | None = None

    def _png(self):
        from IPython.display import Image

        return Image(data=png_bytes(self.figure), format="png")

    def update(self, metrics: pd.DataFrame) -> None:
        """Redraw with these metrics (and refresh the notebook output, if any)."""
        if self._drawn is not None and self._drawn.equals(metrics):
            return  # nothing new since the last poll: keep the output as it is
        self._drawn = metrics.copy()
        draw_loss(self.ax, metrics, self.title)
        if self._display is None:
            return
        if self._handle is None:
            self._handle = self._display(self._png(), display_id=True)
        else:
            self._handle.update(self._png())

    def finish(self, metrics: pd.DataFrame, path: str | os.PathLike | None = None) -> Figure:
        """Draw the final curves, save them to ``path`` if given, and return the figure."""
        self.update(metrics)
        if path is not None:
            save_figure(self.figure, path, dpi=120)
        return self.figure

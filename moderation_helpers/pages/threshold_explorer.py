"""Explore each label's threshold: what it flags, and how well, on validation and test.

``04_infer`` tunes one threshold per label for the best validation F1. That rule is a start,
not a policy: a team may accept lower precision on threats to catch more of them. The explorer
gives each label a slider showing, at the chosen threshold, precision, recall, F1 and the share
of comments flagged on the validation and test splits, beside the label's precision-recall
curves with the current point; a button saves the chosen thresholds to ``thresholds.json``,
which ``moderate()`` applies.

Every figure comes from :func:`moderation_helpers.recipe.evaluate.label_metrics` and the flag
rule of :mod:`moderation_helpers.core.flags`, so the explorer and the evaluation agree at any
threshold.

Displayed, the explorer is one output holding both the widget and a static HTML table of the
same figures at the starting thresholds. A live Jupyter frontend draws the widget; anything
that cannot (papermill, nbmake, nbconvert, GitHub, a notebook opened untrusted) shows the
table, so the notebook runs unchanged headless and nothing is saved without a click.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve

from moderation_helpers.core.flags import SAFE_LABEL, reaches
from moderation_helpers.recipe.base_rate import expected_at_rate
from moderation_helpers.recipe.evaluate import label_metrics
from moderation_helpers.recipe.moderate import save_thresholds, thresholds_record
from moderation_helpers.recipe.predictions import predict

Column = tuple[str, str]
SPLITS = ("validation", "test")
FIGURES = ("precision", "recall", "f1", "flagged")
AT_RATE = "at base rate"  # figures expected on traffic at the label's base rate
EXPLORER_SOURCE = "explorer"


def threshold_figures(
    truth: pd.Series | np.ndarray, scores: pd.Series | np.ndarray, threshold: float
) -> dict[str, float | None]:
    """Precision, recall, F1 (``None`` without positives) and the share flagged at ``threshold``.

    A text is flagged when ``score >= threshold``, as everywhere in the cookbook.
    """
    metrics = label_metrics(truth, scores, threshold)
    flagged = float(np.mean(reaches(scores, threshold))) if len(scores) else 0.0
    return {**{m: metrics[m] for m in FIGURES[:3]}, "flagged": flagged}


def figures_table(
    truth: Mapping[str, pd.DataFrame],
    scores: Mapping[str, pd.DataFrame],
    thresholds: Mapping[Column, float],
    base_rates: Mapping[Column, float] | None = None,
) -> pd.DataFrame:
    """One row per ``(target, label)``: its threshold, then every figure per split.

    Columns are ``("", "threshold")`` and ``(split, figure)`` for the splits in ``scores``.
    The share flagged is computed with :func:`predictions.predict`, the rule ``moderate()`` uses.
    With ``base_rates``, ``("at base rate", "flagged" | "precision" | "precision low")`` add
    what validation's figures mean on traffic at each label's base rate, and the low end of the
    precision that validation's size leaves open (``base_rate.expected_at_rate``).
    """
    columns = list(next(iter(scores.values())).columns)
    rows: dict[Column, dict[tuple[str, str], Any]] = {
        c: {("", "threshold"): float(thresholds[c])} for c in columns
    }
    for split, frame in scores.items():
        flagged = predict(frame, thresholds).mean()
        for column in columns:
            figures = threshold_figures(truth[split][column], frame[column], thresholds[column])
            figures["flagged"] = float(flagged[column]) if len(frame) else 0.0
            rows[column].update({(split, name): figures[name] for name in FIGURES})
    if base_rates:
        expected = expected_at_rate(
            truth["validation"], scores["validation"], thresholds, base_rates
        )
        for column in columns:
            rows[column][(AT_RATE, "flagged")] = expected.at[column, "expected_flag_rate"]
            rows[column][(AT_RATE, "precision")] = expected.at[column, "expected_precision"]
            rows[column][(AT_RATE, "precision low")] = expected.at[column, "expected_precision_low"]
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(columns, names=["target", "label"])
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def pr_curve_png(
    truth: Mapping[str, pd.Series], scores: Mapping[str, pd.Series], threshold: float, name: str
) -> bytes:
    """PNG of one label's precision-recall curve per split, a dot at ``threshold`` on each.

    Built on a bare :class:`~matplotlib.figure.Figure` (not pyplot) so that no inline backend
    shows it as a stray cell output.
    """
    fig = Figure(figsize=(5.2, 3.6), dpi=90)
    ax = fig.subplots()
    for split, split_scores in scores.items():
        y = np.asarray(truth[split], dtype=bool)
        s = np.asarray(split_scores, dtype=float)
        if not y.any():
            ax.plot([], [], " ", label=f"{split}: no positives, no curve")
            continue
        precision, recall, _ = precision_recall_curve(y, s)
        (line,) = ax.step(recall, precision, where="post", label=split)
        point = threshold_figures(y, s, threshold)
        ax.plot(point["recall"], point["precision"], "o", color=line.get_color(), ms=8)
    ax.set(
        title=f"{name}: threshold {threshold:.3f}",
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.05),
    )
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _label_name(column: Column, n_targets: int) -> str:
    return column[1] if n_targets == 1 else "/".join(column)


def _figures_html(table: pd.DataFrame, *, styled: bool = False) -> str:
    """The figures as an HTML table: shares as percentages, one label name per row.

    ``styled`` wraps it in JupyterLab's own class for rendered HTML, which a widget's HTML
    does not get by itself.
    """
    shown = table.copy()
    if isinstance(shown.index, pd.MultiIndex):
        n_targets = shown.index.get_level_values(0).nunique()
        shown.index = pd.Index([_label_name(c, n_targets) for c in shown.index], name="label")
    for column in shown.columns:
        if (column[-1] if isinstance(column, tuple) else column) == "flagged":
            shown[column] = shown[column].map("{:.1%}".format)
    html = shown.to_html(float_format="{:.3f}".format, na_rep="–", border=0)
    return f'<div class="jp-RenderedHTMLCommon">{html}</div>' if styled else html


class ThresholdExplorer:
    """A slider per label over the validation and test figures, and a button that saves.

    ``base_rates`` (``{(target, label): share of positives in the traffic}``) adds, per label,
    the share of comments it would flag and its precision on such traffic, with that
    precision's low end. ``graph``: the graph that scored (``thresholds_record``'s), saved
    with the thresholds.

    ``thresholds`` is the table of :func:`evaluate.best_f1_thresholds` (column ``threshold``,
    indexed by ``(target, label)``); the sliders start there. Saving writes ``thresholds.json``
    into ``run_dir`` with :func:`moderation.thresholds_record`, and updates ``thresholds`` in
    place (``threshold``, ``source`` = "explorer", ``validation_f1``) so that the notebook's
    next cells evaluate and save the chosen values.
    """

    def __init__(
        self,
        truth: Mapping[str, pd.DataFrame],
        scores: Mapping[str, pd.DataFrame],
        thresholds: pd.DataFrame,
        *,
        run_dir: str | os.PathLike,
        model: str,
        backend: str,
        safe_label: str = SAFE_LABEL,
        base_rates: Mapping[Column, float] | None = None,
        graph: str | None = None,
    ) -> None:
        missing = [s for s in SPLITS if s not in scores or s not in truth]
        if missing:
            raise ValueError(f"the explorer needs scores and truth for the splits {missing}")
        self.truth = {s: truth[s] for s in SPLITS}
        self.scores = {s: scores[s] for s in SPLITS}
        self.thresholds = thresholds
        self.columns: list[Column] = list(self.scores["validation"].columns)
        self.run_dir, self.model, self.backend = run_dir, model, backend
        self.safe_label, self.graph = safe_label, graph
        self.base_rates = dict(base_rates) if base_rates else None
        self.initial = {c: float(thresholds.at[c, "threshold"]) for c in self.columns}
        self._widget: widgets.Widget | None = None

    @property
    def current(self) -> dict[Column, float]:
        """The thresholds the sliders show (the starting ones until the widget is built)."""
        if self._widget is None:
            return dict(self.initial)
        return {c: float(self._sliders[c].value) for c in self.columns}

    def table(self, thresholds: Mapping[Column, float] | None = None) -> pd.DataFrame:
        """The figures of every label at ``thresholds`` (default: the sliders' values)."""
        return figures_table(self.truth, self.scores, thresholds or self.current, self.base_rates)

    def save(self, thresholds: Mapping[Column, float] | None = None) -> os.PathLike:
        """Save ``thresholds`` (default: the sliders' values) as the run's thresholds.json."""
        chosen = dict(thresholds or self.current)
        changed = [c for c in self.columns if chosen[c] != self.initial[c]]
        for column in changed:
            y, s = self.truth["validation"][column], self.scores["validation"][column]
            self.thresholds.at[column, "threshold"] = chosen[column]
            if "source" in self.thresholds:
                self.thresholds.at[column, "source"] = EXPLORER_SOURCE
            if "validation_f1" in self.thresholds:
                self.thresholds.at[column, "validation_f1"] = label_metrics(y, s, chosen[column])[
                    "f1"
                ]
        record = thresholds_record(
            self.thresholds,
            model=self.model,
            backend=self.backend,
            safe_label=self.safe_label,
            graph=self.graph,
        )
        path = save_thresholds(self.run_dir, record)
        self.initial = {c: float(self.thresholds.at[c, "threshold"]) for c in self.columns}
        return path

    # ------------------------------------------------------------------ the widget

    def widget(self) -> widgets.Widget:
        """Build (once) and return the interactive explorer."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self) -> widgets.Widget:
        n_targets = len({t for t, _ in self.columns})
        self._sliders: dict[Column, widgets.FloatSlider] = {}
        self._readouts: dict[Column, widgets.HTML] = {}
        self._images: dict[Column, widgets.Image] = {}
        pages = []
        for column in self.columns:
            slider = widgets.FloatSlider(
                value=self.initial[column],
                min=0.0,
                max=1.0,
                step=0.001,
                readout_format=".3f",
                continuous_update=False,
                description="threshold",
                layout=widgets.Layout(width="420px"),
            )
            slider.observe(lambda _change, c=column: self._refresh(c), names="value")
            self._sliders[column] = slider
            self._readouts[column] = widgets.HTML()
            self._images[column] = widgets.Image(format="png", layout=widgets.Layout(width="470px"))
            pages.append(
                widgets.HBox(
                    [
                        widgets.VBox([slider, self._readouts[column]]),
                        self._images[column],
                    ]
                )
            )
        self._tabs = widgets.Tab(
            children=pages, titles=[_label_name(c, n_targets) for c in self.columns]
        )
        # Curves are drawn when their tab is first shown, not all at start.
        self._tabs.observe(lambda _change: self._refresh(self._selected()), names="selected_index")
        self._summary = widgets.HTML()
        self._status = widgets.HTML()
        save = widgets.Button(description="Save thresholds", icon="save", button_style="primary")
        reset = widgets.Button(description="Back to saved", icon="undo")
        save.on_click(lambda _button: self._on_save())
        reset.on_click(lambda _button: self._on_reset())
        self._refresh(self.columns[0])
        return widgets.VBox([self._tabs, widgets.HBox([save, reset, self._status]), self._summary])

    def _selected(self) -> Column:
        return self.columns[self._tabs.selected_index or 0]

    def _refresh(self, column: Column) -> None:
        """Redraw one label's figures and curve, and the summary of all labels."""
        threshold = float(self._sliders[column].value)
        rows = {
            split: threshold_figures(
                self.truth[split][column], self.scores[split][column], threshold
            )
            for split in SPLITS
        }
        self._readouts[column].value = _figures_html(
            pd.DataFrame(rows).T[list(FIGURES)], styled=True
        )
        self._images[column].value = pr_curve_png(
            {s: self.truth[s][column] for s in SPLITS},
            {s: self.scores[s][column] for s in SPLITS},
            threshold,
            _label_name(column, len({t for t, _ in self.columns})),
        )
        self._summary.value = _figures_html(self.table(), styled=True)

    def _on_save(self) -> None:
        path = self.save()
        self._status.value = f"saved to <code>{os.path.basename(path)}</code>"

    def _on_reset(self) -> None:
        for column, value in self.initial.items():
            self._sliders[column].value = value
        self._status.value = ""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget for a live frontend, the static table of the same figures for the rest."""
        table = self.table(self.initial)
        bundle = dict(self.widget()._repr_mimebundle_(**kwargs))
        bundle["text/html"] = _figures_html(table)
        bundle["text/plain"] = table.to_string(float_format="{:.3f}".format, na_rep="–")
        return bundle

"""Why was this flagged, on the page: comments with the words behind a label highlighted.

:func:`worst_errors` picks the false positives and false negatives a reviewer would ask about
first (the furthest past their label's threshold, either way); :class:`Highlights` shows
comments with their explanation spans (:meth:`Moderator.explain`): in a notebook as HTML, each
span a ``<mark>`` whose opacity follows its weight; on a Markdown page (``moderation-cookbook
docs`` prefers an output's own Markdown to its HTML) as a table whose comments carry their
spans in **bold** and ⟦brackets⟧, their weights beside them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.predictions import flag_frame

Span = Mapping[str, Any]
ERROR_COLUMNS = ["error", "row", "target", "label", "score", "threshold"]
# Characters Markdown would read as markup in a comment (a table cell's pipe included).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
_WHITESPACE = re.compile(r"\s+")  # kept as one space: a span's neighbours stay words apart
_MARK_RGB = "255, 196, 0"  # the highlighter's yellow; opacity carries the weight


def worst_errors(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: Mapping[Any, float],
    *,
    n: int = 3,
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """The ``n`` false positives and the ``n`` false negatives furthest from their label's
    threshold (the flag rule of ``flag_frame`` against ``truth``), one row per (comment, label):
    ``error`` (``"false positive"`` / ``"false negative"``), ``row`` (the comment's position in
    ``scores``), ``target``, ``label``, ``score``, ``threshold``; most confident first."""
    flags = flag_frame(scores, thresholds, safe_label=safe_label)
    rows = []
    for column in scores.columns:
        if column[-1] == safe_label:
            continue
        limit = float(thresholds[column])
        predicted, actual = flags[column].to_numpy(), truth[column].to_numpy().astype(bool)
        values = scores[column].to_numpy()
        for kind, wrong, past in (
            ("false positive", predicted & ~actual, values - limit),
            ("false negative", ~predicted & actual, limit - values),
        ):
            for i in wrong.nonzero()[0]:
                rows.append((kind, int(i), *column, float(values[i]), limit, float(past[i])))
    frame = pd.DataFrame(rows, columns=[*ERROR_COLUMNS, "past"])
    worst = (
        frame.sort_values(["error", "past"], ascending=[False, False], kind="stable")
        .groupby("error", sort=False)
        .head(n)
    )
    return worst[ERROR_COLUMNS].reset_index(drop=True)


def _pieces(text: str, spans: Sequence[Span]) -> list[tuple[str, float | None]]:
    """``text`` cut at the spans: ``(piece, weight)``, weight None between spans."""
    out, at = [], 0
    for span in sorted(spans, key=lambda s: s["start"]):
        start, end = max(int(span["start"]), at), min(int(span["end"]), len(text))
        if start >= end:
            continue
        out += [(text[at:start], None), (text[start:end], float(span["weight"]))]
        at = end
    out.append((text[at:], None))
    return [(piece, weight) for piece, weight in out if piece]


def highlight_html(text: str, spans: Sequence[Span]) -> str:
    """``text`` as HTML, each span a ``<mark>`` as opaque as its weight (0 to 1)."""
    parts = []
    for piece, weight in _pieces(text, spans):
        escaped = html.escape(piece)
        if weight is None:
            parts.append(escaped)
        else:
            alpha = 0.25 + 0.75 * min(max(weight, 0.0), 1.0)
            parts.append(
                f'<mark style="background: rgba({_MARK_RGB}, {alpha:.2f})" '
                f'title="weight {weight:.2f}">{escaped}</mark>'
            )
    return "".join(parts)


def markdown_escape(text: str) -> str:
    """``text`` on one line, with what Markdown (or a table cell) would read as markup escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _WHITESPACE.sub(" ", text))


def highlight_markdown(text: str, spans: Sequence[Span]) -> str:
    """``text`` on one line of Markdown, each span **⟦in bold brackets⟧**, its weight after it
    (``⟦idiot⟧`` reads as a highlight in plain text too)."""
    parts = []
    for piece, weight in _pieces(text, spans):
        if weight is None:
            parts.append(markdown_escape(piece))
        else:
            parts.append(f"**⟦{markdown_escape(piece)}⟧**<sub>{weight:.2f}</sub>")
    return "".join(parts)


@dataclass
class Highlights:
    """Comments with their explanation spans, one row each, shown as a table: HTML in a
    notebook, Markdown on a page, plain text elsewhere. ``rows``: mappings with ``text`` and
    ``spans`` (a list of ``{start, end, weight}``) and the ``columns`` shown before the text."""

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str] = field(default_factory=list)

    def _cell(self, row: Mapping[str, Any], column: str) -> str:
        value = row.get(column)
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in [*self.columns, "comment"])
        body = []
        for row in self.rows:
            cells = [f"<td>{html.escape(self._cell(row, c))}</td>" for c in self.columns]
            comment = highlight_html(row["text"], row["spans"])
            cells.append(f'<td style="text-align: left">{comment}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"

    def _repr_markdown_(self) -> str:
        header = [*self.columns, "comment (spans in ⟦bold⟧, weight after)"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in self.rows:
            cells = [markdown_escape(self._cell(row, c)) for c in self.columns]
            cells.append(highlight_markdown(row["text"], row["spans"]))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        lines = []
        for row in self.rows:
            marked = "".join(
                piece if weight is None else f"⟦{piece}⟧"
                for piece, weight in _pieces(row["text"], row["spans"])
            )
            lines.append(" · ".join([*(self._cell(row, c) for c in self.columns), marked]))
        return "\n".join(lines)


def explained_errors(
    errors: pd.DataFrame,
    texts: Sequence[str],
    explain: Any,
    *,
    n_targets: int = 1,
) -> Highlights:
    """:class:`Highlights` of the comments ``errors`` names (:func:`worst_errors`), each with
    the spans of its label: ``explain(texts, labels)`` is :meth:`Moderator.explain`. A label
    is named as the Moderator keys it: ``label``, or ``target/label`` with several targets."""
    rows = []
    for error in errors.to_dict("records"):
        key = error["label"] if n_targets == 1 else f"{error['target']}/{error['label']}"
        text = texts[error["row"]]
        spans = explain([text], [key])[0].get(key, [])
        rows.append({**error, "label": key, "text": text, "spans": spans})
    return Highlights(rows, columns=["error", "label", "score", "threshold"])


def explained_texts(texts: Sequence[str], explanations: Sequence[Mapping[str, Any]]) -> Highlights:
    """:class:`Highlights` of :meth:`Moderator.explain`'s answer: a row per text and flagged
    category, its spans highlighted; a text with no flag gets one row, category ``-``."""
    rows = []
    for text, explanation in zip(texts, explanations, strict=True):
        found = explanation.items() or [("-", [])]
        rows += [{"label": label, "text": text, "spans": spans} for label, spans in found]
    return Highlights(rows, columns=["label"])

"""pandas' HTML tables as Markdown tables, for pages that GitHub shows without CSS.

A DataFrame displayed in a notebook leaves an HTML output with a ``<style scoped>`` block and
pandas' classes: GitHub drops the ``<style>`` element but prints its rules as text. A page
therefore shows each such table as a Markdown table instead: multi-row headers joined per
column (``rows / before``), an index spanning several rows (``rowspan``) repeated on each row,
numbers right-aligned. HTML that is not one plain table keeps its markup, without ``<style>``
blocks, classes or inline styles (:func:`strip_css`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

STYLE_BLOCK = re.compile(r"<style\b[^>]*>.*?</style>\s*", re.S | re.I)
CSS_ATTRIBUTE = re.compile(r"\s(?:class|style|border|halign|valign)=\"[^\"]*\"", re.I)
NUMBER = re.compile(r"^[-+]?(?:\d[\d,]*)?(?:\.\d+)?(?:e[-+]?\d+)?%?$", re.I)
# Characters that would end a cell or start markup in a Markdown table cell.
ESCAPES = {"\\": "\\\\", "|": "\\|", "*": "\\*", "`": "\\`", "<": "&lt;", ">": "&gt;"}


@dataclass
class _Cell:
    text: str
    colspan: int = 1
    rowspan: int = 1


class _Table(HTMLParser):
    """The cells of one HTML table, header rows (``thead``) apart from body rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.head: list[list[_Cell]] = []
        self.body: list[list[_Cell]] = []
        self.tables = 0
        self.unsupported = False
        self._in_head = False
        self._cell: _Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            (self.head if self._in_head else self.body).append([])
        elif tag in ("td", "th"):
            span = {k: int(values.get(k) or 1) for k in ("colspan", "rowspan")}
            self._cell = _Cell("", **span)
        elif tag not in ("tbody", "div", "br"):
            self.unsupported = True  # links, images, nested markup: keep the HTML

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            rows = self.head if self._in_head else self.body
            if not rows:
                rows.append([])
            self._cell.text = " ".join(self._cell.text.split())
            rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data


def _grid(rows: list[list[_Cell]]) -> list[list[str]]:
    """Rows of cell texts, spans expanded: a ``colspan`` repeats across, a ``rowspan`` down."""
    grid: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows still to fill)
    for row in rows:
        out: list[str] = []
        cells = iter(row)
        while True:
            column = len(out)
            if column in pending:
                text, left = pending.pop(column)
                out.append(text)
                if left > 1:
                    pending[column] = (text, left - 1)
                continue
            cell = next(cells, None)
            if cell is None:
                break
            for _ in range(cell.colspan):
                if cell.rowspan > 1:
                    pending[len(out)] = (cell.text, cell.rowspan - 1)
                out.append(cell.text)
        grid.append(out)
    return grid


def _header(head: list[list[str]], width: int) -> list[str]:
    """One name per column: the header rows' non-empty parts, joined with `` / ``."""
    names = []
    for column in range(width):
        parts: list[str] = []
        for row in head:
            text = row[column] if column < len(row) else ""
            if text and (not parts or parts[-1] != text):
                parts.append(text)
        names.append(" / ".join(parts))
    return names


def _escape(text: str) -> str:
    return "".join(ESCAPES.get(char, char) for char in text)


def _is_numeric(column: list[str]) -> bool:
    filled = [text for text in column if text not in ("", "–", "NaN", "None", "nan")]
    return bool(filled) and all(NUMBER.match(text) for text in filled)


def markdown_table(html: str) -> str | None:
    """pandas' HTML rendering of one frame as a Markdown table; None when it is not one.

    Not one: several tables, a table without a header (``thead``), or cells holding markup.
    """
    parser = _Table()
    try:
        parser.feed(STYLE_BLOCK.sub("", html))
        parser.close()
    except (ValueError, AssertionError):
        return None
    if parser.tables != 1 or parser.unsupported or not parser.head or not parser.body:
        return None
    head, body = _grid(parser.head), _grid(parser.body)
    width = max(len(row) for row in head + body)
    body = [row + [""] * (width - len(row)) for row in body]
    header = _header(head, width)
    numeric = [_is_numeric([row[c] for row in body]) for c in range(width)]
    lines = [
        "| " + " | ".join(_escape(name) for name in header) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
    ]
    lines += ["| " + " | ".join(_escape(text) for text in row) + " |" for row in body]
    return "\n".join(lines)


def strip_css(html: str) -> str:
    """HTML without ``<style>`` blocks, classes and presentation attributes."""
    return CSS_ATTRIBUTE.sub("", STYLE_BLOCK.sub("", html))

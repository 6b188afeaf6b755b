"""Whether ``docs/`` still shows the lessons: each page's ``python`` fences must be exactly the
notebook's code cells (and the examples its Markdown quotes), in order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mistune
import nbformat

from moderation_helpers.pages.lessons import DOCS_DIR, REGENERATE
from moderation_helpers.recipe import pipeline


def _fences(tokens: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str]]:
    for token in tokens:
        if token.get("type") == "block_code" and token.get("style") == "fenced":
            yield (token.get("attrs") or {}).get("info", ""), token["raw"]
        yield from _fences(token.get("children") or [])


def python_blocks(markdown: str) -> list[str]:
    """The ``python`` fenced code blocks of a Markdown text, in order, trailing newlines off."""
    tokens = mistune.create_markdown(renderer=None)(markdown)
    return [raw.rstrip("\n") for info, raw in _fences(tokens) if info.strip() == "python"]


def lesson_blocks(nb: nbformat.NotebookNode) -> list[str]:
    """What a faithful page of ``nb`` holds as ``python`` fences: each code cell, in order,
    and the ``python`` examples that the lesson's Markdown cells quote."""
    blocks: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            blocks.append(cell.source.rstrip("\n"))
        elif cell.cell_type == "markdown":
            blocks.extend(python_blocks(cell.source))
    return blocks


def check_pages(
    notebooks_dir: str | os.PathLike | None = None, docs_dir: str | os.PathLike = DOCS_DIR
) -> list[str]:
    """Problems that make ``docs/`` stale: a missing page, or code that differs from the lesson.

    Every notebook of :data:`pipeline.STEPS` must have its page. The message names the first
    block that differs and the command that regenerates the pages.
    """
    problems = []
    for step, notebook in pipeline.notebook_paths(notebooks_dir).items():
        page = Path(docs_dir) / f"{step}.md"
        if not page.is_file():
            problems.append(f"{page} is missing: run `{REGENERATE}` to render {notebook.name}")
            continue
        ours = python_blocks(page.read_text(encoding="utf-8"))
        theirs = lesson_blocks(nbformat.read(notebook, as_version=4))
        if ours == theirs:
            continue
        pairs = enumerate(zip(ours, theirs, strict=False))
        index = next((i for i, (a, b) in pairs if a != b), None)
        where = (
            f"code block {index + 1} differs:\n--- page\n{ours[index]}\n"
            f"--- notebook\n{theirs[index]}"
            if index is not None
            else f"the page has {len(ours)} code blocks, the notebook {len(theirs)}"
        )
        problems.append(
            f"{page.name} no longer matches notebooks/{notebook.name} ({where})\n"
            f"Regenerate the pages with `{REGENERATE}` (or `python -m moderation_helpers.cli "
            f"{REGENERATE}`) and commit docs/."
        )
    return problems

"""Whether ``docs/`` still shows the lessons: each page's ``python`` fences must be exactly the
notebook's code cells (and the examples its Markdown quotes), in order; and its figures say, in
their PNG ``Title`` chunk, that they show the model that was trained."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mistune
import nbformat
from PIL import Image

from moderation_helpers.pages.lessons import DOCS_DIR, FIGURES_DIR, REGENERATE, RUN_FIGURES
from moderation_helpers.recipe import pipeline

# The pages are rendered from a run on the local factory, which trains an encoder of its own: a
# figure titled with Mistral's API model shows a model that was not trained.
FOREIGN_MODEL = "ministral"


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
    """Problems that make ``docs/`` stale: a missing page, code that differs from the lesson,
    or a figure whose title is missing or names a model that was not trained.

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
    return problems + figure_problems(docs_dir)


def figure_titles(docs_dir: str | os.PathLike = DOCS_DIR) -> dict[str, str]:
    """The ``Title`` text chunk of every PNG under ``docs_dir`` ("" where it has none), keyed
    by the path inside ``docs_dir``; ``pages.plots.save`` writes it from the figure's titles."""
    titles = {}
    for path in sorted(Path(docs_dir).rglob("*.png")):
        with Image.open(path) as image:
            chunks = getattr(image, "text", None) or {}
        titles[path.relative_to(docs_dir).as_posix()] = chunks.get("Title", "")
    return titles


def figure_problems(docs_dir: str | os.PathLike = DOCS_DIR) -> list[str]:
    """A run figure of the pages without a ``Title``, and any PNG whose ``Title`` names
    :data:`FOREIGN_MODEL`; each with the command that regenerates the pages."""
    titles = figure_titles(docs_dir)
    untitled = [
        f"{FIGURES_DIR}/{name}" for name in RUN_FIGURES if not titles.get(f"{FIGURES_DIR}/{name}")
    ]
    foreign = {name: title for name, title in titles.items() if FOREIGN_MODEL in title.lower()}
    return [
        f"{name} carries no Title: run `{REGENERATE}` (pages.plots.save writes it)"
        for name in untitled
    ] + [
        f"{name} is titled {title!r}, a model that was not trained: run `{REGENERATE}`"
        for name, title in foreign.items()
    ]

"""docs/: the committed lesson pages match their notebooks, carry nothing of the machine, and read
right as GitHub shows them (the renderer that makes them: test_page_renderer.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from moderation_helpers.pages import lessons as lp  # noqa: E402
from moderation_helpers.pages import page_check  # noqa: E402
from moderation_helpers.recipe import pipeline  # noqa: E402
from tests.chromium import find_chromium  # noqa: E402
from tests.page_leaks import CSS_TEXT, faults_in, leaks_in_file  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def pages() -> list[Path]:
    return sorted(DOCS.glob("0*.md")) + [DOCS / "README.md"]


# --------------------------------------------------------------------------- the committed docs


def test_committed_pages_match_the_notebooks():
    problems = page_check.check_pages()
    assert not problems, "\n\n".join(problems)


def test_committed_pages_carry_no_path_port_id_or_key():
    """The generated pages only: docs/deploy.md and the other reference pages are written by
    hand and may name the documented default address (127.0.0.1:8765)."""
    assert DOCS.is_dir(), f"{DOCS} is missing: run `{lp.REGENERATE}`"
    assert [leak for page in pages() for leak in leaks_in_file(page)] == []


def test_committed_pages_hold_no_css_port_or_foreign_model_name():
    found = {page.name: faults_in(page.read_text(encoding="utf-8")) for page in pages()}
    assert {name: faults for name, faults in found.items() if faults} == {}


def test_committed_figures_are_titled_with_the_encoder_that_trained():
    """Every run figure of the pages has a Title chunk, and no PNG under docs/ is titled
    with Mistral's API model (what `moderation-cookbook docs --check` reports too)."""
    assert page_check.figure_problems(DOCS) == []
    titles = page_check.figure_titles(DOCS)
    assert {name: t for name, t in titles.items() if "ministral" in t.lower()} == {}


def test_the_lessons_save_figures_only_through_the_titled_helper():
    """A figure a lesson saves goes through pages.plots.save.save_figure, which writes its
    Title chunk: a bare ``fig.savefig`` would leave the docs check nothing to read."""
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c.source for c in nb.cells if c.cell_type == "code" and ".savefig(" in c.source]
        assert cells == [], f"{path.name} saves a figure without pages.plots.save"


def test_the_figure_check_names_untitled_and_foreign_figures(tmp_path):
    from moderation_helpers.pages.plots.loss import plot_loss
    from moderation_helpers.pages.plots.save import save_figure

    metrics = pd.DataFrame({"step": [1, 2], "train_loss": [1.0, 0.5], "valid_loss": [1.1, 0.7]})
    figures = tmp_path / lp.FIGURES_DIR
    figures.mkdir()
    for name in lp.RUN_FIGURES:
        save_figure(plot_loss(metrics, title="fine-tuning all-MiniLM-L6-v2"), figures / name)
    assert page_check.figure_problems(tmp_path) == []
    fig = plot_loss(metrics)
    fig.savefig(figures / lp.LOSS_PNG)  # not through the helper: no Title
    save_figure(plot_loss(metrics, title="fine-tuning ministral-3b-latest"), tmp_path / "x.png")
    untitled, foreign = page_check.figure_problems(tmp_path)
    assert untitled.startswith(f"figures/{lp.LOSS_PNG} carries no Title")
    assert foreign.startswith("x.png is titled 'fine-tuning ministral-3b-latest'")


def test_committed_docs_hold_the_readme_figures():
    for name in lp.RUN_FIGURES:
        assert (DOCS / lp.FIGURES_DIR / name).read_bytes()[:4] == b"\x89PNG", name
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for step in pipeline.STEPS:
        assert f"({step}.md)" in index
    for link in re.findall(r"\]\(([^)]+\.(?:md|png))\)", index):
        assert (DOCS / link).is_file(), link


def test_a_drifted_lesson_is_named_with_the_command_that_fixes_it(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(REPO / "notebooks", notebooks)
    path = notebooks / "04_infer.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "import" in c.source)
    code.source += "\nprint('a new line')"
    nbformat.write(nb, path)
    # Only 04's page: another lesson may be ahead of the committed pages while they are redone.
    (problem,) = [p for p in page_check.check_pages(notebooks, DOCS) if p.startswith("04_infer")]
    assert "04_infer.md no longer matches notebooks/04_infer.ipynb" in problem
    assert "print('a new line')" in problem and "moderation-cookbook docs" in problem


# --------------------------------------------------------------------------- as GitHub shows them


def github_html(markdown: str) -> str:
    """A page as GitHub shows it, near enough: GFM tables, raw HTML kept, except that a tag
    GitHub's sanitizer removes (``<style>``, ``<script>``) leaves its content as text."""
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    return re.sub(r"</?(?:style|script)\b[^>]*>", "", html, flags=re.I)


def test_committed_pages_show_no_css_as_text_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    files = {}
    for page_path in pages():
        files[page_path.name] = tmp_path / f"{page_path.stem}.html"
        files[page_path.name].write_text(
            f"<!doctype html><meta charset=utf-8><base href='{DOCS.as_uri()}/'>"
            + github_html(page_path.read_text(encoding="utf-8")),
            encoding="utf-8",
        )
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            for name, html_file in files.items():
                tab = browser.new_page()
                tab.goto(html_file.as_uri())
                seen[name] = tab.inner_text("body")
                tab.close()
        finally:
            browser.close()
    for name, visible in seen.items():
        assert visible.strip(), f"{name} shows nothing"
        css = [m.group(0).strip()[:80] for m in CSS_TEXT.finditer(visible)]
        assert not css and "dataframe" not in visible, (name, css)

"""docs/: rendered lessons that match their notebooks and carry nothing of the machine."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import papermill  # noqa: E402
import pytest  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from PIL import Image  # noqa: E402

from moderation_helpers.core.env import secret_values  # noqa: E402
from moderation_helpers.pages import lessons as lp  # noqa: E402
from moderation_helpers.pages import page_check  # noqa: E402
from moderation_helpers.pages.sanitize import Sanitizer  # noqa: E402
from moderation_helpers.recipe import pipeline  # noqa: E402
from tests.chromium import find_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SECRET = "sk-test-never-published-0123456789abcdef"
# Written apart from pages.sanitize's own patterns, so that a gap there is caught here.
LEAKS = {
    "an absolute path": re.compile(r"(?<![\w.~])/(?:work|root|tmp|home)/"),
    "a local server's port": re.compile(r"\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0):\d+"),
    "a key-like string": re.compile(
        r"\b(?:sk|pk|api|key|token)[-_][A-Za-z0-9_-]{16,}|\b[A-Za-z0-9+/]{40,}\b"
    ),
    "an id of one run": re.compile(
        r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    ),
}


# What GitHub would show as text or a reader must not see on a rendered page.
PAGE_FAULTS = {
    "a <style> block (GitHub prints its rules as text)": re.compile(r"<style\b", re.I),
    "pandas' CSS classes": re.compile(r"class=\"dataframe\""),
    "a port, even as a placeholder": re.compile(r":(?:<port>|&lt;port&gt;)"),
    # The fine-tuned id names the base model the job asked for, which is also what the loss and
    # speed figures are titled with: on the local factory it must be the encoder that trains.
    "a local model named after ministral": re.compile(r"ft:classifier:ministral"),
}
# A CSS rule as text: a selector, then "{ property: value; }".
CSS_TEXT = re.compile(r"[\w\-.#:\s]+\{[^{}]*:[^{}]*;[^{}]*\}")


def pages() -> list[Path]:
    return sorted(DOCS.glob("0*.md")) + [DOCS / "README.md"]


def faults_in(text: str) -> list[str]:
    return [what for what, pattern in PAGE_FAULTS.items() if pattern.search(text)]


def leaks_in(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".md", ".txt", ".json", ".html"):
            found += leaks_in_file(path)
    return found


def leaks_in_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = []
    for what, pattern in LEAKS.items():
        found += [f"{path.name}: {what}: {m.group(0)!r}" for m in pattern.finditer(text)]
    return found + [f"{path.name}: a secret" for s in env_secrets() if s in text]


def env_secrets() -> list[str]:
    return secret_values()


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


# --------------------------------------------------------------------------- the renderer


def png_bytes() -> bytes:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def executed_notebook(run_dir: Path) -> nbformat.NotebookNode:
    """An executed notebook with every kind of output a lesson shows, volatile parts included."""
    v4 = nbformat.v4
    job = "922db2b0-6d7c-4cea-be63-9bc8c4930ec3"
    cells = [
        v4.new_markdown_cell("# Lesson\n\nAn example:\n\n```python\nmoderate(['hi'])\n```"),
        v4.new_code_cell("run_dir = 'runs/latest'", metadata={"tags": ["parameters"]}),
        v4.new_code_cell(
            f"run_dir = '{run_dir}'\nsource = '/work/shared/data'",
            metadata={"tags": ["injected-parameters"]},
        ),
        v4.new_code_cell(
            "print(service)",
            outputs=[
                v4.new_output(
                    "stream",
                    name="stdout",
                    text=f"factory at http://127.0.0.1:39381 (pid 4242), job {job}\n"
                    f"wrote {run_dir}/job.json at 2026-11-26T03:02:46.056Z, key {SECRET}\n"
                    "model ft:classifier:ministral-3b-latest:9f3b4b5f:20261126:922db2b0\n",
                ),
                v4.new_output(
                    "stream",
                    name="stderr",
                    text="test: 100%|██████████| 101/101 [00:03<00:00, 29.06text/s]\n",
                ),
            ],
        ),
        v4.new_code_cell(
            "explorer",
            outputs=[
                v4.new_output(
                    "display_data",
                    data={
                        "text/plain": "explorer",
                        "text/html": f"<table><tr><td>{job}</td><td>/root/x</td></tr></table>",
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": "a3f9",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                    },
                ),
                v4.new_output(  # tqdm.auto's bar under papermill: a widget and its repr
                    "display_data",
                    data={
                        "text/plain": "job 922db2b0:   0%|          | 0/200 [00:00<?, ?step/s]",
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": "b7e1",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                    },
                ),
                v4.new_output(
                    "display_data",
                    data={
                        "image/png": base64.b64encode(png_bytes()).decode(),
                        "text/plain": "<Figure size 200x150 with 1 Axes>",
                    },
                ),
            ],
        ),
    ]
    return v4.new_notebook(cells=cells, metadata={"language_info": {"name": "python"}})


def test_pages_are_sanitised_faithful_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    nb = executed_notebook(run_dir)
    pages = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        out.mkdir()
        clean = Sanitizer.for_run(run_dir, "/work/shared/data")
        written = lp.render_page(lp.page_notebook(nb, clean), "04_infer", out)
        pages.append({p.relative_to(out): p.read_bytes() for p in written})
    assert pages[0] == pages[1], "rendering twice must give the same bytes"
    text = (tmp_path / "first" / "04_infer.md").read_text(encoding="utf-8")
    assert leaks_in(tmp_path / "first") == []
    assert "http://127.0.0.1:<port>" in text and "pid <pid>" in text and "<job-id>" not in text
    assert "<id-1>" in text and "<time>" in text and "<redacted>" in text
    assert "ft:classifier:ministral-3b-latest:<hex8>:<date>:<job8>" in text
    assert "100%|" not in text and "0/200" not in text, "progress bars are dropped"
    assert "run_dir = '<run_dir>'" in text and "widget-view" not in text
    assert "<td>&lt;id-1&gt;</td><td>&lt;path&gt;</td>" in text, "placeholders show in HTML"
    assert any(p.suffix == ".png" for p in pages[0]), "the figure is a file beside the page"
    assert f"04_infer_files/{next(p.name for p in pages[0] if p.suffix == '.png')}" in text
    # The page's python fences are the lesson's code cells (and its Markdown examples).
    source = nbformat.v4.new_notebook(cells=[c for c in nb.cells if "injected" not in str(c)])
    assert page_check.python_blocks(text) == page_check.lesson_blocks(source)
    assert page_check.python_blocks(text)[0] == "moderate(['hi'])"


def test_an_error_output_is_never_published(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "1/0",
                outputs=[nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="x")],
            )
        ]
    )
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        lp.page_notebook(nb, Sanitizer(tmp_path))


def test_prints_flushed_in_several_messages_render_as_one_block(tmp_path):
    """A kernel may flush a cell's prints as one stream message or several (seen in CI: the
    same lesson rendered two ways); split around a progress bar too, the page is the same."""
    lines = "train: 150 identity rows added\ntrain: 80 attack rows added\n"

    def page(*outputs):
        cell = nbformat.v4.new_code_cell("add()", outputs=list(outputs))
        nb = nbformat.v4.new_notebook(cells=[cell])
        out = tmp_path / f"page-{len(outputs)}"
        out.mkdir()
        return lp.render_page(lp.page_notebook(nb, Sanitizer(tmp_path)), "x", out)[0].read_text()

    def stream(text, name="stdout"):
        return nbformat.v4.new_output("stream", name=name, text=text)

    whole = page(stream(lines))
    first, second = lines.splitlines(keepends=True)
    assert page(stream(first), stream(second)) == whole
    assert (
        page(stream(first), stream("50%|#####     | 1/2 [00:01<00:01]\r", "stderr"), stream(second))
        == whole
    )


@pytest.mark.slow
@pytest.mark.needs_data
def test_an_executed_lesson_renders_to_the_same_bytes_twice(civil_comments_dir, tmp_path):
    """01_prepare for real: its figure (matplotlib's PNG) and page are stable across runs."""
    step = pipeline.STEPS[0]
    pages = []
    for attempt in ("a", "b"):
        run = tmp_path / f"run-{attempt}"
        run.mkdir()
        papermill.execute_notebook(
            str(REPO / "notebooks" / f"{step}.ipynb"),
            str(run / f"{step}.ipynb"),
            parameters={
                "source": str(civil_comments_dir),
                "run_dir": str(run),
                "max_label_fraction": pipeline.DEFAULT_PARAMETERS["max_label_fraction"],
                "zero_flags_fraction": pipeline.DEFAULT_PARAMETERS["zero_flags_fraction"],
                "n_train": 300,
                "n_validation": 50,
                "n_test": 50,
            },
            progress_bar=False,
            cwd=str(REPO),
        )
        out = tmp_path / f"docs-{attempt}"
        out.mkdir()
        clean = Sanitizer.for_run(run, str(civil_comments_dir))
        nb = nbformat.read(run / f"{step}.ipynb", as_version=4)
        written = lp.render_page(lp.page_notebook(nb, clean), step, out)
        pages.append({p.relative_to(out): p.read_bytes() for p in written})
    assert pages[0] == pages[1]
    assert any(p.suffix == ".png" for p in pages[0])
    assert leaks_in(tmp_path / "docs-a") == []


def test_time_stamped_log_records_are_dropped_and_the_lesson_kept(tmp_path):
    clean = Sanitizer.for_run(tmp_path, "../shared/data/civil_comments")
    printed = (
        "local Ray: 2 CPUs\n"
        "2026-11-26 04:46:28,455\tWARNING authentication_token_setup.py:85 -- Token auth\n"
        "[2026-11-26 04:46:36,223 E 5306 5306] core_worker.cc:2465: Actor ID: 'f5ad49ec'\n"
        "actor pool: 2 × 1 thread(s)\n"
    )
    assert clean(printed) == "local Ray: 2 CPUs\nactor pool: 2 × 1 thread(s)\n"


def test_a_pandas_table_becomes_a_markdown_table_without_css(tmp_path):
    frame = pd.DataFrame(
        {"label": ["insult", "threat"], "count": [4, 700], "text": ["a | b", "<id-1> " + "x" * 30]}
    ).set_index("label")
    output = nbformat.v4.new_output(
        "execute_result",
        data={"text/html": frame._repr_html_(), "text/plain": repr(frame)},
        execution_count=1,
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("frame", outputs=[output])])
    written = lp.render_page(lp.page_notebook(nb, Sanitizer(tmp_path)), "01_prepare", tmp_path)
    text = written[0].read_text(encoding="utf-8")
    assert faults_in(text) == [] and "<table" not in text and not CSS_TEXT.search(text)
    assert "| label | count | text |" in text and "|---|---:|---|" in text
    assert "| threat | 700 | &lt;id-1&gt; " + "x" * 30 + " |" in text, "integers stay integers"
    assert "| insult | 4 | a \\| b |" in text, "a pipe in a cell is escaped"


def test_html_that_is_not_one_table_keeps_its_markup_without_css():
    from moderation_helpers.pages.tables import markdown_table, strip_css

    html = '<div><style scoped>.x { color: red; }</style><p class="a" style="b">hi</p></div>'
    assert markdown_table(html) is None
    assert strip_css(html) == "<div><p>hi</p></div>"


def test_every_saved_figure_carries_its_titles(tmp_path):
    """The lessons' figures all go through pages.plots.save: suptitle and axes titles end up in
    the PNG's Title chunk, on disk and in the live loss plot's display alike."""
    from moderation_helpers.pages.plots.distribution import plot_distribution
    from moderation_helpers.pages.plots.loss import LiveLossPlot, plot_loss
    from moderation_helpers.pages.plots.save import png_bytes, save_figure
    from moderation_helpers.pages.plots.speed import plot_speeds

    metrics = pd.DataFrame({"step": [1, 2], "train_loss": [1.0, 0.5], "valid_loss": [1.1, 0.7]})
    save_figure(plot_loss(metrics, title="fine-tuning all-MiniLM-L6-v2"), tmp_path / "loss.png")
    speeds = pd.DataFrame({"texts_per_second": [100.0, 250.0]}, index=["fp32", "int8"])
    fig = plot_speeds(speeds, title="Ways to run all-MiniLM-L6-v2 on this machine")
    save_figure(fig, tmp_path / "speed.png", bbox_inches="tight")
    flags = pd.DataFrame({"insult": [1, 0, 1], "toxicity": [1, 1, 0]}).astype(bool)
    plot_distribution({"train": flags}, path=tmp_path / "distribution.png")
    fig.suptitle("Speeds")
    with Image.open(io.BytesIO(png_bytes(fig))) as image:
        assert image.text["Title"] == "Speeds; Ways to run all-MiniLM-L6-v2 on this machine"
    live = LiveLossPlot(title="fine-tuning all-MiniLM-L6-v2", display=False)
    live.finish(metrics, tmp_path / "live.png")
    titles = page_check.figure_titles(tmp_path)
    assert titles["loss.png"] == titles["live.png"] == "fine-tuning all-MiniLM-L6-v2"
    assert titles["speed.png"] == "Ways to run all-MiniLM-L6-v2 on this machine"
    assert titles["distribution.png"].startswith("Train: share of rows per label (3 rows)")


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

"""pages/: an executed lesson rendered to a page that is sanitised, faithful and deterministic."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import papermill  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from moderation_helpers.pages import lessons as lp  # noqa: E402
from moderation_helpers.pages import page_check  # noqa: E402
from moderation_helpers.pages.sanitize import Sanitizer  # noqa: E402
from moderation_helpers.recipe import pipeline  # noqa: E402
from tests.page_leaks import CSS_TEXT, SECRET, faults_in, leaks_in  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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

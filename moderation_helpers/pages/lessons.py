"""Results on the page: run the cookbook once and render every executed lesson to Markdown.

    moderation-cookbook docs                      # run on the mirror, render into docs/
    moderation-cookbook docs --render-only --run-dir runs/docs   # re-render an existing run
    moderation-cookbook docs --check              # exit 1 when a page no longer matches

``docs/NN_step.md`` is nbconvert's Markdown rendering of the executed notebook, its figures
extracted beside it (``docs/NN_step_files/``); ``docs/figures/`` holds the run folder's own
figures under stable names (the README shows those) and ``docs/README.md`` links it all.

Pages are meant to be committed, so rendering is deterministic and clean: before rendering,
each output is sanitised (:mod:`moderation_helpers.pages.sanitize`); whether the pages still
match the notebooks is :mod:`moderation_helpers.pages.page_check`'s question.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import MarkdownExporter
from nbconvert.preprocessors import CoalesceStreamsPreprocessor

from moderation_helpers.pages.plots.evaluation import (
    LABEL_METRICS_PNG,
    PR_CURVES_PNG,
    ROC_CURVES_PNG,
)
from moderation_helpers.pages.sanitize import REPO, Sanitizer, clean_output
from moderation_helpers.recipe import pipeline
from moderation_helpers.recipe.run_folder import (
    DISTRIBUTION_PNG,
    EVALUATION_JSON,
    LOSS_PNG,
    read_record,
)

DOCS_DIR = REPO / "docs"
DEFAULT_RUN_DIR = REPO / "runs" / "docs"
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "civil_comments"
FIGURES_DIR = "figures"
RUN_FIGURES = (DISTRIBUTION_PNG, LOSS_PNG, PR_CURVES_PNG, ROC_CURVES_PNG, LABEL_METRICS_PNG)
REGENERATE = "moderation-cookbook docs"
INJECTED_INFO = "python injected-parameters"


def page_notebook(nb: nbformat.NotebookNode, clean: Sanitizer) -> nbformat.NotebookNode:
    """A copy of an executed notebook ready to render: outputs sanitised, injected cell marked.

    Papermill's injected-parameters cell becomes a Markdown cell showing those parameters in a
    ``python injected-parameters`` fence, so that the page's ``python`` fences are exactly the
    lesson's code cells (what :func:`page_check.check_pages` compares).
    """
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k != "widgets"})
    # A kernel flushes one cell's prints as one stream message or several, as timing has it;
    # merged (before cleaning, so no path is split, and after, across a dropped progress bar),
    # the same run renders to the same bytes.
    coalesce = CoalesceStreamsPreprocessor()
    nb, _ = coalesce.preprocess(nb, {})
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "injected-parameters" in cell.metadata.get("tags", []):
            source = clean(cell.source).strip("\n")
            cell = nbformat.v4.new_markdown_cell(
                f"Parameters this run was given (papermill's injected cell):\n\n"
                f"```{INJECTED_INFO}\n{source}\n```"
            )
        elif cell.cell_type == "code":
            cell.outputs = [o for o in (clean_output(o, clean) for o in cell.outputs) if o]
        cells.append(cell)
    nb.cells = cells
    nb, _ = coalesce.preprocess(nb, {})
    return nb


def render_page(nb: nbformat.NotebookNode, name: str, out_dir: Path) -> list[Path]:
    """Render one notebook to ``out_dir/name.md`` and its images to ``out_dir/name_files/``."""
    files_dir = out_dir / f"{name}_files"
    shutil.rmtree(files_dir, ignore_errors=True)  # no stale image survives a re-render
    body, resources = MarkdownExporter().from_notebook_node(
        nb, resources={"output_files_dir": f"{name}_files", "unique_key": name}
    )
    written = [out_dir / f"{name}.md"]
    written[0].write_text(body.rstrip("\n") + "\n", encoding="utf-8")
    for relative, data in sorted(resources.get("outputs", {}).items()):
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def quality_table(evaluation: Mapping[str, Any]) -> str:
    """The per-label test figures of ``evaluation.json`` as a Markdown table, macro last."""
    metrics = ("precision", "recall", "f1", "average_precision", "roc_auc")
    header = ("label", "threshold", "test positives", "precision", "recall", "F1", "AP", "ROC-AUC")
    rows = []
    multi = len(evaluation["per_label"]) > 1
    for target, labels in evaluation["per_label"].items():
        for label, figures in sorted(labels.items(), key=lambda kv: (not kv[1]["is_flag"], kv[0])):
            name = f"{target}/{label}" if multi else label
            name = name if figures["is_flag"] else f"{name} (not a flag)"
            rows.append(
                (name, figures["threshold"], figures["support"], *(figures[m] for m in metrics))
            )
    macro = evaluation["macro"]
    rows.append(("**macro (flags)**", None, None, *(macro[m] for m in metrics)))
    return _markdown_table(header, rows)


def index_page(pages: Sequence[str], evaluation: Mapping[str, Any] | None) -> str:
    """``docs/README.md``: the figures at a glance, the quality table, links to each lesson."""
    lines = [
        "# The cookbook, executed",
        "",
        f"Generated by `{REGENERATE}`: the pipeline run on the civil_comments mirror with the",
        "README's offline defaults, each executed notebook rendered to Markdown. Do not edit by",
        "hand; regenerate.",
        "",
        "## Lessons",
        "",
        *(f"- [{name}]({name}.md)" for name in pages),
        "",
        "## At a glance",
        "",
        f"![label distribution]({FIGURES_DIR}/{DISTRIBUTION_PNG})",
        f"![loss curves]({FIGURES_DIR}/{LOSS_PNG})",
        f"![precision-recall curves]({FIGURES_DIR}/{PR_CURVES_PNG})",
        f"![per-label quality]({FIGURES_DIR}/{LABEL_METRICS_PNG})",
        "",
    ]
    if evaluation is not None:
        lines += [
            "## Quality per label (test split, thresholds tuned on validation)",
            "",
            quality_table(evaluation),
            "",
        ]
    return "\n".join(lines)


def render_docs(
    run_dir: str | os.PathLike,
    source: str | None = None,
    out_dir: str | os.PathLike = DOCS_DIR,
    *,
    steps: Sequence[str] = pipeline.STEPS,
) -> list[Path]:
    """Render the executed notebooks of ``run_dir`` into ``out_dir``; return the files written.

    ``source`` (the data source the run used) is shown as a relative path, like ``run_dir``.
    """
    run_path, out = Path(run_dir), Path(out_dir)
    missing = [s for s in steps if not (run_path / f"{s}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"no executed notebook for {missing} in {run_path}: run it first")
    out.mkdir(parents=True, exist_ok=True)
    clean = Sanitizer.for_run(run_path, source)
    written: list[Path] = []
    for step in steps:
        nb = nbformat.read(run_path / f"{step}.ipynb", as_version=4)
        written += render_page(page_notebook(nb, clean), step, out)
    figures = out / FIGURES_DIR
    shutil.rmtree(figures, ignore_errors=True)
    figures.mkdir()
    for name in RUN_FIGURES:
        if (run_path / name).is_file():
            written.append(Path(shutil.copyfile(run_path / name, figures / name)))
    evaluation = (
        read_record(run_path, EVALUATION_JSON) if (run_path / EVALUATION_JSON).is_file() else None
    )
    index = out / "README.md"
    index.write_text(clean(index_page(steps, evaluation)), encoding="utf-8")
    return [*written, index]

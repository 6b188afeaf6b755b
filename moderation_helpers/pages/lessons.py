"""Results on the page: run the cookbook once and render every executed lesson to Markdown.

    moderation-cookbook docs                      # run on the mirror, render into docs/
    moderation-cookbook docs --render-only --run-dir runs/docs   # re-render an existing run
    moderation-cookbook docs --check              # exit 1 when a page no longer matches

``docs/NN_step.md`` is nbconvert's Markdown rendering of the executed notebook, its figures
extracted beside it (``docs/NN_step_files/``); ``docs/figures/`` holds the run folder's own
figures under stable names (the README shows those) and ``docs/README.md`` links it all.

Pages are meant to be committed, so rendering is deterministic and clean. Before rendering,
each output is sanitised (see :class:`Sanitizer`): keys found in the environment become
``<redacted>``; the run folder and the data source become the relative paths a reader would
type; other absolute paths become ``<path>``; a local server's port becomes ``<port>``; job,
file and model ids (new at every run) become named placeholders (``<job-id>``, ``<id-1>``);
dates, pids and progress bars (tqdm's rates and times) are dropped. What is left varying from
one run to the next is timings (the server's duration estimate, training time) and whatever
training itself does not reproduce bit for bit.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mistune
import nbformat
from nbconvert import MarkdownExporter

from moderation_helpers.pages.plots.evaluation import (
    LABEL_METRICS_PNG,
    PR_CURVES_PNG,
    ROC_CURVES_PNG,
)
from moderation_helpers.recipe import pipeline
from moderation_helpers.recipe.run_folder import (
    DISTRIBUTION_PNG,
    EVALUATION_JSON,
    JOB_JSON,
    LOSS_PNG,
    read_json,
)

REPO = Path(__file__).resolve().parents[2]
DOCS_DIR = REPO / "docs"
DEFAULT_RUN_DIR = REPO / "runs" / "docs"
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "civil_comments"
FIGURES_DIR = "figures"
RUN_FIGURES = (DISTRIBUTION_PNG, LOSS_PNG, PR_CURVES_PNG, ROC_CURVES_PNG, LABEL_METRICS_PNG)
REGENERATE = "moderation-cookbook docs"
SECRET_ENV = ("MISTRAL_API_KEY", "WANDB_API_KEY", "MODERATION_FACTORY_TOKEN", "HF_TOKEN")
INJECTED_INFO = "python injected-parameters"
# Outputs a static page cannot show: a live widget's view and the state behind it.
WIDGET_MIMETYPES = (
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
FT_MODEL = re.compile(r"\b(ft:classifier:[\w.-]+):[0-9a-f]{8}:\d{8}:[0-9a-f]{8}\b")
HOST_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):\d{2,5}\b")
ISO_TIME = re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\b")
PID = re.compile(r"\bpid (\d+)\b")
# A log record stamped with its time (Ray's warnings, its core worker's notes with pids and actor
# ids): the engine talking, not the lesson, and different at every run.
LOG_RECORD = re.compile(r"^[ \t]*\[?<time>,\d+[ \t].*(?:\n|$)", re.M)
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~:/-])/(?:work|root|tmp|home|Users|var|private|mnt)(?:/[^\s\"'<>`),\]]*)?"
)
# A progress bar's tail: "[00:03<00:00, 29.06text/s]" (tqdm).
PROGRESS = re.compile(r"\d+%\|.*\|.*\[[\d:]+<[\d:?]+,?[^\]]*\]")
# The placeholders this module writes; in HTML they are escaped, or a browser would hide them.
PLACEHOLDER = re.compile(
    r"<((?:id-\d+|job-id|train-file-id|validation-file-id|port|pid|time|path|redacted"
    r"|run_dir|source|hex8|date|job8))>"
)
KEY_LIKE = re.compile(
    r"\b(?:sk|pk|rk|api|key|token|secret)[-_][A-Za-z0-9_-]{16,}|\b[A-Za-z0-9]{40,}\b"
)


class Sanitizer:
    """Rewrite what a rendered page must not carry, the same way at every run."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        source: str | None = None,
        *,
        ids: Mapping[str, str] | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.secrets = sorted(
            {environ[n] for n in SECRET_ENV if len(environ.get(n) or "") >= 4}, key=len
        )[::-1]
        self.paths: dict[str, str] = {}
        for path, name in ((run_dir, "<run_dir>"), (source, "<source>")):
            if path and (os.path.isabs(path) or Path(path).exists()):
                self.paths[str(Path(path).resolve())] = _display_path(Path(path), name)
        self.paths.setdefault(str(REPO), ".")
        self.ids = dict(ids or {})

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike, source: str | None = None) -> Sanitizer:
        """A sanitizer that knows the run's job, file and model ids from ``job.json``."""
        ids: dict[str, str] = {}
        job_path = Path(run_dir) / JOB_JSON
        if job_path.is_file():
            job = read_json(run_dir, JOB_JSON)
            ids.update({f: "<train-file-id>" for f in job.get("training_files") or []})
            ids.update({f: "<validation-file-id>" for f in job.get("validation_files") or []})
            if job.get("job_id"):
                ids[job["job_id"]] = "<job-id>"
                ids[job["job_id"][:8]] = "<job8>"  # the short form figure titles use
        return cls(run_dir, source, ids=ids)

    def __call__(self, text: str) -> str:
        text = ANSI.sub("", text)
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        for path in sorted(self.paths, key=len, reverse=True):
            text = text.replace(path, self.paths[path])
        text = FT_MODEL.sub(r"\1:<hex8>:<date>:<job8>", text)
        text = UUID.sub(self._id, text)
        for short in (i for i in self.ids if len(i) == 8):
            text = re.sub(rf"\b{short}\b", self.ids[short], text)
        text = HOST_PORT.sub(r"\1:<port>", text)
        text = ISO_TIME.sub("<time>", text)
        text = LOG_RECORD.sub("", text)
        text = PID.sub("pid <pid>", text)
        text = KEY_LIKE.sub("<redacted>", text)  # whatever looks like a key, even if unknown
        return ABSOLUTE_PATH.sub("<path>", text)

    def _id(self, match: re.Match[str]) -> str:
        # Ids met for the first time are numbered in order of appearance: stable across runs.
        found = match.group(0)
        if found not in self.ids:
            self.ids[found] = f"<id-{sum(v.startswith('<id-') for v in self.ids.values()) + 1}>"
        return self.ids[found]


def _display_path(path: Path, placeholder: str) -> str:
    """How a page names a folder: relative to the repository when near it, else a placeholder.

    The path as given counts (a symlinked run folder shows as its link), then its real path.
    """
    for candidate in (path.absolute(), path.resolve()):
        for base in (REPO, REPO.parent):
            if candidate.is_relative_to(base):
                return os.path.relpath(candidate, REPO)
    return placeholder


def _is_progress(text: str) -> bool:
    return "\r" in text or any(PROGRESS.search(line) for line in text.splitlines())


def _clean_output(output: nbformat.NotebookNode, clean: Sanitizer) -> nbformat.NotebookNode | None:
    """The output as the page shows it, or None when it has no place on a page."""
    if output.output_type == "error":
        raise ValueError(f"an error output ({output.ename}: {output.evalue}) cannot be published")
    if output.output_type == "stream":
        if output.name == "stderr" and _is_progress(output.text):
            return None  # progress bars: timings and rates, nothing a reader needs
        output.text = clean(output.text)
        return output if output.text.strip() else None
    data = output.get("data", {})
    widget = [data.pop(m) for m in WIDGET_MIMETYPES if m in data]
    if widget and set(data) <= {"text/plain"}:
        return None  # a widget with only its repr to fall back on (tqdm's bar): nothing to show
    for mimetype, value in list(data.items()):
        if isinstance(value, str) and (mimetype.startswith("text/") or mimetype.endswith("json")):
            data[mimetype] = clean(value)
            if mimetype == "text/html":
                data[mimetype] = PLACEHOLDER.sub(r"&lt;\1&gt;", data[mimetype])
    output.metadata = nbformat.from_dict({})  # image sizes and such: nothing a page needs
    return output if data else None


def page_notebook(nb: nbformat.NotebookNode, clean: Sanitizer) -> nbformat.NotebookNode:
    """A copy of an executed notebook ready to render: outputs sanitised, injected cell marked.

    Papermill's injected-parameters cell becomes a Markdown cell showing those parameters in a
    ``python injected-parameters`` fence, so that the page's ``python`` fences are exactly the
    lesson's code cells (what :func:`check_pages` compares).
    """
    nb = nbformat.from_dict(nb)
    nb.metadata = nbformat.from_dict({k: v for k, v in nb.metadata.items() if k != "widgets"})
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and "injected-parameters" in cell.metadata.get("tags", []):
            source = clean(cell.source).strip("\n")
            cell = nbformat.v4.new_markdown_cell(
                f"Parameters this run was given (papermill's injected cell):\n\n"
                f"```{INJECTED_INFO}\n{source}\n```"
            )
        elif cell.cell_type == "code":
            cell.outputs = [o for o in (_clean_output(o, clean) for o in cell.outputs) if o]
        cells.append(cell)
    nb.cells = cells
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


# --------------------------------------------------------------------------- pages vs lessons


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
            f"Regenerate the pages with `{REGENERATE}` (or `python -m moderation_helpers."
            "lesson_pages`) and commit docs/."
        )
    return problems


# --------------------------------------------------------------------------- the docs folder


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
        read_json(run_path, EVALUATION_JSON) if (run_path / EVALUATION_JSON).is_file() else None
    )
    index = out / "README.md"
    index.write_text(clean(index_page(steps, evaluation)), encoding="utf-8")
    return [*written, index]

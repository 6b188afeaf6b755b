"""What a rendered page must not carry, rewritten the same way at every run.

Keys found in the environment become ``<redacted>``; the run folder and the data source become
the relative paths a reader would type; other absolute paths become ``<path>``; a local server's
port becomes ``<port>``; job, file and model ids (new at every run) become named placeholders
(``<job-id>``, ``<id-1>``); dates, pids and progress bars (tqdm's rates and times) are dropped.
What is left varying from one run to the next is timings (the server's duration estimate,
training time) and whatever training itself does not reproduce bit for bit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import nbformat

from moderation_helpers.core.env import secret_values
from moderation_helpers.pages.tables import markdown_table, strip_css
from moderation_helpers.recipe.run_folder import JOB_JSON, read_record

REPO = Path(__file__).resolve().parents[2]
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
        self.secrets = secret_values(environ)
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
            job = read_record(run_dir, JOB_JSON)
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


def clean_output(output: nbformat.NotebookNode, clean: Sanitizer) -> nbformat.NotebookNode | None:
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
    if isinstance(data.get("text/markdown"), str):
        # An output that brings its own Markdown (pages.spans.Highlights) is shown as that: the
        # page would otherwise take its HTML first, styled for a notebook.
        data.pop("text/html", None)
    if isinstance(data.get("text/html"), str):
        html = data.pop("text/html")
        table = markdown_table(html)
        # GitHub prints a <style> block's rules as text: a table becomes Markdown, the rest
        # of the HTML loses its CSS.
        data["text/markdown" if table else "text/html"] = table or strip_css(html)
    for mimetype, value in list(data.items()):
        if isinstance(value, str) and (mimetype.startswith("text/") or mimetype.endswith("json")):
            data[mimetype] = clean(value)
            if mimetype in ("text/html", "text/markdown"):
                data[mimetype] = PLACEHOLDER.sub(r"&lt;\1&gt;", data[mimetype])
    output.metadata = nbformat.from_dict({})  # image sizes and such: nothing a page needs
    return output if data else None

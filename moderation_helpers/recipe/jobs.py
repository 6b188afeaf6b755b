"""Create, validate, start and follow a Classifier Factory fine-tuning job.

Works the same on the Mistral API and on the local factory: both are reached through the
``mistralai`` SDK. The SDK returns pydantic models, the recorded API responses are plain JSON;
everything here turns a job into a dict at the boundary (:func:`job_to_dict`) and reads only
that, so both shapes go through the same code.

Checkpoints become a metrics frame (``step``, ``train_loss``, ``valid_loss``) keyed by the
*step number*: the original recipe tested ``step in df.index`` (the row index, not the step) and
appended the same checkpoints again at every poll.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pandas as pd
from mistralai.client import errors

from moderation_helpers.core.files import atomic_write_text
from moderation_helpers.core.jsonl import validate_jsonl
from moderation_helpers.recipe.run_folder import (
    JOB_JSON,
    LOSS_PNG,
    METRICS_CSV,
    read_json,
    write_json,
)

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto falls back to the text bar, with a warning we don't need.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"})
FAILED_STATUSES = frozenset({"FAILED", "FAILED_VALIDATION", "CANCELLED"})
METRIC_COLUMNS = ["step", "train_loss", "valid_loss"]
# Statuses worth retrying when they escape the SDK's own retry_config.
RETRYABLE_HTTP = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class JobError(RuntimeError):
    """A call about a job was refused by the server (4xx) or could not be made."""


class JobFailed(JobError):
    """The job ended FAILED, FAILED_VALIDATION or CANCELLED; ``reason`` is the server's word."""

    def __init__(self, job_id: str, status: str, reason: str | None, job: dict | None = None):
        self.job_id, self.status, self.reason, self.job = job_id, status, reason, job
        why = f": {reason}" if reason else " (the server gave no reason)"
        super().__init__(f"job {job_id} ended {status}{why}")


class JobValidationFailed(JobFailed):
    """The server rejected the training data (FAILED_VALIDATION)."""


class JobNotStarted(JobError):
    """The job is validated but waits for ``start`` (it was created with ``auto_start=False``)."""


# --------------------------------------------------------------------------- job shapes


def job_to_dict(job: Any) -> dict[str, Any]:
    """A job as a plain JSON-like dict, from an SDK model, an SDK "unknown" variant or a dict."""
    if isinstance(job, Mapping):
        return dict(job)
    raw = getattr(job, "raw", None)
    if getattr(job, "is_unknown", False) and isinstance(raw, Mapping):
        return dict(raw)
    if hasattr(job, "model_dump"):
        return job.model_dump(mode="json", by_alias=True)
    raise TypeError(f"cannot read a job from {type(job).__name__}")


def _metadata(job: Mapping[str, Any]) -> dict[str, Any]:
    return dict(job.get("metadata") or {})


def failure_reason(job: Any) -> str | None:
    """The server's explanation of a failed job, wherever it put it.

    Looked up in a top-level ``message``/``error``, then ``metadata``, then the newest event
    whose ``data`` carries ``message``/``error``/``reason`` (the local factory and the API record
    status changes as ``status-updated`` events).
    """
    job = job_to_dict(job)
    keys = ("message", "error", "reason", "detail", "errors")
    for source in (job, _metadata(job)):
        for key in keys:
            if source.get(key):
                return _as_text(source[key])
    for event in reversed(job.get("events") or []):
        data = event.get("data") or {}
        for key in keys:
            if data.get(key):
                return _as_text(data[key])
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(_as_text(v) for v in value)
    if isinstance(value, Mapping):
        return value.get("message") or value.get("msg") or str(dict(value))
    return str(value)


def describe_api_error(exc: BaseException) -> str:
    """One readable line for an SDK/HTTP error: status and the server's ``detail``/``message``."""
    if isinstance(exc, errors.MistralError):
        detail = exc.body
        try:
            body = exc.raw_response.json()
            if isinstance(body, Mapping):
                detail = _as_text(body.get("detail") or body.get("message") or body)
        except (ValueError, AttributeError):
            pass
        return f"HTTP {exc.status_code}: {str(detail).strip()[:500]}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """True for errors a poll loop should wait out: 429/5xx, timeouts, dropped connections."""
    if isinstance(exc, errors.MistralError):
        return exc.status_code in RETRYABLE_HTTP
    return isinstance(exc, (httpx.TransportError, errors.NoResponseError, ConnectionError))


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one SDK call; a refusal becomes a JobError saying what was attempted and why."""
    try:
        return fn(**kwargs)
    except (errors.MistralError, httpx.HTTPError, errors.NoResponseError) as exc:
        raise JobError(f"{what} failed: {describe_api_error(exc)}") from exc


# --------------------------------------------------------------------------- create / start


def upload_training_files(
    client: Any, train_path: str | os.PathLike, validation_path: str | os.PathLike
) -> dict[str, str]:
    """Validate both JSONL files, then upload them; returns ``{"train": id, "validation": id}``.

    The validation file may only use labels the training file has (a label the model never
    saw cannot be scored). Nothing is uploaded unless both files are valid.
    """
    train_report = validate_jsonl(train_path)
    validate_jsonl(validation_path, allowed_labels=train_report.targets)
    ids = {}
    for split, path in (("train", Path(train_path)), ("validation", Path(validation_path))):
        with path.open("rb") as fh:
            uploaded = _call(
                f"uploading {path}",
                client.files.upload,
                file={"file_name": path.name, "content": fh},
                purpose="fine-tune",
            )
        ids[split] = uploaded.id
    return ids


def wandb_integration(project: str | None) -> list[dict[str, str]] | None:
    """Weights & Biases integration for ``project``; the key only from ``WANDB_API_KEY``."""
    if not project:
        return None
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        raise ValueError(f"wandb_project={project!r} needs the WANDB_API_KEY environment variable")
    return [{"type": "wandb", "project": project, "api_key": key}]


def create_classifier_job(
    client: Any,
    *,
    model: str,
    training_file: str,
    validation_file: str | None,
    hyperparameters: Mapping[str, Any],
    suffix: str | None = None,
    wandb_project: str | None = None,
) -> dict[str, Any]:
    """Create a classifier fine-tuning job that waits for ``start`` (``auto_start=False``)."""
    extra: dict[str, Any] = {}
    if suffix:
        extra["suffix"] = suffix
    integrations = wandb_integration(wandb_project)
    if integrations:
        extra["integrations"] = integrations
    job = _call(
        "creating the fine-tuning job",
        client.fine_tuning.jobs.create,
        model=model,
        job_type="classifier",
        training_files=[{"file_id": training_file, "weight": 1}],
        validation_files=[validation_file] if validation_file else None,
        hyperparameters={k: v for k, v in hyperparameters.items() if v is not None},
        auto_start=False,
        **extra,
    )
    return job_to_dict(job)


def get_job(client: Any, job_id: str) -> dict[str, Any]:
    """The job's current state as a dict."""
    return job_to_dict(_call(f"reading job {job_id}", client.fine_tuning.jobs.get, job_id=job_id))


def start_job(client: Any, job_id: str) -> dict[str, Any]:
    """Start a validated job."""
    return job_to_dict(
        _call(f"starting job {job_id}", client.fine_tuning.jobs.start, job_id=job_id)
    )


def raise_for_job_status(job: Any) -> dict[str, Any]:
    """Raise :class:`JobFailed` (:class:`JobValidationFailed`) for a failed job, else return it."""
    job = job_to_dict(job)
    status = job.get("status")
    if status == "FAILED_VALIDATION":
        raise JobValidationFailed(job["id"], status, failure_reason(job), job)
    if status in FAILED_STATUSES:
        raise JobFailed(job["id"], status, failure_reason(job), job)
    return job


# --------------------------------------------------------------------------- polling


@dataclass
class _Poller:
    """Polls a job, waiting out transient errors with exponential backoff until a deadline."""

    client: Any
    job_id: str
    poll_interval: float
    timeout: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.timeout
        self.failures = 0

    def time_left(self) -> float:
        return self.deadline - self.clock()

    def get(self) -> dict[str, Any] | None:
        """The job, or None after a transient error (logged; the next wait backs off)."""
        try:
            job = job_to_dict(self.client.fine_tuning.jobs.get(job_id=self.job_id))
        except Exception as exc:
            if not is_transient(exc):
                raise JobError(
                    f"reading job {self.job_id} failed: {describe_api_error(exc)}"
                ) from exc
            self.failures += 1
            log.warning(
                "reading job %s failed (%s); retrying, attempt %d",
                self.job_id,
                describe_api_error(exc),
                self.failures,
            )
            return None
        self.failures = 0
        return job

    def wait(self, last_status: str | None) -> None:
        """Sleep before the next poll, or raise TimeoutError once the deadline has passed."""
        left = self.time_left()
        if left <= 0:
            raise TimeoutError(
                f"job {self.job_id} still {last_status or 'unreadable'} after {self.timeout:g} s; "
                "it keeps running on the server: re-run this step to follow it again"
            )
        pause = min(self.poll_interval * 2**self.failures, self.max_backoff)
        self.sleep(max(0.0, min(pause, left)))


def wait_for_status(
    client: Any,
    job_id: str,
    statuses: Collection[str] = ("VALIDATED",),
    poll_interval: float = 2.0,
    timeout: float = 600.0,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll until the job reaches one of ``statuses``; return it.

    FAILED_VALIDATION raises :class:`JobValidationFailed` with the server's message, any other
    terminal status not asked for raises :class:`JobFailed`, and the deadline ``TimeoutError``.
    """
    wanted = set(statuses)
    poller = _Poller(client, job_id, poll_interval, timeout, sleep=sleep, clock=clock)
    status = None
    while True:
        job = poller.get()
        if job is not None:
            status = job.get("status")
            if status in wanted:
                return job
            if status in TERMINAL_STATUSES:
                raise_for_job_status(job)
                raise JobError(f"job {job_id} ended {status} while waiting for {sorted(wanted)}")
        poller.wait(status)


def wait_for_validation(
    client: Any,
    run_dir: str | os.PathLike,
    job_id: str,
    *,
    poll_interval: float = 2.0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Wait until the job is VALIDATED and record it in ``job.json``; a rejection is recorded
    too (status and the server's reason) before :class:`JobValidationFailed` is raised."""
    try:
        job = wait_for_status(client, job_id, {"VALIDATED"}, poll_interval, timeout)
    except JobFailed as failure:
        if failure.job is not None:
            update_job_record(run_dir, failure.job)
        raise
    update_job_record(run_dir, job)
    return job


@dataclass
class JobUpdate:
    """One poll of a followed job: the job and its checkpoints as a metrics frame."""

    job: dict[str, Any]
    metrics: pd.DataFrame

    @property
    def status(self) -> str:
        return self.job.get("status", "")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


def follow_job(
    client: Any,
    job_id: str,
    *,
    poll_interval: float = 2.0,
    timeout: float = 3600.0,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[JobUpdate]:
    """Yield the job at every poll until it reaches a terminal status (the last update).

    A progress bar counts training steps (the newest checkpoint's step). Errors that escape the
    SDK's retries (429, 5xx, a dropped connection) are logged and waited out with backoff until
    ``timeout``; a failed job is *yielded*, not raised, so the caller can keep its metrics first
    (then call :func:`raise_for_job_status`). A job still waiting for ``start`` raises
    :class:`JobNotStarted` rather than waiting for nothing.
    """
    poller = _Poller(client, job_id, poll_interval, timeout, sleep=sleep, clock=clock)
    bar = None
    status = None
    try:
        while True:
            job = poller.get()
            if job is not None:
                status = job.get("status")
                if status == "VALIDATED" and not job.get("auto_start"):
                    raise JobNotStarted(
                        f"job {job_id} is VALIDATED and waits to be started: run 02_train with "
                        "start=True, or jobs.start_job(client, job_id)"
                    )
                update = JobUpdate(job, checkpoints_to_frame(job))
                if progress:
                    bar = bar or _StepBar(job)
                    bar.show(job, update.metrics)
                yield update
                if update.done:
                    return
            poller.wait(status)
    finally:
        if bar is not None:
            bar.close()


class _StepBar:
    """A tqdm bar over training steps, redrawn only when the step or the status changes
    (an executed notebook keeps every redraw as output: one per poll would bloat it)."""

    def __init__(self, job: Mapping[str, Any]):
        self.total = (job.get("hyperparameters") or {}).get("training_steps")
        self.bar = tqdm(
            total=self.total,
            desc=f"job {str(job.get('id', ''))[:8]}",
            unit="step",
            mininterval=0,  # draw exactly when show() asks, no more
            miniters=1,
        )
        self.shown: tuple[int, str | None] | None = None

    def show(self, job: Mapping[str, Any], metrics: pd.DataFrame) -> None:
        step = int(metrics["step"].max()) if len(metrics) else 0
        if job.get("status") == "SUCCESS" and self.total:
            step = self.total
        if self.shown == (step, job.get("status")):
            return
        self.shown = (step, job.get("status"))
        self.bar.set_postfix(status=job.get("status"), refresh=False)
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)  # draws
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- metrics


def empty_metrics() -> pd.DataFrame:
    """A metrics frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "step": pd.Series(dtype="int64"),
            "train_loss": pd.Series(dtype="float64"),
            "valid_loss": pd.Series(dtype="float64"),
        }
    )


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per step, sorted, with the metric columns only."""
    frame = frame.reindex(columns=METRIC_COLUMNS)
    frame = frame.dropna(subset=["step"]).astype(
        {"step": "int64", "train_loss": "float64", "valid_loss": "float64"}
    )
    frame = frame.groupby("step", sort=True).last()  # last non-null value per step
    return frame.reset_index()[METRIC_COLUMNS]


def checkpoints_to_frame(job: Any) -> pd.DataFrame:
    """The job's checkpoints as ``step, train_loss, valid_loss``: once per step, in step order.

    Tolerates checkpoints newest first (the API's order), repeated, or without ``valid_loss``
    (NaN). Repeats of one step keep the last non-null value of each metric.
    """
    checkpoints = job_to_dict(job).get("checkpoints") or []
    if not checkpoints:
        return empty_metrics()
    flat = pd.json_normalize(checkpoints)
    flat = flat.rename(
        columns={
            "step_number": "step",
            "metrics.train_loss": "train_loss",
            "metrics.valid_loss": "valid_loss",
        }
    )
    return _tidy(flat)


def merge_metrics(old: pd.DataFrame | None, new: pd.DataFrame | None) -> pd.DataFrame:
    """Union of two metrics frames by ``step``: the newer value wins, gaps filled from the old.

    Re-following a job therefore adds only steps not seen before, and a later poll that brings
    a step's ``valid_loss`` completes that row instead of duplicating it.
    """
    frames = [f for f in (old, new) if f is not None and len(f)]
    if not frames:
        return empty_metrics()
    return _tidy(pd.concat([f.reindex(columns=METRIC_COLUMNS) for f in frames], ignore_index=True))


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """The metrics saved by an earlier follow (``metrics.csv``), or an empty frame."""
    path = Path(path)
    if not path.is_file():
        return empty_metrics()
    frame = pd.read_csv(path)
    missing = set(METRIC_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {METRIC_COLUMNS}")
    return _tidy(frame)


def write_metrics(metrics: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save the metrics as CSV atomically (a crash mid-write keeps the previous file)."""
    return atomic_write_text(path, _tidy(metrics).to_csv(index=False))


# --------------------------------------------------------------------------- decisions and record


def _duration(seconds: Any) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(int(round(float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def job_summary_table(job: Any) -> pd.DataFrame:
    """What a person decides on before starting: steps, epochs, duration, cost, tokens, labels."""
    job = job_to_dict(job)
    hp = job.get("hyperparameters") or {}
    meta = _metadata(job)
    cost = meta.get("cost")
    currency = meta.get("cost_currency")
    rows = {
        "job id": job.get("id"),
        "status": job.get("status"),
        "base model": job.get("model"),
        "training steps": hp.get("training_steps"),
        "epochs": None if hp.get("epochs") is None else round(float(hp["epochs"]), 2),
        "learning rate": hp.get("learning_rate"),
        "expected duration": _duration(meta.get("expected_duration_seconds")),
        "cost": None if cost is None else f"{cost:.2f} {currency or ''}".strip(),
        "train tokens per step": meta.get("train_tokens_per_step"),
        "train tokens": meta.get("train_tokens"),
        "data tokens": meta.get("data_tokens"),
    }
    for target in job.get("classifier_targets") or []:
        rows[f"target '{target['name']}'"] = ", ".join(target.get("labels") or [])
    table = pd.DataFrame(
        {"value": [("—" if v is None else str(v)) for v in rows.values()]},
        index=pd.Index(list(rows), name="item"),
    )
    return table


def public_url(url: str | None) -> str | None:
    """The server URL without any user:password part."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def job_record(
    job: Any,
    *,
    backend: str,
    server_url: str,
    training_files: list[str] | None = None,
    validation_files: list[str] | None = None,
) -> dict[str, Any]:
    """The ``job.json`` record: where the job lives and what it is. Never holds a key."""
    job = job_to_dict(job)
    return {
        "backend": backend,
        "server_url": public_url(server_url),
        "job_id": job["id"],
        "model": job.get("model"),
        "training_files": list(training_files or job.get("training_files") or []),
        "validation_files": list(validation_files or job.get("validation_files") or []),
        "hyperparameters": dict(job.get("hyperparameters") or {}),
        "classifier_targets": [
            {"name": t["name"], "labels": list(t.get("labels") or [])}
            for t in job.get("classifier_targets") or []
        ],
        "suffix": job.get("suffix"),
        "status": job.get("status"),
        "fine_tuned_model": job.get("fine_tuned_model"),
        "trained_tokens": job.get("trained_tokens"),
        "metadata": _metadata(job),
    }


def save_job_record(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``job.json`` into the run folder."""
    return write_json(run_dir, JOB_JSON, dict(record))


def record_new_job(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> list[Path]:
    """Write ``job.json`` for a newly created job and drop a previous job's curves.

    ``metrics.csv`` and ``loss.png`` describe the job ``job.json`` names; left behind, the old
    job's checkpoints would be merged into the new job's curves. Returns the files removed.
    """
    run_path = Path(run_dir)
    previous = (run_path / JOB_JSON).is_file() and read_json(run_path, JOB_JSON).get("job_id")
    removed = []
    if previous != record["job_id"]:
        for name in (METRICS_CSV, LOSS_PNG):
            if (run_path / name).is_file():
                (run_path / name).unlink()
                removed.append(run_path / name)
    save_job_record(run_path, record)
    return removed


def update_job_record(run_dir: str | os.PathLike, job: Any) -> dict[str, Any]:
    """Refresh ``job.json`` with the job's current state (status, model id, targets...)."""
    record = read_json(run_dir, JOB_JSON)
    fresh = job_record(job, backend=record["backend"], server_url=record["server_url"])
    for key in ("training_files", "validation_files"):
        fresh[key] = record.get(key) or fresh[key]
    record.update(fresh)
    if fresh["status"] in FAILED_STATUSES:
        record["failure_reason"] = failure_reason(job)
    save_job_record(run_dir, record)
    return record

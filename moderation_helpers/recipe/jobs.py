"""Create, validate, start and follow a Classifier Factory fine-tuning job.

Works the same on the Mistral API and on the local factory: both are reached through the
``mistralai`` SDK. Every job the server answers goes through ``job_record.job_to_dict``, so SDK
models and recorded JSON go through the same code; checkpoints become a metrics frame
(:mod:`moderation_helpers.recipe.metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from mistralai.client import errors

from moderation_helpers.core.env import WANDB_API_KEY_ENV
from moderation_helpers.core.jsonl import LABEL_SCORES, validate_jsonl
from moderation_helpers.core.statuses import FAILED_STATUSES, TERMINAL_STATUSES
from moderation_helpers.recipe.api_errors import describe_api_error, is_transient
from moderation_helpers.recipe.job_record import failure_reason, job_to_dict, update_job_record
from moderation_helpers.recipe.metrics import checkpoints_to_frame

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto falls back to the text bar, with a warning we don't need.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

log = logging.getLogger(__name__)


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


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Run one SDK call; a refusal becomes a JobError saying what was attempted and why."""
    try:
        return fn(**kwargs)
    except (errors.MistralError, httpx.HTTPError, errors.NoResponseError) as exc:
        raise JobError(f"{what} failed: {describe_api_error(exc)}") from exc


def upload_training_files(
    client: Any,
    train_path: str | os.PathLike,
    validation_path: str | os.PathLike,
    *,
    label_scores: bool = True,
) -> dict[str, str]:
    """Validate both JSONL files, then upload them; returns ``{"train": id, "validation": id}``.

    The validation file may only use labels the training file has (a label the model never
    saw cannot be scored). Nothing is uploaded unless both files are valid. ``label_scores``:
    keep the lines' ``label_scores``, the local factory's extension (``core.jsonl``); with
    ``False`` (the Mistral API, whose format has no such field) a copy without them is uploaded,
    under the same name, and the files on disk are left as they are.
    """
    train_report = validate_jsonl(train_path)
    reports = {
        "train": train_report,
        "validation": validate_jsonl(validation_path, allowed_labels=train_report.targets),
    }
    ids = {}
    for split, path in (("train", Path(train_path)), ("validation", Path(validation_path))):
        with path.open("rb") as fh:
            content: Any = fh
            if reports[split].n_scored and not label_scores:
                log.info("%s: uploading without label_scores (a local extension)", path)
                content = without_label_scores(path).encode("utf-8")
            uploaded = _call(
                f"uploading {path}",
                client.files.upload,
                file={"file_name": path.name, "content": content},
                purpose="fine-tune",
            )
        ids[split] = uploaded.id
    return ids


def without_label_scores(path: str | os.PathLike) -> str:
    """The JSONL text of ``path`` with every line's ``label_scores`` left out (Mistral's
    format). Line by line, as ``validate_jsonl`` reads it: lines of both kinds keep their keys."""
    out = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            obj.pop(LABEL_SCORES, None)
            out.append(json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n")
    return "".join(out)


def wandb_integration(project: str | None) -> list[dict[str, str]] | None:
    """Weights & Biases integration for ``project``; the key only from ``WANDB_API_KEY``."""
    if not project:
        return None
    key = os.environ.get(WANDB_API_KEY_ENV)
    if not key:
        raise ValueError(
            f"wandb_project={project!r} needs the {WANDB_API_KEY_ENV} environment variable"
        )
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

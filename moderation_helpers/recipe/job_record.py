"""A fine-tuning job as data: the dict every helper reads, the run folder's ``job.json`` record,
and the table a person reads before starting it.

The SDK returns pydantic models, the recorded API responses are plain JSON; :func:`job_to_dict`
turns either into a dict at the boundary and everything else reads only that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from moderation_helpers.core.statuses import FAILED_STATUSES
from moderation_helpers.recipe.api_errors import as_text
from moderation_helpers.recipe.run_folder import (
    JOB_JSON,
    LOSS_PNG,
    METRICS_CSV,
    read_record,
    write_record,
)


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
                return as_text(source[key])
    for event in reversed(job.get("events") or []):
        data = event.get("data") or {}
        for key in keys:
            if data.get(key):
                return as_text(data[key])
    return None


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
    return write_record(run_dir, JOB_JSON, dict(record))


def record_new_job(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> list[Path]:
    """Write ``job.json`` for a newly created job and drop a previous job's curves.

    ``metrics.csv`` and ``loss.png`` describe the job ``job.json`` names; left behind, the old
    job's checkpoints would be merged into the new job's curves. Returns the files removed.
    """
    run_path = Path(run_dir)
    previous = (run_path / JOB_JSON).is_file() and read_record(run_path, JOB_JSON).get("job_id")
    removed = _drop_curves(run_path) if previous != record["job_id"] else []
    save_job_record(run_path, record)
    return removed


def _drop_curves(run_path: Path) -> list[Path]:
    removed = [run_path / name for name in (METRICS_CSV, LOSS_PNG) if (run_path / name).is_file()]
    for path in removed:
        path.unlink()
    return removed


def forget_job(run_dir: str | os.PathLike) -> list[Path]:
    """Remove ``job.json`` and the job's curves, as if no job had been created in the run
    folder yet; returns the files removed."""
    run_path = Path(run_dir)
    removed = _drop_curves(run_path)
    if (run_path / JOB_JSON).is_file():
        (run_path / JOB_JSON).unlink()
        removed.append(run_path / JOB_JSON)
    return removed


def update_job_record(run_dir: str | os.PathLike, job: Any) -> dict[str, Any]:
    """Refresh ``job.json`` with the job's current state (status, model id, targets...)."""
    record = read_record(run_dir, JOB_JSON)
    fresh = job_record(job, backend=record["backend"], server_url=record["server_url"])
    for key in ("training_files", "validation_files"):
        fresh[key] = record.get(key) or fresh[key]
    record.update(fresh)
    if fresh["status"] in FAILED_STATUSES:
        record["failure_reason"] = failure_reason(job)
    save_job_record(run_dir, record)
    return record

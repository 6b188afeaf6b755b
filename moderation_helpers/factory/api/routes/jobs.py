"""``/v1/fine_tuning/jobs``: create, list, get, start and cancel classifier fine-tuning jobs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.exceptions import RequestValidationError

from moderation_helpers.core.statuses import TERMINAL_STATUSES
from moderation_helpers.factory.api.responses import invalid, job_out, not_found
from moderation_helpers.factory.api.routes.deps import Page, PageSize, SchedulerDep, StoreDep
from moderation_helpers.factory.api.schemas import JobIn
from moderation_helpers.factory.store.db import Store
from moderation_helpers.factory.store.jobs import JobFilter

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine_tuning jobs"])
JobStatus = Literal[
    "QUEUED",
    "STARTED",
    "VALIDATING",
    "VALIDATED",
    "RUNNING",
    "FAILED_VALIDATION",
    "FAILED",
    "SUCCESS",
    "CANCELLED",
    "CANCELLATION_REQUESTED",
]


@router.post("")
def create_job(
    body: JobIn, store: StoreDep, scheduler: SchedulerDep, dry_run: bool | None = None
) -> dict[str, Any]:
    if dry_run:
        raise invalid(
            ["dry_run"],
            "dry runs are not implemented by the local factory: create the job with "
            "auto_start=false to see the validated estimate before starting it",
            dry_run,
        )
    for i, entry in enumerate(body.training_files):
        if store.get_file(entry.file_id) is None:
            raise invalid(["training_files", i, "file_id"], "no such file", entry.file_id)
    for i, file_id in enumerate(body.validation_files or []):
        if store.get_file(file_id) is None:
            raise invalid(["validation_files", i], "no such file", file_id)
    names = [t.name for t in body.classifier_targets or []]
    if len(set(names)) != len(names):
        raise invalid(["classifier_targets"], "target names must be unique", names)
    job_id = store.create_job(_new_job_doc(body), start_requested=body.auto_start)
    # Answer with the job as created (QUEUED), as the API does: read before the validator
    # is woken, or the answer races it and may say VALIDATING.
    created = store.get_job(job_id)
    scheduler.wake()
    return job_out(created, detailed=False)


def _new_job_doc(body: JobIn) -> dict[str, Any]:
    """The job document of a new job: what was asked, and what validation fills still empty."""
    return {
        "model": body.model,
        "auto_start": body.auto_start,
        "training_files": [t.model_dump() for t in body.training_files],
        "validation_files": body.validation_files or [],
        "hyperparameters": body.hyperparameters.model_dump(),
        "suffix": body.suffix,
        # W&B keys are secrets: never stored, never echoed.
        "integrations": [
            {**i.model_dump(exclude={"api_key"}), "url": None} for i in body.integrations or []
        ],
        "classifier_targets": (
            [t.model_dump() for t in body.classifier_targets] if body.classifier_targets else None
        ),
        "invalid_sample_skip_percentage": body.invalid_sample_skip_percentage,
        "fine_tuned_model": None,
        "trained_tokens": None,
        "metadata": {
            "expected_duration_seconds": None,
            "cost": 0.0,
            "cost_currency": None,
            "train_tokens_per_step": None,
            "train_tokens": None,
            "data_tokens": None,
            "estimated_start_time": None,
        },
    }


@router.get("")
def list_jobs(
    store: StoreDep,
    page: Page = 0,
    page_size: PageSize = 100,
    model: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    created_by_me: bool = False,
    status: JobStatus | None = None,
    wandb_project: str | None = None,
    wandb_name: str | None = None,
    suffix: str | None = None,
) -> dict[str, Any]:
    # created_by_me: a local factory has one user, so every job is "mine".
    wanted = JobFilter(
        model=model,
        status=status,
        suffix=suffix,
        created_after=_unix_seconds("created_after", created_after),
        created_before=_unix_seconds("created_before", created_before),
        wandb_project=wandb_project,
        wandb_name=wandb_name,
        page=page,
        page_size=page_size,
    )
    jobs, total = store.list_jobs(wanted)
    data = [job_out({**j, "events": [], "checkpoints": []}, detailed=False) for j in jobs]
    return {"data": data, "object": "list", "total": total}


def _unix_seconds(name: str, value: str | None) -> int | None:
    """An RFC 3339 date-time query value as Unix seconds (naive means UTC), or a 422."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        error = {"loc": ("query", name), "msg": "expected an RFC 3339 date-time", "input": value}
        raise RequestValidationError([{**error, "type": "value_error"}]) from None
    return int(moment.replace(tzinfo=moment.tzinfo or timezone.utc).timestamp())


def _job_or_404(store: Store, job_id: str) -> dict[str, Any]:
    job = store.get_job(job_id)
    if job is None:
        raise not_found("job", job_id)
    return job


@router.get("/{job_id}")
def get_job(store: StoreDep, job_id: str) -> dict[str, Any]:
    return job_out(_job_or_404(store, job_id))


@router.post("/{job_id}/start")
def start_job(store: StoreDep, scheduler: SchedulerDep, job_id: str) -> dict[str, Any]:
    with store.edit_job(job_id) as job:
        if job is None:
            raise not_found("job", job_id)
        if job.status == "VALIDATED":
            job.start_requested = True
            job.set_status("QUEUED")
        elif job.status in ("QUEUED", "VALIDATING") and not job.validated:
            # Started before validation ended: it goes on to train once VALIDATED.
            job.start_requested = True
        elif not (job.status in ("QUEUED", "RUNNING") and job.start_requested):
            raise HTTPException(
                status_code=409, detail=f"job {job_id} is {job.status}: it cannot be started"
            )
    scheduler.wake()
    return job_out(_job_or_404(store, job_id))


@router.post("/{job_id}/cancel")
def cancel_job(store: StoreDep, scheduler: SchedulerDep, job_id: str) -> dict[str, Any]:
    with store.edit_job(job_id) as job:
        if job is None:
            raise not_found("job", job_id)
        if job.status == "RUNNING":
            # The supervisor stops the training process and records CANCELLED.
            job.set_status("CANCELLATION_REQUESTED")
        elif job.status in TERMINAL_STATUSES - {"CANCELLED"}:
            raise HTTPException(
                status_code=409, detail=f"job {job_id} is {job.status}: nothing to cancel"
            )
        elif job.status not in ("CANCELLED", "CANCELLATION_REQUESTED"):
            job.set_status("CANCELLED")
    scheduler.wake()
    return job_out(_job_or_404(store, job_id))

"""The local Classifier Factory's HTTP API: the Mistral API's routes for files, classifier
fine-tuning jobs, fine-tuned models and classifications, in the shapes ``mistralai`` 2.x parses.

Errors are the API's: 404 for an unknown id, 422 with a ``detail`` whose ``loc`` names the field,
409 for an action the job's status does not allow, 401 when a token is configured and the
request lacks ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError

from moderation_helpers.factory.schemas import ClassificationIn, JobIn
from moderation_helpers.factory.store import TERMINAL_STATUSES, Store
from moderation_helpers.factory.worker import Scheduler, load_trainer

MAX_CONTEXT_LENGTH = 512  # the encoder's position embeddings
OWNER = "moderation-cookbook"


def _not_found(kind: str, ident: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{kind} {ident!r} not found")


def _invalid(loc: list[str | int], msg: str, value: Any = None) -> RequestValidationError:
    """A 422 in FastAPI's own format, for checks pydantic cannot make (e.g. unknown file ids)."""
    return RequestValidationError(
        [{"loc": ("body", *loc), "msg": msg, "type": "value_error", "input": value}]
    )


# -- response shapes -------------------------------------------------------------------------
def file_out(record: dict[str, Any], *, with_deleted: bool = False) -> dict[str, Any]:
    """A file as ``CreateFileResponse`` / ``GetFileResponse`` / ``FileSchema``."""
    out = {
        "id": record["id"],
        "object": "file",
        "bytes": record["bytes"],
        "created_at": record["created_at"],
        "filename": record["filename"],
        "purpose": record["purpose"],
        "sample_type": "instruct",
        "source": "upload",
        "num_lines": record["num_lines"],
        "mimetype": "application/jsonl",
        "signature": None,
        "expires_at": None,
        "visibility": "workspace",
    }
    if with_deleted:
        out["deleted"] = False
    return out


def job_out(job: dict[str, Any], *, detailed: bool = True) -> dict[str, Any]:
    """A job as ``ClassifierFineTuningJob`` or (detailed) ``ClassifierFineTuningJobDetails``."""
    doc = job["doc"]
    out = {
        "id": job["id"],
        "object": "job",
        "job_type": "classifier",
        "auto_start": doc["auto_start"],
        "model": doc["model"],
        "status": job["status"],
        "created_at": job["created_at"],
        "modified_at": job["modified_at"],
        "training_files": [f["file_id"] for f in doc["training_files"]],
        "validation_files": doc.get("validation_files") or [],
        "hyperparameters": doc["hyperparameters"],
        "fine_tuned_model": doc.get("fine_tuned_model"),
        "suffix": doc.get("suffix"),
        "integrations": doc.get("integrations") or [],
        "trained_tokens": doc.get("trained_tokens"),
        "metadata": doc["metadata"],
    }
    if detailed:
        out["classifier_targets"] = doc.get("classifier_targets") or []
        out["events"] = job["events"]
        out["checkpoints"] = [
            {
                "step_number": c["step_number"],
                "metrics": {
                    "train_loss": c["train_loss"],
                    "valid_loss": c["valid_loss"],
                    "valid_mean_token_accuracy": None,
                },
                "created_at": c["created_at"],
            }
            for c in job["checkpoints"]
        ]
    return out


def model_out(record: dict[str, Any], workspace: str) -> dict[str, Any]:
    """A fine-tuned model as ``FTModelCard`` (what ``models.list/retrieve`` parse), with the
    fields of ``ClassifierFineTunedModel`` too."""
    return {
        "id": record["id"],
        "object": "model",
        "type": "fine-tuned",
        "model_type": "classifier",
        "created": record["created"],
        "owned_by": OWNER,
        "workspace_id": workspace,
        "root": record["root"],
        "root_version": "local",
        "job": record["job_id"],
        "name": record["id"],
        "description": "all-MiniLM-L6-v2 fine-tuned by the local Classifier Factory",
        "archived": False,
        "aliases": [],
        "max_context_length": MAX_CONTEXT_LENGTH,
        "capabilities": {
            "completion_chat": False,
            "completion_fim": False,
            "function_calling": False,
            "fine_tuning": False,
            "vision": False,
            "classification": True,
        },
        "classifier_targets": record["targets"],
    }


# -- classification models in memory ---------------------------------------------------------
class ModelCache:
    """Fine-tuned models loaded once and kept in memory, least recently used evicted first."""

    def __init__(self, size: int = 2):
        self.size = size
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, path: str | Path) -> Any:
        """The loaded model (``ClassifierModel``), loading it on first use."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            model = load_trainer().load_model(path)
            self._models[model_id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def evict(self, model_id: str) -> None:
        """Forget a model (deleted)."""
        with self._lock:
            self._models.pop(model_id, None)


# -- the app ---------------------------------------------------------------------------------
def create_app(
    store: Store | str | Path, token: str | None = None, *, run_scheduler: bool = True
) -> FastAPI:
    """The factory app over ``store``; with ``token``, every route requires it as Bearer.

    ``run_scheduler=False`` serves the API without validating or training (tests of the routes).
    """
    store = store if isinstance(store, Store) else Store(store)
    scheduler = Scheduler(store)
    models = ModelCache()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.recover()
        if run_scheduler:
            scheduler.start()
        try:
            yield
        finally:
            if run_scheduler:
                scheduler.stop()

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API token (send Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="moderation-cookbook local Classifier Factory",
        lifespan=lifespan,
        dependencies=[Depends(check_token)],
    )
    app.state.store = store
    app.state.scheduler = scheduler

    # -- files ---------------------------------------------------------------------------------
    @app.post("/v1/files")
    async def upload_file(
        file: UploadFile = File(...),  # noqa: B008 (FastAPI's declaration style)
        purpose: str = Form("fine-tune"),
        expiry: int | None = Form(None),
        visibility: str | None = Form(None),
    ) -> dict[str, Any]:
        if purpose != "fine-tune":
            raise _invalid(["purpose"], "the local factory only takes purpose 'fine-tune'", purpose)
        content = await file.read()
        if not content:
            raise _invalid(["file"], "empty file")
        return file_out(store.add_file(file.filename or "upload.jsonl", content, purpose))

    @app.get("/v1/files")
    def list_files(page: int = 0, page_size: int = 100) -> dict[str, Any]:
        records, total = store.list_files(page, page_size)
        return {"data": [file_out(r) for r in records], "object": "list", "total": total}

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str) -> dict[str, Any]:
        record = store.get_file(file_id)
        if record is None:
            raise _not_found("file", file_id)
        return file_out(record, with_deleted=True)

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str) -> dict[str, Any]:
        if not store.delete_file(file_id):
            raise _not_found("file", file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    # -- jobs ----------------------------------------------------------------------------------
    @app.post("/v1/fine_tuning/jobs")
    def create_job(body: JobIn) -> dict[str, Any]:
        for i, entry in enumerate(body.training_files):
            if store.get_file(entry.file_id) is None:
                raise _invalid(["training_files", i, "file_id"], "no such file", entry.file_id)
        for i, file_id in enumerate(body.validation_files or []):
            if store.get_file(file_id) is None:
                raise _invalid(["validation_files", i], "no such file", file_id)
        names = [t.name for t in body.classifier_targets or []]
        if len(set(names)) != len(names):
            raise _invalid(["classifier_targets"], "target names must be unique", names)
        hyper = body.hyperparameters.model_dump()
        doc = {
            "model": body.model,
            "auto_start": body.auto_start,
            "training_files": [t.model_dump() for t in body.training_files],
            "validation_files": body.validation_files or [],
            "hyperparameters": hyper,
            "suffix": body.suffix,
            # W&B keys are secrets: never stored, never echoed.
            "integrations": [
                {**i.model_dump(exclude={"api_key"}), "url": None} for i in body.integrations or []
            ],
            "classifier_targets": (
                [t.model_dump() for t in body.classifier_targets]
                if body.classifier_targets
                else None
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
        job_id = store.create_job(doc, start_requested=body.auto_start)
        # Answer with the job as created (QUEUED), as the API does: read before the validator
        # is woken, or the answer races it and may say VALIDATING.
        created = store.get_job(job_id)
        scheduler.wake()
        return job_out(created, detailed=False)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(
        page: int = 0,
        page_size: int = 100,
        model: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        created_by_me: bool = False,
        status: str | None = None,
        wandb_project: str | None = None,
        wandb_name: str | None = None,
        suffix: str | None = None,
    ) -> dict[str, Any]:
        # created_by_me: a local factory has one user, so every job is "mine".
        conditions: list[str] = []
        args: list[Any] = []
        for sql, value in (
            ("status = ?", status),
            ("json_extract(doc, '$.model') = ?", model),
            ("json_extract(doc, '$.suffix') = ?", suffix),
            ("created_at >= ?", created_after and int(created_after.timestamp())),
            ("created_at <= ?", created_before and int(created_before.timestamp())),
            (_integration_sql("project"), wandb_project),
            (_integration_sql("name"), wandb_name),
        ):
            if value is not None:
                conditions.append(sql)
                args.append(value)
        jobs = store.list_jobs(" AND ".join(conditions), tuple(args))
        shown = jobs[page * page_size : (page + 1) * page_size]
        data = [job_out({**j, "events": [], "checkpoints": []}, detailed=False) for j in shown]
        return {"data": data, "object": "list", "total": len(jobs)}

    def _job_or_404(job_id: str) -> dict[str, Any]:
        job = store.get_job(job_id)
        if job is None:
            raise _not_found("job", job_id)
        return job

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_out(_job_or_404(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/start")
    def start_job(job_id: str) -> dict[str, Any]:
        with store.edit_job(job_id) as job:
            if job is None:
                raise _not_found("job", job_id)
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
        return job_out(_job_or_404(job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        with store.edit_job(job_id) as job:
            if job is None:
                raise _not_found("job", job_id)
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
        return job_out(_job_or_404(job_id))

    # -- models --------------------------------------------------------------------------------
    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [model_out(m, store.workspace) for m in store.list_models()],
        }

    def _model_or_404(model_id: str) -> dict[str, Any]:
        record = store.get_model(model_id)
        if record is None:
            raise _not_found("model", model_id)
        return record

    @app.get("/v1/models/{model_id:path}")
    def get_model(model_id: str) -> dict[str, Any]:
        return model_out(_model_or_404(model_id), store.workspace)

    @app.delete("/v1/models/{model_id:path}")
    def delete_model(model_id: str) -> dict[str, Any]:
        _model_or_404(model_id)
        models.evict(model_id)
        store.delete_model(model_id)
        return {"id": model_id, "object": "model", "deleted": True}

    # -- classification ------------------------------------------------------------------------
    @app.post("/v1/classifications")
    def classify(body: ClassificationIn) -> dict[str, Any]:
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        if not texts:
            raise _invalid(["input"], "no input to classify", body.inputs)
        record = store.get_model(body.model)
        if record is None:
            raise _not_found("model", body.model)
        predictions = models.get(record["id"], record["path"]).predict(texts)
        results = [
            {target: {"scores": scores} for target, scores in per_text.items()}
            for per_text in predictions
        ]
        return {"id": uuid.uuid4().hex, "model": record["id"], "results": results}

    return app


def _integration_sql(key: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM json_each(json_extract(doc, '$.integrations')) "
        f"WHERE json_extract(value, '$.{key}') = ?)"
    )

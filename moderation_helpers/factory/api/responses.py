"""The local factory's response shapes and errors, as the Mistral API (and ``mistralai`` 2.x)
has them. Every router builds its answers here, so a shape is written once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from moderation_helpers.classifier.encoders import EncoderSpec, encoder_for

MAX_CONTEXT_LENGTH = 512  # the encoder's position embeddings
OWNER = "moderation-cookbook"
MIMETYPE = "application/jsonl"


def not_found(kind: str, ident: str) -> HTTPException:
    """A 404 naming what was not found."""
    return HTTPException(status_code=404, detail=f"{kind} {ident!r} not found")


def invalid(loc: list[str | int], msg: str, value: Any = None) -> RequestValidationError:
    """A 422 in FastAPI's own format, for checks pydantic cannot make (e.g. unknown file ids)."""
    return RequestValidationError(
        [{"loc": ("body", *loc), "msg": msg, "type": "value_error", "input": value}]
    )


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
        "mimetype": MIMETYPE,
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
    fields of ``ClassifierFineTunedModel`` too; name, description and archived as last set."""
    meta = record.get("meta") or {}
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
        "name": meta.get("name") or record["id"],
        "description": meta.get(
            "description",
            f"{encoder_for(record['root']).name} fine-tuned by the local Classifier Factory",
        ),
        "archived": bool(meta.get("archived", False)),
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


def base_model_out(spec: EncoderSpec) -> dict[str, Any]:
    """A base encoder the factory fine-tunes as ``BaseModelCard``, its measured cost in the
    description (or what to install, where its packages are missing)."""
    installed = spec.installed()
    note = spec.cost() if installed else f"not installed: {spec.install_hint()}"
    return {
        "id": spec.name,
        "object": "model",
        "type": "base",
        "created": 0,
        "owned_by": spec.hub_id.split("/")[0],
        "name": spec.name,
        "description": f"{spec.hub_id}, fine-tuned by the local Classifier Factory: {note}",
        "max_context_length": MAX_CONTEXT_LENGTH,
        "aliases": [spec.hub_id],
        "capabilities": {
            "completion_chat": False,
            "completion_fim": False,
            "function_calling": False,
            "fine_tuning": installed,
            "vision": False,
            "classification": True,
        },
    }


def classification_out(record: dict[str, Any], predictions: list[dict]) -> dict[str, Any]:
    """``ClassificationResponse``: per input, ``{target: {"scores": {label: score}}}``."""
    results = [
        {target: {"scores": scores} for target, scores in per_input.items()}
        for per_input in predictions
    ]
    return {"id": uuid.uuid4().hex, "model": record["id"], "results": results}

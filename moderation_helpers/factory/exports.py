"""Export a model of the factory's store: find it by id, refuse an unfinished one, load it and
hand it to ``export.onnx.export_model`` (``moderation-factory export`` and 05_deploy)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON
from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.export.onnx import ExportRefused, export_model
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.folder import check_empty_output


def stored_model(store_dir: str | os.PathLike, model_id: str) -> tuple[Path, dict[str, Any]]:
    """``(model folder, job document)`` of a finished model of the store.

    Raises :class:`ExportRefused` for an unknown model, one whose job has not succeeded, or one
    whose folder holds no saved classifier."""
    store = Store(store_dir)
    record = store.get_model(model_id)
    if record is None:
        known = [m["id"] for m in store.list_models()][:5]
        raise ExportRefused(f"no model {model_id!r} in the factory store {store_dir} (has {known})")
    job_row = store.get_job(record["job_id"]) or {}
    job = dict(job_row.get("doc") or {}, id=record["job_id"], status=job_row.get("status"))
    if job["status"] != SUCCESS:
        raise ExportRefused(
            f"model {model_id} is not finished: its job {record['job_id']} is "
            f"{job['status']}; export once the job has succeeded"
        )
    path = Path(record["path"])
    if not (path / CHECKPOINT_JSON).is_file():
        raise ExportRefused(
            f"{path} holds no finished model ({CHECKPOINT_JSON} is written last, when training "
            "has saved everything): wait for the job to succeed, or check the store"
        )
    return path, job


def export_from_store(
    store_dir: str | os.PathLike,
    model_id: str,
    out_dir: str | os.PathLike,
    *,
    int8: bool = False,
    thresholds: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """Export the store's model ``model_id`` into ``out_dir`` (new or empty); return it.

    ``thresholds``, ``evaluation`` and ``summary`` are the run folder's documents, passed on to
    :func:`~moderation_helpers.export.onnx.export_model` (the job comes from the store)."""
    from moderation_helpers.classifier.checkpoint import load_model

    path, job = stored_model(store_dir, model_id)
    check_empty_output(out_dir)  # before the model loads: a refusal should be quick
    return export_model(
        load_model(path, device="cpu", precision="fp32"),
        out_dir,
        int8=int8,
        model_id=model_id,
        thresholds=thresholds,
        job=job,
        evaluation=evaluation,
        summary=summary,
    )

"""The exported model folder of each model of the factory's store, made once.

The training process exports every model it trains, before its job reports SUCCESS
(:func:`export_trained`): ``<model folder>/export/`` holds the deployable folder (fp32 and int8
graphs, with what int8 costs measured on the job's validation file), which the factory serves
and ``moderation-factory export`` / 05_deploy copy (:func:`export_from_store`).
:func:`exported_folder` finds it, exporting on demand a model trained before this existed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moderation_helpers.core.flags import FLAG_RULE, SAFE_LABEL
from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.export.onnx import ExportRefused, export_model, repackage
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.folder import CLASSIFIER_JSON, check_empty_output

EXPORT_DIR = "export"  # <model folder>/export/: the model's exported folder
_on_demand = threading.Lock()


def export_dir(model_dir: str | os.PathLike) -> Path:
    """Where the exported folder of the model saved in ``model_dir`` is (or will be)."""
    return Path(model_dir) / EXPORT_DIR


def is_exported(model_dir: str | os.PathLike) -> bool:
    """Whether the model of ``model_dir`` has its exported folder (renamed in when complete)."""
    return (export_dir(model_dir) / CLASSIFIER_JSON).is_file()


def finished_model(
    store_dir: str | os.PathLike | Store, model_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model record, job document)`` of a finished model of the store.

    Raises :class:`ExportRefused` for an unknown model, one whose job has not succeeded, or one
    whose folder holds no saved classifier."""
    from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON  # torch: only here

    store = store_dir if isinstance(store_dir, Store) else Store(store_dir)
    record = store.get_model(model_id)
    if record is None:
        known = [m["id"] for m in store.list_models()][:5]
        raise ExportRefused(f"no model {model_id!r} in the factory store {store.root} ({known})")
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
    return record, job


def published_thresholds(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``thresholds.json`` document (model folder format) of the thresholds published to
    the factory for this model (``PUT .../thresholds``), or None when none were."""
    meta = record.get("meta") or {}
    if not meta.get("thresholds"):
        return None
    return {
        "model": record["id"],
        "safe_label": meta.get("safe_label") or SAFE_LABEL,
        "rule": FLAG_RULE,
        "thresholds": meta["thresholds"],
        "graph": meta.get("thresholds_graph"),
    }


def export_trained(
    model_dir: str | os.PathLike,
    model_id: str,
    job: Mapping[str, Any],
    validation: Sequence[Mapping[str, Any]] | None,
) -> Path:
    """Export the model just saved in ``model_dir`` into its exported folder (fp32 and int8,
    quality measured on ``validation``, the job's validation examples); return the folder."""
    from moderation_helpers.classifier.checkpoint import load_model

    classifier = load_model(model_dir, device="cpu", precision="fp32")
    return export_model(
        classifier,
        export_dir(model_dir),
        int8=True,
        model_id=model_id,
        job=job,
        validation=validation,
    )


def exported_folder(store: Store, model_id: str) -> Path:
    """The exported folder of the store's model ``model_id`` (export/ of its model folder),
    exported now if the model was trained before models were exported at the end of training.

    Raises :class:`ExportRefused` for an unknown or unfinished model."""
    record, job = finished_model(store, model_id)
    path = Path(record["path"])
    if is_exported(path):
        return export_dir(path)
    with _on_demand:
        if not is_exported(path):
            store = store if isinstance(store, Store) else Store(store)
            validation = [
                ex
                for file_id in job.get("validation_files") or []
                if (f := store.get_file(file_id)) is not None
                for ex in read_jsonl(f["path"])
            ]
            try:
                export_trained(path, model_id, job, validation)
            except OSError:  # another process exported it meanwhile (renamed in first)
                if not is_exported(path):
                    raise
    return export_dir(path)


def export_from_store(
    store_dir: str | os.PathLike | Store,
    model_id: str,
    out_dir: str | os.PathLike,
    *,
    int8: bool = False,
    thresholds: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """Write the store's model ``model_id`` into ``out_dir`` (new or empty); return it.

    A copy of its exported folder (:func:`exported_folder`), with ``thresholds``,
    ``evaluation`` and ``summary`` (the run folder's documents) passed on to
    :func:`~moderation_helpers.export.onnx.repackage` (the job comes from the store). Without
    ``thresholds``, the thresholds published to the factory go into the folder, if any."""
    store = store_dir if isinstance(store_dir, Store) else Store(store_dir)
    record, job = finished_model(store, model_id)
    check_empty_output(out_dir)  # before an on-demand export: a refusal should be quick
    return repackage(
        exported_folder(store, model_id),
        out_dir,
        int8=int8,
        thresholds=thresholds if thresholds is not None else published_thresholds(record),
        job=job,
        evaluation=evaluation,
        summary=summary,
    )

"""Export a model of the factory's store: find it by id, refuse an unfinished one, load it and
hand it to ``export.onnx.export_model`` (``moderation-factory export --store``), keep the
model's own export beside its weights, and pack that folder as one archive for
``GET /v1/fine_tuning/models/{id}/folder`` (05_deploy, ``moderation-factory export --server``)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON
from moderation_helpers.core.files import json_text
from moderation_helpers.core.flags import FLAG_RULE, SAFE_LABEL
from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.export.onnx import ExportRefused, export_model
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.folder import (
    CLASSIFIER_JSON,
    MODEL_CARD,
    MODEL_INT8_ONNX,
    MODEL_ONNX,
    THRESHOLDS_JSON,
    TOKENIZER_JSON,
    check_empty_output,
)

EXPORT_DIR = "export"  # the model's exported folder, inside its store folder
# What the archive carries from the exported folder; thresholds.json comes from the store.
ARCHIVE_FILES = (MODEL_ONNX, MODEL_INT8_ONNX, TOKENIZER_JSON, CLASSIFIER_JSON, MODEL_CARD)
ARCHIVE_MEDIA_TYPE = "application/gzip"
# ONNX weights barely compress (about 7%): level 1 keeps the archive's build time small.
ARCHIVE_COMPRESSLEVEL = 1
_EXPORTING = threading.Lock()  # one on-demand export at a time in this process


def _store(store: Store | str | os.PathLike) -> Store:
    return store if isinstance(store, Store) else Store(store)


def finished_model(
    store: Store | str | os.PathLike, model_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model record, job document)`` of a finished model of the store.

    Raises :class:`ExportRefused` for an unknown model, one whose job has not succeeded, or one
    whose folder holds no saved classifier."""
    store = _store(store)
    record = store.get_model(model_id)
    if record is None:
        known = [m["id"] for m in store.list_models()][:5]
        raise ExportRefused(
            f"no model {model_id!r} in the factory store {store.root} (has {known})"
        )
    job_row = store.get_job(record["job_id"]) or {}
    job = dict(job_row.get("doc") or {}, id=record["job_id"], status=job_row.get("status"))
    if job["status"] != SUCCESS:
        raise ExportRefused(
            f"model {model_id} is not finished: its job {record['job_id']} is "
            f"{job['status']}; export once the job has succeeded"
        )
    if not (Path(record["path"]) / CHECKPOINT_JSON).is_file():
        raise ExportRefused(
            f"{record['path']} holds no finished model ({CHECKPOINT_JSON} is written last, when "
            "training has saved everything): wait for the job to succeed, or check the store"
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
    }


def export_from_store(
    store_dir: Store | str | os.PathLike,
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
    :func:`~moderation_helpers.export.onnx.export_model` (the job comes from the store). Without
    ``thresholds``, the thresholds published to the factory go into the folder, if any."""
    from moderation_helpers.classifier.checkpoint import load_model

    record, job = finished_model(store_dir, model_id)
    check_empty_output(out_dir)  # before the model loads: a refusal should be quick
    return export_model(
        load_model(record["path"], device="cpu", precision="fp32"),
        out_dir,
        int8=int8,
        model_id=model_id,
        thresholds=thresholds if thresholds is not None else published_thresholds(record),
        job=job,
        evaluation=evaluation,
        summary=summary,
    )


def exported_folder(store: Store, model_id: str) -> Path:
    """The model's exported folder (fp32 and int8, no thresholds), ``<model dir>/export``;
    exported now when missing. Raises :class:`ExportRefused` for an unknown or unfinished
    model."""
    from moderation_helpers.classifier.checkpoint import load_model

    record, job = finished_model(store, model_id)
    folder = store.model_dir(record["job_id"]) / EXPORT_DIR
    with _EXPORTING:
        if (folder / CLASSIFIER_JSON).is_file():  # written whole, by one rename
            return folder
        if folder.exists():  # an empty leftover: export_model wants it absent or empty
            shutil.rmtree(folder)
        classifier = load_model(record["path"], device="cpu", precision="fp32")
        return export_model(classifier, folder, int8=True, model_id=model_id, job=job)


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.raw.write(view)
        self.sha256.update(view)
        self.size += view.nbytes
        return view.nbytes


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def write_folder_archive(
    folder: str | os.PathLike, out: BinaryIO, *, thresholds: Mapping[str, Any] | None = None
) -> str:
    """Write the model folder as one flat tar.gz into ``out``: the files of
    :data:`ARCHIVE_FILES` it holds, and ``thresholds`` as ``thresholds.json`` when given.
    Returns the archive's SHA-256 (hex), computed while writing."""
    folder = Path(folder)
    if not (folder / CLASSIFIER_JSON).is_file():
        raise ExportRefused(f"{folder} is not an exported model folder (no {CLASSIFIER_JSON})")
    writer = _HashingWriter(out)
    with tarfile.open(
        fileobj=writer, mode="w:gz", compresslevel=ARCHIVE_COMPRESSLEVEL, format=tarfile.PAX_FORMAT
    ) as tar:
        for name in ARCHIVE_FILES:
            if (folder / name).is_file():
                tar.add(folder / name, arcname=name, recursive=False, filter=_plain)
        if thresholds is not None:
            data = json_text(dict(thresholds)).encode("utf-8")
            info = _plain(tarfile.TarInfo(THRESHOLDS_JSON))
            info.size = len(data)
            info.mtime = int((folder / CLASSIFIER_JSON).stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    return writer.sha256.hexdigest()

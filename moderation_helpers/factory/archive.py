"""One model folder as one archive, for ``GET /v1/fine_tuning/models/{id}/folder`` (05_deploy,
``moderation-factory export --server``): a flat tar.gz of the exported folder's files and the
thresholds published to the factory, hashed (SHA-256) while it is written."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from moderation_helpers.core.files import json_text
from moderation_helpers.export.onnx import ExportRefused
from moderation_helpers.model.folder import (
    CLASSIFIER_JSON,
    MODEL_CARD,
    MODEL_INT8_ONNX,
    MODEL_ONNX,
    THRESHOLDS_JSON,
    TOKENIZER_JSON,
)

# What the archive carries from the exported folder; thresholds.json comes from the store.
ARCHIVE_FILES = (MODEL_ONNX, MODEL_INT8_ONNX, TOKENIZER_JSON, CLASSIFIER_JSON, MODEL_CARD)
ARCHIVE_MEDIA_TYPE = "application/gzip"
# ONNX weights barely compress (about 7%): level 1 keeps the archive's build time small.
ARCHIVE_COMPRESSLEVEL = 1


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

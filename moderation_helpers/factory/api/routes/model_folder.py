"""``GET /v1/fine_tuning/models/{id}/folder`` (a local extension; Mistral's API has no such
route, since it hands out no weights): the model's exported folder as one ``tar.gz`` archive,
so that 05_deploy and ``moderation-factory export --server`` deploy a model through the API,
from a factory on any store or host.

The archive is flat: ``model.onnx``, ``model.int8.onnx``, ``tokenizer.json``,
``classifier.json``, ``README.md`` (the model card), and ``thresholds.json`` when thresholds
were published for the model (``PUT .../thresholds``). The folder is exported the first time it
is asked for (a few seconds to a minute) and kept beside the weights. The archive is built into
a temporary file of the store while its SHA-256 is computed, then streamed from disk with
``Content-Length`` and ``X-Archive-SHA256``; the client checks both before extracting.

tar.gz rather than zip: Python's ``tarfile`` writes it as a stream through a hashing writer, and
extracts with the ``data`` filter (no absolute paths, no ``..``, no links out, no devices).

404 for an unknown model, 409 for one whose job has not succeeded (or holds no saved weights).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from moderation_helpers.core.folder_route import ARCHIVE_SHA256_HEADER, FOLDER_PATH
from moderation_helpers.export.onnx import ExportRefused
from moderation_helpers.factory.api.routes.deps import StoreDep
from moderation_helpers.factory.api.routes.models import model_or_404
from moderation_helpers.factory.archive import ARCHIVE_MEDIA_TYPE, write_folder_archive
from moderation_helpers.factory.exports import exported_folder, published_thresholds

router = APIRouter(prefix="/v1/fine_tuning/models", tags=["fine-tuned models"])


def archive_name(model_id: str) -> str:
    """The archive's file name: the model id, with ``_`` for ``:``."""
    return model_id.replace(":", "_").replace("/", "_") + ".tar.gz"


# A plain def: FastAPI runs it in its thread pool, so an export or a build blocks no request.
@router.get(FOLDER_PATH.removeprefix(router.prefix), response_class=FileResponse)
def get_model_folder(store: StoreDep, model_id: str) -> FileResponse:
    record = model_or_404(store, model_id)
    try:
        folder = exported_folder(store, model_id)
    except ExportRefused as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    # In the store (not /tmp, often memory), under incoming/: a restart clears what a crash left.
    fd, name = tempfile.mkstemp(prefix="folder-", suffix=".tar.gz", dir=store.root / "incoming")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = write_folder_archive(folder, out, thresholds=published_thresholds(record))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=ARCHIVE_MEDIA_TYPE,
        filename=archive_name(model_id),
        headers={ARCHIVE_SHA256_HEADER: digest},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )

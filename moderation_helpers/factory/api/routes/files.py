"""``/v1/files``: upload, list, get, download and delete training files; expiring signed URLs.

``GET /v1/files/{id}/url`` answers a URL to ``/v1/files/{id}/signed-content`` carrying its
expiry (Unix seconds) and an HMAC-SHA256 of ``file id + expiry`` under the store's secret key.
That route is the only one outside the token check (``signed_router``): the signature is its
credential, so a URL can be handed to a tool that holds no token, until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from moderation_helpers.factory.api.responses import MIMETYPE, file_out, invalid, not_found
from moderation_helpers.factory.api.routes.deps import Page, PageSize, StoreDep
from moderation_helpers.factory.store.db import Store

router = APIRouter(prefix="/v1/files", tags=["files"])
# The spec's enums for the list filters.
SampleType = Literal["pretrain", "instruct", "batch_request", "batch_result", "batch_error"]
Source = Literal["upload", "repository", "mistral"]
FilePurpose = Literal["fine-tune", "batch", "ocr"]
MimeType = Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+*-]+$", max_length=255)]
signed_router = APIRouter(prefix="/v1/files", tags=["files"])

MAX_URL_HOURS = 24 * 7
VISIBILITIES = ("workspace", "user")


@router.post("")
async def upload_file(
    store: StoreDep,
    request: Request,
    file: UploadFile = File(...),  # noqa: B008 (FastAPI's declaration style)
    purpose: str = Form("fine-tune"),
    expiry: int | None = Form(None),
    visibility: str | None = Form(None),
) -> dict[str, Any]:
    # FastAPI reads an empty form field as an absent one (its default): check what was sent.
    form = await request.form()
    purpose, visibility = form.get("purpose", purpose), form.get("visibility", visibility)
    if purpose != "fine-tune":
        raise invalid(["purpose"], "the local factory only takes purpose 'fine-tune'", purpose)
    if visibility is not None and visibility not in VISIBILITIES:
        raise invalid(["visibility"], f"expected one of {list(VISIBILITIES)}", visibility)
    # The body's size was checked as it streamed in (limits.BodyLimitMiddleware); the spooled
    # upload is copied into the store in a thread, never held whole in memory.
    if not file.size:
        raise invalid(["file"], "empty file")
    name = file.filename or "upload.jsonl"
    return file_out(await run_in_threadpool(store.add_file, name, file.file, purpose))


@router.get("")
def list_files(
    store: StoreDep,
    page: Page = 0,
    page_size: PageSize = 100,
    include_total: bool = True,
    sample_type: Annotated[list[SampleType] | None, Query()] = None,
    source: Annotated[list[Source] | None, Query()] = None,
    search: Annotated[str | None, Query(max_length=1_000)] = None,
    purpose: FilePurpose | None = None,
    mimetypes: Annotated[list[MimeType] | None, Query()] = None,
) -> dict[str, Any]:
    # Every upload here is an "instruct" JSONL "upload": other filters match nothing.
    if (
        (sample_type and "instruct" not in sample_type)
        or (source and "upload" not in source)
        or (mimetypes and MIMETYPE not in mimetypes)
    ):
        records, total = [], 0
    else:
        records, total = store.list_files(page, page_size, purpose=purpose, search=search or "")
    data = [file_out(r) for r in records]
    return {"data": data, "object": "list", "total": total if include_total else None}


def _file_or_404(store: Store, file_id: str) -> dict[str, Any]:
    record = store.get_file(file_id)
    if record is None:
        raise not_found("file", file_id)
    return record


@router.get("/{file_id}")
def get_file(store: StoreDep, file_id: str) -> dict[str, Any]:
    return file_out(_file_or_404(store, file_id), with_deleted=True)


@router.delete("/{file_id}")
def delete_file(store: StoreDep, file_id: str) -> dict[str, Any]:
    if not store.delete_file(file_id):
        raise not_found("file", file_id)
    return {"id": file_id, "object": "file", "deleted": True}


def _download(record: dict[str, Any]) -> FileResponse:
    # The bytes as uploaded; the SDK's files.download returns this response's body.
    return FileResponse(
        Path(record["path"]), media_type="application/octet-stream", filename=record["filename"]
    )


@router.get("/{file_id}/content")
def download_file(store: StoreDep, file_id: str) -> FileResponse:
    return _download(_file_or_404(store, file_id))


def _signature(store: Store, file_id: str, expires: int) -> str:
    message = f"{file_id}:{expires}".encode()
    return hmac.new(store.url_key, message, hashlib.sha256).hexdigest()


@router.get("/{file_id}/url")
def get_signed_url(
    store: StoreDep,
    request: Request,
    file_id: str,
    expiry: Annotated[int, Query(ge=1, le=MAX_URL_HOURS, description="hours")] = 24,
) -> dict[str, Any]:
    _file_or_404(store, file_id)
    expires = int(time.time()) + expiry * 3600
    query = urlencode({"expires": expires, "signature": _signature(store, file_id, expires)})
    return {"url": f"{str(request.base_url).rstrip('/')}/v1/files/{file_id}/signed-content?{query}"}


@signed_router.get("/{file_id}/signed-content", include_in_schema=False)
def signed_content(store: StoreDep, file_id: str, expires: int, signature: str) -> FileResponse:
    """The file's bytes for whoever holds an unexpired URL from ``/url`` (no token needed)."""
    expected = _signature(store, file_id, expires)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise HTTPException(status_code=403, detail="invalid signature for this file URL")
    if expires < time.time():
        raise HTTPException(status_code=403, detail="this file URL has expired")
    return _download(_file_or_404(store, file_id))

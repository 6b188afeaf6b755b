"""``/v1/files``: upload, list, get and delete training files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from moderation_helpers.factory.responses import file_out, invalid, not_found
from moderation_helpers.factory.routes.deps import StoreDep

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("")
async def upload_file(
    store: StoreDep,
    file: UploadFile = File(...),  # noqa: B008 (FastAPI's declaration style)
    purpose: str = Form("fine-tune"),
    expiry: int | None = Form(None),
    visibility: str | None = Form(None),
) -> dict[str, Any]:
    if purpose != "fine-tune":
        raise invalid(["purpose"], "the local factory only takes purpose 'fine-tune'", purpose)
    # The body's size was checked as it streamed in (limits.BodyLimitMiddleware); the spooled
    # upload is copied into the store in a thread, never held whole in memory.
    if not file.size:
        raise invalid(["file"], "empty file")
    name = file.filename or "upload.jsonl"
    return file_out(await run_in_threadpool(store.add_file, name, file.file, purpose))


@router.get("")
def list_files(store: StoreDep, page: int = 0, page_size: int = 100) -> dict[str, Any]:
    records, total = store.list_files(page, page_size)
    return {"data": [file_out(r) for r in records], "object": "list", "total": total}


@router.get("/{file_id}")
def get_file(store: StoreDep, file_id: str) -> dict[str, Any]:
    record = store.get_file(file_id)
    if record is None:
        raise not_found("file", file_id)
    return file_out(record, with_deleted=True)


@router.delete("/{file_id}")
def delete_file(store: StoreDep, file_id: str) -> dict[str, Any]:
    if not store.delete_file(file_id):
        raise not_found("file", file_id)
    return {"id": file_id, "object": "file", "deleted": True}

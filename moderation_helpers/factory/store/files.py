"""Uploaded training files: ``files/<id>/<name>`` on disk, one row each in the ``files`` table."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from moderation_helpers.factory.store.sqlite import Database, now


class FileRecords(Database):
    """The store's uploads (a part of :class:`~moderation_helpers.factory.store.db.Store`)."""

    def add_file(self, filename: str, content: bytes | BinaryIO, purpose: str) -> dict[str, Any]:
        """Store an upload (bytes, or a binary file read in chunks) and return its record.

        The bytes go to ``incoming/`` first and are moved into ``files/`` whole before the row
        is written: a server killed midway leaves no half file listed, and ``Store.recover``
        removes what it left unrecorded.
        """
        file_id = str(uuid.uuid4())
        name = Path(filename).name or "upload.jsonl"
        path = self.root / "files" / file_id / name
        stream = io.BytesIO(content) if isinstance(content, bytes) else content
        size, num_lines = _copy_in(stream, self.root / "incoming" / file_id, path)
        try:
            with self._txn() as conn:
                conn.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (file_id, name, size, now(), purpose, num_lines, str(path)),
                )
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        return self.get_file(file_id)  # type: ignore[return-value]

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        """A file's record, or None when unknown or deleted."""
        rows = self._query("SELECT * FROM files WHERE id=? AND deleted=0", (file_id,))
        return dict(rows[0]) if rows else None

    def list_files(
        self, page: int = 0, page_size: int = 100, *, purpose: str | None = None, search: str = ""
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of files (of ``purpose``, whose name contains ``search``), newest first,
        and the total count."""
        rows, total = self._page(
            "SELECT * FROM files",
            "deleted=0 AND (? IS NULL OR purpose=?) AND instr(filename, ?) > 0",
            (purpose, purpose, search),
            "created_at DESC, rowid DESC",
            page,
            page_size,
        )
        return [dict(r) for r in rows], total

    def delete_file(self, file_id: str) -> bool:
        """Delete a file's content and mark it deleted; False when unknown (or already deleted:
        of two concurrent deletes, one wins)."""
        with self._txn() as conn:
            row = conn.execute(
                "SELECT path FROM files WHERE id=? AND deleted=0", (file_id,)
            ).fetchone()
            if row is None:
                return False
            conn.execute("UPDATE files SET deleted=1 WHERE id=?", (file_id,))
        shutil.rmtree(Path(row["path"]).parent, ignore_errors=True)
        return True


def _copy_in(stream: BinaryIO, part: Path, path: Path) -> tuple[int, int]:
    """Copy ``stream`` to ``part`` in chunks (synced), then move it to ``path``; returns its
    size in bytes and its number of lines (a last line without newline counts)."""
    size = newlines = 0
    last = b""
    try:
        with part.open("wb") as out:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
            out.flush()
            os.fsync(out.fileno())
        path.parent.mkdir(parents=True)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        shutil.rmtree(path.parent, ignore_errors=True)
        raise
    return size, newlines + (1 if size and last != b"\n" else 0)

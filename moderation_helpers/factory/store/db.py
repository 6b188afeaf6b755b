"""The factory's state: SQLite metadata plus folders for uploads and model weights.

Layout of a store directory::

    factory.db        files, jobs, events, checkpoints, models (SQLite, WAL)
    files/<id>/<name> uploaded training data
    incoming/         uploads being copied in (moved into files/ whole, then recorded)
    jobs/<id>/        a training run's log and result
    models/<job id>/  fine-tuned weights (the trainer's out_dir)
    server.json       url, pid and store of the running server (removed at clean shutdown)
    server.log        the server's log

The server and its training process use the database at the same time, so every operation is
one short transaction on its own connection (WAL lets readers go on while one writes).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

SERVER_JSON = "server.json"
SERVER_LOG = "server.log"

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, filename TEXT NOT NULL, bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL, purpose TEXT NOT NULL, num_lines INTEGER,
    path TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    created_at INTEGER NOT NULL, modified_at INTEGER NOT NULL, status TEXT NOT NULL,
    validated INTEGER NOT NULL DEFAULT 0, start_requested INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, name TEXT NOT NULL,
    created_at INTEGER NOT NULL, data TEXT);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, step_number INTEGER NOT NULL,
    train_loss REAL, valid_loss REAL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, root TEXT NOT NULL, created INTEGER NOT NULL,
    targets TEXT NOT NULL, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS model_meta (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints (job_id);
"""


def now() -> int:
    """Unix seconds, the API's timestamp unit."""
    return int(time.time())


@dataclass
class JobEdit:
    """A job row opened for change inside one transaction (see :meth:`Store.edit_job`)."""

    id: str
    created_at: int
    status: str
    validated: bool
    start_requested: bool
    doc: dict[str, Any]
    new_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def set_status(self, status: str, message: str | None = None) -> None:
        """Change the status and record a ``status-updated`` event (with the reason, if any)."""
        self.status = status
        data: dict[str, Any] = {"status": status}
        if message:
            data["message"] = message
        self.new_events.append(("status-updated", data))


class Store:
    """Files, jobs, checkpoints and models of one factory, kept under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        for sub in ("files", "jobs", "models", "incoming"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "factory.db"
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('workspace', ?)", (secrets.token_hex(4),)
            )
            # Signs the expiring download URLs of files (GET /v1/files/{id}/url).
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('url_key', ?)", (secrets.token_hex(32),)
            )

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # autocommit mode; _txn opens explicit transactions. The busy timeout lets the server
        # and the training process wait for each other instead of failing.
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        conn = self._connect()
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    @property
    def workspace(self) -> str:
        """8 hex digits fixed per store: the workspace part of fine-tuned model ids."""
        return self._query("SELECT value FROM meta WHERE key='workspace'")[0]["value"]

    @property
    def url_key(self) -> bytes:
        """The store's secret for signing file download URLs (never sent to a client)."""
        return self._query("SELECT value FROM meta WHERE key='url_key'")[0]["value"].encode()

    def job_dir(self, job_id: str) -> Path:
        """Folder for one job's training log and result."""
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def model_dir(self, job_id: str) -> Path:
        """Folder the trainer writes a job's weights into."""
        return self.root / "models" / job_id

    # -- files ------------------------------------------------------------------------------
    def add_file(self, filename: str, content: bytes | BinaryIO, purpose: str) -> dict[str, Any]:
        """Store an upload (bytes, or a binary file read in chunks) and return its record.

        The bytes go to ``incoming/`` first and are moved into ``files/`` whole before the row
        is written: a server killed midway leaves no half file listed, and :meth:`recover`
        removes what it left unrecorded.
        """
        file_id = str(uuid.uuid4())
        name = Path(filename).name or "upload.jsonl"
        part = self.root / "incoming" / file_id
        path = self.root / "files" / file_id / name
        size = newlines = 0
        last = b""
        stream = io.BytesIO(content) if isinstance(content, bytes) else content
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
        num_lines = newlines + (1 if size and last != b"\n" else 0)
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
    ) -> tuple[list[dict], int]:
        """One page of files (of ``purpose``, whose name contains ``search``), newest first,
        and the total count."""
        where = "deleted=0 AND (? IS NULL OR purpose=?) AND instr(filename, ?) > 0"
        args = (purpose, purpose, search)
        total = self._query(f"SELECT COUNT(*) AS n FROM files WHERE {where}", args)[0]["n"]
        if page * page_size >= total:  # past the end (and no offset too large for SQLite)
            return [], total
        rows = self._query(
            f"SELECT * FROM files WHERE {where} ORDER BY created_at DESC, rowid DESC "
            "LIMIT ? OFFSET ?",
            (*args, page_size, page * page_size),
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

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, doc: dict[str, Any], start_requested: bool) -> str:
        """Insert a QUEUED job (awaiting validation) with its first event; returns its id."""
        job_id = str(uuid.uuid4())
        ts = now()
        with self._txn() as conn:
            conn.execute(
                "INSERT INTO jobs (id, created_at, modified_at, status, validated, "
                "start_requested, doc) VALUES (?, ?, ?, 'QUEUED', 0, ?, ?)",
                (job_id, ts, ts, int(start_requested), json.dumps(doc)),
            )
            conn.execute(
                "INSERT INTO events (job_id, name, created_at, data) VALUES (?, ?, ?, ?)",
                (job_id, "status-updated", ts, json.dumps({"status": "QUEUED"})),
            )
        return job_id

    @contextmanager
    def edit_job(self, job_id: str) -> Iterator[JobEdit | None]:
        """Open a job for change: what the caller sets on the edit is written at exit.

        The whole read-decide-write runs in one IMMEDIATE transaction, so a cancel from the API
        and a status change from the worker never overwrite each other.
        """
        with self._txn() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                yield None
                return
            edit = JobEdit(
                id=row["id"],
                created_at=row["created_at"],
                status=row["status"],
                validated=bool(row["validated"]),
                start_requested=bool(row["start_requested"]),
                doc=json.loads(row["doc"]),
            )
            row_doc = json.dumps(edit.doc)
            before = (edit.status, edit.validated, edit.start_requested, row_doc)
            yield edit
            after = (edit.status, edit.validated, edit.start_requested, json.dumps(edit.doc))
            if after == before and not edit.new_events:
                return
            ts = now()
            conn.execute(
                "UPDATE jobs SET status=?, validated=?, start_requested=?, doc=?, modified_at=? "
                "WHERE id=?",
                (
                    edit.status,
                    int(edit.validated),
                    int(edit.start_requested),
                    json.dumps(edit.doc),
                    ts,
                    job_id,
                ),
            )
            conn.executemany(
                "INSERT INTO events (job_id, name, created_at, data) VALUES (?, ?, ?, ?)",
                [(job_id, name, ts, json.dumps(data)) for name, data in edit.new_events],
            )

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """A job row as a dict (``doc`` parsed) with its ``events`` and ``checkpoints``."""
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        job = _job_row(rows[0])
        job["events"] = [
            {"name": r["name"], "created_at": r["created_at"], "data": json.loads(r["data"])}
            for r in self._query("SELECT * FROM events WHERE job_id=? ORDER BY seq", (job_id,))
        ]
        job["checkpoints"] = [
            dict(r)
            for r in self._query(
                "SELECT step_number, train_loss, valid_loss, created_at FROM checkpoints "
                "WHERE job_id=? ORDER BY seq",
                (job_id,),
            )
        ]
        return job

    def job_status(self, job_id: str) -> str | None:
        """Just the status: cheap enough for the training process to ask every step."""
        rows = self._query("SELECT status FROM jobs WHERE id=?", (job_id,))
        return rows[0]["status"] if rows else None

    def list_jobs(self, where: str = "", args: tuple = ()) -> list[dict[str, Any]]:
        """Jobs, newest first, filtered by an SQL condition on the jobs table."""
        sql = "SELECT * FROM jobs" + (f" WHERE {where}" if where else "") + " ORDER BY seq DESC"
        return [_job_row(r) for r in self._query(sql, args)]

    def next_job(self, *, validated: bool) -> str | None:
        """Oldest QUEUED job awaiting validation (``validated=False``) or training (True)."""
        rows = self._query(
            "SELECT id FROM jobs WHERE status='QUEUED' AND validated=? ORDER BY seq LIMIT 1",
            (int(validated),),
        )
        return rows[0]["id"] if rows else None

    def add_checkpoint(
        self, job_id: str, step_number: int, train_loss: float | None, valid_loss: float | None
    ) -> None:
        """Append one checkpoint of a running job."""
        with self._txn() as conn:
            conn.execute(
                "INSERT INTO checkpoints (job_id, step_number, train_loss, valid_loss, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, step_number, train_loss, valid_loss, now()),
            )

    def recover(self) -> list[str]:
        """Settle jobs a dead server left mid-flight; returns their ids.

        VALIDATING goes back to QUEUED (validation is cheap to redo); RUNNING fails with the
        reason; CANCELLATION_REQUESTED becomes CANCELLED (its training process is gone).
        """
        settled = []
        stuck = self.list_jobs("status IN ('VALIDATING', 'RUNNING', 'CANCELLATION_REQUESTED')")
        for job in stuck:
            with self.edit_job(job["id"]) as edit:
                if edit is None:
                    continue
                if edit.status == "VALIDATING":
                    edit.set_status("QUEUED", "validation interrupted by a server restart")
                elif edit.status == "RUNNING":
                    edit.set_status(
                        "FAILED", "the factory server stopped while this job was running"
                    )
                elif edit.status == "CANCELLATION_REQUESTED":
                    edit.set_status("CANCELLED")
                settled.append(edit.id)
        self._remove_unrecorded()
        return settled

    def _remove_unrecorded(self) -> None:
        """Delete what a killed server left on disk without a record: uploads being copied in,
        files without a row (or deleted), weights of jobs that did not produce a model."""
        for leftover in (self.root / "incoming").iterdir():
            _remove(leftover)
        live_files = {r["id"] for r in self._query("SELECT id FROM files WHERE deleted=0")}
        for folder in (self.root / "files").iterdir():
            if folder.name not in live_files:
                _remove(folder)
        model_paths = {Path(r["path"]).name for r in self._query("SELECT path FROM models")}
        busy = {r["id"] for r in self._query("SELECT id FROM jobs WHERE status='RUNNING'")}
        for folder in (self.root / "models").iterdir():
            if folder.name not in model_paths and folder.name not in busy:
                _remove(folder)

    # -- models -----------------------------------------------------------------------------
    def add_model(
        self, model_id: str, job_id: str, root: str, targets: list[dict], path: Path
    ) -> None:
        """Register a fine-tuned model whose weights are in ``path``."""
        with self._txn() as conn:
            conn.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                (model_id, job_id, root, now(), json.dumps(targets), str(path)),
            )

    _MODEL_SELECT = (
        "SELECT models.*, model_meta.doc AS meta FROM models "
        "LEFT JOIN model_meta ON model_meta.id = models.id"
    )

    def get_model(self, model_id: str) -> dict[str, Any] | None:
        """A model's record (``targets`` and ``meta`` parsed), or None when unknown."""
        rows = self._query(f"{self._MODEL_SELECT} WHERE models.id=?", (model_id,))
        return _model_row(rows[0]) if rows else None

    def list_models(self) -> list[dict[str, Any]]:
        """All fine-tuned models, newest first."""
        rows = self._query(f"{self._MODEL_SELECT} ORDER BY created DESC, models.rowid DESC")
        return [_model_row(r) for r in rows]

    def update_model_meta(self, model_id: str, **changes: Any) -> dict[str, Any] | None:
        """Merge ``changes`` into a model's editable metadata (name, description, archived,
        thresholds); returns the updated record, or None when the model is unknown."""
        with self._txn() as conn:
            if conn.execute("SELECT 1 FROM models WHERE id=?", (model_id,)).fetchone() is None:
                return None
            row = conn.execute("SELECT doc FROM model_meta WHERE id=?", (model_id,)).fetchone()
            doc = {**(json.loads(row["doc"]) if row else {}), **changes}
            conn.execute(
                "INSERT OR REPLACE INTO model_meta VALUES (?, ?)", (model_id, json.dumps(doc))
            )
        return self.get_model(model_id)

    def delete_model(self, model_id: str) -> bool:
        """Forget a model and delete its weights; False when unknown (or already deleted: of two
        concurrent deletes, one wins)."""
        with self._txn() as conn:
            row = conn.execute("SELECT path FROM models WHERE id=?", (model_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM models WHERE id=?", (model_id,))
            conn.execute("DELETE FROM model_meta WHERE id=?", (model_id,))
        shutil.rmtree(row["path"], ignore_errors=True)
        return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _job_row(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["doc"] = json.loads(job["doc"])
    job["validated"] = bool(job["validated"])
    job["start_requested"] = bool(job["start_requested"])
    return job


def _model_row(row: sqlite3.Row) -> dict[str, Any]:
    model = dict(row)
    model["targets"] = json.loads(model["targets"])
    model["meta"] = json.loads(model["meta"]) if model.get("meta") else {}
    return model

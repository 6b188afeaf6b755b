"""Fine-tuning jobs: their rows (the API's job document in ``doc``), events and checkpoints."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moderation_helpers.factory.store.sqlite import Database, now

# A job in one of these was left mid-flight if the server that ran it is gone.
UNSETTLED_STATUSES = ("VALIDATING", "RUNNING", "CANCELLATION_REQUESTED")


@dataclass
class JobEdit:
    """A job row opened for change inside one transaction (see :meth:`JobRecords.edit_job`)."""

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


@dataclass(frozen=True)
class JobFilter:
    """What ``GET /v1/fine_tuning/jobs`` asks for: each filter given (not None) must match,
    ``created_*`` in Unix seconds (bounds included); then one page, newest job first."""

    model: str | None = None
    status: str | None = None
    suffix: str | None = None
    created_after: int | None = None
    created_before: int | None = None
    wandb_project: str | None = None  # a W&B integration of the job has this project
    wandb_name: str | None = None
    page: int = 0
    page_size: int = 100

    def where(self) -> tuple[str, tuple[Any, ...]]:
        """The SQL condition on the ``jobs`` table and its arguments."""
        conditions, args = [], []
        for sql, value in (
            ("status = ?", self.status),
            ("json_extract(doc, '$.model') = ?", self.model),
            ("json_extract(doc, '$.suffix') = ?", self.suffix),
            ("created_at >= ?", self.created_after),
            ("created_at <= ?", self.created_before),
            (_integration_has("project"), self.wandb_project),
            (_integration_has("name"), self.wandb_name),
        ):
            if value is not None:
                conditions.append(sql)
                args.append(value)
        return " AND ".join(conditions), tuple(args)


def _integration_has(key: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM json_each(json_extract(doc, '$.integrations')) "
        f"WHERE json_extract(value, '$.{key}') = ?)"
    )


class JobRecords(Database):
    """The store's jobs (a part of :class:`~moderation_helpers.factory.store.db.Store`)."""

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
            job = _job_row(row)
            edit = JobEdit(
                **{k: job[k] for k in ("id", "created_at", "status", "validated", "doc")},
                start_requested=job["start_requested"],
            )
            before = _written(edit)
            yield edit
            if _written(edit) == before and not edit.new_events:
                return
            ts = now()
            conn.execute(
                "UPDATE jobs SET status=?, validated=?, start_requested=?, doc=?, modified_at=? "
                "WHERE id=?",
                (*_written(edit), ts, job_id),
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

    def list_jobs(self, wanted: JobFilter | None = None) -> tuple[list[dict[str, Any]], int]:
        """One page of the jobs ``wanted`` selects (all by default; rows without events or
        checkpoints), newest first, and how many it selects in all."""
        wanted = wanted or JobFilter()
        where, args = wanted.where()
        rows, total = self._page(
            "SELECT * FROM jobs", where, args, "seq DESC", wanted.page, wanted.page_size
        )
        return [_job_row(r) for r in rows], total

    def unsettled_jobs(self) -> list[str]:
        """Ids of the jobs in a status that needs a live server (validating, training)."""
        marks = ", ".join("?" * len(UNSETTLED_STATUSES))
        sql = f"SELECT id FROM jobs WHERE status IN ({marks}) ORDER BY seq DESC"
        return [r["id"] for r in self._query(sql, UNSETTLED_STATUSES)]

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


def _written(edit: JobEdit) -> tuple[str, int, int, str]:
    """The columns an edit may change, as they are stored."""
    return (edit.status, int(edit.validated), int(edit.start_requested), json.dumps(edit.doc))


def _job_row(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    job["doc"] = json.loads(job["doc"])
    job["validated"] = bool(job["validated"])
    job["start_requested"] = bool(job["start_requested"])
    return job

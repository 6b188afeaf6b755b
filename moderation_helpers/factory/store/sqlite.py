"""The store's SQLite database: schema, connections and transactions.

The server and its training process use the database at the same time, so every operation is
one short transaction on its own connection (WAL lets readers go on while one writes).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


class Database:
    """The SQLite file ``factory.db`` of a store folder, created with its schema if new."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
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

    def _page(
        self, select: str, where: str, args: tuple, order: str, page: int, page_size: int
    ) -> tuple[list[sqlite3.Row], int]:
        """One page of ``select ... WHERE where ORDER BY order`` and the count of all rows."""
        where = where or "1"
        total = self._query(f"SELECT COUNT(*) AS n FROM ({select} WHERE {where})", args)[0]["n"]
        if page * page_size >= total:  # past the end (and no offset too large for SQLite)
            return [], total
        rows = self._query(
            f"{select} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            (*args, page_size, page * page_size),
        )
        return rows, total

    @property
    def workspace(self) -> str:
        """8 hex digits fixed per store: the workspace part of fine-tuned model ids."""
        return self._query("SELECT value FROM meta WHERE key='workspace'")[0]["value"]

    @property
    def url_key(self) -> bytes:
        """The store's secret for signing file download URLs (never sent to a client)."""
        return self._query("SELECT value FROM meta WHERE key='url_key'")[0]["value"].encode()

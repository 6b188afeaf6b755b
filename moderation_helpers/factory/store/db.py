"""The factory's state: SQLite metadata plus folders for uploads and model weights.

Layout of a store directory::

    factory.db        files, jobs, events, checkpoints, models (SQLite, WAL)
    files/<id>/<name> uploaded training data
    incoming/         uploads being copied in (moved into files/ whole, then recorded)
    jobs/<id>/        a training run's log and result
    models/<job id>/  fine-tuned weights (the trainer's out_dir)
    server.json       url, pid and store of the running server (removed at clean shutdown)
    server.log        the server's log

:class:`Store` is the one object callers use; its parts live by what they hold:
:mod:`.sqlite` (schema, transactions), :mod:`.files`, :mod:`.jobs`, :mod:`.models`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from moderation_helpers.factory.store.files import FileRecords
from moderation_helpers.factory.store.jobs import JobRecords
from moderation_helpers.factory.store.models import ModelRecords

SERVER_JSON = "server.json"
SERVER_LOG = "server.log"


class Store(FileRecords, JobRecords, ModelRecords):
    """Files, jobs, checkpoints and models of one factory, kept under ``root``."""

    def __init__(self, root: str | Path):
        root = Path(root).expanduser().resolve()
        for sub in ("files", "jobs", "models", "incoming"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        super().__init__(root)

    def job_dir(self, job_id: str) -> Path:
        """Folder for one job's training log and result."""
        path = self.root / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def model_dir(self, job_id: str) -> Path:
        """Folder the trainer writes a job's weights into."""
        return self.root / "models" / job_id

    def recover(self) -> list[str]:
        """Settle jobs a dead server left mid-flight; returns their ids.

        VALIDATING goes back to QUEUED (validation is cheap to redo); RUNNING fails with the
        reason; CANCELLATION_REQUESTED becomes CANCELLED (its training process is gone).
        """
        settled = []
        for job_id in self.unsettled_jobs():
            with self.edit_job(job_id) as edit:
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)

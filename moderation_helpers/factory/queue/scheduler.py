"""The job queue of one server, outside the request path: validation, training, cancellation,
crash → FAILED.

A :class:`Scheduler` runs two threads in the server process. The validator takes QUEUED jobs
that are not validated yet through :func:`~.validation.validate_job`. The supervisor takes
started jobs, one at a time, and trains each in a process of its own
(``python -m moderation_helpers.cli moderation-factory _train``, :mod:`.training`), stops it
on cancel, and settles the job when it exits. Every status change is one transaction
(:meth:`Store.edit_job`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.factory.queue.training import EXIT_CANCELLED, RESULT_JSON, TRAIN_LOG
from moderation_helpers.factory.queue.validation import validate_job
from moderation_helpers.factory.store.db import Store

log = logging.getLogger("moderation_helpers.factory")

KILL_GRACE_SECONDS = 5.0


@dataclass
class _Running:
    job_id: str
    process: subprocess.Popen
    terminated_at: float | None = None


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class Scheduler:
    """Validator and supervisor threads of one server; ``wake()`` after changing a job."""

    def __init__(self, store: Store, poll_seconds: float = 0.25):
        self.store = store
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = {"validate": threading.Event(), "train": threading.Event()}
        self._threads: list[threading.Thread] = []
        self.running: _Running | None = None

    def start(self) -> None:
        """Start both threads."""
        for name, loop in (("validate", self._validate_loop), ("train", self._train_loop)):
            thread = threading.Thread(target=loop, name=f"factory-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        for event in self._wake.values():
            event.set()

    def stop(self) -> None:
        """Stop the threads; a job still training is stopped and FAILED with that reason."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=3)  # daemon threads: a long validation is redone at restart
        running = self.running
        if running is not None:
            _terminate(running.process)
            with self.store.edit_job(running.job_id) as job:
                if job is not None and job.status == "RUNNING":
                    job.set_status(
                        "FAILED", "the factory server stopped while this job was running"
                    )
                elif job is not None and job.status == "CANCELLATION_REQUESTED":
                    job.set_status("CANCELLED")
            self.running = None

    def _sleep(self, name: str) -> None:
        self._wake[name].wait(self.poll_seconds)
        self._wake[name].clear()

    def _validate_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self.store.next_job(validated=False)
                if job_id is not None:
                    validate_job(self.store, job_id)
                    self._wake["train"].set()
                    continue
            except Exception:
                log.exception("validator")
            self._sleep("validate")

    def _train_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.running is None:
                    self._launch_next()
                else:
                    self._supervise(self.running)
            except Exception:
                log.exception("supervisor")
            self._sleep("train")

    def _launch_next(self) -> None:
        job_id = self.store.next_job(validated=True)
        if job_id is None:
            return
        with self.store.edit_job(job_id) as job:
            if job is None or job.status != "QUEUED" or not job.validated:
                return
            job.set_status("RUNNING")
        job_dir = self.store.job_dir(job_id)
        (job_dir / RESULT_JSON).unlink(missing_ok=True)
        with (job_dir / TRAIN_LOG).open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "moderation_helpers.cli", "moderation-factory", "_train"]
                + ["--store", str(self.store.root), "--job", job_id, "--parent", str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        log.info("job %s: training in process %d", job_id, process.pid)
        self.running = _Running(job_id, process)

    def _supervise(self, running: _Running) -> None:
        code = running.process.poll()
        status = self.store.job_status(running.job_id)
        if code is None:
            if status == "CANCELLATION_REQUESTED" and running.terminated_at is None:
                running.process.send_signal(signal.SIGTERM)
                running.terminated_at = time.monotonic()
            elif (
                running.terminated_at is not None
                and time.monotonic() - running.terminated_at > KILL_GRACE_SECONDS
            ):
                running.process.kill()
            return
        self.running = None
        self._finish(running.job_id, code)
        self._wake["train"].set()

    def _finish(self, job_id: str, code: int) -> None:
        """Settle a job whose training process has exited."""
        job_dir = self.store.job_dir(job_id)
        result_path = job_dir / RESULT_JSON
        job = self.store.get_job(job_id)
        model_id = None
        result: dict = {}
        if job and job["status"] == "RUNNING" and code == 0 and result_path.is_file():
            # Registered before the status changes, so a SUCCESS job's model always exists.
            doc = job["doc"]
            result = json.loads(result_path.read_text(encoding="utf-8"))
            model_id = result["fine_tuned_model"]  # named in training: its export records it
            self.store.add_model(
                model_id,
                job_id,
                doc["model"],
                doc["classifier_targets"],
                self.store.model_dir(job_id),
            )
        with self.store.edit_job(job_id) as edit:
            if edit is None or edit.status not in ("RUNNING", "CANCELLATION_REQUESTED"):
                return
            if model_id is not None and edit.status == "RUNNING":
                edit.doc["fine_tuned_model"] = model_id
                edit.doc["trained_tokens"] = result["trained_tokens"]
                edit.set_status(SUCCESS)
                return
            if edit.status == "CANCELLATION_REQUESTED" or code == EXIT_CANCELLED:
                edit.set_status("CANCELLED")
            else:
                tail = _log_tail(job_dir / TRAIN_LOG)
                edit.set_status("FAILED", f"training process exited with code {code}: {tail}")
        # Not a success: drop what the training wrote (and a model registered in a race).
        if model_id is not None:
            self.store.delete_model(model_id)
        shutil.rmtree(self.store.model_dir(job_id), ignore_errors=True)


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after a grace period; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

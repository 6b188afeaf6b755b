"""The job queue, outside the request path: validation, training, cancellation, crash → FAILED.

A :class:`Scheduler` runs two threads in the server process. The validator takes QUEUED jobs
that are not validated yet through VALIDATING to VALIDATED (or FAILED_VALIDATION), filling
what the API fills (targets, epochs, metadata). The supervisor takes started jobs, one at a
time, and trains each in a process of its own (``python -m moderation_helpers.factory _train``),
so that a crash in training fails that job and not the server, and a cancel can stop it at once.
The training process only appends checkpoints and writes ``result.json``; every status change
is made here or by the API, each in one transaction (:meth:`Store.edit_job`).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from moderation_helpers.core.conversation import frame_texts
from moderation_helpers.core.jsonl import JSONLValidationError, read_jsonl, validate_jsonl
from moderation_helpers.factory.store.db import Store

log = logging.getLogger("moderation_helpers.factory")

# The trainer module can be swapped (tests use a fake that fails or runs slowly on purpose).
TRAINER_ENV = "MODERATION_FACTORY_TRAINER"
DEFAULT_TRAINER = "moderation_helpers.classifier"
DEFAULT_TRAINING_STEPS = 100
RESULT_JSON = "result.json"
TRAIN_LOG = "train.log"
EXIT_CANCELLED = 3
# Training yields the CPU to classification requests when both want it (the server's inference
# thread keeps nice 0): requests keep their latency, training still finishes, a little later.
TRAINING_NICENESS = 5
KILL_GRACE_SECONDS = 5.0


def load_trainer() -> ModuleType:
    """The trainer module (``$MODERATION_FACTORY_TRAINER`` or the real one)."""
    return importlib.import_module(os.environ.get(TRAINER_ENV) or DEFAULT_TRAINER)


class DataProblem(Exception):
    """The job's data cannot be trained on; the message is shown as the job's reason."""


# -- validation ------------------------------------------------------------------------------
def _file_path(store: Store, file_id: str, role: str) -> tuple[Path, str]:
    record = store.get_file(file_id)
    if record is None:
        raise DataProblem(f"{role} file {file_id} does not exist (deleted?)")
    return Path(record["path"]), f"{record['filename']} (file {file_id})"


def _check(path: Path, label: str, allowed: dict[str, list[str]] | None):
    """validate_jsonl, with the error naming the uploaded file instead of the store's path."""
    try:
        return validate_jsonl(path, allowed)
    except JSONLValidationError as exc:
        shown = "; ".join(
            f"{label} line {p.line}, field '{p.field}': {p.message}" for p in exc.problems[:5]
        )
        more = f" (and {len(exc.problems) - 5} more)" if len(exc.problems) > 5 else ""
        raise DataProblem(f"{len(exc.problems)} problem(s): {shown}{more}") from exc


def infer_targets(reports: list) -> list[dict[str, Any]]:
    """Targets from the training data: labels per target, multi_class where lists were used."""
    labels: dict[str, set[str]] = {}
    multi: dict[str, bool] = {}
    for report in reports:
        for target, counts in report.label_counts.items():
            labels.setdefault(target, set()).update(counts)
            multi[target] = multi.get(target, False) or report.kinds[target] == "multi_class"
    return [
        {
            "name": name,
            "labels": sorted(labels[name]),
            "weight": 1.0,
            "loss_function": "multi_class" if multi[name] else "single_class",
        }
        for name in sorted(labels)
    ]


def _kind(inferred: dict[str, dict], name: str) -> str:
    return inferred[name]["loss_function"] if name in inferred else "single_class"


def validation_updates(store: Store, doc: dict[str, Any]) -> dict[str, Any]:
    """Check a job's files and return what validation fills: targets, epochs, metadata.

    Raises :class:`DataProblem` naming the file, line and field of what is wrong.
    """
    given = doc.get("classifier_targets")
    allowed = {t["name"]: t["labels"] for t in given} if given else None
    train_paths, reports = [], []
    for entry in doc["training_files"]:
        path, label = _file_path(store, entry["file_id"], "training")
        reports.append(_check(path, label, allowed))
        train_paths.append(path)
    inferred = {t["name"]: t for t in infer_targets(reports)}
    if given:
        # A target given without loss_function gets the one its data implies.
        targets = [
            {**t, "loss_function": t.get("loss_function") or _kind(inferred, t["name"])}
            for t in given
        ]
    else:
        targets = list(inferred.values())
        allowed = {t["name"]: t["labels"] for t in targets}
    for file_id in doc.get("validation_files") or []:
        path, label = _file_path(store, file_id, "validation")
        _check(path, label, allowed)

    lines = [pd.read_json(p, lines=True, dtype=False) for p in train_paths]
    texts = frame_texts(pd.concat(lines, ignore_index=True)).tolist()  # chats rendered whole
    trainer = load_trainer()
    defaults = trainer.TrainSettings()
    hp = dict(doc["hyperparameters"])
    rows, batch = len(texts), defaults.batch_size
    steps = hp.get("training_steps")
    if steps is None:
        epochs = hp.get("epochs")
        steps = math.ceil(epochs * rows / batch) if epochs else DEFAULT_TRAINING_STEPS
    hp["training_steps"] = int(steps)
    hp["epochs"] = steps * batch / rows
    # The encoder reads at most 512 tokens: the job shows the seq_len it will really train with.
    seq_len = hp["seq_len"] = trainer.clamp_seq_len(hp.get("seq_len") or defaults.seq_len)
    data_tokens = trainer.count_tokens(texts)
    mean_tokens = min(data_tokens / rows, seq_len)
    seconds = trainer.estimate_training_seconds(
        steps, batch, mean_tokens, seq_len=seq_len, cache_path=store.root / "calibration.json"
    )
    per_step = round(batch * mean_tokens)
    metadata = {
        "expected_duration_seconds": max(1, round(seconds)),
        "cost": 0.0,
        "cost_currency": "EUR",
        "train_tokens_per_step": per_step,
        "train_tokens": per_step * steps,
        "data_tokens": data_tokens,
        "estimated_start_time": None,
    }
    return {"classifier_targets": targets, "hyperparameters": hp, "metadata": metadata}


def validate_job(store: Store, job_id: str) -> None:
    """Take one QUEUED job through VALIDATING to VALIDATED or FAILED_VALIDATION."""
    with store.edit_job(job_id) as job:
        if job is None or job.status != "QUEUED" or job.validated:
            return
        job.set_status("VALIDATING")
        doc = dict(job.doc)
    try:
        updates, problem = validation_updates(store, doc), None
    except DataProblem as exc:
        updates, problem = None, str(exc)
    except Exception as exc:  # a bug or a broken trainer install must not wedge the queue
        log.exception("validating job %s", job_id)
        updates, problem = None, f"validation failed: {type(exc).__name__}: {exc}"
    with store.edit_job(job_id) as job:
        if job is None or job.status != "VALIDATING":  # cancelled meanwhile
            return
        if updates is None:
            job.set_status("FAILED_VALIDATION", problem)
            return
        job.doc.update(updates)
        job.validated = True
        job.set_status("VALIDATED")
        if job.start_requested:
            job.set_status("QUEUED")


# -- training (in its own process) -----------------------------------------------------------
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int | None) -> None:
    """Make this process end when the server that started it ends, even by SIGKILL.

    On Linux the kernel sends SIGKILL when the parent goes (``PR_SET_PDEATHSIG``); if the
    parent is already gone by the time that is set, exit now. Elsewhere the training loop's
    ``should_stop`` (parent changed) is what stops it, at the next step.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if parent is not None and os.getppid() != parent:
        raise SystemExit(f"the factory server (pid {parent}) that started this job is gone")


def run_training(store_dir: str | Path, job_id: str, parent: int | None = None) -> int:
    """Body of the training process: train, append checkpoints, write result.json.

    Returns the process exit code: 0 trained, EXIT_CANCELLED when told to stop (the job was
    cancelled or the server that started it is gone). ``parent``: the server's pid.
    """
    die_with_parent(parent)
    if hasattr(os, "nice"):
        os.nice(TRAINING_NICENESS)
    store = Store(store_dir)
    job = store.get_job(job_id)
    if job is None:
        raise SystemExit(f"no job {job_id} in {store.root}")
    doc = job["doc"]
    trainer = load_trainer()
    # Per-file weights are not implemented: every training line counts once.
    train_examples = [
        ex for entry in doc["training_files"] for ex in read_jsonl(_stored(store, entry["file_id"]))
    ]
    valid_examples = [
        ex
        for file_id in doc.get("validation_files") or []
        for ex in read_jsonl(_stored(store, file_id))
    ]
    targets = [
        trainer.Target(t["name"], t["labels"], t["loss_function"], t.get("weight", 1.0))
        for t in doc["classifier_targets"]
    ]
    hp = doc["hyperparameters"]
    defaults = trainer.TrainSettings()
    settings = trainer.TrainSettings(
        training_steps=hp["training_steps"],
        learning_rate=hp.get("learning_rate") or defaults.learning_rate,
        weight_decay=_or(hp.get("weight_decay"), defaults.weight_decay),
        warmup_fraction=_or(hp.get("warmup_fraction"), defaults.warmup_fraction),
        seq_len=trainer.clamp_seq_len(hp.get("seq_len") or defaults.seq_len),
    )
    parent = parent or os.getppid()

    def should_stop() -> bool:
        return os.getppid() != parent or store.job_status(job_id) != "RUNNING"

    def on_checkpoint(c) -> None:
        store.add_checkpoint(job_id, c.step, c.train_loss, c.valid_loss)

    try:
        result = trainer.train(
            train_examples,
            valid_examples,
            targets,
            settings,
            store.model_dir(job_id),
            on_checkpoint=on_checkpoint,
            should_stop=should_stop,
        )
    except trainer.TrainingCancelled:
        return EXIT_CANCELLED
    out = {
        "trained_tokens": int(result.trained_tokens),
        "seconds": float(result.seconds),
        # Apart, so that a benchmark can report the training steps alone.
        "train_seconds": float(result.train_seconds),
        "valid_seconds": float(result.valid_seconds),
        "setup_seconds": float(result.setup_seconds),
    }
    (store.job_dir(job_id) / RESULT_JSON).write_text(json.dumps(out), encoding="utf-8")
    return 0


def _stored(store: Store, file_id: str) -> Path:
    record = store.get_file(file_id)
    if record is None:
        raise RuntimeError(f"file {file_id} was deleted after validation")
    return Path(record["path"])


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# -- the scheduler (in the server process) ---------------------------------------------------
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


def fine_tuned_model_id(store: Store, base_model: str, job_id: str) -> str:
    """``ft:classifier:<base>:<workspace hex>:<YYYYMMDD>:<job id's first 8 hex>``."""
    return f"ft:classifier:{base_model}:{store.workspace}:{time.strftime('%Y%m%d')}:{job_id[:8]}"


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
        if job and job["status"] == "RUNNING" and code == 0 and result_path.is_file():
            # Registered before the status changes, so a SUCCESS job's model always exists.
            doc = job["doc"]
            model_id = fine_tuned_model_id(self.store, doc["model"], job_id)
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
                result = json.loads(result_path.read_text(encoding="utf-8"))
                edit.doc["fine_tuned_model"] = model_id
                edit.doc["trained_tokens"] = result["trained_tokens"]
                edit.set_status("SUCCESS")
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

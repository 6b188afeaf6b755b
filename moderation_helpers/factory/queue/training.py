"""The training process of one job (``moderation-factory _train``), and the trainer it uses.

It runs apart from the server so that a crash in training fails that job and not the server,
and a cancel can stop it at once. It only appends checkpoints, exports the trained model and
writes ``result.json``; every status change is made by the scheduler or the API
(:mod:`.scheduler`). The export (``<model folder>/export/``, :mod:`..exports`) and the choice of
classification runtime (``runtime.json``, :mod:`..serving.runtime`) are made here, before the
job reports SUCCESS, so that the first classification after it costs neither.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from moderation_helpers.classifier.encoders import encoder_for
from moderation_helpers.core.env import FACTORY_TRAINER_ENV
from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.factory.store.db import Store

log = logging.getLogger("moderation_helpers.factory")

DEFAULT_TRAINER = "moderation_helpers.classifier"
RESULT_JSON = "result.json"
TRAIN_LOG = "train.log"
EXIT_CANCELLED = 3
# Training yields the CPU to classification requests when both want it (the server's inference
# thread keeps nice 0): requests keep their latency, training still finishes, a little later.
TRAINING_NICENESS = 5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def load_trainer() -> ModuleType:
    """The trainer module (``$MODERATION_FACTORY_TRAINER`` or the real one)."""
    return importlib.import_module(os.environ.get(FACTORY_TRAINER_ENV) or DEFAULT_TRAINER)


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
    parent = parent or os.getppid()

    def should_stop() -> bool:
        return os.getppid() != parent or store.job_status(job_id) != "RUNNING"

    def on_checkpoint(c) -> None:
        store.add_checkpoint(job_id, c.step, c.train_loss, c.valid_loss)

    train_examples, valid_examples = _examples(store, doc)
    targets = [
        trainer.Target(t["name"], t["labels"], t["loss_function"], t.get("weight", 1.0))
        for t in doc["classifier_targets"]
    ]
    try:
        result = trainer.train(
            train_examples,
            valid_examples,
            targets,
            train_settings(trainer, doc["hyperparameters"], doc.get("model")),
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
    model_id = fine_tuned_model_id(store, doc["model"], job_id)
    out["fine_tuned_model"] = model_id
    out["export_seconds"] = _export(store, job_id, model_id, dict(doc, id=job_id), valid_examples)
    (store.job_dir(job_id) / RESULT_JSON).write_text(json.dumps(out), encoding="utf-8")
    return 0


def fine_tuned_model_id(store: Store, base_model: str, job_id: str) -> str:
    """``ft:classifier:<base>:<workspace hex>:<YYYYMMDD>:<job id's first 8 hex>``."""
    return f"ft:classifier:{base_model}:{store.workspace}:{time.strftime('%Y%m%d')}:{job_id[:8]}"


def _export(
    store: Store, job_id: str, model_id: str, job: dict[str, Any], valid: list[dict]
) -> float | None:
    """Export the trained model and choose its classification runtime; the seconds it took.

    Skipped (None) for a trainer that saves no classifier checkpoint (the tests' stand-ins). A
    failure is logged, not fatal: the server then exports on demand, or serves torch."""
    from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON
    from moderation_helpers.factory.exports import export_trained
    from moderation_helpers.factory.serving.runtime import calibrate_model

    model_dir = store.model_dir(job_id)
    if not (model_dir / CHECKPOINT_JSON).is_file():
        return None
    t0 = time.perf_counter()
    try:
        export_trained(model_dir, model_id, job, valid)
        calibrate_model(model_dir)
    except Exception:  # noqa: BLE001 (the trained model stays usable without them)
        log.exception("exporting %s after training", model_id)
        return None
    return time.perf_counter() - t0


def train_settings(trainer: ModuleType, hp: dict[str, Any], model: str | None = None) -> Any:
    """The trainer's ``TrainSettings`` for a validated job's hyperparameters: a value given
    (0.0 included) is used, one left None gets the trainer's default. ``model``: the job's, whose
    base encoder (``encoder_for``) is fine-tuned."""
    defaults = trainer.TrainSettings()
    chosen = {} if model is None else {"encoder": encoder_for(model).name}

    def given(name: str) -> Any:
        value = hp.get(name)
        return getattr(defaults, name) if value is None else value

    return trainer.TrainSettings(
        training_steps=hp["training_steps"],
        learning_rate=given("learning_rate"),
        weight_decay=given("weight_decay"),
        warmup_fraction=given("warmup_fraction"),
        seq_len=trainer.clamp_seq_len(given("seq_len")),
        **chosen,
    )


def _examples(store: Store, doc: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """The job's training and validation lines, in file order."""
    # Per-file weights are not implemented: every training line counts once.
    train_ids = [entry["file_id"] for entry in doc["training_files"]]
    valid_ids = doc.get("validation_files") or []
    train = [ex for file_id in train_ids for ex in read_jsonl(_stored(store, file_id))]
    valid = [ex for file_id in valid_ids for ex in read_jsonl(_stored(store, file_id))]
    return train, valid


def _stored(store: Store, file_id: str) -> Path:
    record = store.get_file(file_id)
    if record is None:
        raise RuntimeError(f"file {file_id} was deleted after validation")
    return Path(record["path"])

"""Job validation: check a job's files and fill what the API fills (targets, epochs, metadata).

The scheduler's validator thread takes QUEUED jobs that are not validated yet through
VALIDATING to VALIDATED (or FAILED_VALIDATION, with the file, line and field at fault).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from moderation_helpers.classifier.encoders import encoder_for
from moderation_helpers.core.conversation import frame_texts
from moderation_helpers.core.jsonl import JSONLReport, JSONLValidationError, validate_jsonl
from moderation_helpers.factory.queue.training import load_trainer
from moderation_helpers.factory.store.db import Store

log = logging.getLogger("moderation_helpers.factory")

DEFAULT_TRAINING_STEPS = 100


class DataProblem(Exception):
    """The job's data cannot be trained on; the message is shown as the job's reason."""


def _file_path(store: Store, file_id: str, role: str) -> tuple[Path, str]:
    record = store.get_file(file_id)
    if record is None:
        raise DataProblem(f"{role} file {file_id} does not exist (deleted?)")
    return Path(record["path"]), f"{record['filename']} (file {file_id})"


def _check(path: Path, label: str, allowed: dict[str, list[str]] | None) -> JSONLReport:
    """validate_jsonl, with the error naming the uploaded file instead of the store's path."""
    try:
        return validate_jsonl(path, allowed)
    except JSONLValidationError as exc:
        shown = "; ".join(
            f"{label} line {p.line}, field '{p.field}': {p.message}" for p in exc.problems[:5]
        )
        more = f" (and {len(exc.problems) - 5} more)" if len(exc.problems) > 5 else ""
        raise DataProblem(f"{len(exc.problems)} problem(s): {shown}{more}") from exc


def infer_targets(reports: list[JSONLReport]) -> list[dict[str, Any]]:
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


def _checked_targets(store: Store, doc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Path]]:
    """Check every file of the job; returns its targets (given, else inferred from the training
    data) and the training files' paths."""
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
    return targets, train_paths


def _kind(inferred: dict[str, dict], name: str) -> str:
    return inferred[name]["loss_function"] if name in inferred else "single_class"


def validation_updates(store: Store, doc: dict[str, Any]) -> dict[str, Any]:
    """Check a job's files and return what validation fills: targets, epochs, metadata.

    Raises :class:`DataProblem` naming the file, line and field of what is wrong.
    """
    encoder = encoder_for(doc.get("model"))  # any name it does not know: all-MiniLM-L6-v2
    if not encoder.installed():
        raise DataProblem(f"base model {encoder.name} is not installed: {encoder.install_hint()}")
    targets, train_paths = _checked_targets(store, doc)
    lines = [pd.read_json(p, lines=True, dtype=False) for p in train_paths]
    texts = frame_texts(pd.concat(lines, ignore_index=True)).tolist()  # chats rendered whole
    trainer = load_trainer()
    defaults = trainer.TrainSettings()
    hp = dict(doc["hyperparameters"])
    rows, batch = len(texts), defaults.batch_size
    steps = hp.get("training_steps")
    if steps is None:
        epochs = hp.get("epochs")
        steps = DEFAULT_TRAINING_STEPS if epochs is None else math.ceil(epochs * rows / batch)
    hp["training_steps"] = int(steps)
    hp["epochs"] = steps * batch / rows
    # The encoder reads at most 512 tokens: the job shows the seq_len it will really train with.
    seq_len = defaults.seq_len if hp.get("seq_len") is None else hp["seq_len"]
    seq_len = hp["seq_len"] = trainer.clamp_seq_len(seq_len)
    data_tokens = trainer.count_tokens(texts, encoder=encoder.name)
    mean_tokens = min(data_tokens / rows, seq_len)
    seconds = trainer.estimate_training_seconds(
        steps,
        batch,
        mean_tokens,
        seq_len=seq_len,
        cache_path=store.root / "calibration.json",
        encoder=encoder.name,
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

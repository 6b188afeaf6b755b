"""How the factory runs a fine-tuned model for classification: the fastest runtime, measured.

Candidates: the trainer's torch model in float32 (the reference), torch in bfloat16 autocast,
and the exported ONNX graph run by the :class:`~moderation_helpers.model.moderator.Moderator`. A
candidate qualifies only if its scores match torch float32's within :data:`TOLERANCE` (max abs)
on the calibration texts; of those, the one with the most texts/s is used. The choice comes from
a short calibration on this machine (a few seconds, at the first classification), cached in the
store's ``runtime.json`` for as long as the machine and library versions stay the same: which
one wins depends on the CPU (bf16 autocast was slower than fp32 on one Xeon with avx512_bf16,
faster on an EPYC), so no CPU flag decides it.

The ONNX graph of a model is exported once into ``<model folder>/onnx/`` (written aside, renamed
into place), when the ONNX runtime is chosen or measured. Every runtime offers
``predict(texts)`` and ``token_lengths(texts)``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moderation_helpers.core.files import atomic_write_text

log = logging.getLogger("moderation_helpers.factory")

TOLERANCE = 1e-4
RUNTIME_JSON = "runtime.json"
ONNX_DIR = "onnx"
CANDIDATES = ("onnx-fp32", "torch-fp32", "torch-bf16")
# Comment-like texts of varied lengths (5 to ~120 tokens), as the factory usually sees.
_SENTENCES = (
    "Thanks for sharing, this was a thoughtful piece.",
    "You are an idiot and so is everyone who agrees with you.",
    "The council should fund the library before another parking garage downtown",
    "ok",
    "I can't believe people still fall for this garbage, wake up!",
)
CALIBRATION_TEXTS = tuple(
    " ".join(_SENTENCES[(i + k) % len(_SENTENCES)] for k in range(1 + i % 8)) for i in range(32)
)
_export_lock = threading.Lock()


class TorchRuntime:
    """The trainer's model behind the runtime interface (``predict``, ``token_lengths``)."""

    def __init__(self, model: Any, name: str):
        self.model = model
        self.name = name

    def predict(self, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Scores per text, ``{target: {label: score}}``."""
        return self.model.predict(texts)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens the model reads per text (special tokens included, truncated at seq_len)."""
        ids = self.model.tokenizer(list(texts), truncation=True, max_length=self.model.seq_len)
        return np.fromiter(map(len, ids["input_ids"]), dtype=np.int64, count=len(texts))


def machine() -> dict[str, Any]:
    """What a calibration depends on: it is redone when any of this changes."""
    import onnxruntime
    import torch

    from moderation_helpers.core.cpu import available_cpus

    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cpu": cpu,
        "cores": available_cpus(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
    }


def ensure_onnx(model_dir: str | os.PathLike) -> Path:
    """The model's exported ONNX folder (``<model_dir>/onnx``), exporting it on first use."""
    from moderation_helpers.export.onnx import write_folder
    from moderation_helpers.model.folder import CLASSIFIER_JSON

    target = Path(model_dir) / ONNX_DIR
    with _export_lock:
        if (target / CLASSIFIER_JSON).is_file():
            return target
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=".onnx-", dir=model_dir))
        try:
            write_folder(model_dir, work)
            if target.exists() and not (target / CLASSIFIER_JSON).is_file():
                shutil.rmtree(target)  # a leftover of an interrupted export
            os.replace(work, target)
        except OSError:
            shutil.rmtree(work, ignore_errors=True)
            if not (target / CLASSIFIER_JSON).is_file():
                raise
            return target  # another process exported it meanwhile
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("exported %s to ONNX in %.1f s", model_dir, time.perf_counter() - t0)
        return target


def _load(name: str, model_dir: str | os.PathLike) -> Any:
    from moderation_helpers.factory.queue.training import load_trainer

    if name == "onnx-fp32":
        from moderation_helpers.model.moderator import Moderator

        return Moderator.load(ensure_onnx(model_dir))
    precision = {"torch-fp32": "fp32", "torch-bf16": "bf16"}[name]
    return TorchRuntime(load_trainer().load_model(model_dir, precision=precision), name)


def _flat_scores(rows: list[dict[str, dict[str, float]]]) -> np.ndarray:
    return np.array([[v for labels in row.values() for v in labels.values()] for row in rows])


def _texts_per_second(predict: Callable[[list[str]], Any], texts: list[str]) -> float:
    predict(texts[:8])  # warm-up: first-run allocations and kernel choices
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        predict(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def calibrate(model_dir: str | os.PathLike, texts: Sequence[str] = CALIBRATION_TEXTS) -> dict:
    """Measure each candidate on ``texts``: max abs score difference to torch fp32, texts/s."""
    from moderation_helpers.classifier import training as trainer

    texts = list(texts)
    reference = _load("torch-fp32", model_dir)
    expected = _flat_scores(reference.predict(texts))
    results: dict[str, dict[str, Any]] = {}
    for name in CANDIDATES:
        if name == "torch-bf16" and not trainer.bf16_supported(reference.model.device):
            results[name] = {"skipped": "no native bf16 on this device"}
            continue
        try:
            runtime = reference if name == "torch-fp32" else _load(name, model_dir)
        except Exception as exc:  # an export that fails must not stop classification
            log.warning("runtime %s unavailable: %s", name, exc)
            results[name] = {"skipped": f"failed to load: {exc}"}
            continue
        diff = float(np.abs(_flat_scores(runtime.predict(texts[:16])) - expected[:16]).max())
        entry: dict[str, Any] = {"max_abs_diff": diff, "within_bound": diff <= TOLERANCE}
        if entry["within_bound"]:
            entry["texts_per_second"] = _texts_per_second(runtime.predict, texts)
        results[name] = entry
    qualified = {k: v["texts_per_second"] for k, v in results.items() if "texts_per_second" in v}
    choice = max(qualified, key=qualified.get)
    return {"choice": choice, "tolerance": TOLERANCE, "candidates": results, "texts": len(texts)}


def choose(model_dir: str | os.PathLike, cache_path: str | os.PathLike | None) -> str:
    """The runtime to use on this machine: cached in ``cache_path`` when given and still valid,
    else calibrated now on ``model_dir`` (and cached)."""
    here = machine()
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cached = json.loads(Path(cache_path).read_text(encoding="utf-8"))
            if cached.get("machine") == here and cached.get("choice") in CANDIDATES:
                return cached["choice"]
        except (OSError, ValueError):
            pass
    t0 = time.perf_counter()
    record = calibrate(model_dir)
    record.update(machine=here, measured_at=time.time(), seconds=time.perf_counter() - t0)
    log.info(
        "classification runtime: %s (calibrated in %.1f s: %s)",
        record["choice"],
        record["seconds"],
        {k: round(v.get("texts_per_second", 0)) for k, v in record["candidates"].items()},
    )
    if cache_path is not None:
        atomic_write_text(Path(cache_path), json.dumps(record, indent=2))
    return record["choice"]


def load_runtime(model_dir: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> Any:
    """The fastest runtime for this model that matches torch fp32 (see the module docstring).

    A trainer without ``bf16_supported`` (a stand-in in tests) gets its own ``load_model``."""
    from moderation_helpers.factory.queue.training import load_trainer

    trainer = load_trainer()
    if not hasattr(trainer, "bf16_supported"):
        return trainer.load_model(model_dir)
    name = choose(model_dir, cache_path)
    try:
        return _load(name, model_dir)
    except Exception as exc:
        if name == "torch-fp32":
            raise
        log.warning("runtime %s failed for %s (%s); using torch-fp32", name, model_dir, exc)
        return _load("torch-fp32", model_dir)

"""How the factory runs a fine-tuned model for classification: the fastest runtime, measured.

Candidates: the model's exported graphs (``<model folder>/export/``, :mod:`..exports`) run by the
:class:`~moderation_helpers.model.moderator.Moderator`, fp32 and int8, and the trainer's torch
model in float32 (the reference, and the fallback). An fp32 candidate qualifies only if its
scores match torch fp32's within :data:`TOLERANCE` (max abs) on the calibration texts. The int8
graph is never used with ``graph="fp32"`` (the default: thresholds tuned on the factory's scores
then hold for the exported folder, which serves fp32), always when the server pins int8, and with
``graph="auto"`` only if the export measured its macro ROC-AUC cost on the job's validation file
at most :data:`INT8_MAX_AUC_COST`. Of those, the one with the most texts/s is used.

The speeds come from a short calibration on this machine (a few seconds), made by the training
process right after the export and cached in the model's ``runtime.json`` for as long as the
machine and library versions stay the same (else redone at the first classification): which
one wins depends on the CPU, so no CPU flag decides it. Every runtime offers ``predict(texts)``,
``token_lengths(texts)`` and ``variant`` (the graph: ``fp32`` or ``int8``); the Moderator also
``encode(texts)`` and ``predict_encoded(ids)``, so that the batcher tokenizes once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moderation_helpers.core.files import atomic_write_text
from moderation_helpers.factory.config import DEFAULT_GRAPH, GRAPHS
from moderation_helpers.model.folder import int8_auc_cost

log = logging.getLogger("moderation_helpers.factory")

TOLERANCE = 1e-4
INT8_MAX_AUC_COST = 0.005  # macro ROC-AUC on validation: below what the data can tell apart
RUNTIME_JSON = "runtime.json"  # <model folder>/runtime.json: this machine's calibration
CANDIDATES = ("onnx-int8", "onnx-fp32", "torch-fp32")
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


class TorchRuntime:
    """The trainer's model behind the runtime interface (``predict``, ``token_lengths``)."""

    variant = "fp32"

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


def graph_of(runtime: Any) -> str:
    """The graph a runtime runs: ``int8`` or ``fp32`` (torch runtimes are fp32)."""
    return getattr(runtime, "variant", "fp32")


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


def _load(name: str, model_dir: str | os.PathLike) -> Any:
    if name.startswith("onnx-"):
        from moderation_helpers.factory.exports import export_dir
        from moderation_helpers.model.moderator import Moderator

        return Moderator.load(export_dir(model_dir), variant=name.removeprefix("onnx-"))
    from moderation_helpers.classifier.checkpoint import load_model

    return TorchRuntime(load_model(model_dir, precision="fp32"), name)


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
    """Measure each candidate on ``texts``: max abs score difference to torch fp32, texts/s,
    and for int8 the AUC cost the export measured (see the module docstring)."""
    texts = list(texts)
    reference = _load("torch-fp32", model_dir)
    expected = _flat_scores(reference.predict(texts[:16]))
    results: dict[str, dict[str, Any]] = {}
    for name in CANDIDATES:
        try:
            runtime = reference if name == "torch-fp32" else _load(name, model_dir)
        except Exception as exc:  # a missing or broken export must not stop classification
            log.warning("runtime %s unavailable for %s: %s", name, model_dir, exc)
            results[name] = {"skipped": f"failed to load: {exc}"}
            continue
        diff = float(np.abs(_flat_scores(runtime.predict(texts[:16])) - expected).max())
        entry: dict[str, Any] = {"max_abs_diff": diff}
        if name == "onnx-int8":
            cost = int8_auc_cost(runtime.record)
            entry["auc_cost_vs_fp32"] = cost
            entry["within_bound"] = cost is not None and cost <= INT8_MAX_AUC_COST
        else:
            entry["within_bound"] = diff <= TOLERANCE
        entry["texts_per_second"] = _texts_per_second(runtime.predict, texts)
        results[name] = entry
    return {
        "candidates": results,
        "tolerance": TOLERANCE,
        "int8_max_auc_cost": INT8_MAX_AUC_COST,
        "texts": len(texts),
    }


def pick(record: dict[str, Any], graph: str = DEFAULT_GRAPH) -> str:
    """The fastest candidate of a calibration ``record`` that ``graph`` allows (see the module
    docstring); torch fp32 when none does."""
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    measured = {k: v for k, v in record.get("candidates", {}).items() if "texts_per_second" in v}
    if graph == "int8":
        if "onnx-int8" in measured:
            return "onnx-int8"
        log.warning("graph int8 asked, but this model has no int8 graph: serving fp32")
    speeds = {
        name: entry["texts_per_second"]
        for name, entry in measured.items()
        if entry.get("within_bound") and (name != "onnx-int8" or graph == "auto")
    }
    return max(speeds, key=speeds.get) if speeds else "torch-fp32"


def calibrate_model(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Calibrate now and cache the result in the model's ``runtime.json``; return it."""
    t0 = time.perf_counter()
    record = calibrate(model_dir)
    record.update(machine=machine(), measured_at=time.time(), seconds=time.perf_counter() - t0)
    log.info(
        "calibrated %s in %.1f s: %s",
        model_dir,
        record["seconds"],
        {k: round(v.get("texts_per_second", 0)) for k, v in record["candidates"].items()},
    )
    atomic_write_text(Path(model_dir) / RUNTIME_JSON, json.dumps(record, indent=2))
    return record


def choose(model_dir: str | os.PathLike, graph: str = DEFAULT_GRAPH) -> str:
    """The runtime to use on this machine: from the model's cached calibration when it is of
    this machine, else calibrated now (and cached)."""
    cache = Path(model_dir) / RUNTIME_JSON
    record = None
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("machine") == machine():
            record = cached
    except (OSError, ValueError):
        pass
    return pick(record or calibrate_model(model_dir), graph)


def load_runtime(
    model_dir: str | os.PathLike,
    graph: str = DEFAULT_GRAPH,
    export: Callable[[], Any] | None = None,
) -> Any:
    """The fastest runtime for this model that ``graph`` allows (see the module docstring).

    ``export``: makes sure the exported folder exists first (a model trained before the
    export was made at the end of training)."""
    if export is not None:
        try:
            export()
        except Exception as exc:  # noqa: BLE001 (torch still serves)
            log.warning("no exported folder for %s (%s): serving torch", model_dir, exc)
    name = choose(model_dir, graph)
    try:
        return _load(name, model_dir)
    except Exception as exc:
        if name == "torch-fp32":
            raise
        log.warning("runtime %s failed for %s (%s); using torch-fp32", name, model_dir, exc)
        return _load("torch-fp32", model_dir)

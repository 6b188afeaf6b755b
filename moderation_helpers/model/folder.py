"""The exported model folder: one self-contained directory that needs nothing of this project.

Written by :func:`moderation_helpers.export.onnx.export_model` (``moderation-factory export``),
read by :class:`moderation_helpers.model.moderator.Moderator`, the factory's fast path,
``moderate-corpus`` and 05_deploy. The format is defined here, once:

=====================  ====================================================================
file                   holds
=====================  ====================================================================
``model.onnx``         encoder + pooling + every target's head in one graph; inputs
                       ``input_ids`` / ``attention_mask`` (int64, dynamic batch and sequence
                       axes); one output per target (named after it) holding its *scores*
                       (sigmoid or softmax already applied), float32 ``(batch, n_labels)``
``model.int8.onnx``    the same graph with int8 weights (only with ``--int8``)
``tokenizer.json``     the fast tokenizer (Hugging Face ``tokenizers``) with truncation to
                       ``seq_len`` and padding to the longest text of a batch configured in it
``classifier.json``    what a reader needs to use the graph (schema below)
``thresholds.json``    per-label thresholds tuned on validation (when the run folder had them)
``README.md``          the model card
=====================  ====================================================================

``classifier.json`` (``format_version`` 1)::

    {"format_version": 1, "model_id": "ft:classifier:...", "base_encoder": "...",
     "seq_len": 128, "pooling": "mean",
     "inputs": ["input_ids", "attention_mask"], "outputs_are": "scores",
     "targets": [{"name": "moderation", "labels": [...], "loss_function": "multi_class",
                  "weight": 1.0, "score_function": "sigmoid", "output": "moderation",
                  "implied_by": {"toxicity": ["insult", "threat", ...]}}],
     "tokenizer": {"file": "tokenizer.json", "truncation": 128, "padding": "longest",
                   "pad_id": 0},
     "rendering": {... conversation.RENDERING ...},
     "variants": {"fp32": {"file": "model.onnx", "validation_macro_auc": 0.912},
                  "int8": {"file": "model.int8.onnx", "quantization": {...},
                           "validation_macro_auc": 0.910, "auc_cost_vs_fp32": 0.002}},
     "validation": {"metric": "macro ROC-AUC over flag labels", "texts": 500,
                    "labels": ["moderation/toxicity", ...]},
     "graph": {"fused_by": ..., "fused_operators": {...}},
     "opset": 17, "exported_with": {...versions...}}

``pooling``: how the graph turns token vectors into the vector its heads read
(:mod:`moderation_helpers.core.pooling`: ``mean`` or ``mean_max``); the graph computes it, so
a reader only checks it is a known name.

``implied_by`` (optional; absent in folders exported before it): a parent label's score is
never below its children's, read off the training file (``classifier.coherence``). The graph's
scores already obey it; a reader needs nothing more and may show it.

What each variant costs in quality, measured by the export on the job's validation file
(optional fields: folders exported before they existed lack them):

- ``variants.<v>.validation_macro_auc``: the variant's graph's macro ROC-AUC over the flag
  labels (every label but the safe one; labels with a single class in the file left out), or
  null when unmeasured;
- ``variants.int8.auc_cost_vs_fp32``: fp32's macro AUC minus int8's (positive: int8 is worse),
  or null when unmeasured. The factory serves int8 only when this is at most 0.005;
- ``validation``: how it was measured (``metric``, ``texts``, ``labels``), or
  ``{"unmeasured": "<why>"}`` (no validation file, or no label with both classes in it).

The graph is fused for onnxruntime (its ``com.microsoft`` operators Attention,
EmbedLayerNormalization, SkipLayerNormalization, BiasGelu): onnxruntime runs it on CPU and CUDA.

No torch here: the Moderator imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moderation_helpers.core.pooling import POOLINGS

MODEL_ONNX = "model.onnx"
MODEL_INT8_ONNX = "model.int8.onnx"
TOKENIZER_JSON = "tokenizer.json"
CLASSIFIER_JSON = "classifier.json"
THRESHOLDS_JSON = "thresholds.json"
MODEL_CARD = "README.md"
FORMAT_VERSION = 1
INPUT_NAMES = ("input_ids", "attention_mask")
SCORE_FUNCTIONS = {"multi_class": "sigmoid", "single_class": "softmax"}
VARIANT_FILES = {"fp32": MODEL_ONNX, "int8": MODEL_INT8_ONNX}


class ModelFolderError(ValueError):
    """An exported model folder is missing a file or holds a malformed one; says which."""


def score_function(loss_function: str) -> str:
    """How a target's scores are computed from its logits: ``sigmoid`` or ``softmax``."""
    try:
        return SCORE_FUNCTIONS[loss_function]
    except KeyError:
        raise ValueError(
            f"loss_function must be one of {tuple(SCORE_FUNCTIONS)}, got {loss_function!r}"
        ) from None


def classifier_record(
    *,
    targets: list[Mapping[str, Any]],
    seq_len: int,
    base_encoder: str,
    pad_id: int,
    rendering: Mapping[str, Any],
    model_id: str | None = None,
    opset: int,
    variants: Mapping[str, Mapping[str, Any]],
    exported_with: Mapping[str, str] | None = None,
    graph: Mapping[str, Any] | None = None,
    pooling: str = "mean",
) -> dict[str, Any]:
    """The ``classifier.json`` document (validated before it is returned)."""
    record = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "base_encoder": base_encoder,
        "seq_len": int(seq_len),
        "pooling": pooling,
        "inputs": list(INPUT_NAMES),
        "outputs_are": "scores",
        "targets": [
            {
                "name": t["name"],
                "labels": list(t["labels"]),
                "loss_function": t["loss_function"],
                "weight": float(t.get("weight", 1.0)),
                "score_function": score_function(t["loss_function"]),
                "output": t["name"],
                "implied_by": {k: list(v) for k, v in (t.get("implied_by") or {}).items()},
            }
            for t in targets
        ],
        "tokenizer": {
            "file": TOKENIZER_JSON,
            "truncation": int(seq_len),
            "padding": "longest",
            "pad_id": int(pad_id),
        },
        "rendering": dict(rendering),
        "variants": {k: dict(v) for k, v in variants.items()},
        "graph": dict(graph or {}),
        "opset": int(opset),
        "exported_with": dict(exported_with or {}),
    }
    validate_classifier(record, CLASSIFIER_JSON)
    return record


def _problem(where: str, field: str, message: str) -> ModelFolderError:
    return ModelFolderError(f"{where}: field {field}: {message}")


def validate_classifier(record: Any, where: str | os.PathLike = CLASSIFIER_JSON) -> None:
    """Raise :class:`ModelFolderError` naming the file and field of the first problem."""
    where = str(where)
    if not isinstance(record, dict):
        raise ModelFolderError(f"{where}: expected a JSON object, got {type(record).__name__}")
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise _problem(
            where,
            "format_version",
            f"{version!r} is not supported (this reader knows version {FORMAT_VERSION})",
        )
    seq_len = record.get("seq_len")
    if not isinstance(seq_len, int) or seq_len < 2:
        raise _problem(where, "seq_len", f"expected an integer >= 2, got {seq_len!r}")
    if record.get("pooling") not in POOLINGS:
        raise _problem(
            where, "pooling", f"expected one of {list(POOLINGS)}, got {record.get('pooling')!r}"
        )
    targets = record.get("targets")
    if not isinstance(targets, list) or not targets:
        raise _problem(where, "targets", "expected a non-empty list")
    outputs = set()
    for i, t in enumerate(targets):
        field = f"targets[{i}]"
        if not isinstance(t, dict):
            raise _problem(where, field, f"expected an object, got {type(t).__name__}")
        for key in ("name", "output", "loss_function", "score_function"):
            if not isinstance(t.get(key), str) or not t.get(key):
                raise _problem(where, f"{field}.{key}", f"expected a string, got {t.get(key)!r}")
        labels = t.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise _problem(where, f"{field}.labels", "expected a non-empty list of strings")
        if len(set(labels)) != len(labels):
            raise _problem(where, f"{field}.labels", f"duplicate labels in {labels!r}")
        expected = SCORE_FUNCTIONS.get(t["loss_function"])
        if expected is None:
            raise _problem(
                where,
                f"{field}.loss_function",
                f"expected one of {tuple(SCORE_FUNCTIONS)}, got {t['loss_function']!r}",
            )
        if t["score_function"] != expected:
            raise _problem(
                where,
                f"{field}.score_function",
                f"{t['loss_function']} targets are scored by {expected}, "
                f"got {t['score_function']!r}",
            )
        implied = t.get("implied_by", {})
        if not isinstance(implied, dict) or not all(
            k in labels and isinstance(v, list) and set(v) <= set(labels)
            for k, v in implied.items()
        ):
            raise _problem(
                where, f"{field}.implied_by", "expected {label: [labels]} over the target's labels"
            )
        if t["output"] in INPUT_NAMES or t["output"] in outputs:
            raise _problem(where, f"{field}.output", f"{t['output']!r} is already taken")
        outputs.add(t["output"])
    tokenizer = record.get("tokenizer")
    if not isinstance(tokenizer, dict) or not isinstance(tokenizer.get("pad_id"), int):
        raise _problem(where, "tokenizer", "expected an object with an integer pad_id")
    variants = record.get("variants")
    if not isinstance(variants, dict) or "fp32" not in variants:
        raise _problem(where, "variants", "expected an object with at least an fp32 entry")
    for name, variant in variants.items():
        if name not in VARIANT_FILES:
            raise _problem(where, f"variants.{name}", f"unknown variant; known: {VARIANT_FILES}")
        if not isinstance(variant, dict) or not isinstance(variant.get("file"), str):
            raise _problem(where, f"variants.{name}.file", "expected a file name")
        _check_quality(where, name, variant)
    validation = record.get("validation", {})
    if not isinstance(validation, dict):
        raise _problem(where, "validation", f"expected an object, got {validation!r}")


def _check_quality(where: str, name: str, variant: Mapping[str, Any]) -> None:
    """The optional quality fields of one variant (see the module docstring)."""
    auc = variant.get("validation_macro_auc")
    if auc is not None and (not _is_number(auc) or not 0.0 <= auc <= 1.0):
        raise _problem(
            where, f"variants.{name}.validation_macro_auc", f"expected null or 0..1, got {auc!r}"
        )
    cost = variant.get("auc_cost_vs_fp32")
    if cost is not None and (name != "int8" or not _is_number(cost) or not -1 <= cost <= 1):
        raise _problem(
            where,
            f"variants.{name}.auc_cost_vs_fp32",
            f"expected null or a number in -1..1 on the int8 variant, got {cost!r}",
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int8_auc_cost(record: Mapping[str, Any]) -> float | None:
    """The int8 variant's measured macro AUC cost against fp32, or None (no int8 variant, or
    its cost unmeasured)."""
    cost = (record.get("variants", {}).get("int8") or {}).get("auc_cost_vs_fp32")
    return None if cost is None else float(cost)


def read_classifier(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``classifier.json`` of an exported model folder."""
    path = Path(folder) / CLASSIFIER_JSON
    if not path.is_file():
        raise ModelFolderError(
            f"{path} not found: {folder} is not an exported model folder "
            "(write one with `moderation-factory export MODEL_ID --out DIR`)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    validate_classifier(record, path)
    return record


def variant_path(folder: str | os.PathLike, record: Mapping[str, Any], variant: str) -> Path:
    """The ONNX file of ``variant`` (``fp32`` or ``int8``), checked to exist."""
    variants = record["variants"]
    if variant not in variants:
        raise ModelFolderError(
            f"{Path(folder) / CLASSIFIER_JSON}: no {variant!r} variant in this folder "
            f"(has {sorted(variants)}; export with --int8 for the quantized one)"
        )
    path = Path(folder) / variants[variant]["file"]
    if not path.is_file():
        raise ModelFolderError(f"{path} not found, though {CLASSIFIER_JSON} lists it")
    return path


def read_thresholds(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's ``thresholds.json`` document, or None when it has none. Its optional
    ``graph`` names the variant whose scores the thresholds were tuned on."""
    path = Path(folder) / THRESHOLDS_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    table = record.get("thresholds") if isinstance(record, dict) else None
    if not isinstance(table, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, int | float) for x in v.values())
        for v in table.values()
    ):
        raise ModelFolderError(f"{path}: field thresholds: expected {{target: {{label: number}}}}")
    graph = record.get("graph")
    if graph is not None and graph not in VARIANT_FILES:
        raise ModelFolderError(
            f"{path}: field graph: expected one of {sorted(VARIANT_FILES)} or null, got {graph!r}"
        )
    return record


def check_empty_output(out_dir: str | os.PathLike) -> Path:
    """The output folder, created when missing; refuse one that already holds files."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty: export writes into an empty (or new) folder only, so that "
            "no file of another model is mixed in; remove it or choose another --out"
        )
    return out

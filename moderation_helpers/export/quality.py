"""What quantization costs a model, measured: each variant's macro ROC-AUC over the flag labels
on the job's validation examples, through the :class:`~moderation_helpers.model.moderator.
Moderator` (the graphs as they will run), written into ``classifier.json``'s variants (the
fields are :mod:`moderation_helpers.model.folder`'s)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moderation_helpers.core.conversation import example_texts
from moderation_helpers.core.flags import SAFE_LABEL

log = logging.getLogger("moderation_helpers.export.quality")

METRIC = "macro ROC-AUC over flag labels"


def label_truth(
    examples: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per flag label ``(target, label)`` with both classes among the examples that have a value
    for its target: ``(rows, truth)``, the examples' indices and whether each has the label."""
    out: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for t in targets:
        values = [(i, (ex.get("labels") or {}).get(t["name"])) for i, ex in enumerate(examples)]
        given = [(i, [v] if isinstance(v, str) else list(v)) for i, v in values if v is not None]
        rows = np.array([i for i, _ in given], dtype=np.int64)
        for label in t["labels"]:
            if label == SAFE_LABEL:
                continue
            truth = np.array([label in v for _, v in given], dtype=bool)
            if truth.any() and not truth.all():
                out[(t["name"], label)] = (rows, truth)
    return out


def macro_auc(
    scores: Mapping[str, np.ndarray],
    truth: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    labels_by_target: Mapping[str, Sequence[str]],
) -> float:
    """Mean ROC-AUC over the labels of ``truth`` (see :func:`label_truth`)."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for (target, label), (rows, y) in truth.items():
        column = list(labels_by_target[target]).index(label)
        aucs.append(roc_auc_score(y, scores[target][rows, column]))
    return float(np.mean(aucs))


def measure_variants(folder: Path, examples: Sequence[Mapping[str, Any]] | None) -> dict:
    """``{"validation": ..., "variants": {name: {quality fields}}}`` for the folder's variants
    on ``examples`` (the job's validation lines); unmeasured (with why) without any."""
    from moderation_helpers.model.folder import read_classifier
    from moderation_helpers.model.moderator import Moderator

    record = read_classifier(folder)
    unmeasured = {"validation_macro_auc": None}
    none = {k: dict(unmeasured) for k in record["variants"]}
    if "int8" in none:
        none["int8"]["auc_cost_vs_fp32"] = None
    if not examples:
        return {"validation": {"unmeasured": "the job had no validation file"}, "variants": none}
    truth = label_truth(examples, record["targets"])
    if not truth:
        reason = "no flag label has both classes in the validation file"
        return {"validation": {"unmeasured": reason}, "variants": none}
    aucs: dict[str, float] = {}
    texts: list[str] | None = None
    for name in record["variants"]:
        moderator = Moderator.load(folder, variant=name, providers=["CPUExecutionProvider"])
        if texts is None:
            texts = example_texts(
                examples,
                count_tokens=moderator.count_tokens,
                max_tokens=moderator.seq_len - moderator.special_tokens,
            )
        aucs[name] = macro_auc(moderator.score(texts), truth, moderator.labels_by_target)
    variants = {k: {"validation_macro_auc": v} for k, v in aucs.items()}
    if "int8" in variants:
        variants["int8"]["auc_cost_vs_fp32"] = aucs["fp32"] - aucs["int8"]
    log.info("validation macro AUC per variant: %s", aucs)
    validation = {
        "metric": METRIC,
        "texts": len(examples),
        "labels": [f"{t}/{lab}" for t, lab in truth],
    }
    return {"validation": validation, "variants": variants}

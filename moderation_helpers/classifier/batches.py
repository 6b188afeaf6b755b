"""Examples turned into tensors: label encoding, tokenization, dynamic padding, length buckets.

Texts are tokenized once; batches are length-bucketed and padded to their own longest row, so
that on the mirror 91% of padded tokens are real (35% when every row is padded to 128).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from moderation_helpers.classifier.network import Target
from moderation_helpers.core.jsonl import LABEL_SCORES


def encode_labels(examples: Sequence[dict], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
    """Per target: a multi-hot float matrix (multi_class) or class indices (single_class).

    A line without a value for a target is masked out of that target's loss (NaN rows for
    multi_class, -100 for single_class).
    """
    frame = pd.DataFrame([ex.get("labels") or {} for ex in examples], index=range(len(examples)))
    encoded: dict[str, torch.Tensor] = {}
    for t in targets:
        column = frame[t.name] if t.name in frame else pd.Series(None, index=frame.index)
        encoded[t.name] = _encode_target(t, column)
    return encoded


def with_label_scores(
    examples: Sequence[dict], targets: Sequence[Target], encoded: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``encoded`` (from :func:`encode_labels`) with each multi_class target's 0/1 values
    replaced by the examples' ``label_scores`` where they give one (``core.jsonl``): soft
    targets, such as the share of raters who chose a label. Rows masked out stay masked."""
    out = dict(encoded)
    for t in targets:
        if t.loss_function != "multi_class":
            continue
        given = [(ex.get(LABEL_SCORES) or {}).get(t.name) or {} for ex in examples]
        frame = pd.DataFrame(given, index=range(len(examples)), columns=list(t.labels))
        scores = torch.tensor(frame.to_numpy(dtype="float32", na_value=np.nan))
        y = encoded[t.name]
        out[t.name] = torch.where(torch.isnan(scores) | torch.isnan(y), y, scores)
    return out


def _encode_target(t: Target, column: pd.Series) -> torch.Tensor:
    n = len(column)
    present = column.notna()
    # one row per (example, label): a label string and a list of labels read alike
    pairs = column[present].explode().dropna()
    codes = pd.Index(t.labels).get_indexer(pairs)
    if (codes < 0).any():
        bad = pairs[codes < 0]
        raise ValueError(
            f"example {bad.index[0]}: labels.{t.name} has {bad.iloc[0]!r}, not among {t.labels!r}"
        )
    rows = torch.tensor(pairs.index.to_numpy(dtype=np.int64))
    if t.loss_function == "multi_class":
        y = torch.zeros(n, len(t.labels))
        y[torch.as_tensor(~present.to_numpy())] = float("nan")
        y[rows, torch.as_tensor(codes, dtype=torch.long)] = 1.0
        return y
    counts = pairs.index.value_counts().reindex(column.index[present], fill_value=0)
    if (counts != 1).any():
        row = int(counts.index[counts != 1][0])
        raise ValueError(f"example {row}: labels.{t.name} is single_class but has {column[row]!r}")
    y = torch.full((n,), -100, dtype=torch.long)
    y[rows] = torch.as_tensor(codes, dtype=torch.long)
    return y


def tokenize(tokenizer: Any, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Token ids per text, truncated at ``seq_len`` and not padded."""
    return tokenizer(list(texts), truncation=True, max_length=seq_len)["input_ids"]


def pad(tokenizer: Any, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` padded to the longest sequence of this batch only."""
    batch = tokenizer.pad({"input_ids": list(ids)}, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def epoch_batches(
    lengths: np.ndarray, batch_size: int, rng: random.Random, bucket_batches: int = 16
) -> list[np.ndarray]:
    """One epoch of batches: a seeded shuffle, then length-sorted within windows of
    ``bucket_batches`` batches (similar lengths share a batch, so padding stays small), then the
    batch order shuffled again so that long and short batches alternate.

    The window is kept well below the data size so that a batch's company changes from epoch
    to epoch (sorting everything would fix each text's neighbours): on the mirror, 16 batches
    keep 91% of padded tokens real (37% with dynamic padding alone, 35% padded to 128)."""
    order = np.array(rng.sample(range(len(lengths)), len(lengths)))
    window = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches

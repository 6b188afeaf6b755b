"""What one worker does with one block of a corpus: check the texts, score them (the Moderator
batches them by padded tokens), apply the thresholds, write the block's part file.

Everything here works on whole columns (Arrow compute, numpy), never row by row.
:class:`BlockScorer` is the Ray actor: it holds one Moderator (one ONNX Runtime session) for its
whole life and is called once per block.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moderation_helpers.core.flags import SAFE_LABEL, category, flag_mask, ranked_flags
from moderation_helpers.corpus.files import (
    ERROR_COLUMN,
    IS_FLAGGED_COLUMN,
    READ_ERROR_COLUMN,
    ROW_COLUMN,
    SPANS_COLUMN,
    write_part,
)
from moderation_helpers.model.explain_flagged import explain_flagged

MISSING_TEXT = "text is missing (null)"
EMPTY_TEXT = "text is empty"
SCORE_TYPE = pa.float32()

# (model_dir, variant=, threads=, providers=, token_budget=) -> an object with Moderator's API
ModeratorLoader = Callable[..., Any]


def load_moderator(
    model_dir: str,
    *,
    variant: str,
    threads: int | None,
    providers: Any,
    token_budget: int | None,
) -> Any:
    """The exported model folder's Moderator (onnxruntime + tokenizers + numpy)."""
    from moderation_helpers.model.moderator import Moderator

    return Moderator.load(
        model_dir,
        variant=variant,
        threads=threads,
        providers=providers,
        token_budget=token_budget,
    )


def labels_of(moderator: Any) -> dict[str, list[str]]:
    """``{target: [labels]}`` in the model's order, from the Moderator's ``targets``."""
    return {t["name"]: list(t["labels"]) for t in moderator.targets}


def text_errors(texts: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Per row, why its text cannot be scored (null where it can): missing, empty or only
    whitespace, or not a string (a column of another type)."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    missing = texts.is_null()
    if pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type):
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0)
        other = pc.if_else(pc.fill_null(empty, False), EMPTY_TEXT, None)
    else:
        other = pa.nulls(len(texts), pa.string()).fill_null(f"text is not a string ({texts.type})")
    return pc.if_else(missing, MISSING_TEXT, other).cast(pa.string())


def flag_lists(
    scores: np.ndarray, labels: Sequence[str], limits: np.ndarray, safe_label: str = SAFE_LABEL
) -> tuple[pa.Array, np.ndarray]:
    """Per row, the labels the flag rule flags (:func:`~moderation_helpers.core.flags.flag_mask`),
    highest score first, ties by name, as one Arrow list column; and whether each row has any.

    Rows of NaN scores (not scored) get no flag. Built from flat arrays and offsets: no loop.
    """
    mask = flag_mask(scores, labels, limits, safe_label)
    values, counts = ranked_flags(scores, labels, mask)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.string()))
    return lists, mask.any(axis=1)


@dataclass(frozen=True)
class ScorerSettings:
    """What every actor needs; sent once, when the pool starts."""

    model_dir: str
    out_dir: str
    text_column: str
    block_rows: int
    n_rows: int
    labels: Mapping[str, Sequence[str]]  # {target: [labels]}, the model's order
    limits: Mapping[str, Sequence[float]]  # {target: [threshold per label]}
    safe_label: str
    variant: str = "fp32"
    threads: int | None = None
    providers: Any = None
    batch_tokens: int | None = None  # padded tokens per ONNX call; None: the Moderator's default
    explain: bool = False  # add SPANS_COLUMN: the spans behind each flagged row's flags
    loader: ModeratorLoader = field(default=load_moderator)


def score_block(moderator: Any, table: pa.Table, settings: ScorerSettings) -> pa.Table:
    """The output rows of one block: its input columns (``row`` first), ``error``, a score per
    label, the flagged labels per target, ``is_flagged`` and, with ``settings.explain``,
    ``spans``. Bad rows get an error and nulls."""
    errors = text_errors(table[settings.text_column])
    if READ_ERROR_COLUMN in table.column_names:
        errors = pc.coalesce(table[READ_ERROR_COLUMN].combine_chunks(), errors)
        table = table.drop_columns([READ_ERROR_COLUMN])
    bad = errors.is_valid().to_numpy(zero_copy_only=False)
    good = np.flatnonzero(~bad)
    texts = np.asarray(table[settings.text_column].to_pylist(), dtype=object)[good]
    scores = {
        t: np.full((table.num_rows, len(labels)), np.nan, dtype=np.float32)
        for t, labels in settings.labels.items()
    }
    if len(good):
        # The Moderator sorts the texts by length and batches them by padded tokens itself.
        out = moderator.score(texts.tolist())
        for target in scores:
            scores[target][good] = out[target]
    columns: dict[str, pa.Array] = {ERROR_COLUMN: errors}
    any_flag = np.zeros(table.num_rows, dtype=bool)
    flagged: dict[str, pa.Array] = {}
    mask = pa.array(bad)
    for target, labels in settings.labels.items():
        for j, label in enumerate(labels):
            columns[f"score/{target}/{label}"] = pa.array(
                scores[target][:, j], type=SCORE_TYPE, mask=bad
            )
    for target, labels in settings.labels.items():
        limits = np.asarray(settings.limits[target])
        lists, hit = flag_lists(scores[target], labels, limits, settings.safe_label)
        columns[f"flagged/{target}"] = pa.ListArray.from_arrays(
            lists.offsets, lists.values, mask=mask
        )
        flagged[target] = lists
        any_flag |= hit
    columns[IS_FLAGGED_COLUMN] = pa.array(any_flag, mask=bad)
    if settings.explain:
        columns[SPANS_COLUMN] = spans_column(moderator, table, settings, flagged, any_flag & ~bad)
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def spans_column(
    moderator: Any,
    table: pa.Table,
    settings: ScorerSettings,
    flagged: Mapping[str, pa.Array],
    rows: np.ndarray,
) -> pa.Array:
    """Per row, the JSON text of its explanation (``{category: spans}`` for the labels it was
    flagged for, as :meth:`Moderator.explain` keys them); null where no label is flagged."""
    picked = np.flatnonzero(rows)
    out: list[str | None] = [None] * table.num_rows
    if not len(picked):
        return pa.array(out, pa.string())
    texts = table[settings.text_column].take(pa.array(picked)).to_pylist()
    n_targets = len(settings.labels)
    per_target = {t: lists.to_pylist() for t, lists in flagged.items()}
    # The model's order, as Moderator.explain lists its flags.
    categories = [
        [
            category(target, label, n_targets)
            for target, labels in settings.labels.items()
            for label in labels
            if label in (per_target[target][i] or ())
        ]
        for i in picked
    ]
    for i, found in zip(picked, explain_flagged(moderator, texts, categories), strict=True):
        out[i] = json.dumps(found)
    return pa.array(out, pa.string())


class BlockScorer:
    """A Ray actor: one Moderator for its life; each call scores one block and writes its part.

    Returns one stats row per block. A block that fails is reported in its stats row (with the
    error) and its part is not written, so a re-run scores it again; the other blocks go on.
    """

    def __init__(self, settings: ScorerSettings) -> None:
        self.settings = settings
        self.moderator = settings.loader(
            settings.model_dir,
            variant=settings.variant,
            threads=settings.threads,
            providers=settings.providers,
            token_budget=settings.batch_tokens,
        )

    def __call__(self, block: pa.Table) -> pa.Table:
        started = time.perf_counter()
        s = self.settings
        rows = block[ROW_COLUMN].to_numpy()
        index = int(rows[0]) // s.block_rows
        expected = np.arange(index * s.block_rows, min((index + 1) * s.block_rows, s.n_rows))
        if not np.array_equal(rows, expected):  # Ray Data split or merged a block: never write it
            raise RuntimeError(f"block {index} arrived with rows {rows[0]}..{rows[-1]}")
        failure = None
        try:
            table = score_block(self.moderator, block, s)
            write_part(Path(s.out_dir), index, table)
            errors = table.num_rows - table[ERROR_COLUMN].null_count
            flagged = int(pc.sum(pc.fill_null(table[IS_FLAGGED_COLUMN], False)).as_py() or 0)
        except Exception as exc:  # reported per block; the run goes on with the others
            failure = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            errors = flagged = 0
        return pa.table(
            {
                "block": [index],
                "rows": [len(rows)],
                "errors": [errors],
                "flagged": [flagged],
                "seconds": [time.perf_counter() - started],
                "failure": pa.array([failure], pa.string()),
                "providers": [",".join(getattr(self.moderator, "providers", None) or [])],
            }
        )

"""The prepare step's transformations: rater fractions -> flags -> balanced rows -> JSONL.

The recipe (Mistral's Classifier Factory moderation cookbook), after
:func:`moderation_helpers.recipe.source.load_splits`:

1. ``threshold_labels``: rater fractions -> booleans (``score > threshold``).
2. ``balance``: keep a fixed share of rows without any flag and cap every label's share of the
   flagged rows (greedily, in row order, as the recipe does), then shuffle with a seed.
3. ``drop_rare_labels``: labels rarer than ``min_label_fraction`` over all splits are removed;
   rows left without a label become ``safe``.
4. ``write_split_jsonl``: one ``{"text": ..., "labels": {"moderation": [...]}}`` line per row,
   or, with ``dataset_format="chat"``, the Factory's conversation kind: each comment becomes the
   user turn of a two-turn conversation after a fixed system turn saying what it is
   (:data:`CHAT_CONTEXT`), ``{"messages": [{"role": "system", ...}, {"role": "user",
   "content": comment}], "labels": ...}``. Given the rater fractions (``scores``), each line
   also carries them as ``label_scores``, the local factory's soft targets (``core.jsonl``).

notebooks/01_prepare.ipynb calls these one by one; the counts and ``prepare_summary.json`` are
:mod:`moderation_helpers.recipe.prepare_report`'s. Everything is vectorized (pandas/numpy); the
only Python loops run over splits, labels or label combinations, never over rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moderation_helpers.core.files import atomic_write_text
from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.core.jsonl import LABEL_SCORES

DEFAULT_TARGET = "moderation"
DATASET_FORMATS = ("text", "chat")
# The fixed first turn of each conversation in chat format: what the user turn is.
CHAT_CONTEXT = "A reader's comment on a news article."
SCORE_DECIMALS = 4  # label scores as written: finer than any rater pool's fraction needs


def threshold_labels(
    df: pd.DataFrame, label_columns: Sequence[str], threshold: float = 0.5
) -> pd.DataFrame:
    """Boolean flags: ``score > threshold`` for numeric columns; boolean columns as they are.

    Scores are compared in float64, as the recipe's Python floats are (float32 would round
    ``0.3`` and flip rows sitting on the threshold).
    """
    columns = list(label_columns)
    is_bool = [c for c in columns if pd.api.types.is_bool_dtype(df[c])]
    numeric = [c for c in columns if c not in is_bool]
    flags = pd.concat(
        [
            df[numeric].astype("float64").gt(threshold),  # missing scores are not flags
            df[is_bool].fillna(False).astype(bool),
        ],
        axis=1,
    )
    return flags[columns]


def _label_cap(max_label_fraction: float, n_flagged: int) -> int:
    """Largest count k with ``k / n_flagged <= max_label_fraction``, in the recipe's floats."""
    k = min(int(np.floor(max_label_fraction * n_flagged)), n_flagged)
    while k < n_flagged and (k + 1) / n_flagged <= max_label_fraction:
        k += 1
    while k > 0 and k / n_flagged > max_label_fraction:
        k -= 1
    return max(k, 0)


def _greedy_capped(matrix: np.ndarray, cap: int) -> np.ndarray:
    """Which rows the recipe's greedy pass keeps: a row is kept when none of its labels has
    reached ``cap`` among the rows kept before it.

    Vectorized by "saturation events": between two of them every eligible row is kept, so a
    cumulative sum finds the next row that would overflow a label; that label is then full for
    good. At most one pass per label, instead of one Python step per row.
    """
    n_rows, n_labels = matrix.shape
    kept = np.zeros(n_rows, dtype=bool)
    counts = np.zeros(n_labels, dtype=np.int64)
    full = np.zeros(n_labels, dtype=bool)
    start = 0
    while start < n_rows:
        block = matrix[start:]
        eligible = ~(block & full).any(axis=1)
        added = block & eligible[:, None]
        running = counts + np.cumsum(added, axis=0, dtype=np.int64)
        overflow = added & (running > cap)
        hits = overflow.any(axis=1)
        if not hits.any():
            kept[start:] = eligible
            break
        first = int(hits.argmax())
        kept[start : start + first] = eligible[:first]
        if first:
            counts = running[first - 1]
        full |= overflow[first]
        start += first + 1
    return kept


def balance(
    flags: pd.DataFrame,
    zero_flags_fraction: float = 0.1,
    max_label_fraction: float = 0.2,
    seed: int = 0,
) -> pd.DataFrame:
    """The recipe's balancing, deterministic: returns the kept rows of ``flags``, shuffled.

    Let F be the rows with at least one flag. The recipe aims at F / (1 - z) rows in all, of
    which ``zero_flags_fraction`` (z) carry no flag: it keeps the first such rows in order. It
    then walks the flagged rows in order and keeps a row only if, for each of its labels, the
    count so far stays within ``max_label_fraction`` of the flagged rows. Because one label
    (``toxicity``) co-occurs with nearly all the others, that cap stops most flagged rows. The
    index is kept so texts can be aligned; the seed fixes the final shuffle.
    """
    if not 0 <= zero_flags_fraction < 1:
        raise ValueError(f"zero_flags_fraction must be in [0, 1), got {zero_flags_fraction}")
    if not 0 <= max_label_fraction <= 1:
        raise ValueError(f"max_label_fraction must be in [0, 1], got {max_label_fraction}")
    matrix = flags.to_numpy(dtype=bool)
    flagged = matrix.any(axis=1)
    n_flagged = int(flagged.sum())
    # Same float arithmetic as the recipe, so the counts match it to the row.
    total = n_flagged / (1 - zero_flags_fraction)
    want_zero = int(total * zero_flags_fraction)
    want_flagged = int(total * (1 - zero_flags_fraction))

    zero_pos = np.flatnonzero(~flagged)[:want_zero]
    flagged_pos = np.flatnonzero(flagged)[:want_flagged]
    cap = _label_cap(max_label_fraction, want_flagged) if want_flagged else 0
    kept_flagged = flagged_pos[_greedy_capped(matrix[flagged_pos], cap)]
    positions = np.concatenate([kept_flagged, zero_pos])
    positions = np.random.default_rng(seed).permutation(positions)
    return flags.iloc[positions]


def rare_labels(frames: Mapping[str, pd.DataFrame], min_label_fraction: float) -> list[str]:
    """Labels flagged on fewer than ``min_label_fraction`` of all rows of all splits."""
    combined = pd.concat(list(frames.values()), ignore_index=True)
    if combined.empty:
        return []
    share = combined.mean()
    return [str(label) for label in share.index[share < min_label_fraction]]


def drop_rare_labels(
    frames: Mapping[str, pd.DataFrame], min_label_fraction: float = 0.01
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Remove labels rarer than ``min_label_fraction`` (over all splits together, as the
    recipe does); rows keep their place and become ``safe`` if no label is left."""
    dropped = rare_labels(frames, min_label_fraction)
    return {split: df.drop(columns=dropped) for split, df in frames.items()}, dropped


def label_sets(
    flags: pd.DataFrame, safe_label: str = SAFE_LABEL
) -> tuple[np.ndarray, list[list[str]]]:
    """Per row, an index into the distinct label lists (column order; ``[safe]`` if none).

    Rows are encoded as bit patterns so only the few distinct combinations are built in
    Python; returns ``(codes per row, list of label lists)``.
    """
    columns = [str(c) for c in flags.columns]
    if safe_label in columns:
        raise ValueError(f"safe_label {safe_label!r} is also a label column; pick another name")
    if len(columns) > 62:
        raise ValueError(f"{len(columns)} label columns: at most 62 are supported")
    weights = np.left_shift(np.int64(1), np.arange(len(columns), dtype=np.int64))
    patterns = flags.to_numpy(dtype=bool).astype(np.int64) @ weights
    unique, codes = np.unique(patterns, return_inverse=True)
    lists = [[c for i, c in enumerate(columns) if p >> i & 1] or [safe_label] for p in unique]
    return codes, lists


def to_records(
    texts: pd.Series,
    flags: pd.DataFrame,
    target: str = DEFAULT_TARGET,
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """A ``text`` / ``labels`` frame in ``flags``' row order, ``labels`` = ``{target: [...]}``.

    ``texts`` is aligned on ``flags.index``; each distinct label dict is one shared object.
    """
    positions = texts.index.get_indexer(flags.index)
    if (positions < 0).any():
        missing = flags.index[positions < 0][:5].tolist()
        raise KeyError(f"rows {missing} of the flags have no text")
    codes, lists = label_sets(flags, safe_label)
    label_objects = np.empty(len(lists), dtype=object)
    label_objects[:] = [{target: labels} for labels in lists]
    return pd.DataFrame(
        {
            "text": texts.take(positions).astype("str").to_numpy(),
            "labels": label_objects[codes] if len(codes) else np.empty(0, dtype=object),
        }
    )


def records_to_jsonl(
    records: pd.DataFrame, scores: pd.DataFrame | None = None, target: str = DEFAULT_TARGET
) -> str:
    """JSONL text of a ``text``/``labels`` frame: compact, one object per line.

    ``scores`` (one row per record, in its order; numbers in [0, 1]) becomes each line's
    ``label_scores`` under ``target``, the local factory's extension (``core.jsonl``).
    Non-ASCII characters are ``\\u`` escapes, as with the recipe's ``json.dumps``: the encoder
    is twice as fast that way, and no Unicode line separator (U+2028...) can cut a line for a
    reader that uses ``str.splitlines``.
    """
    if records.empty:
        return ""
    body = records.to_json(orient="records", lines=True, force_ascii=True)
    # pandas writes "/" as "\/" (valid, but noisy); a backslash before "/" is always that
    # escape, since literal backslashes come out doubled.
    body = body.replace("\\/", "/").rstrip("\n")
    if scores is not None:
        body = _with_scores(body, scores, target)
    return body + "\n"


def _with_scores(body: str, scores: pd.DataFrame, target: str) -> str:
    """``body``'s lines, each closed by its ``scores`` row as ``label_scores``.

    Both sides are written by pandas' JSON encoder and joined line by line, so no row is
    handled in Python: every line of ``body`` ends with the ``}`` that closes its object."""
    lines = pd.Series(body.split("\n"), dtype=object)
    if len(scores) != len(lines):
        raise ValueError(f"{len(scores)} rows of label scores for {len(lines)} records")
    values = scores.to_numpy(dtype="float64")
    bad = ~((values >= 0) & (values <= 1))
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"label scores must be numbers in [0, 1]: column {scores.columns[col]!r} of row "
            f"{scores.index[row]!r} is {float(values[row, col])!r}"
        )
    per_line = scores.round(SCORE_DECIMALS).to_json(
        orient="records", lines=True, double_precision=SCORE_DECIMALS, force_ascii=True
    )
    closes = pd.Series(per_line.rstrip("\n").split("\n"), dtype=object).to_numpy()
    opening = f',"{LABEL_SCORES}":{{' + json.dumps(target, ensure_ascii=True) + ":"
    return "\n".join((lines.str[:-1] + opening + closes + "}}").tolist())


def aligned_scores(scores: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """``scores`` on ``flags``' rows and label columns, as floats; where a row or a label has no
    score (rows added to a split, boolean labels), its flag as 0 or 1."""
    exact = flags.astype("float64")
    given = scores.reindex(index=flags.index, columns=flags.columns)
    return given.astype("float64").fillna(exact)


def text_jsonl_to_chat(body: str, context: str = CHAT_CONTEXT) -> str:
    """``text`` JSONL (as :func:`records_to_jsonl` writes it) as conversation JSONL: each text
    becomes the user turn after a fixed system turn ``context``.

    Done on the whole JSONL text at once: in a JSON string every quote is escaped, so each
    line's only unescaped ``","labels":`` is where its text ends.
    """
    if not body:
        return body
    opening = (
        '{"messages":[{"role":"system","content":'
        + json.dumps(context, ensure_ascii=True)
        + '},{"role":"user","content":'
    )
    body = ("\n" + body).replace('\n{"text":', "\n" + opening)[1:]
    return body.replace('","labels":', '"}],"labels":')


def write_split_jsonl(
    texts: pd.Series,
    flags: pd.DataFrame,
    path: str | os.PathLike,
    *,
    target: str = DEFAULT_TARGET,
    safe_label: str = SAFE_LABEL,
    dataset_format: str = "text",
    scores: pd.DataFrame | None = None,
) -> Path:
    """Write one split as Classifier Factory JSONL, atomically (all or nothing):
    ``dataset_format`` ``"text"`` (text lines) or ``"chat"`` (conversation lines).

    ``scores``: the rater fractions the flags were thresholded from (the loaded split's label
    columns), written as each line's ``label_scores`` (:func:`aligned_scores` fills what has
    none); ``None`` writes labels only, Mistral's format."""
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}")
    records = to_records(texts, flags, target, safe_label)
    aligned = None if scores is None else aligned_scores(scores, flags)
    body = records_to_jsonl(records, aligned, target)
    return atomic_write_text(path, text_jsonl_to_chat(body) if dataset_format == "chat" else body)

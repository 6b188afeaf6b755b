"""The prepare step: a labelled dataset -> balanced, multi-label Classifier Factory JSONL.

The recipe (Mistral's Classifier Factory moderation cookbook), step by step:

1. ``load_splits``: stream the first *n* rows of each split, from the hub or a local folder laid
   out like the hub repository, through the same ``datasets.load_dataset(..., streaming=True)``.
2. ``threshold_labels``: rater fractions -> booleans (``score > threshold``).
3. ``balance``: keep a fixed share of rows without any flag and cap every label's share of the
   flagged rows (greedily, in row order, as the recipe does), then shuffle with a seed.
4. ``drop_rare_labels``: labels rarer than ``min_label_fraction`` over all splits are removed;
   rows left without a label become ``safe``.
5. ``write_split_jsonl``: one ``{"text": ..., "labels": {"moderation": [...]}}`` line per row,
   or, with ``dataset_format="chat"``, the Factory's conversation kind: each comment becomes the
   user turn of a two-turn conversation after a fixed system turn saying what it is
   (:data:`CHAT_CONTEXT`), ``{"messages": [{"role": "system", ...}, {"role": "user",
   "content": comment}], "labels": ...}``.

``prepare_run`` does it all and also writes ``prepare_summary.json`` and ``distribution.png``.
Everything is vectorized (pandas/numpy); the only Python loops run over splits, labels or
label combinations, never over rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moderation_helpers.core.files import atomic_write_text
from moderation_helpers.recipe.run_folder import (
    DISTRIBUTION_PNG,
    PREPARE_SUMMARY,
    SPLIT_FILES,
    ensure_run_dir,
    write_json,
)

SPLITS = ("train", "validation", "test")
CIVIL_COMMENTS_LABELS = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "threat",
    "insult",
    "identity_attack",
    "sexual_explicit",
)
DEFAULT_TARGET = "moderation"
SAFE_LABEL = "safe"
DATASET_FORMATS = ("text", "chat")
# The fixed first turn of each conversation in chat format: what the user turn is.
CHAT_CONTEXT = "A reader's comment on a news article."
LOCAL_MIRROR_HINT = "../shared/data/civil_comments"
_HUB_CHECK_TIMEOUT_S = 5.0
_LOAD_BATCH_ROWS = 10_000


class SourceUnavailableError(RuntimeError):
    """The ``source`` parameter names a dataset that cannot be loaded from here."""


# --------------------------------------------------------------------------------------- load


def _looks_like_path(source: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else is meant as a folder."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _hub_unreachable(source: str, reason: str) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"Cannot load source={source!r} from the Hugging Face Hub ({reason}); set the "
        f"`source` parameter to a local folder laid out like the hub repository, "
        f"e.g. source={LOCAL_MIRROR_HINT!r}."
    )


def _check_hub_reachable(source: str) -> None:
    """Fail in seconds, not after the hub client's minute of retries, when offline."""
    import datasets
    import httpx

    if datasets.config.HF_HUB_OFFLINE:
        return  # offline mode: load_dataset answers from the cache, or fails fast by itself
    try:
        httpx.head(datasets.config.HF_ENDPOINT, timeout=_HUB_CHECK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise _hub_unreachable(
            source, f"{datasets.config.HF_ENDPOINT} unreachable: {exc}"
        ) from None


def open_source(source: str):
    """``datasets.load_dataset(source, streaming=True)`` with one-sentence errors.

    ``source`` is a hub id (``google/civil_comments``) or a local folder laid out like the hub
    repository; both go through the same call and return an ``IterableDatasetDict``.
    """
    import datasets

    local = Path(source).expanduser()
    if local.exists():
        source = str(local)
    elif _looks_like_path(source):
        raise SourceUnavailableError(
            f"source={source!r} is not an existing folder (relative paths start from "
            f"{Path.cwd()}); set the `source` parameter to a hub id or a local folder "
            f"laid out like the hub repository, e.g. {LOCAL_MIRROR_HINT!r}."
        )
    else:
        _check_hub_reachable(source)
    try:
        return datasets.load_dataset(source, streaming=True)
    except (ConnectionError, datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as exc:
        if local.exists():
            raise SourceUnavailableError(
                f"source={source!r} is a folder that datasets cannot read ({exc})."
            ) from None
        raise _hub_unreachable(source, str(exc).splitlines()[0]) from None


def _take_frame(stream, n: int, columns: list[str] | None, desc: str, progress: bool):
    """The first ``n`` rows of a streamed split as a DataFrame, read in Arrow batches."""
    import pyarrow as pa
    from tqdm import tqdm  # the text bar: tqdm.auto would ask for ipywidgets in notebooks

    if columns is not None:
        stream = stream.select_columns(columns)
    batches = []
    with tqdm(total=n, desc=desc, unit="rows", disable=not progress) as bar:
        for batch in stream.take(n).with_format("arrow").iter(batch_size=_LOAD_BATCH_ROWS):
            batches.append(batch)
            bar.update(batch.num_rows)
        bar.total = bar.n  # a split shorter than n ends at 100%, not part-way
    if batches:
        return pa.concat_tables(batches).to_pandas()
    # n = 0: an empty frame that still has the split's columns and dtypes
    if stream.features is None:
        return pd.DataFrame(columns=columns)
    return stream.features.arrow_schema.empty_table().to_pandas()


def infer_label_columns(df: pd.DataFrame, text_column: str = "text") -> list[str]:
    """Every numeric or boolean column except the text: the labels of a generic dataset."""
    numeric = df.select_dtypes(include=["number", "bool"]).columns
    return [c for c in numeric if c != text_column]


def load_splits(
    source: str,
    sizes: Mapping[str, int],
    *,
    text_column: str = "text",
    label_columns: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Stream the first ``sizes[split]`` rows of each split into a DataFrame.

    Keeps ``text_column`` and the label columns (``None``: every numeric/boolean column). Rows
    whose text is missing or blank cannot be examples and are dropped; ``df.attrs`` keeps
    ``rows_drawn`` and ``rows_without_text`` for the summary.
    """
    dataset = open_source(source)
    missing = [s for s in sizes if s not in dataset]
    if missing:
        raise ValueError(f"source={source!r} has no split(s) {missing}; it has {list(dataset)}")
    frames: dict[str, pd.DataFrame] = {}
    for split, n in sizes.items():
        if n < 0:
            raise ValueError(f"n_{split} must be >= 0, got {n}")
        available = list(dataset[split].column_names or [])
        needed = None if label_columns is None else [text_column, *label_columns]
        absent = [c for c in (needed or [text_column]) if available and c not in available]
        if absent:
            raise ValueError(
                f"source={source!r}, split {split!r}: no column(s) {absent}; it has {available}"
            )
        df = _take_frame(dataset[split], n, needed, f"{split}", progress)
        labels = infer_label_columns(df, text_column) if label_columns is None else label_columns
        non_numeric = [c for c in labels if not pd.api.types.is_numeric_dtype(df[c])]
        if non_numeric:
            raise ValueError(f"label column(s) {non_numeric} are neither numeric nor boolean")
        rows_drawn = len(df)
        has_text = df[text_column].notna() & df[text_column].astype("str").str.strip().ne("")
        df = df.loc[has_text, [text_column, *labels]].reset_index(drop=True)
        df.attrs.update(rows_drawn=rows_drawn, rows_without_text=int(rows_drawn - len(df)))
        frames[split] = df
    return frames


# ------------------------------------------------------------------------- threshold, balance


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


# ----------------------------------------------------------------------------------- write


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


def records_to_jsonl(records: pd.DataFrame) -> str:
    """JSONL text of a ``text``/``labels`` frame: compact, one object per line.

    Non-ASCII characters are ``\\u`` escapes, as with the recipe's ``json.dumps``: the encoder
    is twice as fast that way, and no Unicode line separator (U+2028...) can cut a line for a
    reader that uses ``str.splitlines``.
    """
    if records.empty:
        return ""
    body = records.to_json(orient="records", lines=True, force_ascii=True)
    # pandas writes "/" as "\/" (valid, but noisy); a backslash before "/" is always that
    # escape, since literal backslashes come out doubled.
    body = body.replace("\\/", "/")
    return body if body.endswith("\n") else body + "\n"


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
) -> Path:
    """Write one split as Classifier Factory JSONL, atomically (all or nothing):
    ``dataset_format`` ``"text"`` (text lines) or ``"chat"`` (conversation lines)."""
    if dataset_format not in DATASET_FORMATS:
        raise ValueError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}")
    body = records_to_jsonl(to_records(texts, flags, target, safe_label))
    return atomic_write_text(path, text_jsonl_to_chat(body) if dataset_format == "chat" else body)


# ----------------------------------------------------------------------------------- report


def label_counts(flags: pd.DataFrame, safe_label: str = SAFE_LABEL) -> dict[str, int]:
    """Rows per label, plus ``safe_label`` for rows without any flag."""
    counts = {str(c): int(n) for c, n in flags.sum().items()}
    counts[safe_label] = int((~flags.any(axis=1)).sum()) if len(flags.columns) else len(flags)
    return counts


def count_table(frames: Mapping[str, pd.DataFrame], safe_label: str = SAFE_LABEL) -> pd.DataFrame:
    """Rows, flagged rows and rows per label for each split: one row per split."""
    table = pd.DataFrame(
        {split: {"rows": len(f), **label_counts(f, safe_label)} for split, f in frames.items()}
    ).T
    table.insert(1, "flagged", table["rows"] - table[safe_label])
    return table.fillna(0).astype(int)


def compare_counts(
    before: Mapping[str, pd.DataFrame],
    after: Mapping[str, pd.DataFrame],
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """Counts before and after balancing side by side (columns: (count, 'before'/'after'))."""
    tables = {"before": count_table(before, safe_label), "after": count_table(after, safe_label)}
    combined = pd.concat(tables, axis=1).swaplevel(axis=1)
    return combined[list(tables["before"].columns)].fillna(0).astype(int)


def summarize(
    *,
    source: str,
    raw: Mapping[str, pd.DataFrame],
    flags: Mapping[str, pd.DataFrame],
    kept: Mapping[str, pd.DataFrame],
    dropped_labels: Sequence[str],
    parameters: Mapping[str, Any],
    target: str = DEFAULT_TARGET,
    safe_label: str = SAFE_LABEL,
) -> dict[str, Any]:
    """The machine-readable ``prepare_summary.json`` that later steps and tests read."""
    some_split = next(iter(kept.values()))
    labels = [*map(str, some_split.columns), safe_label]
    splits = {}
    for split in kept:
        splits[split] = {
            "file": SPLIT_FILES.get(split, f"{split}.jsonl"),
            "rows_drawn": int(raw[split].attrs.get("rows_drawn", len(raw[split]))),
            "rows_without_text": int(raw[split].attrs.get("rows_without_text", 0)),
            "rows_flagged": int(flags[split].any(axis=1).sum()),
            "rows_kept": len(kept[split]),
            "label_counts_drawn": label_counts(flags[split], safe_label),
            "label_counts": label_counts(kept[split], safe_label),
        }
    return {
        "source": source,
        "seed": parameters.get("seed"),
        "threshold": parameters.get("threshold"),
        "target": target,
        "labels": labels,
        "dropped_labels": list(dropped_labels),
        "splits": splits,
        "parameters": dict(parameters),
    }


# ------------------------------------------------------------------------------ all in one


def prepare_run(
    source: str,
    run_dir: str | os.PathLike,
    *,
    n_train: int = 1_000_000,
    n_validation: int = 50_000,
    n_test: int = 50_000,
    threshold: float = 0.5,
    zero_flags_fraction: float = 0.1,
    max_label_fraction: float = 0.2,
    min_label_fraction: float = 0.01,
    seed: int = 0,
    text_column: str = "text",
    label_columns: Sequence[str] | None = None,
    target: str = DEFAULT_TARGET,
    safe_label: str = SAFE_LABEL,
    dataset_format: str = "text",
    progress: bool = False,
) -> dict[str, Any]:
    """The whole prepare step: JSONL per split, ``distribution.png`` and the summary.

    Same steps as notebooks/01_prepare.ipynb. The summary is written last, so its presence
    means the run folder holds a complete prepare step.
    """
    from moderation_helpers.pages.plots.distribution import plot_distribution

    parameters = dict(
        source=source,
        n_train=n_train,
        n_validation=n_validation,
        n_test=n_test,
        threshold=threshold,
        zero_flags_fraction=zero_flags_fraction,
        max_label_fraction=max_label_fraction,
        min_label_fraction=min_label_fraction,
        seed=seed,
        text_column=text_column,
        label_columns=None if label_columns is None else list(label_columns),
        dataset_format=dataset_format,
    )
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    raw = load_splits(
        source, sizes, text_column=text_column, label_columns=label_columns, progress=progress
    )
    columns = infer_label_columns(raw["train"], text_column)
    flags = {split: threshold_labels(df, columns, threshold) for split, df in raw.items()}
    balanced = {
        split: balance(f, zero_flags_fraction, max_label_fraction, seed)
        for split, f in flags.items()
    }
    kept, dropped = drop_rare_labels(balanced, min_label_fraction)

    run = ensure_run_dir(run_dir)
    for split, split_flags in kept.items():
        write_split_jsonl(
            raw[split][text_column],
            split_flags,
            run / SPLIT_FILES[split],
            target=target,
            safe_label=safe_label,
            dataset_format=dataset_format,
        )
    plot_distribution(kept, path=run / DISTRIBUTION_PNG, safe_label=safe_label)
    summary = summarize(
        source=source,
        raw=raw,
        flags=flags,
        kept=kept,
        dropped_labels=dropped,
        parameters=parameters,
        target=target,
        safe_label=safe_label,
    )
    write_json(run, PREPARE_SUMMARY, summary)
    return summary

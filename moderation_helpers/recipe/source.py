"""Where the prepare step's rows come from: a dataset on the Hugging Face Hub, or a local folder
laid out like the hub repository, both read through ``datasets.load_dataset(..., streaming=True)``.

:func:`load_splits` streams the first *n* rows of each split into a DataFrame (text and label
columns); every failure to reach the source is one sentence saying which parameter to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

LOCAL_MIRROR_HINT = "../shared/data/civil_comments"
_HUB_CHECK_TIMEOUT_S = 5.0
_LOAD_BATCH_ROWS = 10_000


class SourceUnavailableError(RuntimeError):
    """The ``source`` parameter names a dataset that cannot be loaded from here."""


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

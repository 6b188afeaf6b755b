"""Filled templates made into training rows: the pool of sentences, the draw, and the rows
appended to a split.

The template modules of 01's additions (identity, context, abuse and opinion sentences) fill
their templates their own way and share these three steps, so that every addition has the same
layout (``text`` + one bool column per flag) and draws the same way from the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def sentence_pool(rows: Sequence[tuple[str, ...]], columns: Sequence[str]) -> pd.DataFrame:
    """Filled templates as a frame: each row's first field is its sentence, started with a
    capital; ``columns`` names the fields (the first ``text``); repeated sentences dropped."""
    frame = pd.DataFrame(rows, columns=list(columns))
    frame["text"] = frame["text"].str[:1].str.upper() + frame["text"].str[1:]
    return frame.drop_duplicates("text", ignore_index=True)


def draw_examples(
    pool: pd.DataFrame,
    n: int,
    seed: int,
    labels: Sequence[str],
    safe_label: str,
    flagged: Sequence[str],
) -> pd.DataFrame:
    """``n`` distinct rows of ``pool`` (a ``text`` column), each flagged with those of
    ``flagged`` that ``labels`` has, every other label False. When the pool has a ``template``
    column, each template is equally likely to be drawn, however many fillings it has."""
    if not 0 <= n <= len(pool):
        raise ValueError(f"n must be between 0 and {len(pool)} (the template pool), got {n}")
    columns = [str(label) for label in labels if label != safe_label]
    if len(set(columns)) != len(columns):
        raise ValueError(f"labels repeat a name: {list(labels)}")
    if "text" in columns:
        raise ValueError("'text' cannot be a label name: it is the text column")
    weights = None
    if "template" in pool.columns:
        weights = 1.0 / pool.groupby("template")["text"].transform("size").to_numpy()
        weights /= weights.sum()
    picks = np.random.default_rng(seed).choice(len(pool), size=n, replace=False, p=weights)
    out = pd.DataFrame({"text": pool["text"].to_numpy()[picks]})
    for column in columns:
        out[column] = np.full(n, column in flagged, dtype=bool)
    return out


def with_examples(
    texts: pd.Series, flags: pd.DataFrame, examples: pd.DataFrame, *, prefix: str = "identity"
) -> tuple[pd.Series, pd.DataFrame]:
    """``texts`` and ``flags`` (one split) with ``examples`` (``text`` + the same flag columns,
    as :func:`draw_examples` makes them) appended as new rows labelled ``prefix-N``."""
    missing = [c for c in flags.columns if c not in examples.columns]
    if missing:
        raise ValueError(f"the examples lack the flag columns {missing}")
    index = pd.Index([f"{prefix}-{i}" for i in range(len(examples))])
    added = examples.set_axis(index)
    return (
        pd.concat([texts, added["text"].rename(texts.name)]),
        pd.concat([flags, added[list(flags.columns)].astype(flags.dtypes.to_dict())]),
    )

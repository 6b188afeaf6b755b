"""Which identity terms the model scores higher, sentence for sentence.

The identity report (:func:`.behaviour.identity_report`) counts flags, and a term fills about
40 sentences: a count that small lists a term flagged at twice the others' rate in about one
report in ten (``benchmarks/bench_identity_spread.py``), and on a trained model's scores, where
a few templates carry most flags, a term whose odds of a flag are tripled in no report of 200
(``benchmarks/bench_identity_shift.py``). Scores say more than flags, and every
term fills the same templates, so a term can be compared with the others *in the same
sentence*: "My neighbour is blind." against "My neighbour is Hindu.". The template's own tone
(a short sentence scores high whatever group fills it) cancels, and what is left is what the
term adds.

Per term (or group): ``shift``, the mean over its sentences of its score's logit minus the
mean logit of the same template over every term that fills it; ``odds`` = exp(shift), how many
times the term multiplies the odds of a flag, with its 95% range (a t interval over its
sentences, for the term alone); ``p``, a permutation test that shuffles the terms within each
template (a model that treats them alike makes them interchangeable there), taking the largest
mean shift of any term, times the square root of its count, as the statistic (max-T), so that
``p < 0.05`` lists a term in about 5% of reports on a fair model, however many terms there are
(4.2% of 1,000 simulated fair reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from .intervals import CONFIDENCE

PERMUTATIONS = 2000
ODDS_RANGE = ("odds_low", "odds_high")
# Scores of exactly 0 or 1 (a float32 sigmoid saturates) would give infinite logits.
EPSILON = 1e-6


def logits(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of scores in [0, 1], clipped ``EPSILON`` from either end."""
    p = np.clip(np.asarray(scores, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def _shuffled_means(
    codes: np.ndarray,
    values: np.ndarray,
    templates: np.ndarray,
    k: int,
    permutations: int,
    seed: int,
) -> np.ndarray:
    """``(permutations, k)`` mean value per code with codes shuffled within each template."""
    rng = np.random.default_rng(seed)
    shuffled = np.empty((permutations, len(codes)), dtype=np.int64)
    for rows in pd.Series(np.arange(len(codes))).groupby(templates, sort=False).indices.values():
        order = rng.random((permutations, len(rows))).argsort(axis=1)
        shuffled[:, rows] = codes[rows][order]
    flat = (shuffled + k * np.arange(permutations)[:, None]).ravel()
    weights = np.broadcast_to(values, shuffled.shape).ravel()
    sums = np.bincount(flat, weights=weights, minlength=k * permutations)
    counts = np.bincount(flat, minlength=k * permutations)
    return (sums / np.maximum(counts, 1)).reshape(permutations, k)


def score_shift(
    cases: pd.DataFrame,
    scores: Sequence[float] | np.ndarray,
    *,
    by: str = "term",
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Per value of ``by`` (``term`` or ``group``) in the identity ``cases`` (columns ``term``,
    ``group``, ``template``; :func:`.behaviour.identity_cases`) scored ``scores`` (one per
    case, e.g. the highest flag-label score): ``group`` (by term only), ``n``, ``shift`` (mean
    logit above the same templates' mean), ``odds`` (exp of it), ``odds_low`` / ``odds_high``
    (its range at ``confidence``, for that name alone), ``p`` (family-wise, max-T over
    within-template permutations; seeded, so a report is reproducible) and ``above`` (``p``
    below ``1 - confidence``). Rows ordered by ``shift``, highest first."""
    values = logits(scores)
    if values.shape != (len(cases),):
        raise ValueError(f"{values.size} scores for {len(cases)} identity cases")
    frame = cases[["term", "group", "template"]].assign(logit=values)
    frame["shift"] = frame["logit"] - frame.groupby("template", sort=False)["logit"].transform(
        "mean"
    )
    grouped = frame.groupby(by, sort=False)
    table = pd.DataFrame({"n": grouped.size(), "shift": grouped["shift"].mean()})
    if by != "group":
        table.insert(0, "group", grouped["group"].first())
    half = student_t.ppf(0.5 + confidence / 2, np.maximum(table["n"] - 1, 1)) * (
        grouped["shift"].std(ddof=1) / np.sqrt(table["n"])
    )
    table["odds"] = np.exp(table["shift"])
    table[ODDS_RANGE[0]] = np.exp(table["shift"] - half)
    table[ODDS_RANGE[1]] = np.exp(table["shift"] + half)
    codes = pd.Categorical(frame[by], categories=table.index).codes.astype(np.int64)
    shuffled = _shuffled_means(
        codes,
        frame["shift"].to_numpy(),
        frame["template"].to_numpy(),
        len(table),
        permutations,
        seed,
    )
    # means of fewer sentences swing more: scaled by sqrt(n), so that no term is listed by
    # chance more often than another for filling fewer templates
    scale = np.sqrt(table["n"].to_numpy())
    largest = (shuffled * scale).max(axis=1)
    observed = table["shift"].to_numpy() * scale
    table["p"] = (1 + (largest[:, None] >= observed[None, :]).sum(axis=0)) / (permutations + 1)
    table["above"] = table["p"] < 1 - confidence
    return table.sort_values("shift", ascending=False, kind="stable").rename_axis(by)


def above(shift: pd.DataFrame) -> list[str]:
    """The names :func:`score_shift` lists as scored above the others beyond chance, highest
    shift first."""
    return shift.index[shift["above"]].tolist()


def shift_record(terms: pd.DataFrame, groups: pd.DataFrame) -> dict[str, Any]:
    """:func:`score_shift`'s tables by term and by group as ``evaluation.json`` keeps them:
    ``{"terms": {name: {odds, odds_low, odds_high, p}}, "groups": {...}, "above": {"terms":
    [...], "groups": [...]}}``, names in the tables' order (highest shift first)."""
    fields = ("odds", *ODDS_RANGE, "p")
    tables = {"terms": terms, "groups": groups}
    record: dict[str, Any] = {
        level: {str(name): {f: float(row[f]) for f in fields} for name, row in table.iterrows()}
        for level, table in tables.items()
    }
    record["above"] = {level: above(table) for level, table in tables.items()}
    return record

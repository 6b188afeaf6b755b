"""Which identity terms the model treats worse than the others, sentence for sentence.

Every term fills the same templates, so a term can be compared with the others *in the same
sentence*: "My neighbour is blind." against "My neighbour is Hindu.". The template's own tone
(a short sentence scores high whatever group fills it) cancels, and what is left is what the
term adds. :func:`within_template_p` asks whether a term's values (flags, or scores' logits)
lie above the others' in the same templates by more than chance explains; the identity report
(:func:`.behaviour.identity_report`) asks it of the flags. A count against the overall rate
cannot: it takes a term's sentences as equally likely to be flagged, when flags gather in a
few templates, and on a trained model's scores it lists a term whose odds of a flag are
tripled in no report of 200 (``benchmarks/bench_identity_shift.py``). Scores say more than
flags: :func:`score_shift` reads them.

In :func:`score_shift`, per term (or group): ``shift``, the mean over its sentences of its
score's logit minus the mean logit of the same template over every term that fills it;
``odds`` = exp(shift), how many times the term multiplies the odds of a flag, with its 95%
range (a t interval over its sentences, for the term alone); ``p``, a permutation test that
shuffles the terms within each template (a model that treats them alike makes them
interchangeable there), taking the largest mean shift of any term, times the square root of
its count, as the statistic (max-T), so that ``p < 0.05`` lists a term in about 5% of reports
on a fair model, however many terms there are (4.2% of 1,000 simulated fair reports).
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


def _centred(cases: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """Each value minus the mean of its template's values over every term that fills it."""
    series = pd.Series(values, index=cases.index)
    return series - series.groupby(cases["template"].to_numpy(), sort=False).transform("mean")


def within_template_p(
    cases: pd.DataFrame,
    values: Sequence[float] | np.ndarray,
    *,
    by: str = "term",
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> pd.Series:
    """Per value of ``by`` (in order of first appearance), the family-wise p that its
    ``values`` (logits, or flags as 0/1) lie above the other terms' in the same templates.

    Each value is taken against its template's mean; a name's statistic is the mean of its
    values times the square root of their count, and its p the share of ``permutations``
    shuffles of the terms within each template in which *any* name reaches it (max-T)."""
    shift = _centred(cases, np.asarray(values, dtype=np.float64))
    grouped = shift.groupby(cases[by].to_numpy(), sort=False)
    n, observed = grouped.size(), grouped.mean()
    names = n.index.rename(by)
    codes = pd.Categorical(cases[by], categories=names).codes.astype(np.int64)
    shuffled = _shuffled_means(
        codes, shift.to_numpy(), cases["template"].to_numpy(), len(names), permutations, seed
    )
    # means of fewer sentences swing more: scaled by sqrt(n), so that no term is listed by
    # chance more often than another for filling fewer templates
    scale = np.sqrt(n.to_numpy())
    largest = (shuffled * scale).max(axis=1)
    exceed = (largest[:, None] >= (observed.to_numpy() * scale)[None, :]).sum(axis=0)
    return pd.Series((1 + exceed) / (permutations + 1), index=names, name="p")


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
    (its range at ``confidence``, for that name alone), ``p`` (:func:`within_template_p` on
    the logits; seeded, so a report is reproducible) and ``above`` (``p`` below
    ``1 - confidence``). Rows ordered by ``shift``, highest first."""
    values = logits(scores)
    if values.shape != (len(cases),):
        raise ValueError(f"{values.size} scores for {len(cases)} identity cases")
    shift = _centred(cases, values)
    grouped = shift.groupby(cases[by].to_numpy(), sort=False)
    table = pd.DataFrame({"n": grouped.size(), "shift": grouped.mean()})
    if by != "group":
        table.insert(0, "group", cases.groupby(by, sort=False)["group"].first())
    half = student_t.ppf(0.5 + confidence / 2, np.maximum(table["n"] - 1, 1)) * (
        grouped.std(ddof=1) / np.sqrt(table["n"])
    )
    table["odds"] = np.exp(table["shift"])
    table[ODDS_RANGE[0]] = np.exp(table["shift"] - half)
    table[ODDS_RANGE[1]] = np.exp(table["shift"] + half)
    table["p"] = within_template_p(cases, values, by=by, permutations=permutations, seed=seed)
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

"""What a count against the overall rate can see in 04's identity bias report: how often an
exact test names a term by chance, and how often it names a term the model truly flags more.

    python benchmarks/bench_identity_spread.py [--runs 200 --seed 0]

Simulated flags on the report's own sentences (``behaviour.identity_cases``: 27 terms, 33 to 40
sentences each): every term flagged at one rate (a fair model), or one term ("blind", a
disability term with 40 sentences) at a multiple of it, every sentence of a term equally likely
to be flagged. Per run, the report's counts are drawn (binomial per term). Prints, per rate:
the share of fair runs that list any term by the exact rule (``intervals.above_rate``: a
one-sided binomial test against the overall rate, Bonferroni over the terms; the report's rule
until 2026-12-03), by a term's Wilson range above the overall rate at 95% for the family
(Bonferroni), and by its own 95% range alone; then the share of runs in which the exact rule
lists the one biased term, per multiple. On a trained model's flags, which gather in a few
templates, the report now tests within templates instead (``bench_identity_shift.py``). No
model is trained; a few minutes at 200 runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from moderation_helpers.recipe import behaviour
from moderation_helpers.recipe.intervals import CONFIDENCE, above_rate, wilson

RATES = (0.05, 0.10, 0.20)
MULTIPLES = (1.5, 2.0, 2.5, 3.0)
BIASED = "blind"


def listed(
    terms: pd.DataFrame, rates: np.ndarray, rng: np.random.Generator, runs: int
) -> dict[str, list[list[str]]]:
    """Per rule, per run, the terms it lists: the exact test (``intervals.above_rate``), a Wilson
    range corrected for the family, a 95% Wilson range alone."""
    out: dict[str, list[list[str]]] = {"exact": [], "wilson_family": [], "wilson_each": []}
    n = terms["n"].to_numpy()
    family = 1 - (1 - CONFIDENCE) / len(terms)
    for _ in range(runs):
        flagged = rng.binomial(n, rates)
        overall = flagged.sum() / n.sum()
        out["exact"].append(terms.index[above_rate(flagged, n, overall)].tolist())
        for rule, confidence in (("wilson_family", family), ("wilson_each", CONFIDENCE)):
            low, _ = wilson(flagged, n, confidence)
            out[rule].append(terms.index[low > overall].tolist())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cases = behaviour.identity_cases()
    terms = cases.groupby("term", sort=False).agg(n=("text", "size"), group=("group", "first"))
    rng = np.random.default_rng(args.seed)
    rows = []
    for rate in RATES:
        fair = np.full(len(terms), rate)
        fair_runs = listed(terms, fair, rng, args.runs)
        row = {"rate": rate}
        for rule, name in (
            ("exact", "exact, family"),
            ("wilson_family", "Wilson, family"),
            ("wilson_each", "Wilson 95% each"),
        ):
            row[f"fair: any listed ({name})"] = np.mean([bool(x) for x in fair_runs[rule]])
        for multiple in MULTIPLES:
            biased = np.where(terms.index == BIASED, min(rate * multiple, 1.0), rate)
            runs = listed(terms, biased, rng, args.runs)["exact"]
            row[f"{BIASED} at {multiple}x: listed"] = np.mean([BIASED in x for x in runs])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("rate")
    print(f"{args.runs} runs a cell, seed {args.seed}; {len(terms)} terms, {len(cases)} sentences")
    print(behaviour.markdown_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

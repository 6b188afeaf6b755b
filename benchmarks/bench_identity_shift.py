"""What the score test sees that the flag count does not: 04's two ways of asking whether a
model treats an identity term worse, on a real model's scores.

    python benchmarks/bench_identity_shift.py --model runs/docs/model [--runs 200 --seed 0]

The model scores 04's identity sentences (``behaviour.identity_cases``: 27 terms, 33 to 40
sentences each). Per run, each template's rows are shuffled among the terms that fill it, so
the terms become interchangeable (a fair model with this model's scores); then every label's
logit on one term's sentences ("blind") is raised by ``log(multiple)``, multiplying its odds
of a flag by that much. Each run is read three ways: the flag count against the overall rate
(``intervals.above_rate``: an exact test, Bonferroni over the terms; the report's rule until
2026-12-03), the flags within templates (``identity_spread``'s ``above_overall`` now:
``identity_shift.within_template_p`` on the flags) and the scores (``identity_shift.score_shift``:
the highest flag-label score's logit within each template). Prints, per multiple (1 = fair),
the share of runs that list the biased term, and that list any other term (a fair term named
by chance). No model is trained; about five minutes at 200 runs (2 cores).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moderation_helpers.recipe import behaviour, identity_shift
from moderation_helpers.recipe.intervals import above_rate

MULTIPLES = (1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
BIASED = "blind"
PERMUTATIONS = 500
RULES = ("flags, exact", "flags, within templates", "scores")


def identity_logits(model: str | Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The identity cases, the model's logit per case and flag label ``(cases, labels)``, and
    those labels' thresholds as logits."""
    from moderation_helpers.model.moderator import Moderator

    moderator = Moderator.load(model)
    cases = behaviour.identity_cases()
    frame = moderator.score_frame(cases["text"].tolist())
    table = moderator.threshold_table()
    flag_columns = [c for c in frame.columns if c[1] != moderator.safe_label]
    limits = np.array([table.limits[c] for c in flag_columns])
    return (
        cases,
        identity_shift.logits(frame[flag_columns].to_numpy()),
        identity_shift.logits(limits),
    )


def listed(
    cases: pd.DataFrame,
    logits: np.ndarray,
    limits: np.ndarray,
    multiple: float,
    rng: np.random.Generator,
    runs: int,
) -> dict[str, np.ndarray]:
    """Per rule of :data:`RULES`, per run: whether it listed the biased term and whether it
    listed any other."""
    rows = pd.Series(np.arange(len(cases))).groupby(cases["template"].to_numpy()).indices
    biased = (cases["term"] == BIASED).to_numpy()
    out = {rule: np.zeros((runs, 2), dtype=bool) for rule in RULES}
    sizes = cases.groupby("term", sort=False).size()
    for run in range(runs):
        order = np.arange(len(cases))
        for members in rows.values():
            order[members] = rng.permutation(members)
        shuffled = logits[order] + np.where(biased, np.log(multiple), 0.0)[:, None]
        flagged = (shuffled >= limits).any(axis=1)
        counts = pd.Series(flagged).groupby(cases["term"].to_numpy()).sum()[sizes.index]
        exact = sizes.index[above_rate(counts, sizes, flagged.mean())].tolist()
        report = behaviour.identity_report(cases, flagged)
        paired = behaviour.identity_spread(report).loc["term", "above_overall"]
        shift = identity_shift.score_shift(
            cases,
            1 / (1 + np.exp(-shuffled.max(axis=1))),
            permutations=PERMUTATIONS,
            seed=int(rng.integers(2**31)),
        )
        names_by_rule = (exact, paired, identity_shift.above(shift))
        for rule, names in zip(RULES, names_by_rule, strict=True):
            out[rule][run] = (BIASED in names, any(name != BIASED for name in names))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an exported model folder")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cases, logits, limits = identity_logits(args.model)
    rng = np.random.default_rng(args.seed)
    rows = []
    for multiple in MULTIPLES:
        result = listed(cases, logits, limits, multiple, rng, args.runs)
        row = {"odds multiple": multiple}
        for rule, counts in result.items():
            row[f"{BIASED} listed ({rule})"] = counts[:, 0].mean()
            row[f"another listed ({rule})"] = counts[:, 1].mean()
        rows.append(row)
    flagged = (logits >= limits).any(axis=1).mean()
    print(
        f"{args.model}: {len(cases)} sentences, {flagged:.1%} flagged; {args.runs} runs a "
        f"row, seed {args.seed}, {PERMUTATIONS} permutations a score test"
    )
    print(behaviour.markdown_table(pd.DataFrame(rows).set_index("odds multiple"), digits=3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How 04's base-rate threshold transfers: the smoothed F1 peak, at several kernel widths,
against the raw reweighted one.

    python benchmarks/bench_quality.py --save-scores scores/   # fold scores (toxicity)
    python benchmarks/bench_thresholds.py scores/*.npz [--rate 0.08 --rows 100 --draws 40]
        [--scales 1 1.5 2 2.5 3 4]

Each file holds one cross-validation fold's held-out toxicity scores and truth (``held_out``,
``y``) and the behavioural suite's scores (``cases``), as ``bench_quality.py --save-scores``
writes them. From each fold, ``--draws`` times: ``--rows`` held-out rows play 04's validation
split (the mirror's is 100 rows), a threshold is tuned on them for ``--rate`` by each rule
(``base_rate.base_rate_threshold``: raw, and smoothed at each of ``--scales``), and is measured
on the fold's *other* rows, reweighted to the rate (F1 at that rate), and on the suite
(accuracy, attacks on groups caught, benign cases flagged) with toxicity as the flag. Prints
the mean and spread of each.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_explain import cpu_name  # noqa: E402

from moderation_helpers.recipe import base_rate as br  # noqa: E402
from moderation_helpers.recipe import behaviour  # noqa: E402


def measure(
    files: Sequence[Path], rate: float, rows: int, draws: int, seed: int, scales: Sequence[float]
) -> dict:
    """Per rule (the raw peak, and the smoothed peak at each bandwidth scale of ``scales``), an
    array of (threshold, F1 at ``rate`` on other rows, suite accuracy, attacks on groups
    caught, benign cases flagged), one row per draw."""
    cases = behaviour.load_cases()
    toxic = cases["toxic"].to_numpy(bool)
    attacks = cases["behaviour"].eq("identity_attack").to_numpy()
    rng = np.random.default_rng(seed)
    rules = {"raw peak": dict(smooth=False)}
    rules |= {f"smoothed peak, {x:g} x Silverman": dict(bandwidth_scale=x) for x in scales}
    out: dict[str, list] = {name: [] for name in rules}
    for path in files:
        saved = np.load(path)
        y, s, suite = saved["y"].astype(bool), saved["held_out"], saved["cases"]
        if len(suite) != len(cases):
            raise SystemExit(f"{path}: {len(suite)} suite scores, the suite has {len(cases)}")
        for _ in range(draws):
            tune = rng.choice(len(y), rows, replace=False)
            rest = np.setdiff1d(np.arange(len(y)), tune)
            curve_t, curve_f1 = br.weighted_f1_curve(
                y[rest], s[rest], br.prior_weights(y[rest], rate)
            )
            for name, rule in rules.items():
                t = br.base_rate_threshold(y[tune], s[tune], rate, **rule)
                reached = np.flatnonzero(curve_t >= t)
                flags = suite >= t
                out[name].append(
                    (
                        t,
                        curve_f1[reached[-1]] if reached.size else 0.0,
                        (flags == toxic).mean(),
                        flags[attacks].mean(),
                        flags[~toxic].mean(),
                    )
                )
    return {name: np.array(v) for name, v in out.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench_quality --save-scores files")
    parser.add_argument("--rate", type=float, default=br.TOXICITY_BASE_RATE)
    parser.add_argument("--rows", type=int, default=100, help="rows a draw tunes on")
    parser.add_argument("--draws", type=int, default=40, help="draws per fold")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0, br.BANDWIDTH_SCALE],
        help="kernel widths to compare, in Silverman's bandwidths (04's default: "
        f"{br.BANDWIDTH_SCALE:g})",
    )
    args = parser.parse_args(argv)
    results = measure(args.files, args.rate, args.rows, args.draws, args.seed, args.scales)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_name()}")
    print(
        f"{len(args.files)} folds x {args.draws} draws of {args.rows} tuning rows; "
        f"F1 at {args.rate:.0%} measured on each fold's other rows\n"
    )
    print(
        "| rule | threshold | sd | F1 at rate | its 10th pct | suite accuracy "
        "| attacks on groups caught | benign cases flagged |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, v in results.items():
        print(
            f"| {name} | {v[:, 0].mean():.3f} | {v[:, 0].std():.3f} | {v[:, 1].mean():.3f} "
            f"| {np.percentile(v[:, 1], 10):.3f} | {v[:, 2].mean():.3f} | {v[:, 3].mean():.3f} "
            f"| {v[:, 4].mean():.3f} |"
        )


if __name__ == "__main__":
    main()

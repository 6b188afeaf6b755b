"""How 04's base-rate threshold transfers: the smoothed F1 peak, at several kernel widths,
against the raw reweighted one, for any label; for a label other than toxicity, also tuned for
the traffic's mix of negatives.

    python benchmarks/bench_quality.py --save-scores scores/   # fold scores (every label)
    python benchmarks/bench_thresholds.py scores/*.npz [--rate 0.08 --rows 100 --draws 40]
        [--scales 1 1.5 2 2.5 3 4] [--label identity_attack]

Each file holds one cross-validation fold's held-out scores and truth and the behavioural
suite's scores, as ``bench_quality.py --save-scores`` writes them. From each fold, ``--draws``
times: ``--rows`` held-out rows play 04's validation split (the mirror's is 100 rows), a
threshold is tuned on them by each rule (``base_rate.base_rate_threshold``: raw, and smoothed at
each of ``--scales``), and is measured on the fold's *other* rows, reweighted to the label's
rate with the traffic's mix of negatives (F1 at that rate, as 04's ``expected_f1`` reads it:
``base_rate_curve.traffic_mix``), and on the suite with the label as the flag. Toxicity's rate
is ``--rate``; another label's is 04's default (``base_rate.default_base_rates``: its share
scaled by toxicity's factor, on the tuning rows for the tuning and on the other rows for the
measure). The suite columns: accuracy over every case (toxicity only), the cases of the
behaviour named like the label caught (toxicity: attacks on groups), benign cases and the
identity sentences flagged. Prints the mean and spread of each.

``--any-label`` instead tunes every label on each fold's held-out rows, as 04 does, once on each
label's own classes (04's default) and once for the traffic's mix
(``tune_for_base_rate(tune_for_traffic_mix=True)``), and prints the suite flagged by any label,
as ``moderate()`` flags it (``bench_quality.any_label_readings``), mean over folds.

``--ranges`` instead checks 04's expected precision and recall at the rate and their ranges
(``base_rate_curve.expected_metrics``): per draw, the threshold 04 tunes on the ``--rows``
tuning rows and what those rows expect of it, against the precision and recall the fold's other
rows give it at the rate. The other rows are a sample too (about as many), so the share of
draws whose measure falls inside the range reads low against the truth it estimates.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_explain import cpu_name  # noqa: E402
from bench_quality import any_label_readings  # noqa: E402

from moderation_helpers.recipe import base_rate as br  # noqa: E402
from moderation_helpers.recipe import base_rate_curve as curve  # noqa: E402
from moderation_helpers.recipe import behaviour  # noqa: E402


def _fold(path: Path, label: str, n_cases: int) -> tuple[np.ndarray, ...]:
    """One saved fold: every label's truth and scores, the label's suite and identity scores."""
    saved = np.load(path)
    if "labels" not in saved:  # an older file: toxicity only
        if label != "toxicity":
            raise SystemExit(f"{path}: toxicity scores only; rerun bench_quality --save-scores")
        y_all, s_all = saved["y"][:, None].astype(bool), saved["held_out"][:, None]
        suite, identity, column = saved["cases"], saved["identity"], 0
    else:
        names = list(saved["labels"])
        if label not in names:
            raise SystemExit(f"{path}: no label {label!r} (labels: {', '.join(names)})")
        column, tox = names.index(label), names.index("toxicity")
        # Toxicity first: the reference for the other labels' default rates.
        y_all = saved["y_all"][:, [tox, column]].astype(bool)
        s_all = saved["held_out_all"][:, [tox, column]]
        suite, identity = saved["cases_all"][:, column], saved["identity_all"][:, column]
    if len(suite) != n_cases:
        raise SystemExit(f"{path}: {len(suite)} suite scores, the suite has {n_cases}")
    return y_all, s_all, suite, identity


def _label_rate(y: np.ndarray, rate: float, label: str) -> float:
    """04's default rate for the label, from toxicity's (column 0) and the label's truth."""
    if y.shape[1] == 1 or label == "toxicity":
        return rate
    column = ("moderation", label)
    truth = pd.DataFrame(y, columns=pd.MultiIndex.from_tuples([br.REFERENCE_LABEL, column]))
    return br.default_base_rates(truth, reference_rate=rate)[column]


def _mix(y: np.ndarray, rate: float, label: str) -> dict:
    """The traffic-mix arguments for rows ``y`` (toxicity in column 0)."""
    if y.shape[1] == 1 or label == "toxicity":
        return {}
    return dict(reference=y[:, 0], reference_rate=rate)


def measure(
    files: Sequence[Path],
    rate: float,
    rows: int,
    draws: int,
    seed: int,
    scales: Sequence[float],
    label: str = "toxicity",
) -> dict:
    """Per rule (the raw peak, the smoothed peak at each bandwidth scale of ``scales``, and for
    a label other than toxicity the smoothed peak at 1x tuned for the traffic's mix), an
    array of (threshold, F1 at the label's rate on other rows, suite accuracy, the label's
    behaviour caught, benign cases flagged, identity sentences flagged), one row per draw."""
    cases = behaviour.load_cases()
    toxic = cases["toxic"].to_numpy(bool)
    named = "identity_attack" if label == "toxicity" else label
    target = cases["behaviour"].eq(named).to_numpy()
    rng = np.random.default_rng(seed)
    rules = {"raw peak": dict(smooth=False)}
    rules |= {f"smoothed peak, {x:g} x Silverman": dict(bandwidth_scale=x) for x in scales}
    if label != "toxicity":
        rules["smoothed peak, 1 x Silverman, traffic mix"] = dict(bandwidth_scale=1.0, mix=True)
    out: dict[str, list] = {name: [] for name in rules}

    for path in files:
        y_all, s_all, suite, identity = _fold(path, label, len(cases))
        y, s = y_all[:, -1], s_all[:, -1]
        for _ in range(draws):
            tune = rng.choice(len(y), rows, replace=False)
            rest = np.setdiff1d(np.arange(len(y)), tune)
            if not y[tune].any():
                continue  # 04 keeps the default threshold: nothing to compare
            cells = curve.traffic_mix(
                y[rest], _label_rate(y_all[rest], rate, label), **_mix(y_all[rest], rate, label)
            )
            curve_t, curve_f1 = curve.weighted_f1_curve(y[rest], s[rest], curve.mix_weights(*cells))
            for name, rule in rules.items():
                rule = dict(rule)
                extra = _mix(y_all[tune], rate, label) if rule.pop("mix", False) else {}
                t = curve.base_rate_threshold(
                    y[tune], s[tune], _label_rate(y_all[tune], rate, label), **rule, **extra
                )
                reached = np.flatnonzero(curve_t >= t)
                flags = suite >= t
                out[name].append(
                    (
                        t,
                        curve_f1[reached[-1]] if reached.size else 0.0,
                        (flags == toxic).mean() if label == "toxicity" else np.nan,
                        flags[target].mean() if target.any() else np.nan,
                        flags[~toxic].mean(),
                        (identity >= t).mean(),
                    )
                )
    return {name: np.array(v) for name, v in out.items()}


def ranges(
    files: Sequence[Path], rate: float, rows: int, draws: int, seed: int, label: str
) -> pd.DataFrame:
    """Per draw and figure (precision, recall): what the tuning rows expect at 04's threshold,
    the range's ends, and the fold's other rows' measure at the label's rate."""
    rng = np.random.default_rng(seed)
    n_cases = len(behaviour.load_cases())
    out = []
    for path in files:
        y_all, s_all, _, _ = _fold(path, label, n_cases)
        y, s = y_all[:, -1], s_all[:, -1]
        scale = br.bandwidth_scale_for(("moderation", label))
        for _ in range(draws):
            tune = rng.choice(len(y), rows, replace=False)
            rest = np.setdiff1d(np.arange(len(y)), tune)
            if not y[tune].any():
                continue
            part_rate = _label_rate(y_all[tune], rate, label)
            t = curve.base_rate_threshold(y[tune], s[tune], part_rate, bandwidth_scale=scale)
            expect = curve.expected_metrics(
                y[tune], s[tune], t, part_rate, **_mix(y_all[tune], rate, label)
            )
            seen = curve.expected_metrics(
                y[rest],
                s[rest],
                t,
                _label_rate(y_all[rest], rate, label),
                **_mix(y_all[rest], rate, label),
            )
            for figure in ("precision", "recall"):
                key = f"expected_{figure}"
                out.append(
                    {
                        "figure": figure,
                        "expected": expect[key],
                        "low": expect[f"{key}_low"],
                        "high": expect[f"{key}_high"],
                        "other rows": seen[key],
                    }
                )
    return pd.DataFrame(out).dropna()


def ranges_summary(draws: pd.DataFrame) -> pd.DataFrame:
    """Per figure: the mean expected and measured, how often the other rows' measure falls in
    the range, how often within 0.1 of the point expected, and the range's median width."""
    marked = draws.assign(
        inside=draws["other rows"].between(draws["low"], draws["high"]),
        near=(draws["other rows"] - draws["expected"]).abs() <= 0.1,
        width=draws["high"] - draws["low"],
    )
    return marked.groupby("figure").agg(
        **{
            "draws": ("expected", "size"),
            "expected (mean)": ("expected", "mean"),
            "other rows (mean)": ("other rows", "mean"),
            "in the range": ("inside", "mean"),
            "within 0.1 of the point": ("near", "mean"),
            "range width (median)": ("width", "median"),
        }
    )


def any_label(files: Sequence[Path], rate: float) -> pd.DataFrame:
    """Per tuning (each label's own classes, the traffic's mix): the suite's readings by any
    label at the thresholds tuned on each fold's held-out rows, mean over folds."""
    readings: dict[str, list[dict]] = {"own classes": [], "traffic mix": []}
    for path in files:
        saved = np.load(path)
        if "labels" not in saved:
            raise SystemExit(f"{path}: toxicity scores only; rerun bench_quality --save-scores")
        fold = (
            list(saved["labels"]),
            saved["y_all"],
            saved["held_out_all"],
            saved["cases_all"],
            saved["identity_all"],
            rate,
        )
        for name, mix in (("own classes", False), ("traffic mix", True)):
            readings[name].append(any_label_readings(*fold, tune_for_traffic_mix=mix))
    return pd.DataFrame({name: pd.DataFrame(rows).mean() for name, rows in readings.items()})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="bench_quality --save-scores files")
    parser.add_argument("--rate", type=float, default=br.TOXICITY_BASE_RATE, help="toxicity's")
    parser.add_argument("--label", default="toxicity", help="the label whose threshold is tuned")
    parser.add_argument("--rows", type=int, default=100, help="rows a draw tunes on")
    parser.add_argument("--draws", type=int, default=40, help="draws per fold")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=[1.0, curve.BANDWIDTH_SCALE],
        help="kernel widths to compare, in Silverman's bandwidths (04's default: "
        f"{curve.BANDWIDTH_SCALE:g})",
    )
    parser.add_argument(
        "--any-label", action="store_true", help="the suite flagged by any label, two tunings"
    )
    parser.add_argument(
        "--ranges", action="store_true", help="04's expected precision and recall and their ranges"
    )
    args = parser.parse_args(argv)
    if args.ranges:
        print(f"command: {shlex.join([sys.executable, *sys.argv])}")
        print(f"cpu: {cpu_name()}")
        print(
            f"{len(args.files)} folds x {args.draws} draws of {args.rows} tuning rows; label "
            f"{args.label}; toxicity at {args.rate:.0%}; measured on each fold's other rows\n"
        )
        table = ranges_summary(
            ranges(args.files, args.rate, args.rows, args.draws, args.seed, args.label)
        )
        print(table.round(3).to_markdown())
        return
    if args.any_label:
        print(f"command: {shlex.join([sys.executable, *sys.argv])}")
        print(f"cpu: {cpu_name()}")
        print(
            f"{len(args.files)} folds; toxicity at {args.rate:.0%}; every label tuned as 04 does\n"
        )
        print(any_label(args.files, args.rate).round(3).to_markdown())
        return
    results = measure(
        args.files, args.rate, args.rows, args.draws, args.seed, args.scales, args.label
    )
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_name()}")
    print(
        f"{len(args.files)} folds x {args.draws} draws of {args.rows} tuning rows; "
        f"label {args.label}; toxicity at {args.rate:.0%}; F1 at the label's rate measured on "
        "each fold's other rows\n"
    )
    print(
        "| rule | threshold | sd | F1 at rate | its 10th pct | suite accuracy "
        f"| {'attacks on groups' if args.label == 'toxicity' else args.label + ' cases'} caught "
        "| benign cases flagged | identity sentences flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, v in results.items():
        print(
            f"| {name} | {v[:, 0].mean():.3f} | {v[:, 0].std():.3f} | {v[:, 1].mean():.3f} "
            f"| {np.percentile(v[:, 1], 10):.3f} | {v[:, 2].mean():.3f} | {v[:, 3].mean():.3f} "
            f"| {v[:, 4].mean():.3f} | {v[:, 5].mean():.4f} |"
        )


if __name__ == "__main__":
    main()

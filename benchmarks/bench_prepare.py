"""How long the prepare step's data work takes at the recipe's size, vectorized vs per-row loops.

    python benchmarks/bench_prepare.py                      # temporary work folder, removed after
    python benchmarks/bench_prepare.py --work-dir /tmp/bench --keep --repeat 3

Builds a 1,000,000 / 50,000 / 50,000-row copy of the civil_comments mirror by resampling its
rows (with replacement, seeded) into parquet files laid out like the hub repository, then times

* the helpers of ``recipe.source`` and ``recipe.prepare``: load + threshold + balance + drop rare
  + write JSONL (each phase, best of ``--repeat``), with the figure and the validator timed apart;
* ``prepare_loop_baseline.py``: the same recipe with streamed dicts, Python loops and iterrows.

It checks that both wrote the same examples, and prints the times and the speed-up. Timings are
wall-clock on whatever else the machine is doing: run it on a quiet machine for figures to quote.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from moderation_helpers.core.jsonl import validate_jsonl
from moderation_helpers.pages.plots.distribution import plot_distribution
from moderation_helpers.recipe import prepare as data
from moderation_helpers.recipe.run_folder import SPLIT_FILES
from moderation_helpers.recipe.source import infer_label_columns, load_splits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data" / "civil_comments"


def load_baseline():
    spec = importlib.util.spec_from_file_location(
        "prepare_loop_baseline", Path(__file__).with_name("prepare_loop_baseline.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_source(mirror: Path, out: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """Resample the mirror's rows of each split to ``sizes`` rows, in the hub's file layout."""
    rng = np.random.default_rng(seed)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        files = sorted((mirror / "data").glob(f"{split}-*.parquet"))
        rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        sample = rows.iloc[rng.integers(0, len(rows), size=n)]
        sample.to_parquet(out / "data" / f"{split}-00000-of-00001.parquet", index=False)
    return out


@contextmanager
def timed(times: dict[str, float], name: str):
    start = time.perf_counter()
    yield
    times[name] = time.perf_counter() - start


def run_vectorized(source: Path, out: Path, sizes: dict[str, int]) -> dict[str, float]:
    """The helpers, phase by phase, with the recipe's default parameters."""
    times: dict[str, float] = {}
    with timed(times, "load"):
        raw = load_splits(str(source), sizes, progress=False)
    labels = infer_label_columns(raw["train"])
    with timed(times, "threshold"):
        flags = {split: data.threshold_labels(df, labels, 0.5) for split, df in raw.items()}
    with timed(times, "balance"):
        balanced = {split: data.balance(f, 0.1, 0.2, seed=0) for split, f in flags.items()}
    with timed(times, "drop rare"):
        kept, _ = data.drop_rare_labels(balanced, 0.01)
    with timed(times, "write JSONL"):
        for split, split_flags in kept.items():
            data.write_split_jsonl(raw[split]["text"], split_flags, out / SPLIT_FILES[split])
    times["data work"] = sum(times.values())
    with timed(times, "plot (apart)"):
        plot_distribution(kept, path=out / "distribution.png")
    with timed(times, "validate (apart)"):
        for name in SPLIT_FILES.values():
            validate_jsonl(out / name)
    return times


def same_examples(a: Path, b: Path) -> bool:
    """Both folders hold the same multiset of examples per split (order and spacing aside)."""
    for name in SPLIT_FILES.values():
        lines = [
            sorted(json.dumps(json.loads(line)) for line in (d / name).open(encoding="utf-8"))
            for d in (a, b)
        ]
        if lines[0] != lines[1]:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--work-dir", type=Path, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-validation", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="vectorized runs; best is kept")
    parser.add_argument("--skip-loop", action="store_true", help="time only the helpers")
    args = parser.parse_args(argv)
    if not (args.mirror / "data").is_dir():
        print(f"mirror not found: {args.mirror}", file=sys.stderr)
        return 2
    sizes = {"train": args.n_train, "validation": args.n_validation, "test": args.n_test}
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    try:
        start = time.perf_counter()
        source = build_source(args.mirror, work / "source", sizes)
        print(f"resampled {sizes} rows into {source} in {time.perf_counter() - start:.1f} s")

        runs = [run_vectorized(source, work / "vectorized", sizes) for _ in range(args.repeat)]
        best = min(runs, key=lambda t: t["data work"])
        print(f"\nvectorized helpers (best of {args.repeat}):")
        for name, seconds in best.items():
            print(f"  {name:<18}{seconds:8.2f} s")
        all_runs = ", ".join(f"{t['data work']:.2f}" for t in runs)
        print(f"  data work, every run: {all_runs} s")
        if args.skip_loop:
            return 0

        start = time.perf_counter()
        counts = load_baseline().prepare_loop(str(source), work / "loop", **_sizes_kw(sizes))
        loop_seconds = time.perf_counter() - start
        print(f"\nper-row loop baseline: {loop_seconds:8.2f} s (rows kept: {counts})")
        same = same_examples(work / "vectorized", work / "loop")
        print(f"same examples written by both: {same}")
        speedup = loop_seconds / best["data work"]
        print(f"\nspeed-up of the data work: {speedup:.1f}x (target: >= 20x)")
        return 0 if same else 1
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def _sizes_kw(sizes: dict[str, int]) -> dict[str, int]:
    return {f"n_{split}": n for split, n in sizes.items()}


if __name__ == "__main__":
    raise SystemExit(main())

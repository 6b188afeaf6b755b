"""The prepare step written the way the recipe writes it: one Python step per row.

Streams rows as dicts, thresholds each one, balances with the recipe's per-row loops, builds the
label lists with ``iterrows`` and ``json.dumps`` per line. Same semantics as
``moderation_helpers.recipe.prepare`` (first n rows, float64 comparisons, greedy cap, seeded
shuffle), so ``bench_prepare.py`` compares two implementations of one recipe and tests check they
agree on which rows are kept. Not used by the cookbook itself.

    python -m benchmarks.prepare_loop_baseline SOURCE OUT_DIR [--n-train N ...]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

SPLITS = ("train", "validation", "test")


def threshold_row(
    example: dict[str, Any], labels: Sequence[str], threshold: float, text_column: str = "text"
) -> dict[str, Any]:
    """One row: scores -> booleans (Python floats, as the recipe compares)."""
    row = {"text": example[text_column]}
    for label in labels:
        row[label] = example[label] is not None and float(example[label]) > threshold
    return row


def recipe_filter(
    samples: list[dict[str, Any]],
    labels: Sequence[str],
    zero_flags_percentage: float = 0.1,
    max_percentage: float = 0.2,
) -> list[dict[str, Any]]:
    """The recipe's ``filter_dataset`` loops: few unflagged rows, a greedy per-label cap.

    Returns kept flagged rows then kept unflagged rows, unshuffled.
    """
    zero_flags, flagged = [], []
    for example in samples:
        if any(example[label] for label in labels):
            flagged.append(example)
        else:
            zero_flags.append(example)
    total = len(flagged) / (1 - zero_flags_percentage)
    desired_zero = int(total * zero_flags_percentage)
    desired_flagged = int(total * (1 - zero_flags_percentage))
    counts = {label: 0 for label in labels}
    kept = []
    for example in flagged[:desired_flagged]:
        if all(
            not example[label] or (counts[label] + 1) / desired_flagged <= max_percentage
            for label in labels
        ):
            kept.append(example)
            for label in labels:
                if example[label]:
                    counts[label] += 1
    return kept + zero_flags[:desired_zero]


def prepare_loop(
    source: str,
    out_dir: str | Path,
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
) -> dict[str, int]:
    """Run the recipe row by row; write ``<split>.jsonl`` into ``out_dir``; rows kept per split."""
    dataset = datasets.load_dataset(source, streaming=True)
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    labels = [
        name
        for name, feature in dataset["train"].features.items()
        if name != text_column and getattr(feature, "dtype", "") in ("float32", "float64", "bool")
    ]
    rng = random.Random(seed)
    kept: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        samples = []
        for example in dataset[split].take(sizes[split]):
            text = example[text_column]
            if text is None or not str(text).strip():
                continue
            samples.append(threshold_row(example, labels, threshold, text_column))
        rows = recipe_filter(samples, labels, zero_flags_fraction, max_label_fraction)
        rng.shuffle(rows)
        kept[split] = rows

    all_df = pd.DataFrame([row for rows in kept.values() for row in rows])
    shares = all_df.drop(columns=["text"]).mean()
    to_remove = shares[shares < min_label_fraction].index.tolist()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in kept.items():
        df = pd.DataFrame(rows, columns=["text", *labels]).drop(columns=to_remove)
        categories = [c for c in df.columns if c != "text"]
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for _, row in df.iterrows():
                found = [c for c in categories if row[c]] or ["safe"]
                record = {"text": row["text"], "labels": {"moderation": found}}
                fh.write(json.dumps(record) + "\n")
    return {split: len(rows) for split, rows in kept.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out_dir")
    parser.add_argument("--n-train", type=int, default=1_000_000)
    parser.add_argument("--n-validation", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = prepare_loop(
        args.source,
        args.out_dir,
        n_train=args.n_train,
        n_validation=args.n_validation,
        n_test=args.n_test,
        seed=args.seed,
    )
    print(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

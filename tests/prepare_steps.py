"""The prepare step as notebooks/01_prepare.ipynb runs it, call by call, for tests that need a
prepared run folder without starting a kernel (test_notebook_prepare runs the notebook itself).

Keep the calls in step with the notebook's cells: load, threshold, balance, drop rare labels,
the training split's additions (``recipe.augment``), figure, JSONL per split, then the summary
(written last: its presence means a complete step).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from moderation_helpers.pages.plots.distribution import plot_distribution
from moderation_helpers.recipe import prepare, prepare_report, source
from moderation_helpers.recipe.augment import augment_training
from moderation_helpers.recipe.run_folder import (
    DISTRIBUTION_PNG,
    PREPARE_SUMMARY,
    SPLIT_FILES,
    ensure_run_dir,
    write_record,
)


def prepare_steps(
    data_source: str,
    run_dir: str | os.PathLike,
    *,
    n_train: int = 1_000_000,
    n_validation: int = 50_000,
    n_test: int = 50_000,
    threshold: float = 0.5,
    rater_scores: bool = True,
    zero_flags_fraction: float = 0.1,
    max_label_fraction: float = 0.2,
    min_label_fraction: float = 0.01,
    seed: int = 0,
    text_column: str = "text",
    label_columns: Sequence[str] | None = None,
    dataset_format: str = "text",
    spelling_variants: int = 100,
    identity_examples: int = 150,
    identity_attacks: int = 110,
    context_examples: int = 120,
    abuse_examples: int = 160,
    opinion_examples: int = 120,
    idiom_examples: int = 50,
    profanity_examples: int = 0,
) -> dict[str, Any]:
    """Run 01_prepare's calls with the notebook's parameters; return ``prepare_summary.json``."""
    parameters = {k: v for k, v in locals().items() if k not in ("data_source", "run_dir")}
    parameters = {"source": data_source, **parameters}
    run_path = ensure_run_dir(run_dir)
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    raw = source.load_splits(
        data_source, sizes, text_column=text_column, label_columns=label_columns, progress=False
    )
    labels = source.infer_label_columns(raw["train"], text_column)
    flags = {split: prepare.threshold_labels(df, labels, threshold) for split, df in raw.items()}
    balanced = {
        split: prepare.balance(split_flags, zero_flags_fraction, max_label_fraction, seed=seed)
        for split, split_flags in flags.items()
    }
    kept, dropped = prepare.drop_rare_labels(balanced, min_label_fraction)
    texts = {split: df[text_column] for split, df in raw.items()}
    texts["train"], kept["train"], _added = augment_training(
        texts["train"],
        kept["train"],
        spelling=spelling_variants,
        identity=identity_examples,
        attacks=identity_attacks,
        context=context_examples,
        abuse=abuse_examples,
        opinion=opinion_examples,
        idioms=idiom_examples,
        profanity=profanity_examples,
        seed=seed,
    )
    plot_distribution(kept, path=run_path / DISTRIBUTION_PNG)
    for split, split_flags in kept.items():
        prepare.write_split_jsonl(
            texts[split],
            split_flags,
            run_path / SPLIT_FILES[split],
            dataset_format=dataset_format,
            scores=raw[split][labels] if rater_scores else None,
        )
    summary = prepare_report.summarize(
        source=data_source,
        raw=raw,
        flags=flags,
        kept=kept,
        dropped_labels=dropped,
        parameters=parameters,
    )
    write_record(run_path, PREPARE_SUMMARY, summary)
    return summary


def load_baseline() -> ModuleType:
    """benchmarks/prepare_loop_baseline.py: the recipe's per-row loops, as a reference."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "prepare_loop_baseline.py"
    spec = importlib.util.spec_from_file_location("prepare_loop_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

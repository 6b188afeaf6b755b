"""What the prepare step reports: rows per label and split, before and after balancing, and
the machine-readable ``prepare_summary.json`` that later steps and tests read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.prepare import DEFAULT_TARGET
from moderation_helpers.recipe.run_folder import SPLIT_FILES


def label_counts(flags: pd.DataFrame, safe_label: str = SAFE_LABEL) -> dict[str, int]:
    """Rows per label, plus ``safe_label`` for rows without any flag."""
    counts = {str(c): int(n) for c, n in flags.sum().items()}
    counts[safe_label] = int((~flags.any(axis=1)).sum()) if len(flags.columns) else len(flags)
    return counts


def count_table(frames: Mapping[str, pd.DataFrame], safe_label: str = SAFE_LABEL) -> pd.DataFrame:
    """Rows, flagged rows and rows per label for each split: one row per split."""
    table = pd.DataFrame(
        {split: {"rows": len(f), **label_counts(f, safe_label)} for split, f in frames.items()}
    ).T
    table.insert(1, "flagged", table["rows"] - table[safe_label])
    return table.fillna(0).astype(int)


def compare_counts(
    before: Mapping[str, pd.DataFrame],
    after: Mapping[str, pd.DataFrame],
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """Counts before and after balancing side by side (columns: (count, 'before'/'after'))."""
    tables = {"before": count_table(before, safe_label), "after": count_table(after, safe_label)}
    combined = pd.concat(tables, axis=1).swaplevel(axis=1)
    return combined[list(tables["before"].columns)].fillna(0).astype(int)


def summarize(
    *,
    source: str,
    raw: Mapping[str, pd.DataFrame],
    flags: Mapping[str, pd.DataFrame],
    kept: Mapping[str, pd.DataFrame],
    dropped_labels: Sequence[str],
    parameters: Mapping[str, Any],
    target: str = DEFAULT_TARGET,
    safe_label: str = SAFE_LABEL,
) -> dict[str, Any]:
    """The machine-readable ``prepare_summary.json`` that later steps and tests read."""
    some_split = next(iter(kept.values()))
    labels = [*map(str, some_split.columns), safe_label]
    splits = {}
    for split in kept:
        splits[split] = {
            "file": SPLIT_FILES.get(split, f"{split}.jsonl"),
            "rows_drawn": int(raw[split].attrs.get("rows_drawn", len(raw[split]))),
            "rows_without_text": int(raw[split].attrs.get("rows_without_text", 0)),
            "rows_flagged": int(flags[split].any(axis=1).sum()),
            "rows_kept": len(kept[split]),
            "label_counts_drawn": label_counts(flags[split], safe_label),
            "label_counts": label_counts(kept[split], safe_label),
        }
    return {
        "source": source,
        "seed": parameters.get("seed"),
        "threshold": parameters.get("threshold"),
        "target": target,
        "labels": labels,
        "dropped_labels": list(dropped_labels),
        "splits": splits,
        "parameters": dict(parameters),
    }

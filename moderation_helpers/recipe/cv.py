"""Cross-validation of the project's classifier on prepared rows: is one choice better than another?

:func:`cross_validate` trains on k-1 folds (stratified on one flag label), scores the held-out
fold and reports per-label ROC-AUC and average precision per fold, with training seconds;
:func:`summarize_cv` turns that into a mean ± sd table. ``benchmarks/bench_quality.py`` runs it
for each base encoder. A fold's training takes minutes on a CPU: ``max_folds`` runs only the
first folds of the k (the sd is then over fewer folds, and says so).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moderation_helpers.core.conversation import example_texts
from moderation_helpers.core.flags import SAFE_LABEL

Scores = list[dict[str, dict[str, float]]]


@dataclass
class FoldModel:
    """A classifier trained on one fold's training rows: how it scores texts, how long its
    training steps took, and its model folder (valid until the fold ends)."""

    predict: Callable[[Sequence[str]], Scores]
    train_seconds: float
    model_dir: Path | None = None


TrainFn = Callable[[list[dict], Sequence[Any], Any, Path], FoldModel]
OnFold = Callable[[int, FoldModel, list[dict]], None]
DeriveFn = Callable[[list[dict]], Sequence[dict]]


def train_and_load(
    train_examples: list[dict], targets: Sequence[Any], settings: Any, out_dir: Path
) -> FoldModel:
    """The project's trainer (``classifier.training.train``), its model loaded back from
    ``out_dir`` (``classifier.checkpoint.load_model``)."""
    from moderation_helpers.classifier.checkpoint import load_model
    from moderation_helpers.classifier.training import train

    result = train(train_examples, None, targets, settings, out_dir)
    model = load_model(out_dir)
    return FoldModel(model.predict, float(result.train_seconds), Path(out_dir))


def label_matrix(
    examples: Sequence[Mapping[str, Any]], target: str, labels: Sequence[str]
) -> np.ndarray:
    """One bool column per label: whether each example's ``labels[target]`` holds it."""
    held = [set(_as_list(ex["labels"].get(target))) for ex in examples]
    return np.array([[label in row for label in labels] for row in held], dtype=bool).reshape(
        len(held), len(labels)
    )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def stratify_label(examples: Sequence[Mapping[str, Any]], targets: Sequence[Any]) -> str:
    """The first target's most frequent label other than ``safe`` (toxicity on the mirror)."""
    labels = [label for label in targets[0].labels if label != SAFE_LABEL]
    counts = label_matrix(examples, targets[0].name, labels).sum(0)
    return labels[int(np.argmax(counts))]


def cross_validate(
    examples: Sequence[dict],
    targets: Sequence[Any],
    settings: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    max_folds: int | None = None,
    augment: Sequence[dict] = (),
    derive: DeriveFn | None = None,
    train_fn: TrainFn = train_and_load,
    on_fold: OnFold | None = None,
) -> pd.DataFrame:
    """Per fold and label: ROC-AUC and AP on the held-out rows, and the fold's training seconds
    (the steps' wall-clock seconds as ``train_fn`` reports them, and the CPU seconds of the whole
    ``train_fn`` call, loading included: on a shared machine the wall clock over-states).

    Folds: scikit-learn's ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` on the
    label :func:`stratify_label` picks. ``augment``: extra rows added to every training fold,
    never scored (e.g. identity sentences). ``derive(train_rows)``: rows made from each fold's
    own training rows (e.g. respelled copies), added to it; never from held-out rows, which would
    leak them into training. ``max_folds``: stop after that many folds.
    ``settings``: the trainer's ``TrainSettings``; ``train_fn``: how a fold is trained (the
    project's trainer by default); ``on_fold(i, model, test_rows)`` runs after each fold is
    scored, while its model folder still exists. Labels without both classes in a held-out
    fold get NaN.
    """
    from sklearn.model_selection import StratifiedKFold

    examples = list(examples)
    first = targets[0]
    strata = label_matrix(examples, first.name, [stratify_label(examples, targets)])[:, 0]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rows = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
        if max_folds is not None and fold >= max_folds:
            break
        train_rows = [examples[i] for i in train_idx]
        train_rows += list(derive(train_rows) if derive is not None else ()) + list(augment)
        test_rows = [examples[i] for i in test_idx]
        with tempfile.TemporaryDirectory(prefix=f"cv-fold{fold}-") as tmp:
            cpu = time.process_time()
            model = train_fn(train_rows, targets, settings, Path(tmp) / "model")
            cpu = time.process_time() - cpu
            scores = model.predict(example_texts(test_rows))
            if on_fold is not None:
                on_fold(fold, model, test_rows)
        for row in fold_metrics(test_rows, scores, targets):
            sizes = {"n_train": len(train_rows), "n_test": len(test_rows)}
            seconds = {"train_seconds": model.train_seconds, "train_cpu_seconds": cpu}
            rows.append({"fold": fold, **row, **seconds, **sizes})
    return pd.DataFrame(rows)


def fold_metrics(
    test_rows: Sequence[Mapping[str, Any]], scores: Scores, targets: Sequence[Any]
) -> list[dict[str, Any]]:
    """ROC-AUC, AP and positives per label (``safe`` left out) of one held-out fold."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = []
    for target in targets:
        labels = [label for label in target.labels if label != SAFE_LABEL]
        truth = label_matrix(test_rows, target.name, labels)
        for j, label in enumerate(labels):
            y = truth[:, j]
            score = np.array([row[target.name][label] for row in scores], dtype=float)
            both = 0 < y.sum() < len(y)
            out.append(
                {
                    "target": target.name,
                    "label": label,
                    "positives": int(y.sum()),
                    "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
                    "ap": float(average_precision_score(y, score)) if both else float("nan"),
                }
            )
    return out


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    """``"0.973 ± 0.002"`` over the non-NaN values (the mean alone for one value)."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def summarize_cv(frame: pd.DataFrame) -> pd.DataFrame:
    """Per label, ROC-AUC and AP as mean ± sd over folds, with the folds and positives counted.

    The training seconds (the same for every label of a fold) are :func:`train_seconds`'."""
    groups = frame.groupby(["target", "label"], sort=False)
    return pd.DataFrame(
        {
            "ROC-AUC": groups["roc_auc"].apply(mean_sd),
            "AP": groups["ap"].apply(mean_sd),
            "folds": groups["fold"].nunique(),
            "positives/fold": groups["positives"].mean().round(1),
        }
    ).reset_index()


def train_seconds(frame: pd.DataFrame, column: str = "train_seconds") -> str:
    """The folds' training seconds (or ``train_cpu_seconds``) as mean ± sd."""
    return mean_sd(frame.groupby("fold")[column].first(), digits=0)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of ``frame`` (no index)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])

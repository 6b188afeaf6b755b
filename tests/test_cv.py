"""recipe.cv's cross-validation machinery with a stand-in trainer (no real training here)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from moderation_helpers.recipe import cv

TARGETS = [SimpleNamespace(name="moderation", labels=["insult", "safe", "toxicity"])]


def _rows(n: int = 60) -> list[dict]:
    rows = []
    for i in range(n):
        labels = ["toxicity", "insult"] if i % 3 == 0 else ["toxicity"] if i % 3 == 1 else ["safe"]
        rows.append({"text": f"comment {i} " + " ".join(labels), "labels": {"moderation": labels}})
    return rows


def _keyword_trainer(calls: list):
    """Scores a label 0.9 where the text names it, else 0.1 (a perfect classifier here)."""

    def train_fn(train_rows, targets, settings, out_dir):
        calls.append((len(train_rows), settings, out_dir))

        def predict(texts):
            return [
                {"moderation": {lab: 0.9 if lab in t else 0.1 for lab in targets[0].labels}}
                for t in texts
            ]

        return cv.FoldModel(predict, train_seconds=10.0 + len(calls), model_dir=out_dir)

    return train_fn


def test_cross_validate_scores_every_held_out_fold():
    calls, seen = [], []
    rows = _rows()
    frame = cv.cross_validate(
        rows,
        TARGETS,
        settings="S",
        folds=5,
        augment=[{"text": "extra", "labels": {"moderation": ["safe"]}}] * 3,
        train_fn=_keyword_trainer(calls),
        on_fold=lambda fold, model, test: seen.append((fold, len(test))),
    )
    assert [n for n, _, _ in calls] == [48 + 3] * 5  # k-1 folds + the augmentation
    assert {s for _, s, _ in calls} == {"S"}
    assert seen == [(f, 12) for f in range(5)]
    assert set(frame["label"]) == {"insult", "toxicity"}  # safe is not scored
    assert (frame["roc_auc"] == 1.0).all() and (frame["ap"] == 1.0).all()
    assert frame.groupby("fold")["n_test"].first().sum() == len(rows)


def test_max_folds_stops_early_and_summary_says_mean_sd():
    frame = cv.cross_validate(
        _rows(), TARGETS, None, folds=5, max_folds=2, train_fn=_keyword_trainer([])
    )
    assert sorted(frame["fold"].unique()) == [0, 1]
    summary = cv.summarize_cv(frame)
    assert list(summary["label"]) == ["insult", "toxicity"]
    assert summary["ROC-AUC"].tolist() == ["1.000 ± 0.000"] * 2
    assert (summary["folds"] == 2).all()
    assert cv.train_seconds(frame) == "12 ± 1"
    assert cv.markdown_table(summary).splitlines()[0].startswith("| target | label | ROC-AUC |")


def test_stratification_keeps_the_label_in_every_fold():
    rows = _rows(50)
    assert cv.stratify_label(rows, TARGETS) == "toxicity"
    frame = cv.cross_validate(rows, TARGETS, None, folds=5, train_fn=_keyword_trainer([]))
    positives = frame[frame["label"] == "toxicity"]["positives"]
    assert positives.max() - positives.min() <= 1


def test_a_label_with_one_class_in_a_fold_is_nan():
    rows = _rows(10)
    scores = [{"moderation": {"insult": 0.5, "safe": 0.5, "toxicity": 0.5}}] * 10
    only_safe = [{"text": "x", "labels": {"moderation": ["safe"]}}] * 10
    metrics = pd.DataFrame(cv.fold_metrics(only_safe, scores, TARGETS))
    assert metrics["roc_auc"].isna().all()
    assert cv.mean_sd(pd.Series([np.nan])) == "n/a"
    assert cv.mean_sd(pd.Series([0.5, np.nan])) == "0.500"
    assert not math.isnan(pd.DataFrame(cv.fold_metrics(rows, scores, TARGETS))["roc_auc"][0])

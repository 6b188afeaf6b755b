"""A classical baseline beside the fine-tune: TF-IDF features and one logistic regression per label.

It is trained on the run's own ``train.jsonl`` texts in a second or two on a CPU, and scores
texts in the layout of a score frame (columns ``(target, label)``), so that :func:`roc_auc_table`
can set its ROC-AUC beside the fine-tuned model's on the same test split: what the fine-tune
buys over word counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

# Word unigrams and bigrams, words seen at least twice: the usual strong-enough text baseline.
TFIDF_OPTIONS = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, "max_features": 50_000}


class TfidfBaseline:
    """One-vs-rest logistic regressions on TF-IDF features, one per ``(target, label)`` column."""

    def __init__(self, *, c: float = 4.0, seed: int = 0) -> None:
        self.c, self.seed = c, seed
        self.vectorizer = TfidfVectorizer(**TFIDF_OPTIONS)
        self.models: dict[tuple[str, str], LogisticRegression | float] = {}
        self.columns: pd.MultiIndex | None = None

    def fit(self, texts: Sequence[str], truth: pd.DataFrame) -> TfidfBaseline:
        """Learn from texts and their boolean truth frame (one column per label)."""
        features = self.vectorizer.fit_transform(list(texts))
        self.columns = truth.columns
        for column in truth.columns:
            y = truth[column].to_numpy(dtype=bool)
            if y.all() or not y.any():
                self.models[column] = float(y.mean())  # one class only: a constant score
                continue
            model = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
            self.models[column] = model.fit(features, y)
        return self

    def score(self, texts: Sequence[str]) -> pd.DataFrame:
        """Per text and label, the probability of the label: a score frame's layout."""
        if self.columns is None:
            raise RuntimeError("fit the baseline before scoring")
        features = self.vectorizer.transform(list(texts))
        scores = {
            column: (
                np.full(features.shape[0], model)
                if isinstance(model, float)
                else model.predict_proba(features)[:, 1]
            )
            for column, model in self.models.items()
        }
        return pd.DataFrame(scores, columns=self.columns)


def roc_auc_table(truth: pd.DataFrame, scores: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per label (rows), each scorer's ROC-AUC on ``truth`` (columns, in the order given).

    A label whose truth holds one class only has no ROC-AUC: its cells are NaN.
    """
    rows = {}
    for column in truth.columns:
        y = truth[column].to_numpy(dtype=bool)
        one_class = y.all() or not y.any()
        rows[column] = {
            name: np.nan if one_class else float(roc_auc_score(y, frame[column].to_numpy()))
            for name, frame in scores.items()
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=truth.columns.names)
    return table

"""recipe.baseline: the TF-IDF + logistic regression baseline 04_infer sets beside the fine-tune."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from moderation_helpers.recipe.baseline import TfidfBaseline, roc_auc_table
from moderation_helpers.recipe.classify import score_columns

COLUMNS = score_columns([("moderation", "insult"), ("moderation", "threat")])
INSULTS = ["you are an idiot", "what an idiot you are", "idiot again, as always", "a real idiot"]
FRIENDLY = ["thanks for the article", "a fine day in the park", "the council met today", "good"]


def frame(rows: list[tuple[bool, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_baseline_learns_words_and_scores_in_a_score_frames_layout():
    texts = INSULTS * 3 + FRIENDLY * 3
    truth = frame([(True, False)] * 12 + [(False, False)] * 12)  # threat: never set
    baseline = TfidfBaseline().fit(texts, truth)
    scores = baseline.score(["you idiot", "thanks, a fine article"])
    assert list(scores.columns) == list(COLUMNS)
    assert scores[("moderation", "insult")].iloc[0] > 0.5 > scores[("moderation", "insult")].iloc[1]
    assert (scores[("moderation", "threat")] == 0.0).all(), "one class: a constant score"


def test_scoring_before_fitting_is_an_error():
    with pytest.raises(RuntimeError, match="fit"):
        TfidfBaseline().score(["x"])


def test_roc_auc_table_sets_scorers_side_by_side_and_skips_one_class_labels():
    truth = frame([(True, False), (False, False), (True, False), (False, False)])
    perfect = pd.DataFrame([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.2, 0.4]], columns=COLUMNS)
    inverted = 1 - perfect
    table = roc_auc_table(truth, {"fine-tuned": perfect, "TF-IDF": inverted})
    assert list(table.columns) == ["fine-tuned", "TF-IDF"]
    assert table.loc[("moderation", "insult")].tolist() == [1.0, 0.0]
    assert all(math.isnan(v) for v in table.loc[("moderation", "threat")])
    assert table.index.names == ["target", "label"]

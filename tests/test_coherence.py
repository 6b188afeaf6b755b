"""Coherent scores: which labels imply which, read off the training file, and the max rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moderation_helpers.classifier import training as T
from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON, load_model
from moderation_helpers.classifier.coherence import coherent_logits, implications
from moderation_helpers.classifier.network import Target

LABELS = ["toxicity", "insult", "threat", "safe"]


def _rows(n: int, flags: list[str]) -> list[list[float]]:
    return [[float(label in flags) for label in LABELS]] * n


def test_a_label_flagged_with_another_on_most_rows_is_implied_by_it():
    flags = np.array(
        _rows(19, ["toxicity", "insult"])
        + _rows(1, ["insult"])  # 19 of 20 insults are toxic: 95%
        + _rows(9, ["toxicity", "threat"])
        + _rows(1, ["threat"])  # 9 of 10: 90%, under the share
        + _rows(30, ["safe"])
    )
    assert implications(flags, LABELS) == {"toxicity": ["insult"]}


def test_too_few_rows_imply_nothing_and_rows_without_the_target_do_not_count():
    few = np.array(_rows(9, ["toxicity", "insult"]) + _rows(3, ["toxicity"]) + _rows(5, ["safe"]))
    assert implications(few, LABELS) == {}
    assert implications(few, LABELS, min_rows=5) == {"toxicity": ["insult"]}
    # an insult that is not toxic, on a row with no value for the target (NaN): not counted
    unrated = np.array([[0.0, 1.0, np.nan, np.nan]])
    assert implications(np.vstack([few, unrated]), LABELS, min_rows=5) == {"toxicity": ["insult"]}
    rated = np.array([[0.0, 1.0, 0.0, 0.0]])  # 9 of 10 insults toxic: no longer implied
    assert implications(np.vstack([few, rated]), LABELS, min_rows=5) == {}


def test_a_parent_scores_its_largest_child_and_the_others_keep_their_own():
    logits = torch.tensor([[-3.0, 2.0, 0.5, 1.0], [1.0, -2.0, 0.0, -1.0]])
    out = coherent_logits(logits, LABELS, {"toxicity": ["insult", "threat"]})
    assert out[:, 0].tolist() == [2.0, 1.0]
    assert torch.equal(out[:, 1:], logits[:, 1:])
    assert coherent_logits(logits, LABELS, {}) is logits


def test_implied_by_must_name_the_targets_own_labels_on_a_multi_class_target():
    with pytest.raises(ValueError, match="lacks.*severe"):
        Target("moderation", LABELS, "multi_class", implied_by={"toxicity": ["severe"]})
    with pytest.raises(ValueError, match="multi_class"):
        Target("tone", ["calm", "angry"], "single_class", implied_by={"angry": ["calm"]})


TEXTS = [
    ("you are a complete idiot", ["toxicity", "insult"]),
    ("shut up you stupid moron", ["toxicity", "insult"]),
    ("go to hell, loser", ["toxicity", "insult"]),
    ("I will hurt you", ["toxicity", "threat"]),
    ("what a lovely afternoon in the park", ["safe"]),
    ("thanks for the thoughtful article", ["safe"]),
]


def _train(tmp_path, coherent: bool):
    examples = [{"text": t, "labels": {"moderation": y}} for t, y in TEXTS] * 4
    target = Target("moderation", LABELS, "multi_class")
    settings = T.TrainSettings(
        training_steps=2, batch_size=4, seq_len=16, seed=1, coherent_labels=coherent
    )
    T.train(examples, None, [target], settings, tmp_path)
    return load_model(tmp_path)


@pytest.mark.parametrize("coherent", [True, False])
def test_the_trainer_reads_the_implications_and_the_model_scores_by_them(tmp_path, coherent):
    model = _train(tmp_path, coherent)
    config = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    # 12 insults, all toxic; 4 threats are too few to tell
    expected = {"toxicity": ["insult"]} if coherent else {}
    assert config["targets"][0]["implied_by"] == expected
    assert model.targets[0].implied_by == expected
    scores = [row["moderation"] for row in model.predict([t for t, _ in TEXTS])]
    if coherent:
        assert all(s["toxicity"] >= s["insult"] for s in scores)

"""The opinion examples: civil opinions on charged topics, all safe, apart from the suite."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import opinion_examples as op
from moderation_helpers.recipe.augment import augment_training

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_opinions_are_distinct_unflagged_seeded_and_spread_over_templates():
    out = op.opinion_examples(36, seed=3, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    assert not out[LABELS].any().any()
    assert out.equals(op.opinion_examples(36, seed=3, labels=[*LABELS, "safe"]))
    assert not out.equals(op.opinion_examples(36, seed=4, labels=[*LABELS, "safe"]))
    assert not out["text"].str.contains("[{}]").any()
    # template-balanced: the 12-filling prayer template is as likely as a 168-filling one
    pool = op.opinion_pool()
    templates = pool.set_index("text").loc[out["text"], "template"]
    assert templates.nunique() >= 12


def test_the_pool_names_the_topics_the_mirror_ties_to_toxicity():
    text = " ".join(op.opinion_pool()["text"]).lower()
    for word in ("trump", "obama", "liberals", "president", "god", "america", "gun"):
        assert word in text


def test_opinion_templates_stay_out_of_the_suite():
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    assert not set(op.opinion_pool()["text"]) & suite
    civil = bh.load_cases().query("behaviour == 'civil_opinion'")
    assert len(civil) >= 15 and not civil["toxic"].any()


def test_augment_adds_the_opinions_as_their_own_kind():
    texts = pd.Series(["a calm comment", "another one"], name="text")
    flags = pd.DataFrame({label: [False, True] for label in LABELS})
    grown, grown_flags, added = augment_training(texts, flags, opinion=5, seed=0)
    assert list(added) == ["opinion"] and len(grown) == 7
    assert grown.index[-1] == "opinion-4" and not grown_flags.loc["opinion-0"].any()


def test_opinion_pool_bounds():
    with pytest.raises(ValueError, match="template pool"):
        op.opinion_examples(100_000, seed=0, labels=LABELS)

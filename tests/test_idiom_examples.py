"""The idiom examples: violent words used figuratively, all safe, aimed at no one, apart from the
suite."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import idiom_examples as ie
from moderation_helpers.recipe.augment import augment_training

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_idioms_are_distinct_unflagged_seeded_and_spread_over_figures():
    out = ie.idiom_examples(40, seed=3, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    assert not out[LABELS].any().any()
    assert out.equals(ie.idiom_examples(40, seed=3, labels=[*LABELS, "safe"]))
    assert not out.equals(ie.idiom_examples(40, seed=4, labels=[*LABELS, "safe"]))
    assert not out["text"].str.contains("[{}]").any()
    # figure-balanced: an everyday line (4 frames) is as likely as a feat (12 fillings)
    figures = ie.idiom_pool().set_index("text").loc[out["text"], "template"]
    assert figures.isin(ie.EVERYDAY).sum() >= 10 and figures.nunique() >= 20


def test_no_idiom_addresses_someone_and_each_carries_a_violent_word():
    """Aimed at "you", a violent verb is the threat the abuse examples teach: never here."""
    text = ie.idiom_pool()["text"]
    assert not text.str.contains(r"\byou\b|\byour\b", case=False).any()
    violent = r"kill|destroy|crush|demolish|knock|slay|annihilat|massacr|attack|fought|shot|smash"
    violent += r"|blast|died|broke|beat|strangl|murder|slaps"
    assert text.str.contains(violent, case=False).all()


def test_idiom_sentences_stay_out_of_the_suite():
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    assert not set(ie.idiom_pool()["text"]) & suite


def test_augment_adds_the_idioms_as_their_own_kind():
    texts = pd.Series(["a calm comment", "another one"], name="text")
    flags = pd.DataFrame({label: [False, True] for label in LABELS})
    grown, grown_flags, added = augment_training(texts, flags, idioms=5, seed=0)
    assert list(added) == ["idiom"] and len(grown) == 7
    assert grown.index[-1] == "idiom-4" and not grown_flags.loc["idiom-0"].any()


def test_idiom_pool_bounds():
    with pytest.raises(ValueError, match="template pool"):
        ie.idiom_examples(100_000, seed=0, labels=LABELS)

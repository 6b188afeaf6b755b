"""The profanity examples: swearing aimed at no one, flagged obscene and nothing else, apart from
the suite; enough of them stop obscene implying toxicity in the coherence rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moderation_helpers.classifier.coherence import implications
from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import profanity_examples as pe
from moderation_helpers.recipe.augment import augment_training

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_rows_are_obscene_only_distinct_seeded_and_filled():
    out = pe.profanity_examples(40, seed=3, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    assert out["obscene"].all()
    assert not out[[label for label in LABELS if label != "obscene"]].any().any()
    assert not out["text"].str.contains("[{}]").any()
    assert out.equals(pe.profanity_examples(40, seed=3, labels=[*LABELS, "safe"]))
    assert not out.equals(pe.profanity_examples(40, seed=4, labels=[*LABELS, "safe"]))


def test_a_label_set_without_obscene_gets_unflagged_rows():
    out = pe.profanity_examples(5, seed=0, labels=["toxicity", "insult"])
    assert not out[["toxicity", "insult"]].any().any()


def test_rows_are_spread_over_situations_not_swear_words():
    out = pe.profanity_examples(60, seed=1, labels=LABELS)
    situations = pe.profanity_pool().set_index("text").loc[out["text"], "template"]
    # a thing has 6 fillings, a mishap 6: equal weights put every one of the 27 in play
    assert situations.nunique() >= 20 and situations.value_counts().max() <= 6


def test_each_sentence_swears_and_addresses_no_one():
    text = pe.profanity_pool()["text"]
    assert not text.str.contains(r"\byou\b|\byour\b|\bthey\b|\bpeople\b", case=False).any()
    swearing = r"fuck|shit|damn|hell|crap|bloody|ass\b|balls"
    assert text.str.contains(swearing, case=False).all()
    assert text.str.match(r"[A-Z]").all() and text.str.endswith(".").all()


def test_profanity_sentences_stay_out_of_the_suite():
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    assert not {t.lower() for t in pe.profanity_pool()["text"]} & {t.lower() for t in suite}


def test_augment_adds_them_as_their_own_kind_flagged_obscene():
    texts = pd.Series(["a calm comment", "another one"], name="text")
    flags = pd.DataFrame({label: [False, True] for label in LABELS})
    grown, grown_flags, added = augment_training(texts, flags, profanity=5, seed=0)
    assert list(added) == ["profanity"] and len(grown) == 7
    rows = grown_flags.loc[[f"profanity-{i}" for i in range(5)]]
    assert rows["obscene"].all() and not rows.drop(columns="obscene").any().any()


def test_enough_rows_stop_obscene_implying_toxicity():
    """200 obscene rows all toxic (beside 200 toxic only): obscene implies toxicity; 20
    sentences swearing at no one undo it."""
    toxic_obscene = np.repeat([[1, 1], [0, 1]], 200, axis=0)  # columns: obscene, toxicity
    assert implications(toxic_obscene, ["obscene", "toxicity"]) == {"toxicity": ["obscene"]}
    added = pe.profanity_examples(20, seed=0, labels=["obscene", "toxicity"])
    both = np.vstack([toxic_obscene, added[["obscene", "toxicity"]].to_numpy(dtype=int)])
    assert implications(both, ["obscene", "toxicity"]) == {}


def test_more_rows_than_the_pool_holds_is_refused():
    with pytest.raises(ValueError, match="template pool"):
        pe.profanity_examples(100_000, seed=0, labels=LABELS)

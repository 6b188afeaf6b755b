"""The template additions that are all safe (civil opinions, figurative violent words): each
joins training as its own kind, unflagged, and refuses more rows than its pool holds."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.recipe import idiom_examples as ie
from moderation_helpers.recipe import opinion_examples as op
from moderation_helpers.recipe.augment import augment_training

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]
ADDITIONS = [("opinion", "opinion", op.opinion_examples), ("idioms", "idiom", ie.idiom_examples)]


@pytest.mark.parametrize(("count", "kind", "make"), ADDITIONS)
def test_rows_are_distinct_unflagged_filled_and_seeded(count, kind, make):
    out = make(36, seed=3, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    assert not out[LABELS].any().any()
    assert not out["text"].str.contains("[{}]").any()
    assert out.equals(make(36, seed=3, labels=[*LABELS, "safe"]))
    assert not out.equals(make(36, seed=4, labels=[*LABELS, "safe"]))


@pytest.mark.parametrize(("count", "kind", "make"), ADDITIONS)
def test_augment_adds_the_rows_as_their_own_kind_unflagged(count, kind, make):
    texts = pd.Series(["a calm comment", "another one"], name="text")
    flags = pd.DataFrame({label: [False, True] for label in LABELS})
    grown, grown_flags, added = augment_training(texts, flags, **{count: 5}, seed=0)
    assert list(added) == [kind] and len(grown) == 7
    assert grown.index[-1] == f"{kind}-4"
    assert not grown_flags.loc[[f"{kind}-{i}" for i in range(5)]].any().any()


@pytest.mark.parametrize(("count", "kind", "make"), ADDITIONS)
def test_more_rows_than_the_pool_holds_is_refused(count, kind, make):
    with pytest.raises(ValueError, match="template pool"):
        make(100_000, seed=0, labels=LABELS)

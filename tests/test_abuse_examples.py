"""The abuse examples: plain insults and threats flagged, the same templates made kind left
safe, apart from the behavioural suite."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.recipe import abuse_examples as ab
from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe.augment import augment_training

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_half_abuse_flagged_by_kind_half_kind_and_safe_and_seeded():
    out = ab.abuse_examples(42, seed=3, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    abuse, kind = out.iloc[:21], out.iloc[21:]
    assert abuse["toxicity"].all() and not abuse[["identity_attack", "obscene"]].any().any()
    assert (abuse["insult"] ^ abuse["threat"]).all()  # each row one kind of abuse
    assert abuse["insult"].sum() == 11 and abuse["threat"].sum() == 10
    assert not kind[LABELS].any().any() and len(kind) == 21
    threats = abuse.loc[abuse["threat"], "text"]
    assert threats.str.contains("|".join(ab.THREAT.abuse)).all()
    assert kind["text"].str.contains("|".join(ab.INSULT.kind + ab.THREAT.kind)).all()
    assert out.equals(ab.abuse_examples(42, seed=3, labels=[*LABELS, "safe"]))
    assert not out["text"].str.contains("[{}]").any()


@pytest.mark.parametrize("name", sorted(ab.KINDS))
def test_the_kind_sentences_use_the_abuse_templates(name):
    """The frame alone must not tell the classes apart: every template is in both pools."""
    kind = ab.KINDS[name]
    abusive, kind_pool = ab.abuse_pool(kind), ab.abuse_pool(kind, abusive=False)
    assert set(abusive["template"]) == set(kind_pool["template"]) == set(kind.templates)


def test_abuse_templates_stay_out_of_the_suite():
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    pools = [ab.abuse_pool(k, a) for k in ab.KINDS.values() for a in (True, False)]
    assert not set(pd.concat(pools)["text"]) & suite


def test_augment_adds_the_abuse_as_its_own_kind():
    texts = pd.Series(["a calm comment", "another one"], name="text")
    flags = pd.DataFrame({label: [False, False] for label in LABELS})
    grown, grown_flags, added = augment_training(texts, flags, abuse=10, seed=0)
    assert list(added) == ["abuse"] and len(grown) == 12
    assert grown.index[-1] == "abuse-9" and grown_flags.loc["abuse-0", "toxicity"]


def test_abuse_pool_bounds():
    with pytest.raises(ValueError, match="template pool"):
        ab.abuse_examples(10_000, seed=0, labels=LABELS)

"""The opinion examples: civil opinions on charged topics, all safe, apart from the suite."""

from __future__ import annotations

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import opinion_examples as op

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_opinions_are_spread_over_templates():
    out = op.opinion_examples(36, seed=3, labels=LABELS)
    # template-balanced: the 12-filling prayer template is as likely as a 168-filling one
    templates = op.opinion_pool().set_index("text").loc[out["text"], "template"]
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

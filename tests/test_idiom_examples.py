"""The idiom examples: violent words used figuratively, all safe, aimed at no one, apart from the
suite."""

from __future__ import annotations

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import idiom_examples as ie

LABELS = ["identity_attack", "insult", "obscene", "threat", "toxicity"]


def test_idioms_are_spread_over_figures():
    out = ie.idiom_examples(40, seed=3, labels=LABELS)
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

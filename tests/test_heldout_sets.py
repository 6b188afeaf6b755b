"""The benchmark's held-out sets: well formed, and no training template fills to one of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from moderation_helpers.recipe import abuse_examples as ab
from moderation_helpers.recipe import context_examples as ce
from moderation_helpers.recipe import identity_examples as ie
from moderation_helpers.recipe import idiom_examples as ide
from moderation_helpers.recipe import opinion_examples as oe
from moderation_helpers.recipe import profanity_examples as pe

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_heldout  # noqa: E402

SETS = sorted((BENCHMARKS / "heldout").glob("*.csv"))


def training_sentences() -> set[str]:
    """Every sentence 01's template additions can draw (lower-cased)."""
    pools = [ie.example_pool(), ie.example_pool(ie.ATTACK_TEMPLATES), ce.context_pool()]
    pools += [oe.opinion_pool(), ide.idiom_pool(), pe.profanity_pool()]
    pools += [ab.abuse_pool(k, abusive) for k in ab.KINDS.values() for abusive in (True, False)]
    return {text.lower() for pool in pools for text in pool["text"]}


def test_there_are_sets_and_each_has_toxic_and_benign_rows():
    assert len(SETS) >= 5
    for path in SETS:
        frame = bench_heldout.load_set(path)
        assert frame["text"].is_unique and frame["text"].str.len().gt(5).all()
        assert set(frame["toxic"]) == {0, 1}


def test_no_template_draws_a_heldout_sentence():
    drawn = training_sentences()
    for path in SETS:
        texts = bench_heldout.load_set(path)["text"].str.lower()
        assert not set(texts) & drawn, path.name


def test_a_row_whose_label_contradicts_its_kind_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('kind,toxic,text\nbenign,0,"Fine."\nbenign,1,"Oops."\n')
    with pytest.raises(ValueError, match=r"bad.csv: line 3: field 'toxic'"):
        bench_heldout.load_set(bad)


def test_no_template_draws_a_suite_sentence():
    drawn = training_sentences()
    for name, frame in bench_heldout.suite_sets().items():
        assert not set(frame["text"].str.lower()) & drawn, name


def test_the_suite_as_sets_keeps_each_behaviour_and_identity_kind():
    sets = bench_heldout.suite_sets()
    kinds = set(sets["suite"]["kind"])
    assert {"insult", "threat", "negated_toxicity (benign)", "identity_neutral (benign)"} <= kinds
    assert set(sets["suite identity (benign)"]["kind"]) == {
        "neutral",
        "positive",
        "attack_frame",
        "short",
    }
    assert not sets["suite identity (benign)"]["toxic"].any()

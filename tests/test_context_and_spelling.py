"""The context and spelling augmentations: what they add, deterministic, apart from the suite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import context_examples as ce
from moderation_helpers.recipe import spelling_variants as sv
from moderation_helpers.recipe.prepare import label_sets

LABELS = ["toxicity", "insult", "identity_attack"]


def test_context_examples_are_unflagged_distinct_and_seeded():
    out = ce.context_examples(60, seed=2, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS] and out["text"].is_unique
    assert not out[LABELS].to_numpy().any()
    codes, lists = label_sets(out[LABELS], "safe")
    assert lists == [["safe"]] and (codes == 0).all()
    assert out.equals(ce.context_examples(60, seed=2, labels=[*LABELS, "safe"]))
    assert not out["text"].equals(ce.context_examples(60, seed=3, labels=LABELS)["text"])
    assert not out["text"].str.contains("[{}]").any()


def test_context_draws_every_kind_and_spreads_over_templates():
    pool = ce.context_pool()
    picked = pool[pool["text"].isin(ce.context_examples(96, seed=0, labels=LABELS)["text"])]
    assert set(picked["template_kind"]) == set(ce.TEMPLATES)
    # Templates with many fillings (group x slur) would crowd out the others if drawn by row.
    assert picked["template"].value_counts().max() <= 12
    assert picked["template"].nunique() >= 0.8 * pool["template"].nunique()


def test_context_templates_stay_out_of_the_suite():
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    assert not set(ce.context_pool()["text"]) & suite


def test_context_pool_bounds():
    with pytest.raises(ValueError, match="template pool"):
        ce.context_examples(len(ce.context_pool()) + 1, seed=0, labels=LABELS)


def test_respell_changes_one_strong_word_and_nothing_else():
    rng = np.random.default_rng(0)
    text = "Only an idiot would park there, honestly."
    seen = {sv.respell(text, rng) for _ in range(40)}
    assert text not in seen and len(seen) > 5
    for variant in seen:
        assert variant.startswith("Only an ") and variant.endswith(" would park there, honestly.")
    assert sv.respell("A quiet afternoon at the lake.", rng) == "A quiet afternoon at the lake."


@pytest.mark.parametrize("how", sorted(sv.RESPELLINGS))
def test_every_respelling_changes_the_word(how):
    rng = np.random.default_rng(1)
    for word in ("idiot", "ass", "fucking"):
        assert sv.RESPELLINGS[how](word, rng) != word


def test_spelling_variants_copy_flagged_rows_with_their_flags():
    texts = pd.Series(
        ["you stupid clown", "a stupid rule, kindly fix it", "have a nice day", "total moron"],
        index=["a", "b", "c", "d"],
    )
    flags = pd.DataFrame(
        {"toxicity": [True, False, True, True], "insult": [True, False, False, True]},
        index=texts.index,
    )
    out = sv.spelling_variants(texts, flags, n=10, seed=0)
    # "b" has no flag and "c" no strong word: only "a" and "d" qualify.
    assert len(out) == 2 and list(out.columns) == ["text", "toxicity", "insult"]
    assert out["toxicity"].all() and out["insult"].all()
    assert not set(out["text"]) & set(texts)
    assert out.equals(sv.spelling_variants(texts, flags, n=10, seed=0))
    assert len(sv.spelling_variants(texts, flags, n=1, seed=0)) == 1

"""The identity augmentation: benign, unflagged, deterministic, and apart from the suite."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe import identity_examples as ie
from moderation_helpers.recipe.prepare import label_sets
from moderation_helpers.recipe.template_draws import with_examples
from moderation_helpers.recipe.template_slots import fits

CIVIL_COMMENTS_LABELS = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "threat",
    "insult",
    "identity_attack",
    "sexual_explicit",
)

LABELS = list(CIVIL_COMMENTS_LABELS)


def test_examples_have_text_and_a_false_flag_per_label():
    out = ie.identity_examples(200, seed=0, labels=[*LABELS, "safe"], safe_label="safe")
    assert list(out.columns) == ["text", *LABELS]
    assert len(out) == 200 and out["text"].is_unique
    assert out[LABELS].dtypes.map(str).eq("bool").all() and not out[LABELS].to_numpy().any()
    assert not out["text"].str.contains("[{}]").any()
    assert out["text"].str[0].str.isupper().all()
    # The prepare step's writer turns each row into the safe label.
    codes, lists = label_sets(out[LABELS], "safe")
    assert lists == [["safe"]] and (codes == 0).all()


def test_same_seed_same_rows_other_seed_other_rows():
    a = ie.identity_examples(50, seed=3, labels=LABELS)
    b = ie.identity_examples(50, seed=3, labels=LABELS)
    c = ie.identity_examples(50, seed=4, labels=LABELS)
    assert a.equals(b)
    assert not a["text"].equals(c["text"])


def test_examples_mention_every_group_and_both_kinds():
    pool = ie.example_pool()
    templates = ie.NEUTRAL_TEMPLATES + ie.POSITIVE_TEMPLATES
    assert len(pool) == sum(fits(t, term) for t in templates for term, _, _ in ie.TERMS)
    assert pool["text"].is_unique
    picked = pool[pool["text"].isin(ie.identity_examples(300, seed=0, labels=LABELS)["text"])]
    assert set(picked["group"]) == set(bh.identity_terms()["group"])
    assert set(picked["template_kind"]) == {"neutral", "positive"}


def test_no_suite_text_or_template_in_the_augmentation():
    pool = set(ie.example_pool()["text"])
    suite = set(bh.load_cases()["text"]) | set(bh.identity_cases()["text"])
    assert not pool & suite
    suite_templates = {t for items in bh.identity_templates().values() for t in items}
    assert not set(ie.NEUTRAL_TEMPLATES + ie.POSITIVE_TEMPLATES) & suite_templates


def test_all_of_the_pool_and_no_more():
    pool_size = len(ie.example_pool())
    everything = ie.identity_examples(pool_size, seed=1, labels=["toxicity"])
    assert set(everything["text"]) == set(ie.example_pool()["text"])
    assert len(ie.identity_examples(0, seed=1, labels=["toxicity"])) == 0
    with pytest.raises(ValueError, match="template pool"):
        ie.identity_examples(pool_size + 1, seed=1, labels=["toxicity"])
    with pytest.raises(ValueError, match="repeat"):
        ie.identity_examples(3, seed=1, labels=["toxicity", "toxicity"])


def test_without_labels_only_text():
    out = ie.identity_examples(5, seed=0, labels=["safe"])
    assert list(out.columns) == ["text"] and len(out) == 5


def test_examples_are_appended_to_a_split_and_written_as_safe_lines(tmp_path):
    from moderation_helpers.core.jsonl import read_jsonl
    from moderation_helpers.recipe.prepare import write_split_jsonl

    texts = pd.Series(["you idiot", "nice"], name="text")
    flags = pd.DataFrame({"toxicity": [True, False], "insult": [True, False]})
    extra = ie.identity_examples(3, seed=1, labels=["toxicity", "insult", "safe"])
    all_texts, all_flags = with_examples(texts, flags, extra)
    assert len(all_texts) == len(all_flags) == 5
    assert list(all_texts[:2]) == ["you idiot", "nice"] and list(all_texts[2:]) == list(extra.text)
    write_split_jsonl(all_texts, all_flags, tmp_path / "train.jsonl")
    lines = read_jsonl(tmp_path / "train.jsonl")
    assert [line["labels"]["moderation"] for line in lines[2:]] == [["safe"]] * 3
    with pytest.raises(ValueError, match="flag columns"):
        with_examples(texts, flags.assign(threat=False), extra)


def test_attacks_are_flagged_with_their_kinds_labels_the_model_has_and_stay_out_of_the_suite():
    attacks = ie.identity_attacks(80, seed=3, labels=["toxicity", "insult", "threat", "safe"])
    assert len(attacks) == 80 and attacks["text"].is_unique
    assert "safe" not in attacks.columns and attacks["toxicity"].all()
    kind = attacks["text"].map(
        ie.example_pool(ie.ATTACK_TEMPLATES).set_index("text")["template_kind"]
    )
    assert set(kind) == {"insulting", "threatening", "demeaning"}  # 80 draws reach every kind
    assert (attacks["threat"] == (kind == "threatening")).all()
    assert (attacks["insult"] == (kind != "threatening")).all()
    suite = set(bh.load_cases()["text"])
    assert not suite & set(ie.example_pool(ie.ATTACK_TEMPLATES)["text"])


def test_noun_terms_only_fill_templates_they_read_right_in():
    assert fits("My dentist is {term}.", "Muslim")
    assert not fits("My dentist is {term}.", "immigrant")
    assert not fits("Being {term} is one part of me.", "refugee")
    assert not fits("I am {a_term} person.", "migrant")
    assert fits("The hospital hired {a_term} nurse.", "immigrant")
    pool = set(ie.example_pool()["text"])
    assert "I grew up next to an immigrant family who kept chickens." in pool
    assert "My dentist is Muslim." in pool
    assert "My dentist is immigrant." not in pool
    attacks = set(ie.example_pool(ie.ATTACK_TEMPLATES)["text"])
    assert "Refugees should lose the right to vote." in attacks

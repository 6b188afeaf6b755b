"""model.explain: the spans behind a flag, on the small exported model (fp32 and int8).

The tiny test model has seen a few training steps and knows no insult, so the tests of *which*
word comes out on top swap its ``score`` for a word list (everything else, tokenizer, thresholds
and chat rendering, stays the exported model's own).
"""

from __future__ import annotations

import numpy as np
import pytest

from moderation_helpers.core.conversation import RENDERING
from moderation_helpers.model.explain import explain, explain_conversations, turn_offsets, words
from moderation_helpers.model.moderator import Moderator

BENIGN = "Thanks for the detailed answer, the meeting moved to Tuesday afternoon."
TOXIC_WORDS = ("idiot", "moron")


@pytest.fixture(scope="module")
def moderator(exported_model) -> Moderator:
    return Moderator.load(exported_model, threads=1)


def first_label(moderator: Moderator) -> tuple[str, str]:
    target = moderator.targets[0]
    return target["name"], next(lab for lab in target["labels"] if lab != moderator.safe_label)


def never(moderator: Moderator) -> dict[str, dict[str, float]]:
    """Thresholds no score reaches: nothing is flagged."""
    return {t: {lab: 1.01 for lab in labels} for t, labels in moderator.labels_by_target.items()}


def category(moderator: Moderator, target: str, label: str) -> str:
    return label if len(moderator.targets) == 1 else f"{target}/{label}"


@pytest.fixture
def word_list_moderator(moderator, monkeypatch) -> Moderator:
    """The exported model, scoring its first label 0.9 for a text with a toxic word, 0.1 else."""
    target, label = first_label(moderator)
    column = moderator.labels_by_target[target].index(label)

    def score(texts):
        out = {
            t: np.full((len(texts), len(labs)), 0.05, np.float32)
            for t, labs in moderator.labels_by_target.items()
        }
        hits = [any(w in text.lower() for w in TOXIC_WORDS) for text in texts]
        out[target][:, column] = np.where(hits, 0.9, 0.1)
        return out

    monkeypatch.setattr(moderator, "score", score)
    monkeypatch.setattr(moderator, "thresholds", {target: {label: 0.5}})
    return moderator


def check_spans(text: str, spans: list[dict]) -> None:
    previous_end = 0
    for span in spans:
        assert 0 <= span["start"] < span["end"] <= len(text)
        assert span["start"] >= previous_end, "spans overlap or are out of order"
        piece = text[span["start"] : span["end"]]
        assert piece == piece.strip() and piece
        assert isinstance(span["weight"], float)
        previous_end = span["end"]


def test_words_are_trimmed_to_word_characters():
    text = ' "You (idiot!)  f*ck-ing a$$hole.'
    assert [text[a:b] for a, b in words(text)] == ["You", "idiot", "f*ck-ing", "a$$hole"]


def test_spans_lie_inside_the_text_sorted_and_disjoint(moderator):
    target, label = first_label(moderator)
    texts = [BENIGN, "You are an idiot and a moron, honestly.", "  spaced   out  text  ", "!!!"]
    for text, explanation in zip(texts, explain(moderator, texts, [label]), strict=True):
        assert list(explanation) == [category(moderator, target, label)]
        check_spans(text, explanation[category(moderator, target, label)])


def test_a_toxic_word_in_a_benign_sentence_is_the_top_span(word_list_moderator):
    target, label = first_label(word_list_moderator)
    text = "Thanks for the detailed answer, you idiot, the meeting moved to Tuesday."
    [explanation] = explain(word_list_moderator, [text])
    spans = explanation[category(word_list_moderator, target, label)]
    top = max(spans, key=lambda s: s["weight"])
    assert text[top["start"] : top["end"]] == "idiot"
    check_spans(text, spans)


def test_a_text_with_no_flag_gets_an_empty_mapping(moderator, word_list_moderator):
    assert explain(word_list_moderator, [BENIGN]) == [{}]
    assert explain(moderator, [BENIGN, "idiot"], thresholds=never(moderator)) == [{}, {}]


def test_labels_asked_for_are_explained_even_when_not_flagged(moderator):
    target, label = first_label(moderator)
    [explanation] = explain(moderator, [BENIGN], [label], thresholds=never(moderator))
    assert list(explanation) == [category(moderator, target, label)]
    [by_full_name] = explain(moderator, [BENIGN], [f"{target}/{label}"])
    assert list(by_full_name) == [category(moderator, target, label)]
    with pytest.raises(ValueError, match="not scored"):
        explain(moderator, [BENIGN], ["no-such-label"])


def test_labels_asked_for_need_no_thresholds(exported_model, tmp_path, caplog):
    """04 explains its worst errors with a folder fetched without thresholds.json: naming the
    labels, it gets no "moderating at 0.5" warning; leaving them to the flags, it does."""
    import logging
    import shutil

    from moderation_helpers.model.folder import THRESHOLDS_JSON

    copy = tmp_path / "no-thresholds"
    shutil.copytree(exported_model, copy)
    (copy / THRESHOLDS_JSON).unlink()
    bare = Moderator.load(copy, threads=1)
    target, label = first_label(bare)
    caplog.set_level(logging.WARNING, logger="moderation_helpers.model.moderator")
    [explanation] = bare.explain([BENIGN], [label])
    assert list(explanation) == [category(bare, target, label)]
    assert not [r for r in caplog.records if "moderating at" in r.getMessage()]
    with pytest.raises(ValueError, match="does not score"):
        bare.explain([BENIGN], [label], thresholds={target: {"no-such-label": 0.5}})
    bare.explain([BENIGN])
    assert [r for r in caplog.records if "moderating at" in r.getMessage()]


def test_int8_explains_like_fp32(exported_model):
    int8 = Moderator.load(exported_model, variant="int8", threads=1)
    target, label = first_label(int8)
    texts = [BENIGN, "You are an idiot."]
    for text, explanation in zip(texts, explain(int8, texts, [label]), strict=True):
        check_spans(text, explanation[category(int8, target, label)])


def test_a_text_trained_model_explains_the_latest_turn_it_reads(word_list_moderator):
    target, label = first_label(word_list_moderator)
    chat = [
        {"role": "user", "content": "You absolute idiot."},
        {"role": "assistant", "content": "  Sure, you absolute idiot.  "},
    ]
    [explanation] = explain_conversations(word_list_moderator, [chat])
    spans = explanation[category(word_list_moderator, target, label)]
    assert {s["message"] for s in spans} == {1}  # the earlier turn is not read
    span = max(spans, key=lambda s: s["weight"])
    assert chat[1]["content"][span["start"] : span["end"]] == "idiot"
    assert explain_conversations(
        word_list_moderator, [chat[:1] + [chat[0] | {"content": "ok"}]]
    ) == [{}]


def test_conversation_spans_point_into_their_message(word_list_moderator, monkeypatch):
    monkeypatch.setitem(word_list_moderator.record, "rendering", RENDERING)  # trained on chats
    target, label = first_label(word_list_moderator)
    chat = [
        {"role": "user", "content": "Can you look at my essay?"},
        {"role": "assistant", "content": "  Sure, you absolute idiot.  "},
        {"role": "user", "content": "Thanks, see you Tuesday."},
    ]
    [explanation] = explain_conversations(word_list_moderator, [chat])
    spans = explanation[category(word_list_moderator, target, label)]
    span = max(spans, key=lambda s: s["weight"])
    assert span["message"] == 1
    assert chat[1]["content"][span["start"] : span["end"]] == "idiot"
    assert explain_conversations(word_list_moderator, [chat[2:]]) == [{}]


def test_turn_offsets_skip_the_turns_the_rendering_dropped():
    chat = [{"role": "user", "content": "first"}, {"role": "assistant", "content": " second"}]
    rendered = "assistant: second"  # the first turn dropped to fit seq_len
    assert turn_offsets(rendered, chat) == [(1, len("assistant: "), 1)]


def test_the_moderator_explains_as_the_module_does(moderator):
    texts = ["you are a stupid idiot", "thanks for the article"]
    assert moderator.explain(texts, labels=["toxicity"]) == explain(
        moderator, texts, labels=["toxicity"]
    )


def test_token_spans_cover_the_words_the_model_reads(moderator):
    text = "You are an idiot."
    [spans] = moderator.token_spans([text])
    assert spans and all(0 <= a < b <= len(text) for a, b in spans)
    assert "".join(text[a:b] for a, b in spans).lower() == "youareanidiot."
    [long] = moderator.token_spans(["word " * (2 * moderator.seq_len)])
    assert len(long) == moderator.seq_len - moderator.special_tokens  # truncated like scoring


def test_words_past_what_the_model_reads_are_never_spans(word_list_moderator):
    target, label = first_label(word_list_moderator)
    text = "fine " * (2 * word_list_moderator.seq_len) + "idiot"
    read_until = max(b for _, b in word_list_moderator.token_spans([text])[0])
    assert read_until < text.index("idiot")
    [explanation] = explain(word_list_moderator, [text], [label])
    spans = explanation[category(word_list_moderator, target, label)]
    assert all(s["end"] <= read_until for s in spans)


def test_a_target_label_explains_itself_but_lends_no_evidence():
    """identity_attack's evidence (the group named) is no reason for toxicity, but is its own."""
    from moderation_helpers.model.explain_weights import TARGET_LABELS, Plan, word_weights

    assert "identity_attack" in TARGET_LABELS
    text = "those muslims are idiots"
    units = [explain_unit(text, w) for w in ("those", "muslims", "idiots")]
    evidence = [("m", "identity_attack", 0), ("m", "toxicity", 1)]
    plan = Plan(
        text=text,
        units=units,
        columns=evidence,
        evidence=evidence,
        content=np.array([True, True, True]),
        # identity_attack lifts "muslims" most, toxicity "idiots"; the text is mostly an attack
        lifts=np.array([[0.0, 0.9, 0.3], [0.0, 0.2, 0.8]]),
        full=np.array([0.95, 0.6]),
        occluded=[1, 2],
        drops=np.array([[0.8, 0.2], [0.1, 0.7]]),
    )
    toxicity = word_weights(plan, 1, alone_weight=1.0, own_share=0.0)
    assert int(np.argmax(toxicity)) == 2  # "idiots", though identity_attack scores higher
    attack = word_weights(plan, 0, alone_weight=1.0, own_share=0.25)
    assert attack[1] > toxicity[1]  # the group is part of identity_attack's own reason


def test_a_label_raised_to_a_target_labels_score_is_explained_by_its_mates():
    """toxicity kept at identity_attack's score (implied_by) would borrow the group named as its
    own evidence; on such a text its mates (insult) speak for it."""
    from moderation_helpers.model.explain_weights import Plan, voiced_by_target, word_weights

    targets = [
        {
            "name": "m",
            "labels": ["identity_attack", "insult", "toxicity"],
            "implied_by": {"toxicity": ["identity_attack", "insult"]},
        }
    ]
    raised = {"m": np.array([[0.97, 0.6, 0.97], [0.5, 0.9, 0.9], [0.2, 0.1, 0.8]])}
    assert voiced_by_target(targets, raised, 0) == {("m", "toxicity")}
    assert voiced_by_target(targets, raised, 1) == set()  # raised by insult: its own evidence
    assert voiced_by_target(targets, raised, 2) == set()  # its own score
    assert voiced_by_target([{**targets[0], "implied_by": {}}], raised, 0) == set()

    text = "I hate muslims"
    units = [explain_unit(text, w) for w in ("hate", "muslims")]
    evidence = [("m", "identity_attack", 0), ("m", "insult", 1), ("m", "toxicity", 2)]
    plan = Plan(
        text=text,
        units=units,
        columns=[evidence[2]],
        evidence=evidence,
        content=np.array([True, True]),
        # toxicity's score is identity_attack's, so are its lifts and drops: "muslims"
        lifts=np.array([[0.1, 0.9], [0.7, 0.2], [0.1, 0.9]]),
        full=np.array([0.97, 0.6, 0.97]),
        occluded=[0, 1],
        drops=np.array([[0.2, 0.8], [0.5, 0.1], [0.2, 0.8]]),
    )
    assert int(np.argmax(word_weights(plan, 0, alone_weight=1.0, own_share=0.25))) == 1
    plan.voiced = voiced_by_target(targets, {"m": plan.full[None, :]}, 0)
    assert int(np.argmax(word_weights(plan, 0, alone_weight=1.0, own_share=0.25))) == 0


def explain_unit(text: str, word: str):
    from moderation_helpers.model.explain import Unit

    start = text.index(word)
    return Unit(start, start + len(word), None, 0)

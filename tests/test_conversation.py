"""The one rendering of a conversation: turns in order with their roles; over budget, the
latest turns that fit (the latest always); the same through every entry point."""

from __future__ import annotations

import pandas as pd
import pytest

from moderation_helpers.core import conversation as conv

CHAT = [
    {"role": "system", "content": "A forum."},
    {"role": "user", "content": " hello there "},
    {"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
    {"role": "user", "content": "bye now friend"},
]


def words(strings):
    return [len(s.split()) for s in strings]


def test_render_marks_roles_and_keeps_turn_order():
    assert conv.render(CHAT) == (
        "system: A forum.\nuser: hello there\nassistant: hi\nuser: bye now friend"
    )


@pytest.mark.parametrize(
    ("budget", "kept"),
    [
        (1, ["user: bye now friend"]),  # the latest turn even when over budget
        (4, ["user: bye now friend"]),
        (7, ["assistant: hi", "user: bye now friend"]),
        (10, ["assistant: hi", "user: bye now friend"]),
        (11, ["user: hello there", "assistant: hi", "user: bye now friend"]),
        (100, [t for t in conv.render(CHAT).split("\n")]),
    ],
)
def test_over_budget_the_earliest_turns_go_first(budget, kept):
    # Word counts: 'user: bye now friend' 4, 'assistant: hi' 2 (+1 per separator), ...
    assert conv.render(CHAT, count_tokens=words, max_tokens=budget) == "\n".join(kept)


def test_render_many_counts_every_turn_in_one_call_and_keeps_order():
    calls = []

    def counting(strings):
        calls.append(list(strings))
        return words(strings)

    out = conv.render_many([CHAT, CHAT[1:2], CHAT], count_tokens=counting, max_tokens=7)
    assert out == ["assistant: hi\nuser: bye now friend", "user: hello there"] + out[:1]
    assert len(calls) == 1 and len(calls[0]) == 9


def test_texts_and_conversations_give_the_same_inputs_through_every_entry_point():
    examples = [{"text": "plain"}, {"messages": CHAT}, {"text": "again"}]
    expected = ["plain", conv.render(CHAT), "again"]
    assert conv.example_texts(examples) == expected
    assert [conv.example_text(ex) for ex in examples] == expected
    frame = pd.DataFrame(examples)
    assert conv.frame_texts(frame).tolist() == expected


def test_request_messages_may_carry_text_chunks_and_null_content_lines_may_not():
    request = [{"role": "assistant", "content": None}, *CHAT]
    assert conv.message_problems(request, allow_chunks=True) == []
    assert [f for f, _ in conv.message_problems(request)] == ["messages[0].content"] + [
        "messages[3].content"
    ]
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]
    assert conv.message_problems(image, "input", allow_chunks=True)[0][0] == "input[0].content[0]"


def test_token_limits_follow_the_tokenizer():
    from transformers import AutoTokenizer

    from moderation_helpers.classifier.network import encoder_path

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path()), local_files_only=True)
    limits = conv.token_limits(tokenizer, 16)
    assert limits["max_tokens"] == 14  # [CLS] and [SEP]
    long_chat = [{"role": "user", "content": "word " * 20}, {"role": "user", "content": "last"}]
    assert conv.render(long_chat, **limits) == "user: last"
    rendered = conv.render(CHAT, **limits)
    assert len(tokenizer(rendered)["input_ids"]) <= 16 and rendered.endswith("bye now friend")


def test_a_text_trained_model_reads_the_latest_turn_alone_and_a_chat_trained_one_the_whole():
    chat = [
        {"role": "user", "content": "You are all idiots."},
        {"role": "assistant", "content": [{"type": "text", "text": " Thanks for the feedback. "}]},
    ]
    texts = [{"text": "hello", "labels": {}}]
    chats = [*texts, {"messages": chat, "labels": {}}]
    assert conv.rendering_for(texts) == conv.LATEST_TURN
    assert conv.rendering_for(chats) == conv.RENDERING
    latest = conv.render_many([chat, chat[:1]], rendering=conv.LATEST_TURN)
    assert latest == ["Thanks for the feedback.", "You are all idiots."]
    assert conv.render(chat).startswith("user: You are all idiots.\nassistant:")
    with pytest.raises(ValueError, match="unknown rendering"):
        conv.render_many([chat], rendering={"name": "xml"})

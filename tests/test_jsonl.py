"""The JSONL validator, reader and atomic writers: every error names file, line and field."""

from __future__ import annotations

import json
import os
import stat

import pytest

from moderation_helpers.core.files import atomic_path, atomic_write_text
from moderation_helpers.core.jsonl import (
    MULTI_CLASS,
    SINGLE_CLASS,
    JSONLValidationError,
    Problem,
    read_jsonl,
    validate_jsonl,
    write_jsonl,
)

GOOD = {"text": "hello", "labels": {"moderation": ["safe"]}}


def write_lines(path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def only_problem(path, lines: list[str], **kwargs) -> Problem:
    """Validate a file whose lines are given; return its single problem."""
    with pytest.raises(JSONLValidationError) as info:
        validate_jsonl(write_lines(path, lines), **kwargs)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


@pytest.mark.parametrize(
    ("bad_line", "field", "words"),
    [
        ('{"text": "a", "labels": ', "<line>", "not valid JSON"),
        ("[1, 2]", "<line>", "JSON object"),
        ('{"labels": {"moderation": ["safe"]}}', "text", "missing"),
        ('{"text": "", "labels": {"moderation": ["safe"]}}', "text", "empty"),
        ('{"text": "   ", "labels": {"moderation": ["safe"]}}', "text", "empty"),
        ('{"text": 3, "labels": {"moderation": ["safe"]}}', "text", "string"),
        ('{"text": "a"}', "labels", "missing"),
        ('{"text": "a", "labels": ["safe"]}', "labels", "object"),
        ('{"text": "a", "labels": "safe"}', "labels", "object"),
        ('{"text": "a", "labels": {}}', "labels", "no target"),
        ('{"text": "a", "labels": {"moderation": ["safe", 3]}}', "labels.moderation", "strings"),
        ('{"text": "a", "labels": {"moderation": [null]}}', "labels.moderation", "strings"),
        ('{"text": "a", "labels": {"moderation": []}}', "labels.moderation", "empty"),
        ('{"text": "a", "labels": {"moderation": 1}}', "labels.moderation", "label or a list"),
        ('{"text": "a", "labels": {"moderation": [""]}}', "labels.moderation", "empty label"),
        ("", "<line>", "empty line"),
        # Conversations (the Factory's chat dataset kind).
        ('{"messages": "hi", "labels": {"m": "x"}}', "messages", "list of messages"),
        ('{"messages": [], "labels": {"m": "x"}}', "messages", "empty list"),
        ('{"messages": ["hi"], "labels": {"m": "x"}}', "messages[0]", "object"),
        (
            '{"messages": [{"role": "bot", "content": "a"}], "labels": {"m": "x"}}',
            "messages[0].role",
            "unknown role 'bot'",
        ),
        ('{"messages": [{"content": "a"}], "labels": {"m": "x"}}', "messages[0].role", "missing"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": 3}], '
            '"labels": {"m": "x"}}',
            "messages[1].content",
            "expected a string",
        ),
        (
            '{"messages": [{"role": "user", "content": " "}], "labels": {"m": "x"}}',
            "messages[0].content",
            "empty content",
        ),
        (
            '{"messages": [{"role": "user"}], "labels": {"m": "x"}}',
            "messages[0].content",
            "missing",
        ),
        (
            '{"text": "a", "messages": [{"role": "user", "content": "a"}], "labels": {"m": "x"}}',
            "messages",
            "not both",
        ),
        ('{"labels": {"m": "x"}}', "text", "or 'messages'"),
        # label_scores, the local factory's extension
        ('{"text": "a", "labels": {"m": ["x"]}, "label_scores": [0.5]}', "label_scores", "object"),
        (
            '{"text": "a", "labels": {"m": "x"}, "label_scores": {"m": {"x": 0.5}}}',
            "label_scores.m",
            "multi_class",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"n": {"x": 0.5}}}',
            "label_scores.n",
            "multi_class",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"m": 0.5}}',
            "label_scores.m",
            "object",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"m": {"x": 1.5}}}',
            "label_scores.m.x",
            "in [0, 1], got 1.5",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"m": {"x": "0.5"}}}',
            "label_scores.m.x",
            "number",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"m": {"x": NaN}}}',
            "label_scores.m.x",
            "nan",
        ),
        (
            '{"text": "a", "labels": {"m": ["x"]}, "label_scores": {"m": {"x": true}}}',
            "label_scores.m.x",
            "True",
        ),
    ],
)
def test_a_bad_line_is_reported_with_file_line_and_field(tmp_path, bad_line, field, words):
    good = json.dumps(GOOD)
    path = tmp_path / "data.jsonl"
    problem = only_problem(path, [good, good, bad_line, good])
    assert (problem.path, problem.line, problem.field) == (str(path), 3, field)
    assert words in problem.message
    assert f"{path}:3: field '{field}'" in str(problem)


def test_every_problem_is_listed_and_the_message_names_them(tmp_path):
    path = write_lines(
        tmp_path / "bad.jsonl",
        [json.dumps(GOOD), "not json", '{"text": "", "labels": 1}', json.dumps(GOOD)],
    )
    with pytest.raises(JSONLValidationError) as info:
        validate_jsonl(path)
    found = [(p.line, p.field) for p in info.value.problems]
    assert found == [(2, "<line>"), (3, "text"), (3, "labels")]
    assert info.value.path == path
    message = str(info.value)
    assert "3 problem(s)" in message and f"{path}:2:" in message and f"{path}:3:" in message


def test_unknown_labels_and_targets_are_problems_when_labels_are_given(tmp_path):
    allowed = {"moderation": ["safe", "insult"]}
    unknown_label = '{"text": "a", "labels": {"moderation": ["insult", "spam"]}}'
    problem = only_problem(tmp_path / "a.jsonl", [unknown_label], allowed_labels=allowed)
    assert (problem.line, problem.field) == (1, "labels.moderation")
    assert "spam" in problem.message and "insult" in problem.message
    unknown_target = '{"text": "a", "labels": {"topic": "sports"}}'
    problem = only_problem(tmp_path / "b.jsonl", [unknown_target], allowed_labels=allowed)
    assert problem.field == "labels.topic" and "unknown target" in problem.message
    # without allowed_labels, any label name is fine
    assert validate_jsonl(write_lines(tmp_path / "c.jsonl", [unknown_label])).n_lines == 1


def test_bytes_that_are_not_utf8_are_a_problem(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    with pytest.raises(JSONLValidationError) as info:
        validate_jsonl(path)
    assert [(p.line, p.field) for p in info.value.problems] == [(2, "<line>")]
    assert "UTF-8" in info.value.problems[0].message


def test_an_empty_or_missing_file_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(JSONLValidationError, match="no examples"):
        validate_jsonl(empty)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        validate_jsonl(tmp_path / "nope.jsonl")


def test_the_report_gives_label_sets_counts_and_kinds_per_target(tmp_path):
    lines = [
        {"text": "a", "labels": {"moderation": ["toxicity", "insult"], "topic": "sports"}},
        {"text": "b", "labels": {"moderation": ["safe"], "topic": "news"}},
        {"text": "c", "labels": {"moderation": ["insult"], "topic": "news"}},
    ]
    report = validate_jsonl(write_lines(tmp_path / "ok.jsonl", [json.dumps(x) for x in lines]))
    assert report.n_lines == 3
    assert report.targets == {
        "moderation": ["insult", "safe", "toxicity"],
        "topic": ["news", "sports"],
    }
    assert report.label_counts["moderation"] == {"insult": 2, "safe": 1, "toxicity": 1}
    assert report.kinds == {"moderation": MULTI_CLASS, "topic": SINGLE_CLASS}


def test_write_then_read_round_trips_unicode_and_control_characters(tmp_path):
    records = [
        {"text": 'quotes " and \\ backslash /slash', "labels": {"moderation": ["safe"]}},
        {"text": "émoji 😀, line\nbreak, tab\t, \u2028 separator", "labels": {"m": ["x", "y"]}},
    ]
    path = write_jsonl(records, tmp_path / "sub" / "out.jsonl")
    assert read_jsonl(path) == records
    assert "😀" in path.read_text(encoding="utf-8"), "written as UTF-8, not \\u escapes"


def test_read_refuses_an_invalid_file(tmp_path):
    with pytest.raises(JSONLValidationError):
        read_jsonl(write_lines(tmp_path / "bad.jsonl", ['{"text": ""}']))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl([GOOD], path)
    before = path.read_bytes()

    def records():
        yield GOOD
        raise RuntimeError("source broke half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        write_jsonl(records(), path)
    with pytest.raises(TypeError):
        write_jsonl([GOOD, {"text": object(), "labels": {}}], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "figure.png"
    atomic_write_text(target, "old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("boom")
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_chat_lines_are_valid_and_counted_like_text_lines(tmp_path):
    chat = {
        "messages": [
            {"role": "system", "content": "A forum."},
            {"role": "user", "content": "you are an idiot"},
        ],
        "labels": {"moderation": ["insult"]},
    }
    path = write_lines(tmp_path / "chat.jsonl", [json.dumps(chat), json.dumps(GOOD)])
    report = validate_jsonl(path)
    assert report.n_lines == 2
    assert report.label_counts == {"moderation": {"insult": 1, "safe": 1}}
    assert read_jsonl(path)[0]["messages"][1]["content"] == "you are an idiot"


def test_label_scores_are_counted_and_checked_against_the_allowed_labels(tmp_path):
    scored = {**GOOD, "label_scores": {"moderation": {"toxicity": 0.25, "safe": 1}}}
    path = write_lines(tmp_path / "d.jsonl", [json.dumps(GOOD), json.dumps(scored)])
    assert validate_jsonl(path).n_scored == 1
    problem = only_problem(
        tmp_path / "e.jsonl", [json.dumps(scored)], allowed_labels={"moderation": ["safe"]}
    )
    assert problem.field == "label_scores.moderation.toxicity"
    assert "unknown label" in problem.message

"""The torch-free Moderator over an exported model folder."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from moderation_helpers.core.conversation import LATEST_TURN, RENDERING, TURN_SEPARATOR
from moderation_helpers.core.flags import thresholds_table
from moderation_helpers.model import moderator as moderator_module
from moderation_helpers.model.decisions import Decision, decide
from moderation_helpers.model.folder import THRESHOLDS_JSON, ModelFolderError
from moderation_helpers.model.moderator import Moderator

TEXTS = [
    "you are a complete idiot and everyone knows it",
    "what a lovely afternoon in the park",
    "ok",
    "I will find you and hurt you. " * 40,  # longer than seq_len: truncated
]


@pytest.fixture(scope="module")
def moderator(exported_model) -> Moderator:
    return Moderator.load(exported_model)


def test_attributes(moderator, trained_job):
    _, job = trained_job
    assert [t["name"] for t in moderator.targets] == [t.name for t in job.classifier_targets]
    assert moderator.targets[0]["loss_function"] == "multi_class"
    assert moderator.seq_len == 128
    assert moderator.providers == ["CPUExecutionProvider"]
    assert moderator.thresholds == {
        t["name"]: {lab: 0.5 for lab in t["labels"]} for t in moderator.targets
    }


def test_score_shapes_order_and_batching(moderator, exported_model):
    scores = moderator.score(TEXTS)
    labels = moderator.targets[0]["labels"]
    assert scores["moderation"].shape == (len(TEXTS), len(labels))
    assert scores["moderation"].dtype == np.float32
    # One text per batch, and in reverse order: the same scores, in input order.
    tiny = Moderator.load(exported_model, token_budget=1)
    reversed_scores = tiny.score(TEXTS[::-1])["moderation"][::-1]
    np.testing.assert_allclose(reversed_scores, scores["moderation"], atol=1e-5)


def test_batches_respect_the_token_budget(moderator):
    lengths = np.array([5, 50, 7, 128, 6, 9, 120])
    moderator_budget = moderator.token_budget
    try:
        moderator.token_budget = 150
        batches = moderator.batches(lengths)
    finally:
        moderator.token_budget = moderator_budget
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for idx in batches:
        assert len(idx) == 1 or len(idx) * lengths[idx].max() <= 150
    assert [lengths[b].tolist() for b in batches] == [[5, 6, 7, 9], [50], [120], [128]]


def test_predict_and_score_frame_agree(moderator):
    rows = moderator.predict(TEXTS)
    frame = moderator.score_frame(TEXTS)
    assert list(frame.columns.names) == ["target", "label"]
    for i, row in enumerate(rows):
        for (target, label), value in frame.iloc[i].items():
            assert row[target][label] == pytest.approx(value, abs=1e-7)


def test_token_lengths_truncate_at_seq_len(moderator):
    lengths = moderator.token_lengths(TEXTS)
    assert lengths.dtype == np.int64
    assert lengths[2] == 3  # [CLS] ok [SEP]
    assert lengths[3] == moderator.seq_len


def test_moderate_applies_the_folder_thresholds(moderator):
    decisions = moderator.moderate(TEXTS)
    assert all(isinstance(d, Decision) for d in decisions)
    scores = moderator.score(TEXTS)["moderation"]
    labels = moderator.targets[0]["labels"]
    for decision, row in zip(decisions, scores, strict=True):
        expected = {lab for lab, s in zip(labels, row, strict=True) if s >= 0.5 and lab != "safe"}
        assert set(decision.flagged["moderation"]) == expected
    # An override changes the decision for that label only.
    insult_first = moderator.moderate(TEXTS[:1], thresholds={"moderation": {"insult": 0.0}})
    assert "insult" in insult_first[0].flagged["moderation"]
    layout = moderator.labels_by_target
    table = thresholds_table(layout, default=0.5)
    same = decide(TEXTS, moderator.score(TEXTS), layout, table)
    assert [d.flagged for d in decisions] == [d.flagged for d in same]
    assert decisions[0].scores == same[0].scores


def test_recipe_decide_gives_the_moderators_decisions(moderator):
    from moderation_helpers.recipe.moderate import decide as decide_frame

    frame = moderator.score_frame(TEXTS)
    from_frame = decide_frame(TEXTS, frame, {c: 0.5 for c in frame.columns})
    assert from_frame == moderator.moderate(TEXTS)


def test_a_folder_without_thresholds_moderates_at_one_half_and_says_so_once(
    exported_model, tmp_path, caplog
):
    import shutil

    copy = tmp_path / "no-thresholds"
    shutil.copytree(exported_model, copy)
    (copy / THRESHOLDS_JSON).unlink()
    plain = Moderator.load(copy)
    assert plain.thresholds is None
    caplog.set_level(logging.WARNING, logger="moderation_helpers.model.moderator")
    first = plain.moderate(TEXTS)
    plain.moderate(TEXTS[:1])
    warnings = [r for r in caplog.records if "moderating at 0.5" in r.getMessage()]
    assert len(warnings) == 1 and "has no thresholds.json" in warnings[0].getMessage()
    # The exported folder's thresholds are 0.5 everywhere: the same decisions.
    assert first == Moderator.load(exported_model).moderate(TEXTS)


def test_thresholds_tuned_on_the_other_graph_are_named_at_load(exported_model, tmp_path, caplog):
    import shutil

    copy = tmp_path / "int8-thresholds"
    shutil.copytree(exported_model, copy)
    record = json.loads((copy / THRESHOLDS_JSON).read_text(encoding="utf-8"))
    (copy / THRESHOLDS_JSON).write_text(json.dumps({**record, "graph": "int8"}), encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="moderation_helpers.model.moderator")
    assert Moderator.load(copy, variant="int8").thresholds_graph == "int8"
    assert not [r for r in caplog.records if "tuned on" in r.getMessage()]
    assert Moderator.load(copy).variant == "fp32"
    warned = [r.getMessage() for r in caplog.records if "tuned on int8 scores" in r.getMessage()]
    assert len(warned) == 1 and "variant='int8'" in warned[0]

    (copy / THRESHOLDS_JSON).write_text(json.dumps({**record, "graph": "fp16"}), encoding="utf-8")
    with pytest.raises(ModelFolderError, match=r"thresholds.json: field graph: .*'fp16'"):
        Moderator.load(copy)


def test_moderate_names_unknown_thresholds(moderator):
    with pytest.raises(ValueError, match="does not score"):
        moderator.moderate(TEXTS, thresholds={"moderation": {"spam": 0.5}})


def test_a_text_trained_model_reads_a_conversation_as_its_latest_turn(moderator):
    chat = [{"role": "user", "content": "you are all idiots"}, {"role": "user", "content": "ok"}]
    assert moderator.record["rendering"] == LATEST_TURN  # the test model trained on texts
    assert moderator.render_conversations([chat]) == ["ok"]
    assert moderator.predict_conversations([chat]) == moderator.predict(["ok"])


def test_conversations_keep_the_latest_turns(moderator, monkeypatch):
    monkeypatch.setitem(moderator.record, "rendering", RENDERING)  # as if trained on chats
    long_turn = {"role": "user", "content": "blah " * 200}
    chat = [long_turn, {"role": "assistant", "content": "fine"}, {"role": "user", "content": "ok"}]
    (rendered,) = moderator.render_conversations([chat])
    assert rendered == TURN_SEPARATOR.join(["assistant: fine", "user: ok"])
    assert moderator.predict_conversations([chat]) == moderator.predict([rendered])
    with pytest.raises(ValueError, match=r"conversations\[0\]\[0\].role"):
        moderator.predict_conversations([[{"role": "robot", "content": "hi"}]])


def test_bad_input_is_a_clear_error(moderator, tmp_path):
    with pytest.raises(TypeError, match="texts\\[1\\] is int"):
        moderator.score(["fine", 3])
    with pytest.raises(ModelFolderError, match="not an exported model folder"):
        Moderator.load(tmp_path)


def test_int8_variant_needs_the_int8_file(exported_model, tmp_path):
    import shutil

    copy = tmp_path / "fp32-only"
    shutil.copytree(exported_model, copy)
    (copy / "model.int8.onnx").unlink()
    with pytest.raises(ModelFolderError, match="model.int8.onnx not found"):
        Moderator.load(copy, variant="int8")


def test_provider_choice_prefers_cuda_when_onnxruntime_has_it(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPU..."]
    )
    assert moderator_module.default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert moderator_module.default_providers() == ["CPUExecutionProvider"]


def test_a_missing_provider_falls_back_to_the_cpu_and_says_so(exported_model, caplog):
    caplog.set_level(logging.INFO, logger="moderation_helpers.model.moderator")
    loaded = Moderator.load(
        exported_model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert loaded.providers == ["CPUExecutionProvider"]
    assert "could not use CUDAExecutionProvider" in caplog.text
    assert "on CPUExecutionProvider" in caplog.text


HEAVY = ("torch", "transformers", "mistralai", "sklearn", "httpx", "fastapi", "ray")
NO_TORCH = r"""
import json, sys
from moderation_helpers.model.moderator import Moderator
moderator = Moderator.load(sys.argv[1])
decisions = moderator.moderate(["you idiot", "hello"])
heavy = json.loads(sys.argv[2])
print(json.dumps({
    "flags": [d.flagged for d in decisions],
    "scores": [d.scores for d in decisions],
    "leaked": sorted(m for m in heavy if m in sys.modules),
}))
"""


def test_the_moderator_moderates_without_torch_or_the_recipe(exported_model):
    """In a fresh interpreter: load, moderate, and none of the heavy libraries got imported
    (pandas still comes with core.conversation)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(exported_model), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["leaked"] == []
    assert len(result["flags"]) == 2 and set(result["flags"][0]) == {"moderation"}
    expected = Moderator.load(exported_model).moderate(["you idiot", "hello"])
    for got, want in zip(result["scores"], expected, strict=True):
        for label, value in want.scores["moderation"].items():
            assert got["moderation"][label] == pytest.approx(value, abs=1e-6)
    assert result["flags"] == [d.flagged for d in expected]

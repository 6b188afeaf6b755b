"""``moderate()``: the moderation service, against a fake client answering the recorded shape."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from moderation_helpers.recipe import classify, predictions
from moderation_helpers.recipe import evaluate as ev
from moderation_helpers.recipe.moderate import (
    Decision,
    agreement,
    decide,
    decisions_frame,
    load_thresholds,
    moderate,
    safe_label_of,
    save_thresholds,
    thresholds_record,
)
from moderation_helpers.recipe.run_folder import JOB_JSON, THRESHOLDS_JSON, write_record

MODEL = "ft:classifier:ministral-3b-latest:8e2706f0:20250416:cbe076ac"


class FakeClassifiers:
    """Scores keyed on words of the text, in the recorded response's shape (dict per target)."""

    def __init__(self, targets=("moderation",)):
        self.targets = targets
        self.calls: list[tuple[str, list[str]]] = []

    def classify(self, *, model, inputs):
        self.calls.append((model, list(inputs)))
        results = []
        for text in inputs:
            insult = 0.7 if "idiot" in text else 0.05
            threat = 0.6 if "hurt" in text else 0.05
            scores = {"insult": insult, "threat": threat, "safe": 1 - insult - threat}
            result = {"moderation": {"scores": scores}}
            if "lang" in self.targets:
                result["lang"] = {"scores": {"en": 0.8, "fr": 0.2}}
            results.append(result)
        return {"id": "c", "model": model, "results": results}


class FakeClient:
    def __init__(self, **kw):
        self.classifiers = FakeClassifiers(**kw)


@pytest.fixture
def run_dir(tmp_path):
    write_record(
        tmp_path,
        JOB_JSON,
        {
            "backend": "local",
            "server_url": "http://127.0.0.1:9",
            "job_id": "j1",
            "status": "SUCCESS",
            "fine_tuned_model": MODEL,
            "classifier_targets": [{"name": "moderation", "labels": ["insult", "safe", "threat"]}],
        },
    )
    table = pd.DataFrame(
        {"threshold": [0.5, 0.4, 0.3]},
        index=pd.MultiIndex.from_tuples(
            [("moderation", "insult"), ("moderation", "threat"), ("moderation", "safe")],
            names=classify.COLUMN_NAMES,
        ),
    )
    save_thresholds(tmp_path, thresholds_record(table, model=MODEL, backend="local"))
    return tmp_path


def test_thresholds_json_round_trip(run_dir):
    saved = load_thresholds(run_dir)
    assert saved["thresholds"] == {"moderation": {"insult": 0.5, "threat": 0.4, "safe": 0.3}}
    assert saved["model"] == MODEL and saved["safe_label"] == "safe"
    assert "key" not in json.dumps(saved).lower()


def test_moderate_flags_with_saved_thresholds(run_dir):
    client = FakeClient()
    texts = ["you idiot", "I will hurt you, idiot", "have a nice day"]
    decisions = moderate(texts, run_dir, client=client)
    assert [d.flagged["moderation"] for d in decisions] == [["insult"], ["insult", "threat"], []]
    assert [d.is_flagged for d in decisions] == [True, True, False]
    assert decisions[2].scores["moderation"]["safe"] == pytest.approx(0.9)
    # safe passes its threshold on the clean text but is never a flag
    assert "safe" not in decisions[2].flagged["moderation"]
    assert client.classifiers.calls[0][0] == MODEL  # the model of job.json


def test_moderate_accepts_one_string_and_overrides(run_dir):
    [decision] = moderate(
        "you idiot", run_dir, client=FakeClient(), thresholds={"moderation": {"insult": 0.8}}
    )
    assert isinstance(decision, Decision) and decision.flagged == {"moderation": []}


def test_moderate_refuses_thresholds_of_another_model(run_dir):
    record = load_thresholds(run_dir) | {"model": "ft:classifier:other"}
    save_thresholds(run_dir, record)
    with pytest.raises(RuntimeError, match="re-run 04_infer"):
        moderate(["x"], run_dir, client=FakeClient())


def test_moderate_needs_a_finished_job(run_dir):
    job = json.loads((run_dir / JOB_JSON).read_text())
    write_record(run_dir, JOB_JSON, job | {"status": "RUNNING", "fine_tuned_model": None})
    with pytest.raises(RuntimeError, match="RUNNING.*03_monitor"):
        moderate(["x"], run_dir, client=FakeClient())


def test_moderate_without_thresholds_names_the_missing_file(run_dir):
    (run_dir / THRESHOLDS_JSON).unlink()
    with pytest.raises(FileNotFoundError, match="thresholds.json"):
        moderate(["x"], run_dir, client=FakeClient())


def test_moderate_with_a_label_lacking_a_threshold_says_which(run_dir):
    (run_dir / THRESHOLDS_JSON).unlink()
    with pytest.raises(ValueError, match="insult"):
        moderate(["x"], run_dir, client=FakeClient(), thresholds={"moderation": {"safe": 0.5}})


def test_moderate_multi_target(run_dir):
    record = load_thresholds(run_dir)
    record["thresholds"]["lang"] = {"en": 0.5, "fr": 0.5}
    save_thresholds(run_dir, record)
    decisions = moderate(["you idiot"], run_dir, client=FakeClient(targets=("moderation", "lang")))
    assert decisions[0].flagged == {"moderation": ["insult"], "lang": ["en"]}
    table = decisions_frame(decisions)
    assert list(table.columns) == ["text", "flagged/lang", "flagged/moderation", "is_flagged"]


def test_moderate_refuses_thresholds_for_labels_the_model_lacks(run_dir):
    with pytest.raises(ValueError, match="moderation/obscene"):
        moderate(["x"], run_dir, client=FakeClient(), thresholds={"moderation": {"obscene": 0.5}})


def test_decide_matches_predict_on_a_score_frame():
    scores = pd.DataFrame({("m", "a"): [0.2, 0.9], ("m", "safe"): [0.8, 0.1]})
    scores.columns = scores.columns.set_names(classify.COLUMN_NAMES)
    decisions = decide(["x", "y"], scores, {("m", "a"): 0.5, ("m", "safe"): 0.5})
    assert [d.flagged for d in decisions] == [{"m": []}, {"m": ["a"]}]
    assert decisions[1].scores == {"m": {"a": 0.9, "safe": 0.1}}


def test_predictions_frame_round_trips_and_agrees_with_moderate(run_dir):
    texts = ["you idiot", "I will hurt you", "hello"]
    client = FakeClient()
    scores = classify.classify_texts(client, MODEL, texts, progress=False)
    truth = ev.truth_frame(
        [
            {"labels": {"moderation": ["insult"]}},
            {"labels": {"moderation": ["threat"]}},
            {"labels": {"moderation": ["safe"]}},
        ],
        classify.targets_of(scores),
    )
    limits = {
        ("moderation", "insult"): 0.5,
        ("moderation", "threat"): 0.4,
        ("moderation", "safe"): 0.3,
    }
    frame = predictions.predictions_frame(texts, truth, scores, limits)
    path = predictions.write_parquet(frame, run_dir / "predictions.parquet")
    stored = pd.read_parquet(path)
    assert stored["flagged/moderation"].map(list).tolist() == [["insult"], ["threat"], []]
    assert stored["pred/moderation/safe"].tolist() == [False, True, True]  # 0.35 >= 0.3
    assert stored["truth/moderation/threat"].tolist() == [False, True, False]

    decisions = moderate(texts, run_dir, client=client)
    assert agreement(decisions, stored) == {"texts": 3, "same": 3, "max_score_difference": 0.0}
    shifted = moderate(texts[::-1], run_dir, client=client)
    assert agreement(shifted, stored)["same"] == 1  # only the middle text lines up


def test_safe_label_comes_from_the_prepare_summary(tmp_path):
    assert safe_label_of(tmp_path) == "safe"
    write_record(tmp_path, "prepare_summary.json", {"parameters": {"safe_label": "ok"}})
    assert safe_label_of(tmp_path) == "ok"


def test_moderate_says_how_to_restart_a_stopped_local_factory(run_dir):
    # job.json points at port 9 (discard), where no factory answers; none may be started.
    with pytest.raises(ConnectionError, match=r"factory serve --store STORE --port 9"):
        moderate(["x"], run_dir)


def test_moderate_nothing_asks_nothing(run_dir):
    client = FakeClient()
    assert moderate([], run_dir, client=client) == [] and client.classifiers.calls == []

"""Export of a fine-tuned model into the ONNX model folder: scores, refusals, self-containment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moderation_helpers.cli import factory_main
from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.export.onnx import ExportRefused
from moderation_helpers.factory.exports import export_from_store
from moderation_helpers.factory.store.db import Store
from moderation_helpers.model.folder import (
    CLASSIFIER_JSON,
    MODEL_CARD,
    MODEL_INT8_ONNX,
    MODEL_ONNX,
    THRESHOLDS_JSON,
    TOKENIZER_JSON,
    ModelFolderError,
    read_classifier,
    validate_classifier,
)
from moderation_helpers.model.moderator import Moderator
from moderation_helpers.recipe import classify


@pytest.fixture(scope="module")
def test_texts(prepared_run_dir) -> list[str]:
    return [ex["text"] for ex in read_jsonl(prepared_run_dir / "test.jsonl")]


@pytest.fixture(scope="module")
def factory_scores(trained_job, test_texts):
    """The factory's classification of the test split, through the SDK."""
    client, job = trained_job
    return classify.classify_texts(client, job.fine_tuned_model, test_texts, progress=False)


def test_folder_holds_the_format_files(exported_model, trained_job):
    _, job = trained_job
    names = {p.name for p in exported_model.iterdir()}
    assert names == {
        MODEL_ONNX,
        MODEL_INT8_ONNX,
        TOKENIZER_JSON,
        CLASSIFIER_JSON,
        THRESHOLDS_JSON,
        MODEL_CARD,
    }
    record = read_classifier(exported_model)
    assert record["model_id"] == job.fine_tuned_model
    assert [t["name"] for t in record["targets"]] == [t.name for t in job.classifier_targets]
    assert record["targets"][0]["score_function"] == "sigmoid"
    assert record["variants"]["int8"]["quantization"]["tool"].startswith("onnxruntime")
    card = (exported_model / MODEL_CARD).read_text()
    assert "all-MiniLM-L6-v2" in card and "English only" in card and "test" in card


def test_fp32_scores_match_the_factory(exported_model, factory_scores, test_texts):
    ours = Moderator.load(exported_model).score_frame(test_texts)
    assert list(ours.columns) == list(factory_scores.columns)
    assert np.abs(ours.to_numpy() - factory_scores.to_numpy()).max() < 1e-4


def test_the_graph_scores_toxicity_at_least_as_high_as_the_labels_that_imply_it(
    exported_model, test_texts
):
    # The prepared mirror's insults, threats, obscenities... are all toxic (classifier.coherence)
    target = read_classifier(exported_model)["targets"][0]
    children = target["implied_by"]["toxicity"]
    assert {"insult", "threat", "obscene"} <= set(children)
    scores = Moderator.load(exported_model).score_frame(test_texts)["moderation"]
    floor = scores[children].max(axis=1)
    assert (scores["toxicity"] >= floor).all()
    assert (scores["toxicity"] == floor).any()  # the rule is what raised some of them
    assert "`toxicity` scores at least as high as `" in (exported_model / MODEL_CARD).read_text()


@pytest.mark.slow  # loads torch or exports again: tens of seconds
def test_fp32_scores_match_torch_fp32(exported_model, factory, trained_job, test_texts):
    from moderation_helpers.classifier.checkpoint import load_model

    _, job = trained_job
    record = Store(factory.store).get_model(job.fine_tuned_model)
    torch_rows = load_model(record["path"], device="cpu", precision="fp32").predict(test_texts)
    onnx_rows = Moderator.load(exported_model).predict(test_texts)
    diffs = [
        abs(a[t][lab] - b[t][lab])
        for a, b in zip(torch_rows, onnx_rows, strict=True)
        for t in a
        for lab in a[t]
    ]
    assert max(diffs) < 1e-4


def test_int8_runs_and_stays_close(exported_model, test_texts):
    fp32 = Moderator.load(exported_model).score_frame(test_texts).to_numpy()
    int8 = Moderator.load(exported_model, variant="int8").score_frame(test_texts).to_numpy()
    assert int8.shape == fp32.shape
    assert not np.array_equal(int8, fp32)  # the quantized graph really is another graph
    assert np.abs(int8 - fp32).max() < 0.05


SELF_CONTAINED = r"""
import json, sys
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, texts = sys.argv[1], json.loads(sys.stdin.read())
config = json.load(open(f"{folder}/classifier.json"))
tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")  # truncates and pads by itself
enc = tokenizer.encode_batch(texts)
feed = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
outputs = session.run([t["output"] for t in config["targets"]], feed)
leaked = sorted(m for m in ("torch", "transformers", "moderation_helpers") if m in sys.modules)
print(json.dumps({"scores": np.concatenate(outputs, axis=1).tolist(), "leaked": leaked}))
"""


@pytest.mark.slow  # loads torch or exports again: tens of seconds
def test_a_fresh_process_reproduces_the_scores_with_the_folder_alone(
    exported_model, factory_scores, test_texts, tmp_path
):
    done = subprocess.run(
        [sys.executable, "-c", SELF_CONTAINED, str(exported_model)],
        input=json.dumps(test_texts),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    result = json.loads(done.stdout)
    assert result["leaked"] == []
    assert np.abs(np.array(result["scores"]) - factory_scores.to_numpy()).max() < 1e-4


def test_export_refuses_a_non_empty_folder(exported_model, factory, trained_job, tmp_path):
    _, job = trained_job
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_from_store(factory.store, job.fine_tuned_model, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no work folder left behind


def test_cli_export_says_why_it_refuses(factory, trained_job, tmp_path, capsys):
    _, job = trained_job
    (tmp_path / "x").write_text("")
    store = ["--store", str(factory.store)]
    assert factory_main(["export", job.fine_tuned_model, "--out", str(tmp_path), *store]) == 1
    assert "not empty" in capsys.readouterr().err
    assert factory_main(["export", "ft:nope", "--out", str(tmp_path / "new"), *store]) == 1
    assert "no model 'ft:nope'" in capsys.readouterr().err


def test_export_refuses_an_unfinished_model(tmp_path):
    store = Store(tmp_path / "store")
    job_id = store.create_job({"model": "ministral-3b-latest"}, start_requested=True)
    store.add_model("ft:classifier:x", job_id, "ministral-3b-latest", [], store.model_dir(job_id))
    with pytest.raises(ExportRefused, match="not finished: its job .* is QUEUED"):
        export_from_store(tmp_path / "store", "ft:classifier:x", tmp_path / "out")
    with store.edit_job(job_id) as edit:
        edit.set_status(SUCCESS)  # but its folder holds no saved classifier
    with pytest.raises(ExportRefused, match="no finished model"):
        export_from_store(tmp_path / "store", "ft:classifier:x", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_thresholds_of_another_model(factory, trained_job, tmp_path, capsys):
    _, job = trained_job
    run = tmp_path / "run"
    run.mkdir()
    (run / THRESHOLDS_JSON).write_text(json.dumps({"model": "ft:other", "thresholds": {}}))
    store = ["--store", str(factory.store), "--run-dir", str(run)]
    out = ["--out", str(tmp_path / "out")]
    assert factory_main(["export", job.fine_tuned_model, *out, *store]) == 1
    assert "tuned for model 'ft:other'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_classifier_json_errors_name_the_field(exported_model):
    record = read_classifier(exported_model)
    record["targets"][0]["score_function"] = "softmax"
    with pytest.raises(ModelFolderError, match=r"targets\[0\].score_function"):
        validate_classifier(record, "x/classifier.json")
    with pytest.raises(ModelFolderError, match="format_version"):
        validate_classifier({**record, "format_version": 99})
    record = read_classifier(exported_model)
    with pytest.raises(ModelFolderError, match=r"pooling.*'max'"):
        validate_classifier({**record, "pooling": "max"})
    validate_classifier({**record, "pooling": "mean_max"})


@pytest.mark.slow  # loads torch or exports again: tens of seconds
def test_cli_export_through_the_server_needs_no_store(
    factory, trained_job, test_texts, tmp_path, monkeypatch, capsys
):
    """``export --server``: the folder comes through the API; no store on this machine."""
    _, job = trained_job
    nowhere = tmp_path / "no-store"
    monkeypatch.setenv("MODERATION_FACTORY_STORE", str(nowhere))
    server = ["--server", factory.url]
    out = tmp_path / "fetched"
    assert factory_main(["export", job.fine_tuned_model, "--out", str(out), *server]) == 0
    assert not nowhere.exists()
    assert {MODEL_ONNX, MODEL_INT8_ONNX, CLASSIFIER_JSON, MODEL_CARD} <= {
        p.name for p in out.iterdir()
    }
    decisions = Moderator.load(out).moderate(test_texts[:10])
    assert len(decisions) == 10

    run = tmp_path / "run"
    run.mkdir()
    targets = {t.name: dict.fromkeys(t.labels, 0.25) for t in job.classifier_targets}
    tuned = {"model": job.fine_tuned_model, "safe_label": "safe", "thresholds": targets}
    (run / THRESHOLDS_JSON).write_text(json.dumps(tuned))
    with_run = ["--out", str(tmp_path / "with-run"), "--run-dir", str(run), *server]
    assert factory_main(["export", job.fine_tuned_model, *with_run]) == 0
    assert json.loads((tmp_path / "with-run" / THRESHOLDS_JSON).read_text()) == tuned
    assert len(Moderator.load(tmp_path / "with-run").moderate(test_texts[:10])) == 10

    (run / THRESHOLDS_JSON).write_text(json.dumps({**tuned, "model": "ft:other"}))
    refused = ["--out", str(tmp_path / "refused"), "--run-dir", str(run), *server]
    assert factory_main(["export", job.fine_tuned_model, *refused]) == 1
    assert "tuned for model 'ft:other'" in capsys.readouterr().err
    assert factory_main(["export", "ft:nope", "--out", str(tmp_path / "nope"), *server]) == 1
    assert "404" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists() and not (tmp_path / "nope").exists()
    with pytest.raises(SystemExit):
        factory_main(["export", "ft:nope", "--out", str(out), *server, "--store", str(nowhere)])


def test_a_finished_job_leaves_its_exported_folder(factory, trained_job):
    from moderation_helpers.factory.exports import EXPORT_DIR, exported_folder
    from moderation_helpers.factory.serving.runtime import RUNTIME_JSON

    _, job = trained_job
    store = Store(factory.store)
    model_dir = Path(store.get_model(job.fine_tuned_model)["path"])
    folder = exported_folder(store, job.fine_tuned_model)
    assert folder == model_dir / EXPORT_DIR
    record = read_classifier(folder)
    assert record["model_id"] == job.fine_tuned_model
    assert (folder / MODEL_ONNX).is_file() and (folder / MODEL_INT8_ONNX).is_file()
    int8 = record["variants"]["int8"]
    assert isinstance(int8["auc_cost_vs_fp32"], float)  # measured on the validation file
    assert record["validation"]["texts"] == 100
    assert "## Quantization" in (folder / MODEL_CARD).read_text()
    assert (model_dir / RUNTIME_JSON).is_file()  # calibrated in training, not at a request
    with pytest.raises(ExportRefused):
        exported_folder(store, "ft:classifier:unknown")


def test_the_pinned_factory_answers_with_the_fp32_graph(factory, trained_job):
    import httpx

    _, job = trained_job
    body = {"model": job.fine_tuned_model, "input": ["you idiot", "hello"]}
    for route in ("/v1/classifications", "/v1/moderations"):
        response = httpx.post(factory.url + route, json=body, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["X-Moderation-Graph"] == "fp32"


def test_the_model_card_shows_behaviours_identity_rates_and_the_base_rate():
    from moderation_helpers.export.model_card import model_card

    record = {
        "model_id": "ft:x",
        "base_encoder": "enc",
        "seq_len": 128,
        "variants": {"fp32": {"file": "model.onnx"}},
        "targets": [
            {
                "output": "moderation",
                "labels": ["insult", "safe"],
                "loss_function": "multi_class",
                "score_function": "sigmoid",
            }
        ],
    }
    evaluation = {
        "base_rate": {"moderation/insult": 0.05, "moderation/safe": 0.9},
        "behaviours": {
            "insult": {
                "toxic": True,
                "n": 3,
                "accuracy": 2 / 3,
                "accuracy_low": 0.208,
                "accuracy_high": 0.939,
                "flag_rate": 2 / 3,
            }
        },
        "identity": {
            "fpr": 0.1,
            "n": 500,
            "kinds": {"neutral": 0.0, "attack_frame": 0.25},
            "groups": {"religion": 0.25},
            "spread": {
                "term": {"min": 0.0, "max": 0.4, "worst": "Muslim", "above_overall": ["Muslim"]}
            },
            "ranges": {"groups": {"religion": [0.2, 0.31]}},
            "templates": {"I love {people}.": 0.1, "We are {people}.": 0.5, "Hi {people}.": 0.0},
        },
    }
    summary = {"source": "/home/someone/data/civil_comments", "threshold": 0.5, "splits": {}}
    card = model_card(record, evaluation=evaluation, summary=summary)
    assert "| insult | flag | 3 | 0.667 | 0.21–0.94 | 0.667 |" in card
    # evaluation.json's sorted keys put "overall" mid-table; the card lists flag, leave, overall
    sorted_keys = {
        "negated": {"toxic": False, "n": 2, "accuracy": 1.0, "flag_rate": 0.0},
        "overall": {"toxic": None, "n": 5, "accuracy": 0.8, "flag_rate": 0.4},
        "threat": {"toxic": True, "n": 3, "accuracy": 2 / 3, "flag_rate": 2 / 3},
    }
    rows = [
        line.split(" | ")[0].lstrip("| ")
        for line in model_card(record, evaluation={**evaluation, "behaviours": sorted_keys})
        .split("## Behaviours")[1]
        .splitlines()
        if line.startswith("| ") and " | " in line
    ]
    assert rows[:4] == ["behaviour", "threat", "negated", "overall"]
    # an evaluation.json from before the ranges: a dash, not an error
    assert "| threat | flag | 3 | 0.667 | – | 0.667 |" in model_card(
        record, evaluation={**evaluation, "behaviours": sorted_keys}
    )
    assert "| religion | 0.25 | 0.20–0.31 |" in card and "(worst: Muslim)" in card
    assert "within the templates, all terms at once): Muslim." in card
    # an evaluation.json from before the identity ranges: a dash and no claim either way
    older = {**evaluation["identity"], "ranges": None, "spread": {"term": {"worst": "Muslim"}}}
    older_card = model_card(record, evaluation={**evaluation, "identity": older})
    assert "| religion | 0.25 | – |" in older_card and "chance" not in older_card
    fair = {**evaluation["identity"], "spread": {"term": {"above_overall": []}}}
    assert "No term is flagged more than the others in the same sentences" in model_card(
        record, evaluation={**evaluation, "identity": fair}
    )
    assert 'most groups: "We are {people}." 0.5, "I love {people}." 0.1.' in card
    assert "0.1 flagged overall (neutral 0, attack_frame 0.25);" in card
    assert "Sentence for sentence" not in card  # an evaluation.json from before the score test
    odds = {"odds": 7.25, "odds_low": 4.8, "odds_high": 10.96, "p": 0.0005}
    shift = {
        "terms": {"blind": odds, "Hindu": {**odds, "odds": 0.9, "p": 1.0}},
        "groups": {},
        "above": {"terms": ["blind"], "groups": []},
    }
    leaning = model_card(
        record, evaluation={**evaluation, "identity": {**evaluation["identity"], "shift": shift}}
    )
    assert "these names raise the score above the other terms'" in leaning
    assert "multiplying the odds of a flag by: blind ×7.2 (4.8–11.0)." in leaning
    even = {**shift, "above": {"terms": [], "groups": []}}
    assert "no name raises the score above the other terms'" in model_card(
        record, evaluation={**evaluation, "identity": {**evaluation["identity"], "shift": even}}
    )
    assert "moderation/insult 5.0%" in card and "safe 90" not in card
    assert "validation expects" not in card  # no at_base_rate: nothing claimed
    expected = {
        "threshold": 0.7,
        "expected_precision": 1.0,
        "expected_precision_low": 0.48,
        "expected_precision_high": 1.0,
        "expected_recall": 0.93,
        "expected_recall_low": 0.8,
        "expected_recall_high": 0.98,
    }
    with_rate = {**evaluation, "at_base_rate": {"moderation": {"toxicity": expected}}}
    assert (
        "At toxicity's rate validation expects its flags to be right 1.00 (between 0.48 and "
        "1.00) of the time and to "
        "catch 0.93 (between 0.80 and 0.98) of toxic comments"
    ) in model_card(record, evaluation=with_rate, summary=summary)
    assert "/home/someone" not in card and "`civil_comments (a local copy" in card
    assert "rater fraction > 0.5 sets a label; dropped" in card
    soft = {**summary, "parameters": {"rater_scores": True}}
    assert "sets a label; trained towards the rater fractions (label_scores); dropped" in (
        model_card(record, evaluation=evaluation, summary=soft)
    )
    assert "No behavioural checks" in model_card(record)
    assert "Reads the first 128 tokens of a text" in card
    assert "graph's scores" not in card  # no graph given: the card claims none
    tuned = model_card(record, thresholds_graph="fp32")
    assert "tuned on the fp32 graph's scores (`model.onnx`)" in tuned

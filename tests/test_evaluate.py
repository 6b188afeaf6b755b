"""Metrics, threshold search and batch classification on fixed arrays with known answers."""

from __future__ import annotations

import json
import math

import httpx
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mistralai.client import errors
from mistralai.client.models import ClassificationResponse

from moderation_helpers.recipe import api_errors, classify, moderation_api, predictions
from moderation_helpers.recipe import evaluate as ev

# --------------------------------------------------------------------------- fakes


class FakeClassifiers:
    """Answers like ``client.classifiers``: scores from a function of the text."""

    def __init__(self, score_of, target="moderation", failures=()):
        self.score_of, self.target = score_of, target
        self.failures = list(failures)  # exceptions raised by the next calls, in order
        self.calls: list[list[str]] = []

    def classify(self, *, model, inputs):
        self.calls.append(list(inputs))
        if self.failures:
            raise self.failures.pop(0)
        results = [{self.target: {"scores": self.score_of(t)}} for t in inputs]
        return ClassificationResponse(id="x", model=model, results=results)

    def moderate(self, *, model, inputs):
        self.calls.append(list(inputs))
        cats = {"violence_and_threats": 0.9, "sexual": 0.1, "pii": 0.0}
        return {"id": "m", "model": model, "results": [{"category_scores": cats} for _ in inputs]}


class FakeClient:
    def __init__(self, classifiers):
        self.classifiers = classifiers


def http_error(status: int) -> errors.SDKError:
    request = httpx.Request("POST", "http://test/v1/classifications")
    response = httpx.Response(status, json={"detail": f"boom {status}"}, request=request)
    return errors.SDKError("API error occurred", response)


def frame(data: dict[str, list], target: str = "moderation") -> pd.DataFrame:
    out = pd.DataFrame(data)
    out.columns = pd.MultiIndex.from_tuples(
        [(target, c) for c in out.columns], names=classify.COLUMN_NAMES
    )
    return out


# --------------------------------------------------------------------------- thresholds


def test_separable_scores_give_a_threshold_between_the_classes():
    choice = ev.best_f1_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert choice.f1 == 1.0
    assert choice.threshold == pytest.approx(0.5)  # halfway between 0.2 and 0.8
    assert choice.note is None


def test_threshold_maximizes_f1_hand_computed():
    # Candidates: >=0.1 F1 4/6, >=0.5 F1 4/5 (tp 2, fp 1), >=0.9 F1 2/3.
    choice = ev.best_f1_threshold([0, 1, 0, 1], [0.1, 0.5, 0.5, 0.9])
    assert choice.f1 == pytest.approx(0.8)
    assert choice.threshold == pytest.approx(0.3)


def test_f1_ties_go_to_the_higher_threshold():
    # >=0.1: tp 2, flagged 4 -> F1 4/6; >=0.6: tp 1, flagged 1 -> F1 2/3. Equal: keep 0.6.
    y, s = [1, 0, 0, 1], [0.1, 0.2, 0.3, 0.6]
    f1_low = 2 * 2 / (4 + 2)
    f1_high = 2 * 1 / (1 + 2)
    assert f1_low == f1_high
    choice = ev.best_f1_threshold(y, s)
    assert choice.f1 == pytest.approx(2 / 3)
    assert choice.threshold == pytest.approx(0.45)
    assert ev.best_f1_threshold(y, s) == choice  # deterministic


def test_tied_scores_across_classes_cannot_be_split():
    choice = ev.best_f1_threshold([0, 1, 1], [0.4, 0.4, 0.4])
    assert choice.threshold == pytest.approx(0.4)  # flag all: the only candidate
    assert choice.f1 == pytest.approx(0.8)


def test_no_positives_means_no_threshold():
    choice = ev.best_f1_threshold([0, 0, 0], [0.1, 0.5, 0.9])
    assert choice.threshold is None and choice.f1 is None
    assert "no positive" in choice.note


def test_no_negatives_flags_everything_with_a_note():
    choice = ev.best_f1_threshold([1, 1], [0.3, 0.7])
    assert choice.threshold == pytest.approx(0.3) and choice.f1 == 1.0
    assert "no negative" in choice.note


def test_best_f1_thresholds_falls_back_to_default_without_positives():
    truth = frame({"insult": [False, True, True], "threat": [False, False, False]})
    scores = frame({"insult": [0.1, 0.6, 0.8], "threat": [0.2, 0.3, 0.9]})
    table = ev.best_f1_thresholds(truth, scores, default=0.7)
    assert table.at[("moderation", "insult"), "threshold"] == pytest.approx(0.35)
    assert table.at[("moderation", "insult"), "source"] == "validation_f1"
    assert table.at[("moderation", "threat"), "threshold"] == 0.7
    assert table.at[("moderation", "threat"), "source"] == "default"
    assert "default threshold 0.7" in table.at[("moderation", "threat"), "note"]


# --------------------------------------------------------------------------- metrics


def test_label_metrics_hand_computed():
    # Flag >= 0.5: tp 2 (0.6, 0.9), fp 1 (0.7), fn 1 (0.2) -> P 2/3, R 2/3, F1 2/3.
    y = [0, 1, 0, 1, 1, 0]
    s = [0.1, 0.2, 0.7, 0.6, 0.9, 0.3]
    m = ev.label_metrics(y, s, 0.5)
    assert (m["support"], m["negatives"]) == (3, 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # Ranking: of 9 positive/negative pairs, (0.2 vs 0.3) and (0.2 vs 0.7) and (0.6 vs 0.7)
    # are wrong -> AUC 6/9.
    assert m["roc_auc"] == pytest.approx(6 / 9)
    # AP: precision at each positive in rank order 0.9 (1/1), 0.6 (2/3), 0.2 (3/5).
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert m["note"] is None


def test_perfect_separation_scores_one():
    m = ev.label_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 0.5)
    assert m["roc_auc"] == 1.0 and m["average_precision"] == 1.0 and m["f1"] == 1.0


def test_nothing_flagged_gives_zero_precision_not_nan():
    m = ev.label_metrics([0, 1], [0.1, 0.2], 0.9)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_label_without_positives_is_reported_and_left_out_of_macro():
    truth = frame(
        {
            "insult": [False, False, True, True],
            "threat": [False, False, False, False],
            "safe": [True, True, False, False],
        }
    )
    scores = frame(
        {
            "insult": [0.1, 0.2, 0.8, 0.9],
            "threat": [0.3, 0.1, 0.6, 0.2],
            "safe": [0.9, 0.8, 0.1, 0.3],
        }
    )
    thresholds = {c: 0.5 for c in scores.columns}
    report = ev.evaluate_labels(truth, scores, thresholds)
    threat = report.loc[("moderation", "threat")]
    assert threat["support"] == 0
    assert all(pd.isna(threat[m]) for m in ev.METRICS)
    assert "no positive examples" in threat["note"]
    assert not report.loc[("moderation", "safe"), "is_flag"]

    macro = ev.macro_means(report)
    # Only insult is computable among the flags (safe is not a flag): its figures are the macro.
    assert macro["roc_auc"] == 1.0 and macro["f1"] == 1.0
    assert macro["n_labels"]["f1"] == 1
    assert macro["labels"] == ["moderation/insult", "moderation/threat"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in macro.values())

    record = ev.evaluation_record(
        report, model="ft:x", backend="local", split_sizes={"validation": 4, "test": 4}
    )
    text = json.dumps(record, allow_nan=False)  # no NaN anywhere in evaluation.json
    assert json.loads(text)["per_label"]["moderation"]["threat"]["f1"] is None
    assert record["safe"]["moderation"]["roc_auc"] == 1.0


def test_macro_with_no_computable_label_is_none():
    truth = frame({"insult": [False, False]})
    scores = frame({"insult": [0.1, 0.2]})
    macro = ev.macro_means(ev.evaluate_labels(truth, scores, {("moderation", "insult"): 0.5}))
    assert macro["f1"] is None and macro["n_labels"]["f1"] == 0


def test_no_negatives_leaves_roc_auc_undefined_only():
    truth = frame({"toxicity": [True, True]})
    scores = frame({"toxicity": [0.4, 0.9]})
    report = ev.evaluate_labels(truth, scores, {("moderation", "toxicity"): 0.5})
    row = report.loc[("moderation", "toxicity")]
    assert pd.isna(row["roc_auc"]) and row["recall"] == 0.5
    assert ev.macro_means(report)["roc_auc"] is None


# --------------------------------------------------------------------------- truth, decisions


def test_labels_matrix_reads_lists_and_single_labels():
    examples = [
        {"text": "a", "labels": {"moderation": ["insult", "toxicity"], "lang": "en"}},
        {"text": "b", "labels": {"moderation": ["safe"], "lang": "fr"}},
        {"text": "c", "labels": {"lang": "en"}},
    ]
    truth = ev.labels_matrix(examples, "moderation", ["insult", "safe", "toxicity"])
    assert truth.to_numpy().tolist() == [
        [True, False, True],
        [False, True, False],
        [False, False, False],
    ]
    both = ev.truth_frame(
        examples, {"moderation": ["insult", "safe", "toxicity"], "lang": ["en", "fr"]}
    )
    assert both[("lang", "fr")].tolist() == [False, True, False]


def test_labels_matrix_rejects_a_label_the_model_lacks():
    with pytest.raises(ValueError, match="'obscene'"):
        ev.labels_matrix([{"labels": {"moderation": ["obscene"]}}], "moderation", ["insult"])


def test_flagged_labels_exclude_safe_and_sort_by_score():
    scores = frame({"insult": [0.6, 0.1], "safe": [0.7, 0.9], "toxicity": [0.8, 0.2]})
    limits = {c: 0.5 for c in scores.columns}
    predicted = predictions.predict(scores, limits)
    assert predicted[("moderation", "safe")].tolist() == [True, True]
    flags = predictions.flagged_labels(scores, limits)
    assert flags["moderation"].tolist() == [["toxicity", "insult"], []]


# --------------------------------------------------------------------------- classify_texts


def test_score_frame_reads_the_recorded_response(reference_dir):
    recorded = json.loads((reference_dir / "classification_response.json").read_text())
    scores = classify.score_frame(recorded["results"])
    assert list(scores.columns.get_level_values("target")) == ["moderation"] * 7
    assert scores.at[0, ("moderation", "safe")] == pytest.approx(0.7990996837615967)
    assert scores.loc[0].sum() == pytest.approx(1.0, abs=1e-6)  # softmax over the target
    # The SDK's response.results: a list of dicts of pydantic models.
    sdk_results = ClassificationResponse.model_validate(recorded).results
    pd.testing.assert_frame_equal(classify.score_frame(sdk_results), scores)


def test_classify_texts_batches_in_order_with_the_recorded_shape(reference_dir):
    recorded = json.loads((reference_dir / "classification_response.json").read_text())
    base = recorded["results"][0]["moderation"]["scores"]
    fake = FakeClassifiers(lambda t: {**base, "threat": float(len(t))})
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    scores = classify.classify_texts(FakeClient(fake), "ft:m", texts, batch_size=2, progress=False)
    assert [len(c) for c in fake.calls] == [2, 2, 1]
    assert scores[("moderation", "threat")].tolist() == [1, 2, 3, 4, 5]
    assert scores.shape == (5, 7)


def test_classify_texts_multi_target():
    class TwoTargets(FakeClassifiers):
        def classify(self, *, model, inputs):
            results = [
                {
                    "moderation": {"scores": {"safe": 0.4, "insult": 0.6}},
                    "lang": {"scores": {"en": 0.9, "fr": 0.1}},
                }
                for _ in inputs
            ]
            return {"id": "x", "model": model, "results": results}

    scores = classify.classify_texts(FakeClient(TwoTargets(None)), "m", ["x", "y"], progress=False)
    assert classify.targets_of(scores) == {"lang": ["en", "fr"], "moderation": ["insult", "safe"]}


def test_classify_texts_retries_a_dropped_connection(monkeypatch):
    monkeypatch.setattr(api_errors.time, "sleep", lambda s: None)
    drop = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    fake = FakeClassifiers(lambda t: {"safe": 1.0}, failures=[drop, http_error(503)])
    scores = classify.classify_texts(FakeClient(fake), "m", ["x"], progress=False, max_attempts=3)
    assert len(fake.calls) == 3 and scores.shape == (1, 1)


def test_classify_texts_gives_up_after_max_attempts(monkeypatch):
    monkeypatch.setattr(api_errors.time, "sleep", lambda s: None)
    fake = FakeClassifiers(lambda t: {"safe": 1.0}, failures=[http_error(502)] * 5)
    with pytest.raises(RuntimeError, match="after 2 attempts.*HTTP 502"):
        classify.classify_texts(FakeClient(fake), "m", ["x"], progress=False, max_attempts=2)
    assert len(fake.calls) == 2


def test_classify_texts_does_not_retry_a_client_error():
    fake = FakeClassifiers(lambda t: {"safe": 1.0}, failures=[http_error(404)])
    with pytest.raises(RuntimeError, match=r"texts 0\.\.0 with model 'ft:gone'.*HTTP 404: boom"):
        classify.classify_texts(FakeClient(fake), "ft:gone", ["x"], progress=False)
    assert len(fake.calls) == 1


def test_classify_texts_checks_expected_labels():
    fake = FakeClassifiers(lambda t: {"safe": 1.0})
    with pytest.raises(ValueError, match="insult"):
        classify.classify_texts(
            FakeClient(fake), "m", ["x"], targets={"moderation": ["insult", "safe"]}, progress=False
        )


# --------------------------------------------------------------------------- baseline


def test_moderation_api_baseline_maps_categories():
    fake = FakeClassifiers(None)
    api = moderation_api.moderation_api_scores(
        FakeClient(fake), ["a", "b", "c"], batch_size=2, progress=False
    )
    assert api.shape == (3, 3) and [len(c) for c in fake.calls] == [2, 1]
    truth = frame({"threat": [True, False, True], "insult": [True, True, False]})
    base = moderation_api.compare_with_moderation_api(truth, api)
    assert list(base.index) == [("moderation", "threat")]  # insult has no API category
    assert base.loc[("moderation", "threat"), "category"] == "violence_and_threats"
    assert base.loc[("moderation", "threat"), "recall"] == 1.0
    assert np.isclose(base.loc[("moderation", "threat"), "precision"], 2 / 3)


# --------------------------------------------------------------------------- figures


def test_figures_draw_a_curve_per_defined_label_and_say_why_not_otherwise():
    from moderation_helpers.pages.plots.evaluation import (
        plot_label_bars,
        plot_pr_curves,
        plot_roc_curves,
    )

    truth = frame({"insult": [False, True, True, False], "threat": [False] * 4, "safe": [True] * 4})
    scores = frame({"insult": [0.1, 0.8, 0.6, 0.3], "threat": [0.1] * 4, "safe": [0.9] * 4})
    thresholds = {c: 0.5 for c in scores.columns}
    pr = plot_pr_curves(truth, scores, thresholds)
    legend = [t.get_text() for t in pr.axes[0].get_legend().get_texts()]
    assert any(t.startswith("insult") for t in legend)
    assert "threat: no positives, no curve" in legend
    roc = plot_roc_curves(truth, scores)
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert (
        "safe: one class only, no curve" in legend and "threat: one class only, no curve" in legend
    )
    report = ev.evaluate_labels(truth, scores, thresholds)
    bars = plot_label_bars(report)
    labels = [t.get_text() for t in bars.axes[0].get_xticklabels()]
    assert labels == ["insult", "threat", "safe"]  # safe drawn apart, last
    for fig in (pr, roc, bars):
        plt.close(fig)

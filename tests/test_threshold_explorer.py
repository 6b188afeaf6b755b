"""The threshold explorer: its figures are evaluate's, its widget moves them, its button saves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_fscore_support

from moderation_helpers.pages import threshold_explorer as te
from moderation_helpers.recipe import evaluate as ev
from moderation_helpers.recipe import predictions
from moderation_helpers.recipe.classify import score_columns
from moderation_helpers.recipe.moderate import (
    load_thresholds,
    save_thresholds,
    thresholds_record,
)

LABELS = ["toxicity", "threat", "rare", "safe"]


def frames(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth and scores for four labels: one informative, one noisy, one without positives."""
    rng = np.random.default_rng(seed)
    columns = score_columns([("moderation", lab) for lab in LABELS])
    truth = np.column_stack(
        [rng.random(n) < 0.4, rng.random(n) < 0.2, np.zeros(n, bool), rng.random(n) < 0.5]
    )
    noise = rng.random((n, len(LABELS)))
    scores = np.clip(np.where(truth, 0.35, 0.0) + 0.65 * noise, 0, 1).round(3)  # ties on purpose
    return pd.DataFrame(truth, columns=columns), pd.DataFrame(scores, columns=columns)


@pytest.fixture
def splits():
    validation, test = frames(60, seed=1), frames(45, seed=2)
    truth = {"validation": validation[0], "test": test[0]}
    scores = {"validation": validation[1], "test": test[1]}
    return truth, scores


@pytest.fixture
def explorer(splits, tmp_path):
    truth, scores = splits
    tuned = ev.best_f1_thresholds(truth["validation"], scores["validation"])
    return te.ThresholdExplorer(
        truth,
        scores,
        tuned,
        run_dir=tmp_path,
        model="ft:classifier:x",
        backend="local",
        graph="fp32",
    )


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.35, 0.5, 0.512, 0.9, 1.0])
def test_figures_equal_evaluate_and_sklearn_at_any_threshold(splits, threshold):
    truth, scores = splits
    table = te.figures_table(truth, scores, dict.fromkeys(scores["test"].columns, threshold))
    for split in ("validation", "test"):
        y, s = truth[split], scores[split]
        report = ev.evaluate_labels(y, s, dict.fromkeys(s.columns, threshold))
        flagged = predictions.predict(s, dict.fromkeys(s.columns, threshold)).mean()
        for column in s.columns:
            row = table.loc[column]
            assert row[("", "threshold")] == threshold
            assert row[(split, "flagged")] == pytest.approx((s[column] >= threshold).mean())
            assert row[(split, "flagged")] == flagged[column]
            if not y[column].any():  # evaluate leaves these undefined; so does the explorer
                assert row[[(split, m) for m in ("precision", "recall", "f1")]].isna().all()
                continue
            p, r, f, _ = precision_recall_fscore_support(
                y[column], s[column] >= threshold, average="binary", zero_division=0.0
            )
            for name, expected in (("precision", p), ("recall", r), ("f1", f)):
                assert row[(split, name)] == report.at[column, name]
                assert row[(split, name)] == pytest.approx(expected, abs=1e-12)


def test_at_the_tuned_thresholds_the_validation_f1_is_the_tuned_one(explorer):
    table = explorer.table()
    tuned = explorer.thresholds
    for column in explorer.columns:
        if tuned.at[column, "source"] == "validation_f1":
            assert table.at[column, ("validation", "f1")] == pytest.approx(
                tuned.at[column, "validation_f1"]
            )


def test_static_view_shows_the_tuned_figures_and_writes_nothing(explorer, tmp_path):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    html = bundle["text/html"]
    assert "<table" in html and "toxicity" in html and "flagged" in html
    assert f"{explorer.initial[('moderation', 'toxicity')]:.3f}" in html
    assert "toxicity" in bundle["text/plain"]
    assert list(tmp_path.iterdir()) == [], "displaying the explorer must not save anything"


def test_slider_moves_the_figures_and_the_curve(explorer):
    widget = explorer.widget()
    column = ("moderation", "toxicity")
    slider = explorer._sliders[column]
    image_before = explorer._images[column].value
    assert image_before[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 0.9
    assert explorer.current[column] == 0.9
    expected = te.threshold_figures(
        explorer.truth["test"][column], explorer.scores["test"][column], 0.9
    )
    assert explorer.table().at[column, ("test", "recall")] == expected["recall"]
    assert f"{expected['flagged']:.1%}" in explorer._readouts[column].value
    assert explorer._images[column].value != image_before
    assert "0.900" in explorer._summary.value
    # A tab shown for the first time gets its curve.
    assert explorer._images[("moderation", "threat")].value == b""
    explorer._tabs.selected_index = 1
    assert explorer._images[("moderation", "threat")].value[:4] == b"\x89PNG"
    assert widget.children[0] is explorer._tabs


def test_save_writes_thresholds_json_that_moderate_reads(explorer, tmp_path):
    tuned_record = thresholds_record(
        explorer.thresholds, model="ft:classifier:x", backend="local", graph="fp32"
    )
    explorer.widget()
    explorer._sliders[("moderation", "threat")].value = 0.75
    explorer._on_save()
    saved = load_thresholds(tmp_path)
    assert saved["thresholds"]["moderation"]["threat"] == 0.75
    unchanged = {k: v for k, v in saved["thresholds"]["moderation"].items() if k != "threat"}
    assert unchanged == {
        k: v for k, v in tuned_record["thresholds"]["moderation"].items() if k != "threat"
    }
    kept = ("model", "backend", "safe_label", "rule", "graph")
    assert {k: saved[k] for k in kept} == {k: tuned_record[k] for k in kept}
    assert saved["graph"] == "fp32"
    # The notebook's table follows, so that the cells below evaluate the chosen thresholds.
    table = explorer.thresholds
    assert table.at[("moderation", "threat"), "threshold"] == 0.75
    assert table.at[("moderation", "threat"), "source"] == te.EXPLORER_SOURCE
    assert table.at[("moderation", "threat"), "validation_f1"] == pytest.approx(
        explorer.table().at[("moderation", "threat"), ("validation", "f1")]
    )
    assert "saved" in explorer._status.value
    explorer._sliders[("moderation", "threat")].value = 0.2
    explorer._on_reset()
    assert explorer.current[("moderation", "threat")] == 0.75


def test_saving_the_tuned_thresholds_is_byte_identical_to_the_notebook(explorer, tmp_path):
    record = thresholds_record(
        explorer.thresholds, model="ft:classifier:x", backend="local", graph="fp32"
    )
    before = save_thresholds(tmp_path, record).read_bytes()
    explorer.save()
    assert (tmp_path / "thresholds.json").read_bytes() == before
    json.loads(before)


def test_missing_split_is_an_error(splits, tmp_path):
    truth, scores = splits
    tuned = ev.best_f1_thresholds(truth["validation"], scores["validation"])
    with pytest.raises(ValueError, match="test"):
        te.ThresholdExplorer(
            truth,
            {"validation": scores["validation"]},
            tuned,
            run_dir=tmp_path,
            model="m",
            backend="local",
        )


def test_figures_at_the_validation_rate_are_validation_figures_and_lower_rates_flag_less(splits):
    truth, scores = splits
    column = ("moderation", "toxicity")
    at = dict.fromkeys(scores["test"].columns, 0.5)
    own_rate = float(truth["validation"][column].mean())
    same = te.figures_table(truth, scores, at, {c: own_rate for c in at})
    assert same.at[column, (te.AT_RATE, "flagged")] == pytest.approx(
        same.at[column, ("validation", "flagged")]
    )
    assert same.at[column, (te.AT_RATE, "precision")] == pytest.approx(
        same.at[column, ("validation", "precision")]
    )
    lower = te.figures_table(truth, scores, at, {c: own_rate / 4 for c in at})
    assert lower.at[column, (te.AT_RATE, "flagged")] < same.at[column, (te.AT_RATE, "flagged")]
    assert lower.at[column, (te.AT_RATE, "precision")] < same.at[column, (te.AT_RATE, "precision")]
    # validation's few rows leave a range: its low end sits under the point
    low = same.at[column, (te.AT_RATE, "precision low")]
    assert low < same.at[column, (te.AT_RATE, "precision")] - 0.1
    assert (te.AT_RATE, "flagged") not in te.figures_table(truth, scores, at).columns

"""04_infer executed headless (papermill and nbmake) on a small job trained by the fixtures.

The run folder is the prepare step's files plus a ``job.json`` written from the trained job,
as 02_train writes it; each execution gets its own copy. The acceptance check: ``moderate()``,
called from plain Python, reproduces the decisions the notebook saved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from nbmake.nb_run import NotebookRun
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.pages.plots.evaluation import (
    LABEL_METRICS_PNG,
    PR_CURVES_PNG,
    ROC_CURVES_PNG,
)
from moderation_helpers.recipe import job_record
from moderation_helpers.recipe.evaluate import METRICS
from moderation_helpers.recipe.moderate import moderate
from moderation_helpers.recipe.run_folder import (
    EVALUATION_JSON,
    PREDICTIONS,
    PREPARE_SUMMARY,
    SPLIT_FILES,
    THRESHOLDS_JSON,
    read_record,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "04_infer.ipynb"
PNG = b"\x89PNG\r\n\x1a\n"
SECRET = "sk-test-never-written-0123456789"

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


@pytest.fixture
def run_dir(prepared_run_dir, trained_job, factory, tmp_path) -> Path:
    """The prepared splits and a job.json of the trained job, as 02/03 leave them."""
    _, job = trained_job
    run = tmp_path / "run"
    run.mkdir()
    for name in (*SPLIT_FILES.values(), PREPARE_SUMMARY):
        shutil.copy(prepared_run_dir / name, run / name)
    job_record.save_job_record(
        run, job_record.job_record(job, backend="local", server_url=factory.url)
    )
    return run


def outputs_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook shows, as one string."""
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


def assert_evaluation(run_dir: Path, n_validation: int, n_test: int) -> dict:
    """The files 04_infer leaves behind, with the figures the issue asks for."""
    record = read_record(run_dir, "job.json")
    evaluation = read_record(run_dir, EVALUATION_JSON)
    assert evaluation["model"] == record["fine_tuned_model"]
    assert evaluation["backend"] == "local"
    assert evaluation["split_sizes"] == {"validation": n_validation, "test": n_test}
    labels = evaluation["per_label"]["moderation"]
    targets = {t["name"]: t["labels"] for t in record["classifier_targets"]}
    assert sorted(labels) == sorted(targets["moderation"])
    for name, figures in labels.items():
        for key in (*METRICS, "threshold", "support"):
            assert key in figures, (name, key)
        assert 0 <= figures["threshold"] <= 1
        if figures["support"] == 0:
            assert figures["f1"] is None and figures["note"]
        else:
            assert 0 <= figures["f1"] <= 1 and 0 <= figures["average_precision"] <= 1
    assert labels["safe"]["is_flag"] is False and evaluation["safe"]["moderation"] == labels["safe"]
    macro = evaluation["macro"]
    assert "moderation/safe" not in macro["labels"]
    assert all(0 <= macro[m] <= 1 for m in METRICS), macro
    json.dumps(evaluation, allow_nan=False)  # no NaN written
    # the identity report, by flags and sentence for sentence by scores, one entry per term
    shift = evaluation["identity"]["shift"]
    assert set(shift["terms"]) == set(evaluation["identity"]["terms"])
    assert set(shift["above"]["terms"]) <= set(shift["terms"])
    assert all(t["odds_low"] <= t["odds"] <= t["odds_high"] for t in shift["terms"].values())

    thresholds = read_record(run_dir, THRESHOLDS_JSON)
    assert thresholds["model"] == record["fine_tuned_model"]
    assert thresholds["graph"] == "fp32"  # the factory fixture serves fp32: what 04 scored with
    assert thresholds["thresholds"]["moderation"] == {k: v["threshold"] for k, v in labels.items()}

    predictions = pd.read_parquet(run_dir / PREDICTIONS)
    assert predictions["split"].value_counts().to_dict() == {
        "validation": n_validation,
        "test": n_test,
    }
    for png in (PR_CURVES_PNG, ROC_CURVES_PNG, LABEL_METRICS_PNG):
        assert (run_dir / png).read_bytes()[:8] == PNG, png
    return evaluation


def assert_moderate_reproduces(run_dir: Path, batch_size: int) -> None:
    """Acceptance: moderate() on the test texts gives the notebook's saved decisions."""
    predictions = pd.read_parquet(run_dir / PREDICTIONS)
    test = predictions[predictions["split"] == "test"].reset_index(drop=True)
    # No client given: moderate() connects from job.json, as any other program would.
    decisions = moderate(test["text"].tolist(), run_dir, batch_size=batch_size)
    assert [d.flagged["moderation"] for d in decisions] == test["flagged/moderation"].map(
        list
    ).tolist()
    labels = [c.removeprefix("score/moderation/") for c in test if c.startswith("score/")]
    ours = np.array([[d.scores["moderation"][lab] for lab in labels] for d in decisions])
    np.testing.assert_allclose(ours, test[[f"score/moderation/{lab}" for lab in labels]], atol=1e-5)
    truth = read_jsonl(run_dir / SPLIT_FILES["test"])
    assert test["text"].tolist() == [ex["text"] for ex in truth][: len(test)]


def test_infer_with_papermill(run_dir, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    output = run_dir / "04_infer.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(output),
        parameters={"run_dir": str(run_dir), "batch_size": 32, "compare_moderation_api": True},
        progress_bar=False,
        cwd=str(REPO),
    )
    n_validation = len(read_jsonl(run_dir / SPLIT_FILES["validation"]))
    n_test = len(read_jsonl(run_dir / SPLIT_FILES["test"]))
    evaluation = assert_evaluation(run_dir, n_validation, n_test)
    assert evaluation["baseline"] is None
    shown = outputs_text(nbformat.read(output, as_version=4))
    assert "baseline skipped: MISTRAL_API_KEY is not set" in shown
    assert "reproduces the notebook's decisions" in shown
    assert_moderate_reproduces(run_dir, batch_size=32)


def test_infer_with_nbmake_capped_and_keeps_the_key_out(run_dir, tmp_path, monkeypatch):
    # A key in the environment must reach no file and no output (the job is local anyway).
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    nb = load_notebook_node(str(NOTEBOOK))  # papermill's loader: cells get their tags list
    parameters = {"run_dir": str(run_dir), "batch_size": 16, "max_samples": 40}
    copy = tmp_path / "04_infer.parameterized.ipynb"
    nbformat.write(parameterize_notebook(nb, parameters, kernel_name="python3"), copy)
    result = NotebookRun(copy, default_timeout=600).execute()
    assert result.error is None, result.error and result.error.summary
    assert_evaluation(run_dir, 40, 40)
    assert "baseline skipped: compare_moderation_api=False" in outputs_text(result.nb)
    assert SECRET not in outputs_text(result.nb)
    for path in run_dir.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
    assert_moderate_reproduces(run_dir, batch_size=16)

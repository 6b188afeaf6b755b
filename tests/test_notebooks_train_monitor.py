"""02_train and 03_monitor executed headless against a local factory on a free port.

Each test copies the shared prepared run folder first (the fixture folder is never changed) and
trains a few steps only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from moderation_helpers.recipe import job_record, jobs
from moderation_helpers.recipe.run_folder import JOB_JSON, LOSS_PNG, METRICS_CSV, read_record

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
STEPS = 6
FT_MODEL = re.compile(r"^ft:classifier:[\w.-]+:[0-9a-f]{8}:\d{8}:[0-9a-f]{8}$")
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


@pytest.fixture
def run_dir(prepared_run_dir, tmp_path, monkeypatch) -> Path:
    """A private copy of the prepared run folder; the Mistral key is unset (local backend)."""
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    run = tmp_path / "run"
    shutil.copytree(prepared_run_dir, run)
    return run


def execute(name: str, run_dir: Path, **parameters) -> nbformat.NotebookNode:
    """Run one notebook with papermill into the run folder; return the executed copy."""
    output = run_dir / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(output),
        parameters={"run_dir": str(run_dir), **parameters},
        progress_bar=False,
    )
    return nbformat.read(output, as_version=4)


def outputs_of(nb: nbformat.NotebookNode, mime: str) -> list:
    return [
        out.get("data", {}).get(mime)
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if mime in out.get("data", {})
    ]


def outputs_of_stream(nb: nbformat.NotebookNode) -> list[str]:
    return [
        out.text
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream"
    ]


def assert_trained(run_dir: Path, factory_url: str) -> pd.DataFrame:
    """The files 03_monitor leaves behind for a SUCCESS job."""
    record = read_record(run_dir, JOB_JSON)
    assert record["status"] == "SUCCESS", record
    assert FT_MODEL.match(record["fine_tuned_model"]), record["fine_tuned_model"]
    assert record["backend"] == "local" and record["server_url"] == factory_url
    metrics = pd.read_csv(run_dir / METRICS_CSV)
    assert list(metrics.columns) == ["step", "train_loss", "valid_loss"]
    assert len(metrics) >= 1 and metrics["step"].is_unique
    assert metrics["step"].is_monotonic_increasing and metrics["step"].max() <= STEPS
    assert metrics["train_loss"].notna().all()
    assert (run_dir / LOSS_PNG).read_bytes()[:8] == PNG
    return metrics


def run_with_nbmake(name: str, run_dir: Path, tmp_path: Path, **parameters) -> None:
    """Execute a papermill-parameterized copy of a notebook headless with nbmake."""
    copy = tmp_path / f"nbmake_{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(copy),
        parameters={"run_dir": str(run_dir), **parameters},
        prepare_only=True,
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=600", "-q"]
        + ["-p", "no:cacheprovider", str(copy)],
        cwd=tmp_path,
        env=os.environ.copy(),  # carries MODERATION_FACTORY_URL to the kernel
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


def test_train_then_monitor(factory, run_dir, tmp_path):
    """Train a few steps with papermill, follow with papermill, then re-follow (restart) the
    finished job headless with nbmake and a half-followed one with papermill."""
    train_nb = execute(
        "02_train", run_dir, backend="local", training_steps=STEPS, poll_interval=0.5
    )
    record = read_record(run_dir, JOB_JSON)
    assert record["backend"] == "local" and record["server_url"] == factory.url
    assert record["hyperparameters"]["training_steps"] == STEPS
    assert len(record["training_files"]) == 1 and len(record["validation_files"]) == 1
    # Validated (the estimate is filled), then started: QUEUED again, as the API answers.
    assert record["metadata"]["expected_duration_seconds"] is not None
    assert record["status"] in ("QUEUED", "RUNNING", "SUCCESS")
    assert "started" in "".join(outputs_of_stream(train_nb))
    targets = {t["name"]: t["labels"] for t in record["classifier_targets"]}
    assert "safe" in targets["moderation"]
    tables = " ".join("".join(t) for t in outputs_of(train_nb, "text/html"))
    assert "expected duration" in tables and "epochs" in tables, "decision table not shown"

    monitor_nb = execute("03_monitor", run_dir, poll_interval=0.5, timeout=600)
    metrics = assert_trained(run_dir, factory.url)
    # One row per checkpoint the server reports.
    from moderation_helpers.recipe.client import connect

    job = jobs.get_job(connect("local", server_url=factory.url).client, record["job_id"])
    assert metrics["step"].tolist() == sorted({c["step_number"] for c in job["checkpoints"]})
    # The live plot redrew one display in place: one figure in the executed notebook.
    assert len(outputs_of(monitor_nb, "image/png")) == 1

    # Restart on the finished job, and on a half-followed one: same metrics, no duplicates.
    first = (run_dir / METRICS_CSV).read_text()
    (run_dir / LOSS_PNG).unlink()
    run_with_nbmake("03_monitor", run_dir, tmp_path, poll_interval=0.5, timeout=600)
    assert (run_dir / METRICS_CSV).read_text() == first
    assert_trained(run_dir, factory.url)
    (run_dir / METRICS_CSV).write_text("".join(first.splitlines(keepends=True)[:2]))
    execute("03_monitor", run_dir, poll_interval=0.5, timeout=600)
    assert (run_dir / METRICS_CSV).read_text() == first


def test_train_without_start_stops_at_the_estimate(factory, run_dir, tmp_path):
    """02 headless with nbmake and start=False: validated, not trained; 03 then says so."""
    run_with_nbmake(
        "02_train",
        run_dir,
        tmp_path,
        backend="local",
        training_steps=STEPS,
        start=False,
        poll_interval=0.5,
    )
    record = read_record(run_dir, JOB_JSON)
    assert record["status"] == "VALIDATED"
    assert record["metadata"].get("expected_duration_seconds") is not None
    # Monitoring a job that waits for start says so instead of waiting for the timeout.
    with pytest.raises(papermill.PapermillExecutionError, match="JobNotStarted"):
        execute("03_monitor", run_dir, poll_interval=0.5, timeout=60)
    assert not (run_dir / METRICS_CSV).exists()


def test_failed_validation_reports_the_servers_message(factory, tmp_path):
    """A file the server rejects ends FAILED_VALIDATION with its reason, not a bare status."""
    from moderation_helpers.recipe.client import connect

    client = connect("local", server_url=factory.url).client
    bad = b'{"text": "fine", "labels": {"moderation": ["safe"]}}\n{"text": "no labels"}\n'
    uploaded = client.files.upload(
        file={"file_name": "bad.jsonl", "content": bad}, purpose="fine-tune"
    )
    job = jobs.create_classifier_job(
        client,
        model="ministral-3b-latest",
        training_file=uploaded.id,
        validation_file=None,
        hyperparameters={"training_steps": 1},
    )
    job_record.save_job_record(
        tmp_path, job_record.job_record(job, backend="local", server_url=factory.url)
    )
    with pytest.raises(jobs.JobValidationFailed) as info:
        jobs.wait_for_validation(client, tmp_path, job["id"], poll_interval=0.2, timeout=120)
    assert info.value.reason and "labels" in info.value.reason
    record = json.loads((tmp_path / JOB_JSON).read_text())
    assert record["status"] == "FAILED_VALIDATION" and "labels" in record["failure_reason"]

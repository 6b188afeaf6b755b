"""Shared fixtures: the civil_comments mirror, a local factory on a free port, a prepared run
folder and a small trained job. Each is session-scoped so the suite trains once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "civil_comments"
SHARED_REFERENCE = REPO.parent / "shared" / "reference" / "mistral_api"

# Small sizes so that the suite stays within CI's budget on 2 cores.
PREPARE_PARAMS = dict(
    n_train=800, n_validation=100, n_test=101, max_label_fraction=1.0, zero_flags_fraction=0.4
)
TEST_TRAINING_STEPS = 6


@pytest.fixture(scope="session")
def civil_comments_dir() -> Path:
    """The local civil_comments mirror; tests that need it skip where it is absent."""
    if not (SHARED_DATA / "data").is_dir():
        pytest.skip(f"civil_comments mirror not found at {SHARED_DATA} (see DESIGN.md: ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Recorded Mistral API responses."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"recorded Mistral API responses not found at {SHARED_REFERENCE}")
    return SHARED_REFERENCE


@pytest.fixture(scope="session")
def factory(tmp_path_factory):
    """A local Classifier Factory on a free loopback port with a temporary store.

    Sets MODERATION_FACTORY_URL for the session (notebook kernels inherit it) and stops the
    server, by its own pid, afterwards.
    """
    from moderation_helpers.factory.process import start_factory, stop_factory

    # fp32 (the default) whatever the caller's environment says: tests compare the factory's
    # scores with the exported fp32 graph's (1e-4).
    graph = os.environ.get("MODERATION_FACTORY_GRAPH")
    os.environ["MODERATION_FACTORY_GRAPH"] = "fp32"
    try:
        handle = start_factory(tmp_path_factory.mktemp("factory-store"), port=0)
    finally:
        if graph is None:
            os.environ.pop("MODERATION_FACTORY_GRAPH")
        else:
            os.environ["MODERATION_FACTORY_GRAPH"] = graph
    previous = os.environ.get("MODERATION_FACTORY_URL")
    os.environ["MODERATION_FACTORY_URL"] = handle.url
    try:
        yield handle
    finally:
        if previous is None:
            os.environ.pop("MODERATION_FACTORY_URL", None)
        else:
            os.environ["MODERATION_FACTORY_URL"] = previous
        stop_factory(handle)


@pytest.fixture(scope="session")
def prepared_run_dir(civil_comments_dir, tmp_path_factory) -> Path:
    """A run folder holding the prepare step's outputs for the whole mirror (01_prepare's calls)."""
    from prepare_steps import prepare_steps

    run_dir = tmp_path_factory.mktemp("run-prepared")
    prepare_steps(str(civil_comments_dir), run_dir, seed=0, **PREPARE_PARAMS)
    return run_dir


@pytest.fixture(scope="session")
def trained_job(factory, prepared_run_dir):
    """A SUCCESS classifier job trained for a few steps on the prepared mirror, via the SDK.

    Returns ``(client, job)``; ``job.fine_tuned_model`` classifies.
    """
    from sdk_jobs import train_through_sdk

    from moderation_helpers.recipe.client import connect

    client = connect("local", server_url=factory.url).client
    files = {
        split: (f"{split}.jsonl", (prepared_run_dir / f"{split}.jsonl").read_bytes())
        for split in ("train", "validation")
    }
    hyperparameters = {"training_steps": TEST_TRAINING_STEPS, "learning_rate": 1e-4}
    job = train_through_sdk(client, files, hyperparameters)
    assert job.status == "SUCCESS", f"test job ended {job.status}"
    return client, job


@pytest.fixture(scope="session")
def exported_model(trained_job, factory, prepared_run_dir, tmp_path_factory) -> Path:
    """The trained job's model exported (fp32 and int8) from the factory's store, with a run
    folder holding thresholds (0.5 for every label) and the prepare summary."""
    import json
    import shutil

    from moderation_helpers.factory.exports import export_from_store
    from moderation_helpers.recipe.deploy import export_inputs

    _, job = trained_job
    run = tmp_path_factory.mktemp("export-run")
    shutil.copy(prepared_run_dir / "prepare_summary.json", run)
    targets = {t.name: {lab: 0.5 for lab in t.labels} for t in job.classifier_targets}
    record = {"model": job.fine_tuned_model, "safe_label": "safe", "thresholds": targets}
    (run / "thresholds.json").write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path_factory.mktemp("exported") / "model"
    inputs = export_inputs(run)
    return export_from_store(factory.store, job.fine_tuned_model, out, int8=True, **inputs)

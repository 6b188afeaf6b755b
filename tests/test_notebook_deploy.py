"""05_deploy executed headless (papermill, then nbmake over the same run folder) on the small
job trained by the fixtures, in the session's factory: a store of its own (not the default) on a
free port (not 8765). 05 finds it only by the ``server_url`` of ``job.json``: the kernel's
environment points the factory URL and store elsewhere.

The run folder is the prepare step's files, a ``job.json`` of the trained job and a
``thresholds.json`` as 04_infer leaves them. Checks: the exported folder (fp32 and int8), the
corpus moderated through Ray with every row and scores equal to the Moderator's on the same
texts, the speed figure and ``deploy.json``; the second execution keeps the export and
overwrites the corpus output cleanly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import numpy as np
import papermill
import pytest
from nbmake.nb_run import NotebookRun
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from moderation_helpers.core.env import (
    DEFAULT_PORT,
    FACTORY_STORE_ENV,
    FACTORY_URL_ENV,
    default_store,
)
from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.corpus.files import read_moderated
from moderation_helpers.pages.plots.speed import SPEED_PNG
from moderation_helpers.recipe import job_record
from moderation_helpers.recipe.deploy import exported_model_id
from moderation_helpers.recipe.moderate import save_thresholds
from moderation_helpers.recipe.run_folder import (
    DEPLOY_JSON,
    JOB_JSON,
    MODEL_DIR,
    MODERATED_DIR,
    PREPARE_SUMMARY,
    SPLIT_FILES,
    read_record,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_deploy.ipynb"
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]


@pytest.fixture(scope="module")
def run_dir(prepared_run_dir, trained_job, factory, tmp_path_factory) -> Path:
    """The prepared splits, job.json of the trained job, and thresholds.json (0.5 each)."""
    _, job = trained_job
    run = tmp_path_factory.mktemp("run-deploy")
    for name in (*SPLIT_FILES.values(), PREPARE_SUMMARY):
        shutil.copy(prepared_run_dir / name, run / name)
    record = job_record.job_record(job, backend="local", server_url=factory.url)
    job_record.save_job_record(run, record)
    labels = {t["name"]: t["labels"] for t in record["classifier_targets"]}
    save_thresholds(
        run,
        {
            "model": job.fine_tuned_model,
            "backend": "local",
            "safe_label": "safe",
            "thresholds": {t: dict.fromkeys(names, 0.5) for t, names in labels.items()},
            "graph": "fp32",
        },
    )
    return run


@pytest.fixture
def elsewhere(factory, run_dir, monkeypatch, tmp_path):
    """The factory is found only through job.json: the kernel's environment names another
    URL (nothing answers there) and an empty store."""
    assert urlsplit(factory.url).port != DEFAULT_PORT
    assert Path(factory.store).resolve() != default_store().resolve()
    assert read_record(run_dir, JOB_JSON)["server_url"] == factory.url
    monkeypatch.setenv(FACTORY_URL_ENV, "http://127.0.0.1:9")
    monkeypatch.setenv(FACTORY_STORE_ENV, str(tmp_path / "no-store"))
    yield
    assert not (tmp_path / "no-store").exists()


def assert_deployed(run: Path, model: str) -> dict:
    """What 05_deploy leaves in the run folder."""
    from moderation_helpers.model.moderator import Moderator

    model_dir = run / MODEL_DIR
    assert exported_model_id(model_dir) == model
    assert (model_dir / "model.int8.onnx").is_file()
    tuned = json.loads((model_dir / "thresholds.json").read_text(encoding="utf-8"))
    assert tuned == read_record(run, "thresholds.json")  # the run's, over any published ones
    card = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "tuned on the fp32 graph's scores (`model.onnx`)" in card
    deployed = read_record(run, DEPLOY_JSON)
    test_texts = [ex["text"] for ex in read_jsonl(run / SPLIT_FILES["test"])]
    corpus = deployed["corpus"]
    assert corpus["complete"] and corpus["rows"] == corpus["input_rows"] == len(test_texts)
    speeds = deployed["speeds"]
    for engine in ("factory (SDK, batches of 100)", "Moderator fp32 (in-process)"):
        assert speeds[engine]["texts_per_second"] > 0, engine
    assert (run / SPEED_PNG).read_bytes()[:8] == PNG

    moderated = read_moderated(run / MODERATED_DIR)
    assert moderated["text"].tolist() == test_texts and moderated["error"].isna().all()
    moderator = Moderator.load(model_dir)
    expected = moderator.score(test_texts)
    for target in moderator.targets:
        columns = [f"score/{target['name']}/{label}" for label in target["labels"]]
        np.testing.assert_allclose(
            moderated[columns].to_numpy(), expected[target["name"]], atol=1e-5
        )
    decisions = moderator.moderate(test_texts)
    flags = moderated["flagged/moderation"].map(list).tolist()
    assert flags == [d.flagged["moderation"] for d in decisions]
    return deployed


def test_deploy_with_papermill(run_dir, trained_job, elsewhere, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    output = run_dir / "05_deploy.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(output),
        parameters={"run_dir": str(run_dir), "speed_texts": 32},
        progress_bar=False,
        cwd=str(REPO),
    )
    assert_deployed(run_dir, trained_job[1].fine_tuned_model)
    shown = json.dumps([c.get("outputs", []) for c in nbformat.read(output, as_version=4).cells])
    assert "rows written of" in shown and "factory not reachable" not in shown


def test_deploy_again_with_nbmake_keeps_the_export(run_dir, trained_job, elsewhere):
    exported = (run_dir / MODEL_DIR / "model.onnx").stat().st_mtime_ns
    nb = load_notebook_node(str(NOTEBOOK))
    parameters = {"run_dir": str(run_dir), "speed_texts": 16}
    copy = run_dir.parent / "05_deploy.parameterized.ipynb"
    nbformat.write(parameterize_notebook(nb, parameters, kernel_name="python3"), copy)
    result = NotebookRun(copy, default_timeout=900).execute()
    assert result.error is None, result.error and result.error.summary
    assert (run_dir / MODEL_DIR / "model.onnx").stat().st_mtime_ns == exported
    deployed = assert_deployed(run_dir, trained_job[1].fine_tuned_model)
    assert deployed["speed_texts"] == 16 and deployed["corpus"]["blocks_skipped"] == 0

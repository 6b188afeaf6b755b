"""End to end through the unchanged ``mistralai`` SDK against the local factory (real trainer)
on the prepared civil_comments JSONL: upload, create (auto_start False), VALIDATED with targets
and metadata filled, start, SUCCESS with checkpoints carrying both losses, classify the test
texts. Every call returns the SDK's parsed model; the raw shapes are compared with the real
API's recorded responses."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from mistralai.client import models

from moderation_helpers.core.jsonl import read_jsonl
from moderation_helpers.recipe.client import connect

pytestmark = [pytest.mark.slow, pytest.mark.needs_data]

TRAINING_STEPS = 6
SEQ_LEN = 64


def wait_for(client, job_id: str, statuses: set[str], limit: float = 600.0):
    """Poll until the job reaches one of ``statuses``; the limit only guards against a hang."""
    deadline = time.monotonic() + limit
    job = client.fine_tuning.jobs.get(job_id=job_id)
    while job.status not in statuses:
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.5)
        job = client.fine_tuning.jobs.get(job_id=job_id)
    return job


def raw(url: str, path: str) -> dict:
    response = httpx.get(url + path, timeout=30)
    response.raise_for_status()
    return response.json()


def test_sdk_end_to_end_on_civil_comments(factory, prepared_run_dir, reference_dir):
    backend = connect("local", server_url=factory.url, start_local=False)
    assert backend.name == "local"
    client = backend.client
    summary = json.loads((prepared_run_dir / "prepare_summary.json").read_text())
    uploaded = upload_splits(client, prepared_run_dir, summary)
    job = create_and_validate(client, factory.url, uploaded, summary, reference_dir)
    job = train(client, factory.url, job.id)
    check_classification(client, job, prepared_run_dir, reference_dir)


def upload_splits(client, prepared_run_dir, summary: dict) -> dict:
    """Upload the train and validation JSONL; their ``CreateFileResponse`` by split."""
    uploaded = {}
    for split in ("train", "validation"):
        path = prepared_run_dir / f"{split}.jsonl"
        uploaded[split] = client.files.upload(
            file={"file_name": path.name, "content": path.read_bytes()}, purpose="fine-tune"
        )
        assert isinstance(uploaded[split], models.CreateFileResponse)
        assert uploaded[split].num_lines == summary["splits"][split]["rows_kept"]
    return uploaded


def create_and_validate(client, url: str, uploaded: dict, summary: dict, reference_dir):
    """Create the job (auto_start False): QUEUED, then VALIDATED with what validation fills."""
    job = client.fine_tuning.jobs.create(
        model="ministral-3b-latest",
        job_type="classifier",
        training_files=[{"file_id": uploaded["train"].id, "weight": 1}],
        validation_files=[uploaded["validation"].id],
        hyperparameters={
            "training_steps": TRAINING_STEPS,
            "learning_rate": 1e-4,
            "seq_len": SEQ_LEN,
        },
        auto_start=False,
    )
    assert isinstance(job, models.ClassifierFineTuningJob)
    assert job.status == "QUEUED" and job.auto_start is False
    recorded = json.loads((reference_dir / "job_created.json").read_text())
    created = raw(url, f"/v1/fine_tuning/jobs/{job.id}")
    assert set(recorded) <= set(created)
    assert set(recorded["metadata"]) == set(created["metadata"])
    assert set(recorded["hyperparameters"]) == set(created["hyperparameters"])

    job = wait_for(client, job.id, {"VALIDATED", "FAILED_VALIDATION"})
    assert isinstance(job, models.ClassifierFineTuningJobDetails)
    assert job.status == "VALIDATED", job.events[-1].data
    assert [e.data["status"] for e in job.events] == ["QUEUED", "VALIDATING", "VALIDATED"]
    (target,) = job.classifier_targets
    assert target.name == "moderation" and target.loss_function == "multi_class"
    assert sorted(target.labels) == sorted(summary["labels"])
    meta = job.metadata
    assert meta.expected_duration_seconds > 0 and meta.cost == 0.0
    assert meta.data_tokens > summary["splits"]["train"]["rows_kept"]
    assert meta.train_tokens == meta.train_tokens_per_step * TRAINING_STEPS
    assert job.hyperparameters.epochs == pytest.approx(
        TRAINING_STEPS * 16 / summary["splits"]["train"]["rows_kept"]
    )
    validated = raw(url, f"/v1/fine_tuning/jobs/{job.id}")
    recorded = json.loads((reference_dir / "job_validated.json").read_text())
    assert set(recorded) <= set(validated)
    return job


def train(client, url: str, job_id: str):
    """Start the job: SUCCESS, with checkpoints and a listed fine-tuned model."""
    started = client.fine_tuning.jobs.start(job_id=job_id)
    assert started.status in ("QUEUED", "RUNNING", "SUCCESS")
    job = wait_for(client, job_id, {"SUCCESS", "FAILED", "CANCELLED"})
    assert job.status == "SUCCESS", job.events[-1].data
    assert [e.data["status"] for e in job.events][-3:] == ["QUEUED", "RUNNING", "SUCCESS"]
    assert job.checkpoints and job.checkpoints[-1].step_number == TRAINING_STEPS
    for checkpoint in job.checkpoints:
        assert checkpoint.metrics.train_loss > 0 and checkpoint.metrics.valid_loss > 0
    assert job.fine_tuned_model.startswith("ft:classifier:ministral-3b-latest:")
    assert job.trained_tokens > 0

    listed = client.fine_tuning.jobs.list(status="SUCCESS")
    assert job.id in [j.id for j in listed.data]
    card = client.models.retrieve(model_id=job.fine_tuned_model)
    assert isinstance(card, models.FTModelCard) and card.job == job.id
    assert job.fine_tuned_model in [m.id for m in client.models.list().data]
    models.ClassifierFineTunedModel.model_validate(raw(url, f"/v1/models/{job.fine_tuned_model}"))
    return job


def check_classification(client, job, prepared_run_dir, reference_dir) -> None:
    """The fine-tuned model scores every test text, each label in [0, 1], alone as batched."""
    (target,) = job.classifier_targets
    texts = [ex["text"] for ex in read_jsonl(prepared_run_dir / "test.jsonl")]
    response = client.classifiers.classify(model=job.fine_tuned_model, inputs=texts)
    assert isinstance(response, models.ClassificationResponse)
    assert response.model == job.fine_tuned_model and len(response.results) == len(texts)
    for result in response.results:
        scores = result["moderation"].scores
        assert set(scores) == set(target.labels)
        assert all(0.0 <= s <= 1.0 for s in scores.values())
    single = client.classifiers.classify(model=job.fine_tuned_model, inputs=texts[0])
    # Batched with other texts (padding) or alone, a text scores the same up to float noise.
    assert single.results[0]["moderation"].scores == pytest.approx(
        response.results[0]["moderation"].scores, abs=1e-2
    )
    recorded = json.loads((reference_dir / "classification_response.json").read_text())
    assert set(recorded) == set(response.model_dump())

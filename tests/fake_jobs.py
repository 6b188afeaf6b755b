"""Fakes and recorded shapes for the job helpers' tests: a scripted ``client.fine_tuning.jobs``,
a clock that moves only when slept, the SDK's HTTP error, jobs and checkpoints as the API sends
them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
from mistralai.client import errors, models


def recorded(reference_dir, name: str) -> dict:
    return json.loads((reference_dir / f"{name}.json").read_text())


def as_sdk_model(job: dict) -> models.ClassifierFineTuningJobDetails:
    """The recorded job as the SDK's pydantic model (2.5.1 wants a few fields 2025 lacked)."""
    job = {**job, "job_type": "classifier"}
    job["classifier_targets"] = [
        {**t, "weight": 1.0, "loss_function": "multi_class"}
        for t in job.get("classifier_targets", [])
    ]
    return models.ClassifierFineTuningJobDetails.model_validate(job)


def checkpoint(step: int, train: float | None, valid: float | None = None) -> dict:
    metrics = {"train_loss": train}
    if valid is not None:
        metrics["valid_loss"] = valid
    return {"step_number": step, "metrics": metrics, "created_at": 1744806700 + step}


def job_with(status: str, checkpoints: list[dict] | None = None, **extra) -> dict:
    job = {
        "id": "job-1",
        "status": status,
        "auto_start": False,
        "model": "ministral-3b-latest",
        "hyperparameters": {"training_steps": 6},
        "checkpoints": checkpoints or [],
    }
    job.update(extra)
    return job


class FakeJobs:
    """``client.fine_tuning.jobs`` whose ``get`` replays a script of jobs and exceptions."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def get(self, *, job_id):
        self.calls.append(("get", job_id))
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def create(self, **kwargs):
        self.calls.append(("create", kwargs))
        return job_with("QUEUED", id="job-1", integrations=None)

    def start(self, *, job_id):
        self.calls.append(("start", job_id))
        return job_with("QUEUED")


def fake_client(script=()):
    uploads = []

    def upload(*, file, purpose):
        content = file["content"]  # bytes or a binary file, as the SDK takes
        data = content if isinstance(content, bytes) else content.read()
        uploads.append((file["file_name"], data, purpose))
        return SimpleNamespace(id=f"file-{len(uploads)}")

    return SimpleNamespace(
        fine_tuning=SimpleNamespace(jobs=FakeJobs(script)),
        files=SimpleNamespace(upload=upload),
        uploads=uploads,
    )


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def http_error(status: int) -> errors.SDKError:
    response = httpx.Response(
        status, json={"detail": f"server said {status}"}, request=httpx.Request("GET", "http://x")
    )
    return errors.SDKError("API error occurred", response)

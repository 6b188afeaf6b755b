"""The factory's HTTP API in process (FastAPI's TestClient), driven through the real SDK where
the SDK has a call for it: shapes parse, unknown ids are 404, bad requests 422 naming the field,
a malformed training file FAILED_VALIDATION naming file, line and field, the token is enforced.
Nothing here trains (see test_factory_sdk_e2e.py and test_factory_lifecycle.py for that)."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from mistralai.client import Mistral
from mistralai.client import errors as sdk_errors

from moderation_helpers.factory.api.app import create_app
from moderation_helpers.factory.store.db import Store
from tests.sdk_jobs import fine_tuned

GOOD_LINE = {"text": "you are great", "labels": {"moderation": ["safe"]}}


@pytest.fixture
def http(tmp_path):
    """A TestClient over a fresh store, scheduler running (validation only: no training here)."""
    with TestClient(create_app(Store(tmp_path / "store"))) as client:
        yield client


@pytest.fixture
def sdk(http) -> Mistral:
    """The real SDK, sending its requests through the in-process app."""
    return Mistral(api_key="unused", server_url="http://testserver", client=http)


@pytest.fixture
def idle_sdk(tmp_path) -> Mistral:
    """The SDK over an app whose queue does not run: jobs stay where the API puts them."""
    app = create_app(Store(tmp_path / "store"), run_scheduler=False)
    with TestClient(app) as client:
        yield Mistral(api_key="unused", server_url="http://testserver", client=client)


def jsonl(*records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def upload(sdk: Mistral, content: bytes, name: str = "train.jsonl") -> str:
    return sdk.files.upload(file={"file_name": name, "content": content}, purpose="fine-tune").id


def wait_status(sdk: Mistral, job_id: str, statuses: set[str], limit: float = 60.0):
    deadline = time.monotonic() + limit
    job = sdk.fine_tuning.jobs.get(job_id=job_id)
    while job.status not in statuses:
        assert time.monotonic() < deadline, f"job still {job.status}, waiting for {statuses}"
        time.sleep(0.1)
        job = sdk.fine_tuning.jobs.get(job_id=job_id)
    return job


def loc_fields(response) -> list[str]:
    """Every field named in a 422's ``detail[*].loc``."""
    assert response.status_code == 422, response.text
    return [str(part) for item in response.json()["detail"] for part in item["loc"]]


def test_files_upload_retrieve_list_delete(sdk):
    content = jsonl(GOOD_LINE, GOOD_LINE, GOOD_LINE)
    created = sdk.files.upload(file={"file_name": "train.jsonl", "content": content})
    assert created.filename == "train.jsonl"
    assert created.size_bytes == len(content)
    assert created.num_lines == 3
    assert created.purpose == "fine-tune"

    got = sdk.files.retrieve(file_id=created.id)
    assert got.id == created.id and got.deleted is False
    listed = sdk.files.list()
    assert [f.id for f in listed.data] == [created.id] and listed.total == 1

    deleted = sdk.files.delete(file_id=created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(sdk_errors.SDKError) as err:
        sdk.files.retrieve(file_id=created.id)
    assert err.value.status_code == 404
    assert sdk.files.list().total == 0


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/files/nope"),
        ("DELETE", "/v1/files/nope"),
        ("GET", "/v1/fine_tuning/jobs/nope"),
        ("POST", "/v1/fine_tuning/jobs/nope/start"),
        ("POST", "/v1/fine_tuning/jobs/nope/cancel"),
        ("GET", "/v1/models/ft:classifier:ministral-3b-latest:00000000:20250101:nope"),
        ("DELETE", "/v1/models/ft:classifier:ministral-3b-latest:00000000:20250101:nope"),
    ],
)
def test_unknown_ids_are_404(http, method, path):
    response = http.request(method, path)
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_unknown_ids_are_404_through_the_sdk(sdk):
    for call in (
        lambda: sdk.fine_tuning.jobs.get(job_id="nope"),
        lambda: sdk.files.retrieve(file_id="nope"),
        lambda: sdk.models.retrieve(model_id="ft:classifier:x:00000000:20250101:nope"),
        lambda: sdk.classifiers.classify(model="ft:classifier:x:0:0:nope", inputs=["hello"]),
    ):
        with pytest.raises(sdk_errors.MistralError) as err:
            call()
        assert err.value.status_code == 404


def job_body(file_id: str, **changes):
    body = {
        "model": "ministral-3b-latest",
        "job_type": "classifier",
        "training_files": [{"file_id": file_id, "weight": 1}],
        "hyperparameters": {"training_steps": 4, "learning_rate": 1e-4},
        "auto_start": False,
    }
    body.update(changes)
    return body


def test_bad_requests_are_422_naming_the_field(http, sdk):
    file_id = upload(sdk, jsonl(GOOD_LINE))
    cases = {
        "training_steps": job_body(
            file_id, hyperparameters={"training_steps": 0, "learning_rate": 1e-4}
        ),
        "fim_ratio": job_body(file_id, hyperparameters={"training_steps": 2, "fim_ratio": 0.9}),
        "job_type": job_body(file_id, job_type="completion"),
        "model": {k: v for k, v in job_body(file_id).items() if k != "model"},
        "loss_function": job_body(
            file_id,
            classifier_targets=[{"name": "m", "labels": ["a"], "loss_function": "hinge"}],
        ),
    }
    for field, body in cases.items():
        assert field in loc_fields(http.post("/v1/fine_tuning/jobs", json=body)), field

    unknown_file = http.post("/v1/fine_tuning/jobs", json=job_body("missing-file"))
    assert loc_fields(unknown_file)[-3:] == ["training_files", "0", "file_id"]
    unknown_valid = http.post(
        "/v1/fine_tuning/jobs", json=job_body(file_id, validation_files=["gone"])
    )
    assert "validation_files" in loc_fields(unknown_valid)

    assert "input" in loc_fields(http.post("/v1/classifications", json={"model": "m"}))
    assert "input" in loc_fields(http.post("/v1/classifications", json={"model": "m", "input": []}))
    bad_purpose = http.post(
        "/v1/files", files={"file": ("t.jsonl", b"{}\n")}, data={"purpose": "batch"}
    )
    assert "purpose" in loc_fields(bad_purpose)
    # An empty form field is a value outside the spec's enum, not an absent one.
    for field in ("purpose", "visibility"):
        sent = http.post("/v1/files", files={"file": ("t.jsonl", b"{}\n")}, data={field: ""})
        assert field in loc_fields(sent), field
    # Nothing was created by the rejected requests.
    assert sdk.fine_tuning.jobs.list().total == 0


def test_malformed_training_file_fails_validation_naming_line_and_field(sdk):
    bad = jsonl(GOOD_LINE, {"text": "no labels here"}, GOOD_LINE)
    bad += b'{"text": "broken json", "labels": \n'
    bad += jsonl({"text": "x", "labels": {"moderation": [3]}})
    file_id = upload(sdk, bad, name="broken.jsonl")
    job = sdk.fine_tuning.jobs.create(**job_body(file_id))
    assert job.status == "QUEUED"

    job = wait_status(sdk, job.id, {"FAILED_VALIDATION", "VALIDATED"})
    assert job.status == "FAILED_VALIDATION"
    statuses = [e.data["status"] for e in job.events]
    assert statuses == ["QUEUED", "VALIDATING", "FAILED_VALIDATION"]
    message = job.events[-1].data["message"]
    assert "broken.jsonl" in message
    assert "line 2, field 'labels'" in message
    assert "line 4, field '<line>'" in message and "not valid JSON" in message
    assert "line 5, field 'labels.moderation'" in message
    with pytest.raises(sdk_errors.SDKError) as err:
        sdk.fine_tuning.jobs.start(job_id=job.id)
    assert err.value.status_code == 409


def test_labels_outside_the_given_targets_fail_validation(sdk):
    file_id = upload(sdk, jsonl(GOOD_LINE, {"text": "b", "labels": {"moderation": ["insult"]}}))
    # mistralai 2.5.1 silently drops a target given without an explicit weight.
    targets = [{"name": "moderation", "labels": ["safe"], "weight": 1.0}]
    job = sdk.fine_tuning.jobs.create(**job_body(file_id, classifier_targets=targets))
    job = wait_status(sdk, job.id, {"FAILED_VALIDATION", "VALIDATED"})
    assert job.status == "FAILED_VALIDATION"
    message = job.events[-1].data["message"]
    assert "line 2, field 'labels.moderation'" in message and "insult" in message


def test_cancel_before_training_and_list_filters(idle_sdk):
    sdk = idle_sdk
    file_id = upload(sdk, jsonl(GOOD_LINE))
    first = sdk.fine_tuning.jobs.create(**job_body(file_id, suffix="one"))
    second = sdk.fine_tuning.jobs.create(**job_body(file_id, suffix="two"))
    cancelled = sdk.fine_tuning.jobs.cancel(job_id=second.id)
    assert cancelled.status == "CANCELLED"
    assert cancelled.events[-1].data["status"] == "CANCELLED"
    again = sdk.fine_tuning.jobs.cancel(job_id=second.id)  # idempotent
    assert again.status == "CANCELLED"

    listed = sdk.fine_tuning.jobs.list()
    assert listed.total == 2 and [j.id for j in listed.data] == [second.id, first.id]
    assert [j.id for j in sdk.fine_tuning.jobs.list(suffix="one").data] == [first.id]
    assert [j.id for j in sdk.fine_tuning.jobs.list(status="CANCELLED").data] == [second.id]
    page = sdk.fine_tuning.jobs.list(page=1, page_size=1)
    assert page.total == 2 and [j.id for j in page.data] == [first.id]


def test_token_is_required_when_configured(tmp_path):
    app = create_app(Store(tmp_path / "store"), token="s3cret-token")
    with TestClient(app) as http:
        assert http.get("/v1/models").status_code == 401
        wrong = http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "s3cret" not in wrong.text
        right = http.get("/v1/models", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200
        assert [m["type"] for m in right.json()["data"]] == ["base", "base"]

        sdk = Mistral(api_key="s3cret-token", server_url="http://testserver", client=http)
        assert fine_tuned(sdk.models.list()) == []
        other = Mistral(api_key="wrong", server_url="http://testserver", client=http)
        with pytest.raises(sdk_errors.MistralError) as err:
            other.files.list()
        assert err.value.status_code == 401


def test_integration_keys_are_not_stored(idle_sdk, tmp_path):
    sdk = idle_sdk
    file_id = upload(sdk, jsonl(GOOD_LINE))
    body = job_body(
        file_id, integrations=[{"project": "p", "api_key": "wandb-secret-key-0123456789"}]
    )
    job = sdk.fine_tuning.jobs.create(**body)
    assert job.integrations[0].project == "p"
    stored = (tmp_path / "store" / "factory.db").read_bytes()
    assert b"wandb-secret-key" not in stored


def test_start_before_validation_ends_trains_once_validated(tmp_path, monkeypatch):
    """start while QUEUED/VALIDATING is remembered: VALIDATED then goes straight to QUEUED."""
    from moderation_helpers.factory.queue import validation

    store = Store(tmp_path / "store")
    app = create_app(store, run_scheduler=False)
    with TestClient(app) as http:
        sdk = Mistral(api_key="unused", server_url="http://testserver", client=http)
        job = sdk.fine_tuning.jobs.create(**job_body(upload(sdk, jsonl(GOOD_LINE))))
        started = sdk.fine_tuning.jobs.start(job_id=job.id)
        assert started.status == "QUEUED"
        assert statuses_of(started) == ["QUEUED"]

        target = {"name": "moderation", "labels": ["safe"], "weight": 1.0}
        filled = {"classifier_targets": [{**target, "loss_function": "multi_class"}]}
        monkeypatch.setattr(validation, "validation_updates", lambda store, doc: filled)
        validation.validate_job(store, job.id)
        job = sdk.fine_tuning.jobs.get(job_id=job.id)
        assert statuses_of(job) == ["QUEUED", "VALIDATING", "VALIDATED", "QUEUED"]
        assert store.next_job(validated=True) == job.id
        # Starting twice is harmless; a finished job cannot be started or cancelled.
        assert sdk.fine_tuning.jobs.start(job_id=job.id).status == "QUEUED"
        with store.edit_job(job.id) as edit:
            edit.set_status("SUCCESS")
        for call in (sdk.fine_tuning.jobs.start, sdk.fine_tuning.jobs.cancel):
            with pytest.raises(sdk_errors.SDKError) as err:
                call(job_id=job.id)
            assert err.value.status_code == 409


def statuses_of(job) -> list[str]:
    return [e.data["status"] for e in job.events]


def test_validation_fills_targets_epochs_and_metadata(tmp_path, monkeypatch):
    """What VALIDATED fills, with a stand-in trainer (token count = words, 0.5 s a step)."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from moderation_helpers.factory.queue import validation

    @dataclass
    class Settings:
        batch_size: int = 4
        seq_len: int = 128

    fake = SimpleNamespace(
        TrainSettings=Settings,
        clamp_seq_len=lambda n: min(int(n), 512),
        count_tokens=lambda texts, **_: sum(len(t.split()) for t in texts),
        estimate_training_seconds=lambda steps, batch, mean, **_: 0.5 * steps,
    )
    monkeypatch.setattr(validation, "load_trainer", lambda: fake)
    store = Store(tmp_path / "store")
    lines = [
        {"text": "one two three", "labels": {"moderation": ["insult", "toxicity"], "topic": "x"}},
        {"text": "four five", "labels": {"moderation": ["safe"], "topic": "y"}},
    ] * 4
    file_id = store.add_file("t.jsonl", jsonl(*lines), "fine-tune")["id"]
    doc = {
        "training_files": [{"file_id": file_id, "weight": 1.0}],
        "validation_files": [],
        "hyperparameters": {"training_steps": 10, "seq_len": None},
        "classifier_targets": None,
    }
    filled = validation.validation_updates(store, doc)
    assert filled["classifier_targets"] == [
        {
            "name": "moderation",
            "labels": ["insult", "safe", "toxicity"],
            "weight": 1.0,
            "loss_function": "multi_class",
        },
        {"name": "topic", "labels": ["x", "y"], "weight": 1.0, "loss_function": "single_class"},
    ]
    assert filled["hyperparameters"]["epochs"] == 10 * 4 / 8
    assert filled["hyperparameters"]["seq_len"] == 128
    meta = filled["metadata"]
    assert meta["data_tokens"] == 20 and meta["train_tokens_per_step"] == round(4 * 20 / 8)
    assert meta["train_tokens"] == 10 * meta["train_tokens_per_step"]
    assert meta["expected_duration_seconds"] == 5 and meta["cost"] == 0.0

    # Epochs instead of steps; a given target without loss_function gets the data's.
    doc["hyperparameters"] = {"training_steps": None, "epochs": 3.0, "seq_len": 4096}
    doc["classifier_targets"] = [
        {"name": "moderation", "labels": ["insult", "safe", "toxicity"], "weight": 2.0},
        {"name": "topic", "labels": ["x", "y", "z"], "weight": 1.0, "loss_function": None},
    ]
    filled = validation.validation_updates(store, doc)
    assert filled["hyperparameters"]["training_steps"] == 6  # 3 epochs of 8 rows, batch 4
    assert filled["hyperparameters"]["seq_len"] == 512
    assert [t["loss_function"] for t in filled["classifier_targets"]] == [
        "multi_class",
        "single_class",
    ]
    assert filled["classifier_targets"][0]["weight"] == 2.0


def test_job_filters_and_pages_are_sql(tmp_path):
    """JobFilter: every given filter must match, newest first, LIMIT/OFFSET pages, COUNT total."""
    from moderation_helpers.factory.store.jobs import JobFilter

    store = Store(tmp_path / "store")
    wandb = {"type": "wandb", "project": "p", "name": "run-a", "url": None}
    ids = [
        store.create_job({"model": m, "suffix": s, "integrations": i}, start_requested=False)
        for m, s, i in [("a", "one", [wandb]), ("b", "two", []), ("a", None, [])]
    ]
    newest_first = ids[::-1]

    def listed(**wanted) -> tuple[list[str], int]:
        jobs, total = store.list_jobs(JobFilter(**wanted))
        return [j["id"] for j in jobs], total

    assert listed() == (newest_first, 3)
    assert listed(model="a") == ([ids[2], ids[0]], 2)
    assert listed(suffix="two") == ([ids[1]], 1)
    assert listed(wandb_project="p") == listed(wandb_name="run-a") == ([ids[0]], 1)
    assert listed(wandb_project="other") == ([], 0)
    assert listed(status="QUEUED", model="b") == ([ids[1]], 1)
    created = store.get_job(ids[0])["created_at"]
    assert listed(created_after=created, created_before=created + 60)[1] == 3
    assert listed(created_after=created + 3600) == ([], 0)
    assert listed(page=1, page_size=2) == (newest_first[2:], 3)
    assert listed(page=1_000_000, page_size=1_000) == ([], 3)
    assert store.list_models("no-such-model") == []


def test_hyperparameters_given_as_zero_are_kept(tmp_path):
    """Only None means "not given": 0.0 is a value (it used to become the default)."""
    from dataclasses import dataclass
    from types import SimpleNamespace

    from moderation_helpers.factory.queue.training import train_settings

    @dataclass
    class Settings:
        training_steps: int = 100
        learning_rate: float = 1e-4
        weight_decay: float = 0.1
        warmup_fraction: float = 0.05
        seq_len: int = 128

    trainer = SimpleNamespace(TrainSettings=Settings, clamp_seq_len=lambda n: min(int(n), 512))
    zeros = {"training_steps": 5, "learning_rate": 0.0, "weight_decay": 0.0, "warmup_fraction": 0}
    assert train_settings(trainer, {**zeros, "seq_len": None}) == Settings(5, 0.0, 0.0, 0.0, 128)
    unset = {"training_steps": 5, "learning_rate": None, "weight_decay": None}
    assert train_settings(trainer, unset) == Settings(5, 1e-4, 0.1, 0.05, 128)

"""jobs.py against the recorded API shapes and fake clients: no server, no training."""

from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pandas as pd
import pytest
from fake_jobs import (
    FakeClock,
    as_sdk_model,
    checkpoint,
    fake_client,
    http_error,
    job_with,
    recorded,
)
from mistralai.client import models

from moderation_helpers.core.jsonl import JSONLValidationError
from moderation_helpers.recipe import job_record, jobs, metrics
from moderation_helpers.recipe.run_folder import JOB_JSON, read_record

FAKE_WANDB_KEY = "wandb-fake-0123456789abcdef"


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", ["job_created", "job_validated", "job_started"])
def test_recorded_job_reads_the_same_as_the_sdk_model(reference_dir, name):
    raw = recorded(reference_dir, name)
    from_dict = job_record.job_to_dict(raw)
    from_sdk = job_record.job_to_dict(as_sdk_model(raw))
    for key in ("id", "status", "model", "training_files", "validation_files"):
        assert from_sdk[key] == from_dict[key]
    assert from_sdk["hyperparameters"]["training_steps"] == 200
    pd.testing.assert_frame_equal(
        job_record.job_summary_table(from_dict), job_record.job_summary_table(from_sdk)
    )


def test_unknown_sdk_variant_keeps_its_raw_payload(reference_dir):
    raw = recorded(reference_dir, "job_created")
    unknown = models.UnknownJobsAPIRoutesFineTuningGetFineTuningJobResponse(raw=raw)
    assert job_record.job_to_dict(unknown)["id"] == raw["id"]


def test_summary_table_shows_what_a_person_decides_on(reference_dir):
    table = job_record.job_summary_table(recorded(reference_dir, "job_validated"))
    value = table["value"]
    assert value["status"] == "VALIDATED"
    assert value["training steps"] == "200"
    assert value["epochs"] == "7.3"
    assert value["expected duration"] == "56 min 40 s"
    assert value["cost"] == "6.56 EUR"
    assert value["train tokens per step"] == "65536"
    assert value["data tokens"] == "1795785"
    labels = value["target 'moderation'"].split(", ")
    assert "safe" in labels and "toxicity" in labels and len(labels) == 7


def test_summary_table_before_validation_shows_blanks(reference_dir):
    table = job_record.job_summary_table(recorded(reference_dir, "job_created"))
    assert table.loc["expected duration", "value"] == "—"
    assert table.loc["epochs", "value"] == "—"
    assert table.loc["cost", "value"] == "0.00"


def test_recorded_jobs_have_no_checkpoints_yet(reference_dir):
    for name in ("job_created", "job_validated", "job_started"):
        frame = metrics.checkpoints_to_frame(recorded(reference_dir, name))
        assert list(frame.columns) == metrics.METRIC_COLUMNS and frame.empty


# --------------------------------------------------------------------------- waiting


def test_wait_for_validated_passes_through_queued_and_validating(reference_dir):
    validated = recorded(reference_dir, "job_validated")
    client = fake_client(
        [recorded(reference_dir, "job_created"), {**validated, "status": "VALIDATING"}, validated]
    )
    clock = FakeClock()
    job = jobs.wait_for_status(
        client, validated["id"], {"VALIDATED"}, 1.0, 60, sleep=clock.sleep, clock=clock
    )
    assert job["status"] == "VALIDATED"
    assert clock.sleeps == [1.0, 1.0]


def test_failed_validation_raises_with_the_servers_message():
    message = "train.jsonl:3: field 'labels': expected an object"
    failed = job_with(
        "FAILED_VALIDATION",
        events=[
            {"name": "status-updated", "created_at": 1, "data": {"status": "VALIDATING"}},
            {
                "name": "status-updated",
                "created_at": 2,
                "data": {"status": "FAILED_VALIDATION", "message": message},
            },
        ],
    )
    clock = FakeClock()
    with pytest.raises(jobs.JobValidationFailed) as info:
        jobs.wait_for_status(fake_client([failed]), "job-1", sleep=clock.sleep, clock=clock)
    assert message in str(info.value) and "FAILED_VALIDATION" in str(info.value)
    assert info.value.reason == message


@pytest.mark.parametrize("where", ["message", "metadata"])
def test_failure_reason_found_in_message_or_metadata(where):
    job = job_with("FAILED")
    if where == "message":
        job["message"] = "out of memory"
    else:
        job["metadata"] = {"cost": 0.0, "error": "out of memory"}
    assert job_record.failure_reason(job) == "out of memory"


def test_wait_times_out_with_the_last_status():
    clock = FakeClock()
    with pytest.raises(TimeoutError, match="still VALIDATING after 5 s"):
        jobs.wait_for_status(
            fake_client([job_with("VALIDATING")]),
            "job-1",
            poll_interval=1,
            timeout=5,
            sleep=clock.sleep,
            clock=clock,
        )


# --------------------------------------------------------------------------- following


def test_follow_survives_transient_errors_and_backs_off(caplog):
    script = [
        job_with("RUNNING", [checkpoint(2, 0.9, 0.95)]),
        http_error(503),
        httpx.ConnectError("connection dropped"),
        job_with("RUNNING", [checkpoint(4, 0.7), checkpoint(2, 0.9, 0.95)]),
        http_error(429),
        job_with(
            "SUCCESS",
            [checkpoint(6, 0.5, 0.6), checkpoint(4, 0.7, 0.8), checkpoint(2, 0.9, 0.95)],
            fine_tuned_model="ft:classifier:ministral-3b-latest:1234abcd:20261124:5678abcd",
        ),
    ]
    clock = FakeClock()
    updates = list(
        jobs.follow_job(
            fake_client(script),
            "job-1",
            poll_interval=1,
            timeout=100,
            progress=False,
            sleep=clock.sleep,
            clock=clock,
        )
    )
    assert [u.status for u in updates] == ["RUNNING", "RUNNING", "SUCCESS"]
    assert updates[-1].done and updates[-1].metrics["step"].tolist() == [2, 4, 6]
    assert clock.sleeps == [1, 2, 4, 1, 2]  # doubles after each error, resets after a success
    assert "retrying" in caplog.text and "HTTP 503" in caplog.text


def test_follow_gives_up_at_the_timeout_when_errors_persist():
    clock = FakeClock()
    follow = jobs.follow_job(
        fake_client([http_error(502)]),
        "job-1",
        poll_interval=1,
        timeout=10,
        progress=False,
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(TimeoutError, match="job-1"):
        list(follow)
    assert clock.now == pytest.approx(10)


def test_follow_stops_on_a_client_error():
    follow = jobs.follow_job(fake_client([http_error(404)]), "job-1", progress=False)
    with pytest.raises(jobs.JobError, match="HTTP 404: server said 404"):
        next(follow)


def test_cancelled_job_is_yielded_with_its_metrics_then_raises():
    cancelled = job_with(
        "CANCELLED",
        [checkpoint(2, 0.9)],
        events=[
            {
                "name": "status-updated",
                "created_at": 3,
                "data": {"status": "CANCELLED", "message": "cancelled by user"},
            }
        ],
    )
    updates = list(jobs.follow_job(fake_client([cancelled]), "job-1", progress=False))
    assert updates[-1].metrics["step"].tolist() == [2]
    with pytest.raises(jobs.JobFailed, match="job-1 ended CANCELLED: cancelled by user"):
        jobs.raise_for_job_status(updates[-1].job)


def test_follow_refuses_a_job_that_waits_to_be_started(reference_dir):
    follow = jobs.follow_job(
        fake_client([recorded(reference_dir, "job_validated")]), "x", progress=False
    )
    with pytest.raises(jobs.JobNotStarted, match="start=True"):
        next(follow)


def test_follow_shows_a_step_progress_bar(capsys):
    script = [job_with("RUNNING", [checkpoint(3, 0.9)]), job_with("SUCCESS", [checkpoint(6, 0.5)])]
    clock = FakeClock()
    list(jobs.follow_job(fake_client(script), "job-1", sleep=clock.sleep, clock=clock))
    err = capsys.readouterr().err
    assert "6/6" in err and "SUCCESS" in err


# --------------------------------------------------------------------------- create and record


def write_lines(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_upload_validates_before_sending_anything(tmp_path):
    train = write_lines(
        tmp_path / "train.jsonl", [{"text": "hi", "labels": {"moderation": ["safe"]}}]
    )
    bad = tmp_path / "validation.jsonl"
    bad.write_text('{"text": "x", "labels": {"moderation": ["safe"]}}\n{"text": "y"}\n')
    client = fake_client()
    with pytest.raises(JSONLValidationError, match=r"validation.jsonl:2: field 'labels'"):
        jobs.upload_training_files(client, train, bad)
    unseen = write_lines(
        tmp_path / "v2.jsonl", [{"text": "x", "labels": {"moderation": ["threat"]}}]
    )
    with pytest.raises(JSONLValidationError, match="unknown label"):
        jobs.upload_training_files(client, train, unseen)
    assert client.uploads == []


def test_upload_sends_both_files(tmp_path):
    line = {"text": "hi", "labels": {"moderation": ["safe"]}}
    train = write_lines(tmp_path / "train.jsonl", [line])
    valid = write_lines(tmp_path / "validation.jsonl", [line])
    client = fake_client()
    ids = jobs.upload_training_files(client, train, valid)
    assert ids == {"train": "file-1", "validation": "file-2"}
    assert [(name, purpose) for name, _, purpose in client.uploads] == [
        ("train.jsonl", "fine-tune"),
        ("validation.jsonl", "fine-tune"),
    ]
    assert client.uploads[0][1] == train.read_bytes()


def test_label_scores_reach_the_local_factory_and_not_the_mistral_api(tmp_path):
    lines = [
        {"text": "hi", "labels": {"moderation": ["toxicity"]}},
        {
            "messages": [{"role": "user", "content": "caf\u00e9 a/b"}],
            "labels": {"moderation": ["toxicity"]},
            "label_scores": {"moderation": {"toxicity": 0.6}},
        },
    ]
    train = write_lines(tmp_path / "train.jsonl", lines)
    valid = write_lines(tmp_path / "validation.jsonl", lines[:1])
    before = train.read_bytes()
    local, remote = fake_client(), fake_client()
    jobs.upload_training_files(local, train, valid)
    jobs.upload_training_files(remote, train, valid, label_scores=False)
    assert local.uploads[0][1] == before
    sent = [json.loads(line) for line in remote.uploads[0][1].decode().splitlines()]
    assert sent == [lines[0], {k: v for k, v in lines[1].items() if k != "label_scores"}]
    assert remote.uploads[0][0] == "train.jsonl" and train.read_bytes() == before


def test_create_waits_for_start_and_adds_wandb_only_when_asked(monkeypatch):
    client = fake_client()
    hp = {"training_steps": 6, "learning_rate": 5e-5, "weight_decay": None}
    jobs.create_classifier_job(
        client, model="m", training_file="f1", validation_file="f2", hyperparameters=hp
    )
    kwargs = client.fine_tuning.jobs.calls[-1][1]
    assert kwargs["auto_start"] is False and kwargs["job_type"] == "classifier"
    assert kwargs["hyperparameters"] == {"training_steps": 6, "learning_rate": 5e-5}
    assert kwargs["training_files"] == [{"file_id": "f1", "weight": 1}]
    assert kwargs["validation_files"] == ["f2"] and "integrations" not in kwargs

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ValueError, match="WANDB_API_KEY"):
        jobs.create_classifier_job(
            client,
            model="m",
            training_file="f1",
            validation_file=None,
            hyperparameters=hp,
            wandb_project="proj",
        )
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    jobs.create_classifier_job(
        client,
        model="m",
        training_file="f1",
        validation_file=None,
        hyperparameters=hp,
        wandb_project="proj",
    )
    integration = client.fine_tuning.jobs.calls[-1][1]["integrations"][0]
    assert integration == {"type": "wandb", "project": "proj", "api_key": FAKE_WANDB_KEY}


def test_api_refusal_becomes_a_readable_job_error():
    def refuse(**kwargs):
        raise http_error(422)

    client = SimpleNamespace(fine_tuning=SimpleNamespace(jobs=SimpleNamespace(create=refuse)))
    with pytest.raises(jobs.JobError, match="creating the fine-tuning job failed: HTTP 422"):
        jobs.create_classifier_job(
            client, model="m", training_file="f", validation_file=None, hyperparameters={}
        )


def test_job_record_holds_the_contract_and_no_secret(reference_dir, tmp_path):
    job = recorded(reference_dir, "job_validated")
    record = job_record.job_record(
        job, backend="mistral", server_url="https://user:s3cret@api.example:8443/"
    )
    assert record["server_url"] == "https://api.example:8443/"
    assert record["job_id"] == job["id"] and record["status"] == "VALIDATED"
    assert record["training_files"] == job["training_files"]
    assert record["classifier_targets"][0]["name"] == "moderation"
    assert record["metadata"]["cost_currency"] == "EUR"
    assert "s3cret" not in json.dumps(record)

    job_record.save_job_record(tmp_path, record)
    done = {**job, "status": "SUCCESS", "fine_tuned_model": "ft:classifier:x:1:2:3"}
    updated = job_record.update_job_record(tmp_path, done)
    assert read_record(tmp_path, JOB_JSON) == updated
    assert updated["status"] == "SUCCESS" and updated["fine_tuned_model"] == "ft:classifier:x:1:2:3"
    assert updated["backend"] == "mistral"


def test_failed_job_record_keeps_the_reason(tmp_path):
    job_record.save_job_record(
        tmp_path,
        job_record.job_record(
            job_with("RUNNING"), backend="local", server_url="http://127.0.0.1:1"
        ),
    )
    record = job_record.update_job_record(tmp_path, job_with("FAILED", message="disk full"))
    assert record["status"] == "FAILED" and record["failure_reason"] == "disk full"


def test_wait_for_validation_records_success_and_rejection(tmp_path, reference_dir):
    validated = recorded(reference_dir, "job_validated")
    record = job_record.job_record(
        recorded(reference_dir, "job_created"), backend="local", server_url="http://127.0.0.1:1"
    )
    job_record.save_job_record(tmp_path, record)
    job = jobs.wait_for_validation(fake_client([validated]), tmp_path, validated["id"])
    assert job["status"] == read_record(tmp_path, JOB_JSON)["status"] == "VALIDATED"
    assert read_record(tmp_path, JOB_JSON)["metadata"]["cost"] == 6.56

    rejected = {
        **validated,
        "status": "FAILED_VALIDATION",
        "events": [
            {
                "name": "status-updated",
                "created_at": 9,
                "data": {"status": "FAILED_VALIDATION", "message": "line 4: no text"},
            }
        ],
    }
    with pytest.raises(jobs.JobValidationFailed, match="line 4: no text"):
        jobs.wait_for_validation(fake_client([rejected]), tmp_path, validated["id"])
    saved = read_record(tmp_path, JOB_JSON)
    assert saved["status"] == "FAILED_VALIDATION" and saved["failure_reason"] == "line 4: no text"


def test_a_new_job_drops_the_previous_jobs_curves(tmp_path):
    first = job_record.job_record(job_with("QUEUED", id="job-1"), backend="local", server_url="u")
    assert job_record.record_new_job(tmp_path, first) == []
    (tmp_path / "metrics.csv").write_text("step,train_loss,valid_loss\n1,0.5,0.6\n")
    (tmp_path / "loss.png").write_bytes(b"png")
    assert job_record.record_new_job(tmp_path, first) == []  # same job again: nothing dropped
    assert (tmp_path / "metrics.csv").is_file()
    second = job_record.job_record(job_with("QUEUED", id="job-2"), backend="local", server_url="u")
    removed = job_record.record_new_job(tmp_path, second)
    assert sorted(p.name for p in removed) == ["loss.png", "metrics.csv"]
    assert not (tmp_path / "metrics.csv").exists()
    assert read_record(tmp_path, JOB_JSON)["job_id"] == "job-2"


def test_forgetting_the_job_leaves_a_folder_where_the_next_one_drops_nothing(tmp_path):
    first = job_record.job_record(job_with("QUEUED", id="job-1"), backend="local", server_url="u")
    job_record.record_new_job(tmp_path, first)
    (tmp_path / "metrics.csv").write_text("step,train_loss,valid_loss\n1,0.5,0.6\n")
    (tmp_path / "train.jsonl").write_text("{}\n")
    removed = job_record.forget_job(tmp_path)
    assert sorted(p.name for p in removed) == [JOB_JSON, "metrics.csv"]
    assert (tmp_path / "train.jsonl").is_file()  # the prepared data is not the job's
    second = job_record.job_record(job_with("QUEUED", id="job-2"), backend="local", server_url="u")
    assert job_record.record_new_job(tmp_path, second) == []
    assert job_record.forget_job(tmp_path / "missing") == []

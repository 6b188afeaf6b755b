"""Faults with real server processes: ``kill -9`` of the server (by the pid this test started)
while an upload streams in, while a job trains, while requests are classified. After a restart
no job is RUNNING, no half file is listed or left on disk, every finished model classifies as
before, and the training process never outlives its server.

Training is the fake trainer of test_factory_lifecycle.py (plus a ``deaf`` mode that never asks
whether to stop: only the kernel's parent-death signal can end it); the model that classifies
is a copy of the session's trained one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_factory_lifecycle import FAKE_TRAINER, children, create_job, sdk_for, wait_for, wait_gone

from moderation_helpers.factory.process import pid_alive, start_factory, stop_factory
from moderation_helpers.factory.queue.training import TRAINING_NICENESS
from moderation_helpers.factory.store.db import Store
from tests.sdk_jobs import fine_tuned

DEAF_TRAINER = (
    FAKE_TRAINER
    + """
_slow_train = train

def train(train_examples, valid_examples, targets, settings, out_dir, on_checkpoint=None,
          should_stop=None):
    if os.environ.get("FAKE_TRAINER_MODE") != "deaf":
        return _slow_train(train_examples, valid_examples, targets, settings, out_dir,
                           on_checkpoint, should_stop)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "partial.bin"), "wb") as fh:
        fh.write(b"half a model")
    on_checkpoint(Checkpoint(1, 1.0, None))
    while True:  # never looks at should_stop
        time.sleep(0.1)
"""
)
TEXTS = [
    "You are a complete idiot and everyone knows it.",
    "Thank you for the thoughtful reply, I learned something.",
    "This policy is a disgrace and the people behind it should be ashamed.",
]


@pytest.fixture
def deaf_trainer(tmp_path, monkeypatch):
    module_dir = tmp_path / "fake_trainer_pkg"
    module_dir.mkdir()
    (module_dir / "fake_factory_trainer.py").write_text(DEAF_TRAINER)
    monkeypatch.setenv("PYTHONPATH", str(module_dir))
    monkeypatch.setenv("MODERATION_FACTORY_TRAINER", "fake_factory_trainer")
    monkeypatch.setenv("FAKE_TRAINER_MODE", "deaf")


@pytest.fixture
def servers(tmp_path):
    """Start factories on one store; each is stopped (or found dead) at teardown."""
    handles = []

    def _start():
        handle = start_factory(tmp_path / "store", port=0)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        stop_factory(handle)
        assert not pid_alive(handle.pid)


def kill9(handle) -> None:
    """SIGKILL the server this test started, by its pid, and reap it."""
    os.kill(handle.pid, signal.SIGKILL)
    handle.process.wait(30)


def niceness(pid: int) -> int:
    """A process's nice value (field 19 of /proc/<pid>/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def on_disk(store: Store, sub: str) -> list[str]:
    return sorted(p.name for p in (store.root / sub).iterdir())


def test_kill_9_while_an_upload_streams_in_leaves_no_half_file(servers):
    handle = servers()
    sdk = sdk_for(handle)
    kept = sdk.files.upload(file={"file_name": "kept.jsonl", "content": b'{"a": 1}\n'}).id
    receiving, release = threading.Event(), threading.Event()
    boundary = "faultline"

    def slow_body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="half.jsonl"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        for i in range(1000):
            yield b'{"text": "line", "labels": {"m": ["safe"]}}\n' * 100
            if i == 5:
                receiving.set()
                release.wait(30)

    errors = []

    def upload():
        try:
            httpx.post(
                handle.url + "/v1/files",
                content=slow_body(),
                headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                timeout=30,
            )
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=upload)
    thread.start()
    assert receiving.wait(30)
    time.sleep(0.2)  # the server is reading the body
    kill9(handle)
    release.set()
    thread.join(30)
    assert errors, "the upload cannot have succeeded"

    again = servers()
    listed = sdk_for(again).files.list()
    assert [f.id for f in listed.data] == [kept]
    store = Store(again.store)
    assert on_disk(store, "files") == [kept] and on_disk(store, "incoming") == []


def test_kill_9_while_a_job_trains_leaves_no_running_job_and_no_trainer(deaf_trainer, servers):
    handle = servers()
    sdk = sdk_for(handle)
    job = create_job(sdk, steps=10_000)
    wait_for(sdk, job.id, lambda j: j.status == "RUNNING" and j.checkpoints)
    trainers = children(handle.pid)
    assert len(trainers) == 1
    # Training yields the CPU to classification: it runs at a lower priority than its server.
    assert niceness(trainers[0]) == min(niceness(handle.pid) + TRAINING_NICENESS, 19)
    kill9(handle)
    # The deaf trainer never checks on its parent: only PR_SET_PDEATHSIG ends it.
    assert wait_gone(trainers[0])

    again = servers()
    job = sdk_for(again).fine_tuning.jobs.get(job_id=job.id)
    assert job.status == "FAILED"
    assert "stopped while this job was running" in job.events[-1].data["message"]
    assert sdk_for(again).fine_tuning.jobs.list(status="RUNNING").total == 0
    assert on_disk(Store(again.store), "models") == []  # the half-written weights are gone


@pytest.fixture
def store_with_model(tmp_path, trained_job, factory):
    """A store holding a copy of the session's trained model, registered as finished."""
    _, job = trained_job
    record = Store(factory.store).get_model(job.fine_tuned_model)
    store = Store(tmp_path / "store")
    weights = store.model_dir("copied-job")
    shutil.copytree(record["path"], weights)
    store.add_model(record["id"], "copied-job", record["root"], record["targets"], weights)
    return record["id"]


def classify_one_by_one(handle, model_id: str) -> list[dict]:
    sdk = sdk_for(handle)
    out = []
    for text in TEXTS:
        result = sdk.classifiers.classify(model=model_id, inputs=[text]).results[0]
        out.append({target: dict(result[target].scores) for target in result})
    return out


@pytest.mark.slow
def test_kill_9_while_classifying_then_every_model_classifies_identically(
    store_with_model, servers
):
    model_id = store_with_model
    handle = servers()
    before = classify_one_by_one(handle, model_id)
    stop = threading.Event()
    answered = []

    def hammer():
        client = httpx.Client(base_url=handle.url, timeout=30)
        while not stop.is_set():
            try:
                r = client.post("/v1/classifications", json={"model": model_id, "input": TEXTS})
                answered.append(r.status_code)
            except httpx.HTTPError:
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(answered) < 4:
        time.sleep(0.05)
    kill9(handle)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert set(answered) == {200}

    again = servers()
    assert classify_one_by_one(again, model_id) == before
    listed = fine_tuned(sdk_for(again).models.list())
    assert [m.id for m in listed] == [model_id]
    info = json.loads((again.store / "server.json").read_text())
    assert info["pid"] == again.pid

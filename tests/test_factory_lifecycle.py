"""The factory as processes: one job at a time, cancel of a running job, a crash in training,
a server killed mid-training, a restart keeping job, file and model, the CLI's status and stop.

Most tests swap in a fake trainer (``$MODERATION_FACTORY_TRAINER``) that is slow or crashes on
purpose, so they need no CPU; the restart test trains the real model for 2 steps. Every test
checks that the processes it started are gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mistralai.client import Mistral

from moderation_helpers.factory.process import pid_alive, start_factory, stop_factory
from tests.sdk_jobs import fine_tuned

FAKE_TRAINER = '''
"""A stand-in trainer: FAKE_TRAINER_MODE=slow (a checkpoint every 0.1 s, forever-ish) or crash."""
import os, time
from dataclasses import dataclass

@dataclass
class Target:
    name: str
    labels: list
    loss_function: str
    weight: float = 1.0

@dataclass
class TrainSettings:
    training_steps: int = 100
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    seq_len: int = 128
    batch_size: int = 16
    seed: int = 0
    checkpoint_every: int | None = None
    encoder: str = "all-MiniLM-L6-v2"

@dataclass
class Checkpoint:
    step: int
    train_loss: float
    valid_loss: float | None

@dataclass
class TrainResult:
    trained_tokens: int
    seconds: float
    checkpoints: list

class TrainingCancelled(Exception):
    pass

def clamp_seq_len(n):
    return min(int(n), 512)

def count_tokens(texts, **_):
    return sum(len(t.split()) + 2 for t in texts)

def estimate_training_seconds(steps, batch_size, mean_tokens, **_):
    return 0.1 * steps

def train(train_examples, valid_examples, targets, settings, out_dir, on_checkpoint=None,
          should_stop=None):
    if os.environ.get("FAKE_TRAINER_MODE") == "crash":
        raise RuntimeError("fake trainer crashed on purpose")
    for step in range(1, settings.training_steps + 1):
        if should_stop and should_stop():
            raise TrainingCancelled()
        time.sleep(0.1)
        on_checkpoint(Checkpoint(step, 1.0 / step, 2.0 / step if valid_examples else None))
    raise AssertionError("the slow fake trainer is meant to be stopped")
'''

LINES = [
    {"text": f"comment number {i} is {word}", "labels": {"moderation": labels}}
    for i in range(40)
    for word, labels in (("dumb and rude", ["insult", "toxicity"]), ("kind", ["safe"]))
]


@pytest.fixture
def fake_trainer(tmp_path, monkeypatch):
    """Make servers started in this test use the fake trainer; returns a mode setter."""
    module_dir = tmp_path / "fake_trainer_pkg"
    module_dir.mkdir()
    (module_dir / "fake_factory_trainer.py").write_text(FAKE_TRAINER)
    monkeypatch.setenv("PYTHONPATH", str(module_dir))
    monkeypatch.setenv("MODERATION_FACTORY_TRAINER", "fake_factory_trainer")
    monkeypatch.setenv("FAKE_TRAINER_MODE", "slow")
    return lambda mode: monkeypatch.setenv("FAKE_TRAINER_MODE", mode)


@pytest.fixture
def start(tmp_path):
    """Start factories (stopped, and checked gone, at teardown)."""
    handles = []

    def _start(store=None, **kwargs):
        handle = start_factory(store or tmp_path / "store", port=0, **kwargs)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        stop_factory(handle)
        assert not pid_alive(handle.pid)


def sdk_for(handle, key: str = "unused") -> Mistral:
    return Mistral(api_key=key, server_url=handle.url)


def upload_lines(sdk: Mistral, lines=LINES, name="train.jsonl") -> str:
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return sdk.files.upload(file={"file_name": name, "content": content}).id


def create_job(sdk: Mistral, steps: int, auto_start=True, validation=True, **hyper):
    train_id = upload_lines(sdk)
    valid = [upload_lines(sdk, LINES[:10], "valid.jsonl")] if validation else None
    return sdk.fine_tuning.jobs.create(
        model="ministral-3b-latest",
        job_type="classifier",
        training_files=[{"file_id": train_id, "weight": 1}],
        validation_files=valid,
        hyperparameters={"training_steps": steps, "learning_rate": 1e-4, **hyper},
        auto_start=auto_start,
    )


def wait_for(sdk: Mistral, job_id: str, done, limit: float = 300.0):
    """Poll until ``done(job)``; the limit only guards against a hang."""
    deadline = time.monotonic() + limit
    while True:
        job = sdk.fine_tuning.jobs.get(job_id=job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck at {job.status}"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    """Child pids of ``pid`` (Linux /proc)."""
    # Each thread lists the children it forked; the trainer is forked by a worker thread.
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    return [int(p) for path in tasks for p in path.read_text().split()]


def wait_gone(pid: int, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def statuses(job) -> list[str]:
    return [e.data["status"] for e in job.events]


def test_cancel_of_a_running_job_stops_training(fake_trainer, start):
    handle = start()
    sdk = sdk_for(handle)
    job = create_job(sdk, steps=10_000)
    job = wait_for(sdk, job.id, lambda j: j.status == "RUNNING" and j.checkpoints)
    trainers = children(handle.pid)
    assert len(trainers) == 1

    cancelled = sdk.fine_tuning.jobs.cancel(job_id=job.id)
    assert cancelled.status in ("CANCELLATION_REQUESTED", "CANCELLED")
    job = wait_for(sdk, job.id, lambda j: j.status == "CANCELLED")
    assert statuses(job)[-2:] == ["CANCELLATION_REQUESTED", "CANCELLED"]
    assert wait_gone(trainers[0])
    assert job.fine_tuned_model is None
    assert fine_tuned(sdk.models.list()) == []
    assert job.checkpoints[0].metrics.valid_loss is not None


def test_one_job_trains_at_a_time(fake_trainer, start):
    handle = start()
    sdk = sdk_for(handle)
    first = create_job(sdk, steps=10_000)
    second = create_job(sdk, steps=10_000)
    wait_for(sdk, first.id, lambda j: j.status == "RUNNING")
    second = wait_for(sdk, second.id, lambda j: j.status == "QUEUED" and j.metadata.data_tokens)
    assert statuses(second) == ["QUEUED", "VALIDATING", "VALIDATED", "QUEUED"]

    sdk.fine_tuning.jobs.cancel(job_id=first.id)
    wait_for(sdk, first.id, lambda j: j.status == "CANCELLED")
    # The queue moves on to the next job once the first is done.
    wait_for(sdk, second.id, lambda j: j.status == "RUNNING")
    sdk.fine_tuning.jobs.cancel(job_id=second.id)
    wait_for(sdk, second.id, lambda j: j.status == "CANCELLED")


def test_a_crash_in_training_fails_the_job_not_the_server(fake_trainer, start):
    fake_trainer("crash")
    handle = start()
    sdk = sdk_for(handle)
    job = create_job(sdk, steps=5)
    job = wait_for(sdk, job.id, lambda j: j.status in ("SUCCESS", "FAILED"))
    assert job.status == "FAILED"
    reason = job.events[-1].data["message"]
    assert "fake trainer crashed on purpose" in reason
    assert pid_alive(handle.pid)
    assert sdk.fine_tuning.jobs.list().total == 1  # the server still answers


def test_a_server_killed_mid_training_leaves_a_failed_job_and_no_trainer(fake_trainer, start):
    handle = start()
    sdk = sdk_for(handle)
    job = create_job(sdk, steps=10_000)
    wait_for(sdk, job.id, lambda j: j.status == "RUNNING" and j.checkpoints)
    trainers = children(handle.pid)
    os.kill(handle.pid, signal.SIGKILL)
    handle.process.wait()
    # The orphaned training process notices its server is gone and stops by itself.
    assert wait_gone(trainers[0])

    again = start(handle.store)
    job = sdk_for(again).fine_tuning.jobs.get(job_id=job.id)
    assert job.status == "FAILED"
    assert "stopped while this job was running" in job.events[-1].data["message"]


@pytest.mark.slow
def test_restart_keeps_job_file_and_model_and_the_model_classifies(start):
    handle = start()
    sdk = sdk_for(handle)
    job = create_job(sdk, steps=2, seq_len=16)
    job = wait_for(sdk, job.id, lambda j: j.status in ("SUCCESS", "FAILED", "FAILED_VALIDATION"))
    assert job.status == "SUCCESS", job.events[-1].data
    texts = ["comment number 1 is dumb and rude", "comment number 2 is kind"]
    before = sdk.classifiers.classify(model=job.fine_tuned_model, inputs=texts).results

    stop_factory(handle)
    assert not pid_alive(handle.pid)
    again = start(handle.store)
    sdk = sdk_for(again)
    after_job = sdk.fine_tuning.jobs.get(job_id=job.id)
    assert after_job.status == "SUCCESS"
    assert after_job.fine_tuned_model == job.fine_tuned_model
    assert [c.step_number for c in after_job.checkpoints] == [
        c.step_number for c in job.checkpoints
    ]
    assert sdk.files.retrieve(file_id=job.training_files[0]).num_lines == len(LINES)
    model = sdk.models.retrieve(model_id=job.fine_tuned_model)
    assert model.job == job.id and model.capabilities.classification
    after = sdk.classifiers.classify(model=job.fine_tuned_model, inputs=texts).results
    for old, new in zip(before, after, strict=True):
        assert new["moderation"].scores == pytest.approx(old["moderation"].scores, abs=1e-5)

    deleted = sdk.models.delete(model_id=job.fine_tuned_model)
    assert deleted.deleted
    assert fine_tuned(sdk.models.list()) == []


def test_cli_status_and_stop_and_the_token_stays_secret(start, tmp_path):
    token = "factory-token-not-for-ps-0123"
    handle = start(token=token)
    cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes()
    assert token.encode() not in cmdline
    assert fine_tuned(sdk_for(handle, token).models.list()) == []
    with pytest.raises(RuntimeError, match="already served by pid"):
        start_factory(handle.store, port=0)

    run = [sys.executable, "-m", "moderation_helpers.cli", "moderation-factory"]
    env = {k: v for k, v in os.environ.items() if k != "MODERATION_FACTORY_TOKEN"}
    status = subprocess.run(
        run + ["status", "--store", str(handle.store)], capture_output=True, text=True, env=env
    )
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["url"] == handle.url and info["pid"] == handle.pid and info["answers"]

    stop = subprocess.run(
        run + ["stop", "--store", str(handle.store)], capture_output=True, text=True, env=env
    )
    assert stop.returncode == 0, stop.stderr
    assert f"pid {handle.pid}" in stop.stdout
    handle.process.wait(timeout=30)
    assert not (handle.store / "server.json").exists()
    log = (handle.store / "server.log").read_text()
    assert "token required" in log and token not in log
    again = subprocess.run(
        run + ["stop", "--store", str(handle.store)], capture_output=True, text=True, env=env
    )
    assert "no factory server running" in again.stdout


def test_served_connections_get_tcp_nodelay():
    """asyncio sets TCP_NODELAY on accepted connections only for sockets that say they are TCP;
    without it each keep-alive request stalled ~40 ms on a delayed ACK."""
    import asyncio
    import socket

    from moderation_helpers.factory.server import listening_socket

    server_sock = listening_socket("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        def on_connect(reader, writer):
            conn = writer.get_extra_info("socket")
            seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=server_sock)
        port = server_sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
    assert seen and seen[0] != 0

"""The SQLite store under concurrent requests to a real server: uploads, job creation, file and
model deletion from many threads leave it consistent (every row's bytes on disk and nothing
else, one winner per delete, every job whole). And what a killed server leaves unrecorded is
removed at the next start."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_factory_lifecycle import LINES, fake_trainer  # noqa: F401 (a fixture)

from moderation_helpers.factory.process import pid_alive, start_factory, stop_factory
from moderation_helpers.factory.store.db import Store

THREADS = 8
UPLOADS_PER_THREAD = 5
JOBS_PER_THREAD = 3
MODELS = 6
TRAIN = "".join(json.dumps(line) + "\n" for line in LINES).encode()


def run_threads(target, count: int) -> list:
    """Run ``target(i)`` in ``count`` threads at once; their results (exceptions re-raised)."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def add_models(store: Store) -> list[str]:
    """Register MODELS fine-tuned models, each with a little weights file; their ids."""
    model_ids = []
    for i in range(MODELS):
        weights = store.model_dir(f"job-{i}")
        weights.mkdir(parents=True)
        (weights / "weights.bin").write_bytes(b"w" * 100)
        model_id = f"ft:classifier:m:{store.workspace}:20260101:{i:08x}"
        store.add_model(model_id, f"job-{i}", "m", [{"name": "m", "labels": ["safe"]}], weights)
        model_ids.append(model_id)
    return model_ids


def one_client(base: str, first: str, model_ids: list[str], i: int) -> dict:
    """Client ``i``'s uploads and jobs, then its deletes of every model and (twice) of its own
    first upload; what it uploaded (but the first), created, and the status codes of deletes."""
    client = httpx.Client(base_url=base, timeout=60)
    uploaded, jobs, deleted = [], [], Counter()
    rng = random.Random(i)
    for _ in range(UPLOADS_PER_THREAD):
        content = TRAIN[: rng.randrange(100, len(TRAIN))]
        r = client.post("/v1/files", files={"file": (f"t{i}.jsonl", content)})
        assert r.status_code == 200, r.text
        uploaded.append((r.json()["id"], len(content)))
    for _ in range(JOBS_PER_THREAD):
        body = {
            "model": "ministral-3b-latest",
            "training_files": [{"file_id": first, "weight": 1}],
            "hyperparameters": {"training_steps": 5},
            "auto_start": False,
        }
        r = client.post("/v1/fine_tuning/jobs", json=body)
        assert r.status_code == 200, r.text
        jobs.append(r.json()["id"])
    for model_id in rng.sample(model_ids, len(model_ids)):
        deleted[client.delete(f"/v1/models/{model_id}").status_code] += 1
    for _ in range(2):
        deleted[client.delete(f"/v1/files/{uploaded[0][0]}").status_code] += 1
    return {"uploaded": uploaded[1:], "jobs": jobs, "deleted": deleted}


def test_concurrent_uploads_jobs_and_deletions_leave_the_store_consistent(
    fake_trainer,  # noqa: F811
    tmp_path,
):
    store = Store(tmp_path / "store")
    model_ids = add_models(store)
    handle = start_factory(store.root, port=0)
    try:
        base = handle.url
        first = httpx.post(base + "/v1/files", files={"file": ("train.jsonl", TRAIN)}).json()["id"]
        results = run_threads(lambda i: one_client(base, first, model_ids, i), THREADS)
        sdk_jobs = httpx.get(base + "/v1/fine_tuning/jobs", params={"page_size": 1000}).json()
        listed_files = httpx.get(base + "/v1/files", params={"page_size": 1000}).json()
        listed = httpx.get(base + "/v1/models").json()["data"]
        listed_models = [m for m in listed if m["type"] != "base"]  # base encoders stay listed
    finally:
        stop_factory(handle)
    assert not pid_alive(handle.pid)

    # One winner per delete: each model deleted once, each thread's first file once.
    deleted = sum((r["deleted"] for r in results), Counter())
    assert deleted == {200: MODELS + THREADS, 404: MODELS * (THREADS - 1) + THREADS}
    assert listed_models == []
    assert not any((store.root / "models").iterdir())

    uploaded = {fid: size for r in results for fid, size in r["uploaded"]} | {first: len(TRAIN)}
    assert {f["id"]: f["bytes"] for f in listed_files["data"]} == uploaded
    assert listed_files["total"] == len(uploaded) == THREADS * (UPLOADS_PER_THREAD - 1) + 1
    for file_id, size in uploaded.items():
        path = Path(store.get_file(file_id)["path"])
        assert path.stat().st_size == size and path.parent.name == file_id
    assert sorted(p.name for p in (store.root / "files").iterdir()) == sorted(uploaded)
    assert not any((store.root / "incoming").iterdir())

    created = sorted(j for r in results for j in r["jobs"])
    assert sorted(j["id"] for j in sdk_jobs["data"]) == created
    assert len(created) == THREADS * JOBS_PER_THREAD
    for job_id in created:
        job = store.get_job(job_id)
        assert job["events"][0]["data"]["status"] == "QUEUED"
        assert job["status"] in ("QUEUED", "VALIDATING", "VALIDATED")

    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute(
            "SELECT COUNT(*) FROM events WHERE job_id NOT IN (SELECT id FROM jobs)"
        ).fetchone()[0]
        assert orphans == 0


def test_recover_removes_what_a_killed_server_left_unrecorded(tmp_path):
    store = Store(tmp_path / "store")
    kept = store.add_file("kept.jsonl", b'{"a": 1}\n', "fine-tune")
    gone = store.add_file("gone.jsonl", b'{"a": 2}\n', "fine-tune")
    store.delete_file(gone["id"])
    Path(gone["path"]).parent.mkdir(parents=True)  # a delete killed before its rmtree
    (store.root / "incoming" / "half-copied").write_bytes(b"half")
    (store.root / "files" / "moved-not-recorded").mkdir()
    (store.root / "files" / "moved-not-recorded" / "x.jsonl").write_bytes(b"{}\n")
    weights = store.model_dir("kept-job")
    weights.mkdir()
    store.add_model("ft:classifier:m:0:20260101:kept", "kept-job", "m", [], weights)
    store.model_dir("killed-job").mkdir()

    store.recover()

    assert sorted(p.name for p in (store.root / "files").iterdir()) == [kept["id"]]
    assert Path(kept["path"]).read_bytes() == b'{"a": 1}\n'
    assert not any((store.root / "incoming").iterdir())
    assert sorted(p.name for p in (store.root / "models").iterdir()) == ["kept-job"]


@pytest.mark.parametrize("content", [b"", b"one line no newline", b"a\nb\n", b"a\n\nb"])
def test_add_file_counts_lines_and_bytes_from_a_stream(tmp_path, content):
    import io

    store = Store(tmp_path / "store")
    record = store.add_file("x.jsonl", io.BytesIO(content), "fine-tune")
    expected_lines = content.count(b"\n") + (1 if content and not content.endswith(b"\n") else 0)
    assert (record["bytes"], record["num_lines"]) == (len(content), expected_lines)
    assert Path(record["path"]).read_bytes() == content

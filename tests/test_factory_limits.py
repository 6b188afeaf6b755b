"""Request limits (factory/limits.py): beyond one, a 413/422/503 that names the limit and the
value, before any work is done or anything written."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from mistralai.client import Mistral
from mistralai.client import errors as sdk_errors

from moderation_helpers.factory.api.app import create_app
from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.process import start_factory, stop_factory
from moderation_helpers.factory.serving import model_cache
from moderation_helpers.factory.store.db import Store

MODEL_ID = "ft:classifier:test:00000000:20260101:abcdef12"
LINE = (json.dumps({"text": "you are great", "labels": {"moderation": ["safe"]}}) + "\n").encode()


class Runtime:
    def __init__(self, gate: threading.Event | None = None):
        self.calls = 0
        self.gate = gate

    def predict(self, texts):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(10)
        return [{"moderation": {"safe": 0.5}} for _ in texts]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A TestClient over an app with small limits and one model served by a counting runtime."""
    runtime = Runtime()
    monkeypatch.setattr(model_cache, "load_runtime", lambda *args, **kwargs: runtime)
    store = Store(tmp_path / "store")
    targets = [{"name": "moderation", "labels": ["safe"]}]
    store.add_model(MODEL_ID, "job", "ministral-3b-latest", targets, tmp_path / "weights")
    config = ServingConfig(max_inputs=4, max_text_chars=50, max_upload_bytes=1000)
    with TestClient(create_app(store, run_scheduler=False, config=config)) as client:
        yield client, store, runtime


def stored_bytes(store: Store) -> list[str]:
    """Everything under the store's upload folders."""
    return [str(p) for sub in ("files", "incoming") for p in (store.root / sub).rglob("*")]


def test_too_many_inputs_is_422_naming_the_limit_before_any_work(served):
    client, _, runtime = served
    response = client.post("/v1/classifications", json={"model": MODEL_ID, "input": ["a"] * 5})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input"]
    assert "5 inputs" in detail["msg"] and "max_inputs=4" in detail["msg"]
    assert "MODERATION_FACTORY_MAX_INPUTS" in detail["msg"]
    assert runtime.calls == 0
    ok = client.post("/v1/classifications", json={"model": MODEL_ID, "input": ["a"] * 4})
    assert ok.status_code == 200 and runtime.calls == 1


def test_too_long_text_is_422_naming_the_limit_the_value_and_the_input(served):
    client, _, runtime = served
    texts = ["short", "x" * 51, "fine"]
    response = client.post("/v1/classifications", json={"model": MODEL_ID, "input": texts})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "input", 1]
    assert "51 characters" in detail["msg"] and "max_text_chars=50" in detail["msg"]
    assert "x" * 51 not in response.text  # the text is not echoed back
    assert runtime.calls == 0


def test_limits_reach_the_sdk_as_errors_it_parses(served):
    client, _, _ = served
    sdk = Mistral(api_key="unused", server_url="http://testserver", client=client)
    with pytest.raises(sdk_errors.HTTPValidationError) as refused:
        sdk.classifiers.classify(model=MODEL_ID, inputs=["a"] * 5)
    assert "max_inputs=4" in refused.value.data.detail[0].msg


def test_too_large_upload_is_413_by_content_length_and_nothing_is_written(served):
    client, store, _ = served
    content = LINE * 100  # 5,100 bytes
    response = client.post("/v1/files", files={"file": ("big.jsonl", content)})
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "max_upload_bytes=1000" in detail and "MODERATION_FACTORY_MAX_UPLOAD_BYTES" in detail
    sent = int(response.request.headers["content-length"])
    assert sent > 1000 and f"{sent} bytes" in detail  # the value: the body's length
    assert client.get("/v1/files").json()["total"] == 0
    assert stored_bytes(store) == []
    small = client.post("/v1/files", files={"file": ("small.jsonl", LINE)})
    assert small.status_code == 200 and small.json()["num_lines"] == 1


def test_too_large_chunked_upload_is_counted_as_it_streams_and_nothing_is_written(served):
    client, store, _ = served
    boundary = "xyzzy"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():  # a generator: sent chunked, without Content-Length
        yield head
        for _ in range(100):
            yield LINE
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/files",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert "more than 1000 bytes received" in response.json()["detail"]
    assert client.get("/v1/files").json()["total"] == 0
    assert stored_bytes(store) == []


def test_a_full_queue_is_503_with_retry_after(tmp_path, monkeypatch):
    gate = threading.Event()
    runtime = Runtime(gate)
    monkeypatch.setattr(model_cache, "load_runtime", lambda *args, **kwargs: runtime)
    store = Store(tmp_path / "store")
    store.add_model(MODEL_ID, "job", "m", [{"name": "moderation", "labels": ["safe"]}], tmp_path)
    app = create_app(store, run_scheduler=False, config=ServingConfig(max_queued_requests=2))
    with TestClient(app) as client:
        batcher = app.state.models.batcher(MODEL_ID, str(tmp_path))
        held = [batcher.submit(["a"]), batcher.submit(["b"])]  # the queue is full
        response = client.post("/v1/classifications", json={"model": MODEL_ID, "input": "c"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "max_queued_requests=2" in response.json()["detail"]
        gate.set()
        for future in held:
            future.result(10)
        again = client.post("/v1/classifications", json={"model": MODEL_ID, "input": "c"})
        assert again.status_code == 200


def test_limits_come_from_the_environment_and_serve_options(tmp_path, monkeypatch):
    env = {"MODERATION_FACTORY_MAX_INPUTS": "7", "MODERATION_FACTORY_BATCH_WINDOW_MS": "2.5"}
    config = ServingConfig.from_env(env, max_text_chars=99, max_upload_bytes=None)
    assert (config.max_inputs, config.batch_window_ms, config.max_text_chars) == (7, 2.5, 99)
    assert config.max_upload_bytes == ServingConfig().max_upload_bytes
    with pytest.raises(ValueError, match="MODERATION_FACTORY_MAX_INPUTS='many'"):
        ServingConfig.from_env({"MODERATION_FACTORY_MAX_INPUTS": "many"})
    with pytest.raises(ValueError, match="max_inputs must be positive"):
        ServingConfig.from_env({}, max_inputs=0)


def test_a_real_server_refuses_a_large_upload_from_its_content_length(tmp_path, monkeypatch):
    """Over a socket, the 413 comes back while the body is still being sent."""
    monkeypatch.setenv("MODERATION_FACTORY_MAX_UPLOAD_BYTES", "100000")
    handle = start_factory(tmp_path / "store", port=0)
    try:
        content = LINE * 200_000  # 5 MB
        response = httpx.post(
            handle.url + "/v1/files", files={"file": ("big.jsonl", content)}, timeout=30
        )
        assert response.status_code == 413
        assert "max_upload_bytes=100000" in response.json()["detail"]
        sdk = Mistral(api_key="unused", server_url=handle.url)
        assert sdk.files.list().total == 0
    finally:
        stop_factory(handle)
    assert stored_bytes(Store(handle.store)) == []

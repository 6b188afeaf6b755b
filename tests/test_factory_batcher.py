"""Dynamic batching (factory/batcher.py): concurrent requests share model calls, each gets its
own results in its own order, a bad request fails alone, a full queue refuses; and the same
through the HTTP route, with a stand-in runtime (counts, not seconds) and with the real model."""

from __future__ import annotations

import asyncio
import shutil
import threading

import httpx
import pytest

from moderation_helpers.classifier.checkpoint import load_model
from moderation_helpers.factory.api.app import create_app
from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.serving import model_cache
from moderation_helpers.factory.serving.batcher import Batcher, BatchSettings, QueueFull
from moderation_helpers.factory.store.db import Store

MODEL_ID = "ft:classifier:test:00000000:20260101:abcdef12"


class FakeRuntime:
    """Scores that depend on the text alone; records every call; 'boom' makes a call raise;
    ``gate`` holds the first call until released, so that the queue fills meanwhile."""

    def __init__(self, gate: threading.Event | None = None):
        self.calls: list[list[str]] = []
        self.gate = gate
        self.entered = threading.Event()

    def predict(self, texts):
        self.calls.append(list(texts))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if "boom" in texts:
            raise ValueError("cannot score 'boom'")
        return [{"moderation": {"toxic": len(t) / 100, "safe": 1 - len(t) / 100}} for t in texts]


def expected(texts):
    return FakeRuntime().predict(texts)


def requests_of(n: int, size: int = 3) -> list[list[str]]:
    return [[f"request {i} text {j}" + "!" * j for j in range(size)] for i in range(n)]


def test_concurrent_requests_share_model_calls_and_keep_their_own_results():
    gate = threading.Event()
    runtime = FakeRuntime(gate)
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1, max_batch_tokens=10_000))
    first = batcher.submit(["warm-up"])
    assert runtime.entered.wait(10)  # the worker is busy: the next requests queue up
    batch = requests_of(8)
    futures = [batcher.submit(texts) for texts in batch]
    gate.set()
    assert first.result(10) == expected(["warm-up"])
    for texts, future in zip(batch, futures, strict=True):
        assert future.result(10) == expected(texts)
    # The 8 queued requests went through in one model call, in their order.
    assert len(runtime.calls) == 2
    assert runtime.calls[1] == [t for texts in batch for t in texts]
    assert batcher.stats.batches == 2 and batcher.stats.requests == 9
    batcher.close(wait=True)


def test_a_bad_request_fails_alone_and_its_batch_mates_get_their_scores():
    gate = threading.Event()
    runtime = FakeRuntime(gate)
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1))
    batcher.submit(["warm-up"])
    assert runtime.entered.wait(10)
    good_before = batcher.submit(["fine", "also fine"])
    bad = batcher.submit(["ok", "boom"])
    good_after = batcher.submit(["last one"])
    gate.set()
    assert good_before.result(10) == expected(["fine", "also fine"])
    assert good_after.result(10) == expected(["last one"])
    with pytest.raises(ValueError, match="boom"):
        bad.result(10)
    assert batcher.stats.failed_batches == 1 and batcher.stats.reruns == 3
    assert batcher.unfinished == 0
    batcher.close(wait=True)


def test_a_request_over_the_token_budget_is_split_and_reassembled_in_order():
    runtime = FakeRuntime()
    # Each 12-character text is estimated at 5 tokens (chars // 4 + 2): 4 per 20-token batch.
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1, max_batch_tokens=20))
    texts = [f"text {i:03d} ..." for i in range(10)]
    assert batcher.predict(texts, timeout=10) == expected(texts)
    assert [len(call) for call in runtime.calls] == [4, 4, 2]
    batcher.close(wait=True)


def test_token_lengths_of_the_runtime_set_the_budget():
    runtime = FakeRuntime()
    runtime.token_lengths = lambda texts: [10] * len(texts)
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1, max_batch_tokens=25))
    texts = [f"t{i}" for i in range(5)]
    assert batcher.predict(texts, timeout=10) == expected(texts)
    assert [len(call) for call in runtime.calls] == [2, 2, 1]
    batcher.close(wait=True)


def test_a_full_queue_refuses_and_counts_requests_out_when_answered():
    gate = threading.Event()
    runtime = FakeRuntime(gate)
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1, max_queued_requests=2))
    futures = [batcher.submit(["a"]), batcher.submit(["b"])]
    with pytest.raises(QueueFull) as refused:
        batcher.submit(["c"])
    assert (refused.value.queued, refused.value.limit) == (2, 2)
    gate.set()
    for future in futures:
        future.result(10)
    assert batcher.unfinished == 0
    assert batcher.predict(["c"], timeout=10) == expected(["c"])
    batcher.close(wait=True)


def test_a_model_that_fails_to_load_fails_its_requests_and_is_replaced():
    def broken():
        raise FileNotFoundError("no weights here")

    batcher = Batcher(broken)
    with pytest.raises(FileNotFoundError):
        batcher.predict(["x"], timeout=10)
    assert not batcher.usable


def test_evicted_model_answers_what_it_holds_then_stops(monkeypatch):
    gate = threading.Event()
    runtime = FakeRuntime(gate)
    monkeypatch.setattr(model_cache, "load_runtime", lambda *args, **kwargs: runtime)
    cache = model_cache.ModelCache(size=1)
    batcher = cache.batcher("m1", "unused")
    pending = batcher.submit(["held"])
    cache.batcher("m2", "unused")  # evicts m1
    gate.set()
    assert pending.result(10) == expected(["held"])
    batcher._thread.join(10)
    assert not batcher._thread.is_alive()
    assert cache.batcher("m1", "unused") is not batcher
    cache.close()


# -- through the HTTP route ------------------------------------------------------------------
def app_with_model(tmp_path, monkeypatch, runtime, **config):
    """The factory app (no scheduler) holding one registered model that ``runtime`` serves."""
    monkeypatch.setattr(model_cache, "load_runtime", lambda *args, **kwargs: runtime)
    store = Store(tmp_path / "store")
    targets = [{"name": "moderation", "labels": ["safe", "toxic"]}]
    store.add_model(MODEL_ID, "job", "ministral-3b-latest", targets, tmp_path / "weights")
    return create_app(store, run_scheduler=False, config=ServingConfig(**config))


async def classify_concurrently(app, batches: list[list[str]]):
    """Send every batch at once; returns the responses and the model's batcher counters."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

            async def one(texts):
                return await client.post(
                    "/v1/classifications", json={"model": MODEL_ID, "input": texts}
                )

            responses = await asyncio.gather(*(one(texts) for texts in batches))
            return responses, app.state.models.batcher(MODEL_ID, "unused").stats


def scores_of(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [{t: r[t]["scores"] for t in r} for r in response.json()["results"]]


def test_concurrent_http_requests_are_batched_together(tmp_path, monkeypatch):
    runtime = FakeRuntime()
    app = app_with_model(tmp_path, monkeypatch, runtime, batch_window_ms=50)
    batches = requests_of(8, size=4)
    responses, stats = asyncio.run(classify_concurrently(app, batches))
    for texts, response in zip(batches, responses, strict=True):
        assert scores_of(response) == expected(texts)
    assert stats.requests == 8
    # Unbatched, 8 requests are 8 model calls.
    assert len(runtime.calls) == stats.batches < 8
    assert stats.largest_batch_texts >= 8


def test_a_bad_http_request_fails_alone(tmp_path, monkeypatch):
    runtime = FakeRuntime()
    app = app_with_model(tmp_path, monkeypatch, runtime, batch_window_ms=50)
    batches = requests_of(3) + [["boom", "fine"]] + requests_of(2)
    responses, _ = asyncio.run(classify_concurrently(app, batches))
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200]
    for texts, response in zip(batches, responses, strict=True):
        if "boom" not in texts:
            assert scores_of(response) == expected(texts)


@pytest.fixture(scope="module")
def real_model_dir(trained_job, factory, tmp_path_factory):
    """A copy of the session's trained model (so this module can load it on its own)."""
    _, job = trained_job
    source = Store(factory.store).get_model(job.fine_tuned_model)["path"]
    target = tmp_path_factory.mktemp("real-model") / "weights"
    shutil.copytree(source, target)
    return target


@pytest.mark.slow
def test_batched_scores_of_the_real_model_match_unbatched(tmp_path, monkeypatch, real_model_dir):
    runtime = load_model(real_model_dir)
    alone_calls = 0

    class Counting:
        def predict(self, texts):
            nonlocal alone_calls
            alone_calls += 1
            return runtime.predict(texts)

    app = app_with_model(tmp_path, monkeypatch, Counting(), batch_window_ms=50)
    batches = [
        ["You are an idiot.", "Thanks, that was helpful!"],
        ["What a stupid, stupid idea, typical of people like you."],
        ["I disagree with the council's decision on the new road.", "go away", "ok"],
        ["This is the best comment section on the internet."] * 2,
    ]
    responses, _ = asyncio.run(classify_concurrently(app, batches))
    assert alone_calls < len(batches)
    for texts, response in zip(batches, responses, strict=True):
        alone = runtime.predict(texts)
        for got, want in zip(scores_of(response), alone, strict=True):
            for target in want:
                # bf16 matmuls pad differently in a shared batch: equal to bf16 precision.
                assert got[target] == pytest.approx(want[target], abs=2e-2)


def test_waiting_requests_hold_no_thread(tmp_path, monkeypatch):
    """Requests waiting for their batch leave the thread pool free for other routes."""
    gate = threading.Event()
    runtime = FakeRuntime(gate)
    app = app_with_model(tmp_path, monkeypatch, runtime, batch_window_ms=1)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                waiting = [
                    asyncio.create_task(
                        client.post("/v1/classifications", json={"model": MODEL_ID, "input": "x"})
                    )
                    for _ in range(50)
                ]
                while not runtime.entered.is_set():
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)  # let the other 49 reach their await
                listed = await client.get("/v1/models")  # a sync route: needs a pool thread
                calls_while_listing = len(runtime.calls)
                gate.set()
                done = await asyncio.gather(*waiting)
                return listed, calls_while_listing, done

    listed, calls_while_listing, done = asyncio.run(scenario())
    assert listed.status_code == 200
    assert MODEL_ID in [m["id"] for m in listed.json()["data"]]
    # Answered while the model still held the first batch: no thread was waiting on it.
    assert calls_while_listing == 1
    assert [r.status_code for r in done] == [200] * 50


# -- tokenize once, and the graph header ---------------------------------------------------
class EncodingRuntime(FakeRuntime):
    """A runtime that encodes (as the Moderator does): counts its tokenizer calls and records
    what it is handed to score."""

    variant = "int8"

    def __init__(self):
        super().__init__()
        self.encoded: list[list[str]] = []
        self.scored: list[list] = []

    def encode(self, texts):
        self.encoded.append(list(texts))
        return [[101, *range(len(t)), 102] for t in texts]  # one "token" per character

    def predict_encoded(self, ids):
        self.scored.append(list(ids))
        return [{"moderation": {"toxic": (len(i) - 2) / 100, "safe": 1.0}} for i in ids]

    def predict(self, texts):
        raise AssertionError("texts must not be scored again: the batcher hands the encodings")


def test_the_batcher_tokenizes_each_request_once_and_hands_the_encodings():
    runtime = EncodingRuntime()
    batcher = Batcher(lambda: runtime, BatchSettings(window_ms=1, max_batch_tokens=30))
    texts = ["abc", "hello there", "x" * 20, "ok"]
    rows = batcher.predict(texts, timeout=10)
    assert [r["moderation"]["toxic"] for r in rows] == [len(t) / 100 for t in texts]
    assert runtime.encoded == [texts]  # one tokenizer call for the request, none to score
    assert all(isinstance(ids, list) for batch in runtime.scored for ids in batch)
    # The token budget (30) is counted on the encodings, 5 + 13 then 22 + 4 tokens (estimated
    # from the characters, the four texts would fit in one batch).
    assert [len(batch) for batch in runtime.scored] == [2, 2]
    batcher.close(wait=True)


def test_responses_name_the_graph_that_answered(tmp_path, monkeypatch):
    app = app_with_model(tmp_path, monkeypatch, EncodingRuntime(), batch_window_ms=1)
    responses, _ = asyncio.run(classify_concurrently(app, [["a text"]]))
    assert responses[0].headers["X-Moderation-Graph"] == "int8"

    async def moderate():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"model": MODEL_ID, "input": ["a text"]}
                return await client.post("/v1/moderations", json=body)

    response = asyncio.run(moderate())
    assert response.status_code == 200, response.text
    assert response.headers["X-Moderation-Graph"] == "int8"
    assert response.headers["X-Moderation-Thresholds"] == "default-0.5"
    # A runtime without a variant (torch) is fp32.
    app = app_with_model(tmp_path / "torch", monkeypatch, FakeRuntime(), batch_window_ms=1)
    responses, _ = asyncio.run(classify_concurrently(app, [["a text"]]))
    assert responses[0].headers["X-Moderation-Graph"] == "fp32"


def test_the_thresholds_route_names_the_graph_once_the_model_has_scored(tmp_path, monkeypatch):
    """04 records this graph in thresholds.json: the SDK hides X-Moderation-Graph."""
    app = app_with_model(tmp_path, monkeypatch, EncodingRuntime(), batch_window_ms=1)
    url = f"/v1/fine_tuning/models/{MODEL_ID}/thresholds"

    async def session():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                before = (await client.get(url)).json()["graph"]
                body = {"model": MODEL_ID, "input": ["a text"]}
                assert (await client.post("/v1/classifications", json=body)).status_code == 200
                after = (await client.get(url)).json()["graph"]
                tuned = {"thresholds": {"moderation": {"toxic": 0.7}}}
                put = (await client.put(url, json=tuned)).json()["graph"]
                return before, after, put

    assert asyncio.run(session()) == (None, "int8", "int8")


def test_the_graph_setting_reaches_the_runtime_loader(tmp_path, monkeypatch):
    seen = []

    def load(path, graph, export=None):
        seen.append(graph)
        return FakeRuntime()

    monkeypatch.setattr(model_cache, "load_runtime", load)
    cache = model_cache.ModelCache(config=ServingConfig.from_env({}, graph="fp32"))
    cache.get("m", "unused")
    assert seen == ["fp32"]
    assert ServingConfig.from_env({"MODERATION_FACTORY_GRAPH": "int8"}).graph == "int8"
    with pytest.raises(ValueError, match="graph"):
        ServingConfig.from_env({"MODERATION_FACTORY_GRAPH": "fp16"})
    cache.close()

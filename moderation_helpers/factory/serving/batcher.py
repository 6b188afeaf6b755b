"""Dynamic batching of concurrent classification requests, one inference thread per model.

The way Text Embeddings Inference and Triton's dynamic batcher work: requests join a queue; one
worker thread per loaded model takes them off it in batches, runs the model once per batch and
hands each request its own results through a future. A batch closes when it holds
``max_batch_tokens`` tokens or when its oldest request has waited ``window_ms`` (a request that
queued while the previous batch ran does not wait again). A request larger than the budget is
split across batches, so one big request cannot hold small ones back for long.

Why one worker: on a 2-core CPU, eight request threads each running the encoder fought over the
cores (issue 11: median 948 ms, p99 4.2 s at 8 clients). Here only the worker threads run
inference, and the batchers of one
:class:`~moderation_helpers.factory.serving.model_cache.ModelCache` share a lock, so at most one
batch runs at a time whatever the number of models.

Requests keep their own order and errors: when a batch raises, its requests are rerun one by one,
so only the bad one fails. The runtime needs ``predict(texts) -> [{target: {label: score}}]``.
A runtime that offers ``encode(texts) -> [token ids]`` and ``predict_encoded(ids)`` (the
:class:`~moderation_helpers.model.moderator.Moderator`) is handed the tokens it encoded when the
request was counted: each text is tokenized once. Else ``token_lengths(texts) -> array`` counts
them, or without it the length is estimated from the characters (about 4 per token for English
with MiniLM's WordPiece), which is enough to budget.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("moderation_helpers.factory")

Scores = dict[str, dict[str, float]]  # {target: {label: score}} for one input
CHARS_PER_TOKEN = 4  # estimate where the runtime cannot count tokens
MAX_TOKENS_PER_TEXT = 512  # the encoder truncates there


@dataclass(frozen=True)
class BatchSettings:
    """How a batcher gathers requests (see the module docstring)."""

    window_ms: float = 4.0
    max_batch_tokens: int = 8192
    max_queued_requests: int = 64


class QueueFull(Exception):
    """The batcher already holds ``max_queued_requests`` unfinished requests."""

    def __init__(self, queued: int, limit: int):
        super().__init__(f"{queued} requests queued, max_queued_requests is {limit}")
        self.queued = queued
        self.limit = limit


class BatcherClosed(RuntimeError):
    """The model was evicted or deleted; ask the cache for its batcher again."""


@dataclass
class BatchStats:
    """Counters, for tests and logs: ``batches`` is the number of model calls that scored a
    batch, ``reruns`` the requests rerun alone after their batch raised."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    failed_batches: int = 0
    reruns: int = 0
    largest_batch_texts: int = 0


@dataclass(eq=False)
class _Request:
    texts: list[str]
    future: concurrent.futures.Future
    arrived: float
    lengths: np.ndarray | None = None
    inputs: list[Any] | None = None  # what the runtime scores: token ids, or the texts
    cursor: int = 0  # texts already taken into a batch
    done: int = 0  # texts scored
    retired: bool = False  # counted out of the queue limit
    results: list[Scores | None] = field(default_factory=list)


@dataclass
class _Part:
    request: _Request
    start: int
    stop: int


class Batcher:
    """One model's queue and inference thread. ``load`` builds the runtime in that thread, so
    that a request never waits on the event loop for a model to load."""

    def __init__(
        self,
        load: Callable[[], Any],
        settings: BatchSettings | None = None,
        *,
        name: str = "model",
        inference_lock: threading.Lock | None = None,
    ):
        self.settings = settings or BatchSettings()
        self.name = name
        self.stats = BatchStats()
        self._load = load
        self._lock = inference_lock or threading.Lock()
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._unfinished = 0
        self._closed = False
        self._loaded = threading.Event()
        self._runtime: Any = None
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"batcher {name}", daemon=True)
        self._thread.start()

    # -- the request side ------------------------------------------------------------------
    def submit(self, texts: Sequence[str]) -> concurrent.futures.Future:
        """Queue ``texts``; the future resolves to their scores, in order.

        Raises :class:`QueueFull` beyond ``max_queued_requests``, :class:`BatcherClosed` after
        :meth:`close`, or the load error if the model could not be loaded.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        texts = list(texts)
        if not texts:
            future.set_result([])
            return future
        with self._cond:
            if self._load_error is not None:
                raise self._load_error
            if self._closed:
                raise BatcherClosed(f"batcher for {self.name} is closed")
            if self._unfinished >= self.settings.max_queued_requests:
                raise QueueFull(self._unfinished, self.settings.max_queued_requests)
            self._unfinished += 1
            self.stats.requests += 1
            self.stats.texts += len(texts)
            request = _Request(texts, future, time.monotonic(), results=[None] * len(texts))
            self._queue.append(request)
            self._cond.notify()
        return future

    def predict(self, texts: Sequence[str], timeout: float | None = None) -> list[Scores]:
        """Blocking :meth:`submit` (for sync callers running in a thread pool)."""
        return self.submit(texts).result(timeout)

    def runtime(self, timeout: float | None = None) -> Any:
        """The loaded runtime, waiting for the load; raises the load error."""
        if not self._loaded.wait(timeout):
            raise TimeoutError(f"model {self.name} not loaded after {timeout} s")
        if self._load_error is not None:
            raise self._load_error
        return self._runtime

    @property
    def usable(self) -> bool:
        """False once closed or failed to load (the cache then makes a new one)."""
        return not self._closed and self._load_error is None

    @property
    def unfinished(self) -> int:
        """Requests submitted and not answered yet."""
        return self._unfinished

    def close(self, wait: bool = False) -> None:
        """Take no new requests; the worker answers those queued, then exits."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if wait:
            self._thread.join()

    # -- the worker --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._runtime = self._load()
        except BaseException as exc:  # noqa: BLE001 (every waiting request must hear of it)
            log.exception("loading model %s", self.name)
            with self._cond:
                self._load_error = exc
                queued, self._queue = list(self._queue), deque()
            for request in queued:
                _fail(request, exc)
                self._retire(request)
            return
        finally:
            self._loaded.set()
        while True:
            parts = self._next_batch()
            if parts is None:
                return
            if parts:  # empty when every queued request was cancelled
                self._execute(parts)

    def _measure(self, request: _Request) -> None:
        """Set the request's ``inputs`` (its token ids where the runtime encodes) and lengths;
        fail the request alone if its texts cannot be tokenized."""
        runtime = self._runtime
        try:
            if hasattr(runtime, "encode") and hasattr(runtime, "predict_encoded"):
                request.inputs = runtime.encode(request.texts)
                lengths = np.fromiter(map(len, request.inputs), dtype=np.int64)
                request.lengths = np.clip(lengths, 1, MAX_TOKENS_PER_TEXT)
            else:
                count = getattr(runtime, "token_lengths", None)
                request.inputs = request.texts
                request.lengths = _token_lengths(count, request.texts)
        except Exception as exc:  # noqa: BLE001
            request.inputs, request.lengths = request.texts, np.ones(len(request.texts), np.int64)
            _fail(request, exc)  # taken off the queue, and retired, by _take

    def _next_batch(self) -> list[_Part] | None:
        """Wait for requests, let the window gather more, and take up to the token budget."""
        window = self.settings.window_ms / 1000.0
        budget = self.settings.max_batch_tokens
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0].arrived + window
        while True:
            # Count tokens outside the queue's lock: submit() runs on the event loop.
            with self._cond:
                unmeasured = [r for r in self._queue if r.lengths is None]
            for request in unmeasured:
                self._measure(request)
            with self._cond:
                if any(r.lengths is None for r in self._queue):
                    continue  # arrived meanwhile
                queued_tokens = sum(int(r.lengths[r.cursor :].sum()) for r in self._queue)
                remaining = deadline - time.monotonic()
                if queued_tokens >= budget or remaining <= 0 or self._closed:
                    return self._take(budget)
                self._cond.wait(remaining)

    def _take(self, budget: int) -> list[_Part]:
        parts: list[_Part] = []
        used = 0
        while self._queue and used < budget:
            request = self._queue[0]
            if request.future.done():  # cancelled by its caller, or failed in an earlier part
                self._queue.popleft()
                self._retire(request)
                continue
            lengths = request.lengths[request.cursor :]
            fits = int(np.searchsorted(np.cumsum(lengths), budget - used, side="right"))
            take = max(fits, 1) if not parts else fits
            if take == 0:
                break
            stop = request.cursor + min(take, len(lengths))
            parts.append(_Part(request, request.cursor, stop))
            used += int(lengths[: stop - request.cursor].sum())
            request.cursor = stop
            if stop == len(request.texts):
                self._queue.popleft()
            else:
                break  # the rest of a split request leads the next batch
        return parts

    def _execute(self, parts: list[_Part]) -> None:
        inputs = [x for p in parts for x in p.request.inputs[p.start : p.stop]]
        self.stats.largest_batch_texts = max(self.stats.largest_batch_texts, len(inputs))
        try:
            scores = self._predict(inputs)
        except Exception as exc:  # noqa: BLE001
            self.stats.failed_batches += 1
            if len(parts) == 1:
                self._settle(parts[0], exc)
                return
            # Rerun each request's part alone, so that only the bad one fails.
            log.warning("batch of %d requests failed (%s); rerunning one by one", len(parts), exc)
            for part in parts:
                self.stats.reruns += 1
                try:
                    self._settle(part, self._predict(part.request.inputs[part.start : part.stop]))
                except Exception as part_exc:  # noqa: BLE001
                    self._settle(part, part_exc)
            return
        offset = 0
        for part in parts:
            size = part.stop - part.start
            self._settle(part, scores[offset : offset + size])
            offset += size

    def _predict(self, inputs: list[Any]) -> list[Scores]:
        runtime = self._runtime
        score = getattr(runtime, "predict_encoded", None) if hasattr(runtime, "encode") else None
        with self._lock:
            scores = (score or runtime.predict)(inputs)
        if len(scores) != len(inputs):
            raise RuntimeError(f"runtime returned {len(scores)} results for {len(inputs)} texts")
        self.stats.batches += 1
        return scores

    def _settle(self, part: _Part, outcome: list[Scores] | BaseException) -> None:
        request = part.request
        if request.future.done():
            self._retire(request)
            return
        if isinstance(outcome, BaseException):
            _fail(request, outcome)
            self._retire(request)
            return
        request.results[part.start : part.stop] = outcome
        request.done += part.stop - part.start
        if request.done == len(request.texts):
            _resolve(request.future, request.results)
            self._retire(request)

    def _retire(self, request: _Request) -> None:
        """Count a request out of the queue limit, once."""
        with self._cond:
            if not request.retired:
                request.retired = True
                self._unfinished -= 1


def _token_lengths(count: Callable | None, texts: list[str]) -> np.ndarray:
    if count is not None:
        lengths = np.asarray(count(texts), dtype=np.int64)
    else:
        chars = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        lengths = chars // CHARS_PER_TOKEN + 2  # + [CLS] and [SEP]
    return np.clip(lengths, 1, MAX_TOKENS_PER_TEXT)


def _resolve(future: concurrent.futures.Future, value: Any) -> None:
    try:
        future.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled by its caller meanwhile


def _fail(request: _Request, exc: BaseException) -> None:
    try:
        request.future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass

"""Fine-tuned models loaded for classification, each behind its own batcher, kept in memory
(least recently used evicted: its batcher answers what it holds, then stops).

Each model runs in the fastest runtime that the server's ``graph`` setting allows
(:mod:`.runtime`), chosen by the calibration cached in the model's ``runtime.json``."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.serving.batcher import Batcher
from moderation_helpers.factory.serving.runtime import graph_of, load_runtime
from moderation_helpers.factory.store.db import Store


class ModelCache:
    """Loaded models, one :class:`Batcher` (queue + inference thread) each, LRU-evicted.

    The batchers share one inference lock: on a small CPU two models scoring at once would only
    fight over the same cores.
    """

    def __init__(
        self,
        size: int = 2,
        config: ServingConfig | None = None,
        store: Store | None = None,
    ):
        self.size = size
        self.store = store  # to export on demand a model trained before exports were made
        self.config = config or ServingConfig()
        self._batchers: OrderedDict[str, Batcher] = OrderedDict()
        self._lock = threading.Lock()
        self._inference_lock = threading.Lock()

    def batcher(self, model_id: str, path: str | Path) -> Batcher:
        """The model's batcher, created on first use (the model loads in its thread)."""
        with self._lock:
            batcher = self._batchers.get(model_id)
            if batcher is not None and batcher.usable:
                self._batchers.move_to_end(model_id)
                return batcher
            export = None
            if self.store is not None:
                from moderation_helpers.factory.exports import exported_folder

                export = partial(exported_folder, self.store, model_id)
            batcher = Batcher(
                partial(load_runtime, path, self.config.graph, export),
                self.config.batching,
                name=model_id,
                inference_lock=self._inference_lock,
            )
            self._batchers[model_id] = batcher
            self._batchers.move_to_end(model_id)
            while len(self._batchers) > self.size:
                _, old = self._batchers.popitem(last=False)
                old.close()
            return batcher

    def get(self, model_id: str, path: str | Path) -> Any:
        """The loaded runtime, loading it on first use (waits for the load)."""
        return self.batcher(model_id, path).runtime()

    def loaded_graph(self, model_id: str) -> str | None:
        """The graph (``fp32`` or ``int8``) that scores ``model_id`` now, or None while it is not
        loaded (never loads it: a route that only reports must not wait for a model)."""
        with self._lock:
            batcher = self._batchers.get(model_id)
        if batcher is None or not batcher.usable:
            return None
        try:
            return graph_of(batcher.runtime(timeout=0))
        except Exception:  # still loading (TimeoutError), or failed to: nothing to report
            return None

    def evict(self, model_id: str) -> None:
        """Forget a model (deleted): its batcher answers what it holds, then stops."""
        with self._lock:
            batcher = self._batchers.pop(model_id, None)
        if batcher is not None:
            batcher.close()

    def close(self) -> None:
        """Stop every batcher (server shutdown)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), OrderedDict()
        for batcher in batchers:
            batcher.close()

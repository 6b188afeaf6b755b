"""Fine-tuned models loaded for classification, kept in memory (least recently used evicted).

Each model is loaded in the fastest runtime that matches torch fp32's scores (factory/runtime.py),
chosen by a calibration cached in ``runtime_cache`` (the store's ``runtime.json``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from moderation_helpers.factory.runtime import load_runtime


class ModelCache:
    """Fine-tuned models loaded once and kept in memory, least recently used evicted first."""

    def __init__(self, size: int = 2, runtime_cache: str | Path | None = None):
        self.size = size
        self.runtime_cache = runtime_cache
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, path: str | Path) -> Any:
        """The loaded model (``predict(texts)``, ``token_lengths(texts)``), loaded on first use."""
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            model = load_runtime(path, self.runtime_cache)
            self._models[model_id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
            return model

    def evict(self, model_id: str) -> None:
        """Forget a model (deleted)."""
        with self._lock:
            self._models.pop(model_id, None)

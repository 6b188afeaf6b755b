"""The torch classifier the factory fine-tunes: base encoders, network, coherent scores, batches,
training loop, checkpoint, duration estimate.

The names below are the *trainer interface* the factory's worker loads (``$MODERATION_FACTORY_
TRAINER`` names another module with the same names, e.g. a test's stand-in). They load lazily:
the factory's API reads :mod:`.encoders` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "Target": "network",
    "clamp_seq_len": "network",
    "count_tokens": "network",
    "estimate_training_seconds": "estimate",
    "TrainingCancelled": "training",
    "TrainSettings": "training",
    "train": "training",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)

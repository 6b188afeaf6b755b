"""The serving settings of one factory server (request limits, batching, which graph serves),
from the defaults, ``MODERATION_FACTORY_<NAME>`` environment variables and ``serve`` options.
Kept free of heavy imports so that the command line stays quick; :mod:`.limits` enforces the
limits, :mod:`.serving.runtime` the graph."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from moderation_helpers.core.env import FACTORY_SETTING_PREFIX

if TYPE_CHECKING:
    from moderation_helpers.factory.serving.batcher import BatchSettings

GRAPHS = ("auto", "fp32", "int8")  # the choices of ``graph`` (serving/runtime.py applies them)
# fp32 by default: 04 tunes thresholds on the factory's scores and the exported folder serves
# fp32, and int8 moves single scores by up to ~0.2 while thresholds are absolute. With "auto"
# a speed race on the machine decided which scores the thresholds were tuned on.
DEFAULT_GRAPH = "fp32"


@dataclass(frozen=True)
class ServingConfig:
    """Request limits and batching settings of one factory server."""

    max_inputs: int = 1024
    max_text_chars: int = 20_000
    max_upload_bytes: int = 512 * 1024 * 1024  # the Mistral API's file limit
    max_body_bytes: int = 64 * 1024 * 1024
    max_queued_requests: int = 64
    batch_window_ms: float = 4.0
    max_batch_tokens: int = 8192
    # fp32: onnx or torch fp32 (equal within 1e-4); int8: pinned; auto: int8 where its measured
    # AUC cost is within 0.005 of fp32's and it is the fastest.
    graph: str = DEFAULT_GRAPH

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> ServingConfig:
        """Defaults, then ``MODERATION_FACTORY_<NAME>`` variables, then ``overrides`` not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw and f.type == "str":
                values[f.name] = raw
            elif raw:
                try:
                    values[f.name] = float(raw) if f.type == "float" else int(raw)
                except ValueError:
                    raise ValueError(f"{env_name(f.name)}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = replace(cls(), **values)
        if config.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {config.graph!r}")
        for f in fields(config):
            if f.type != "str" and getattr(config, f.name) <= 0:
                raise ValueError(f"{f.name} must be positive, got {getattr(config, f.name)}")
        return config

    @property
    def batching(self) -> BatchSettings:
        """The batcher's part of the settings."""
        from moderation_helpers.factory.serving.batcher import BatchSettings

        return BatchSettings(
            window_ms=self.batch_window_ms,
            max_batch_tokens=self.max_batch_tokens,
            max_queued_requests=self.max_queued_requests,
        )


def env_name(limit: str) -> str:
    """The environment variable that sets ``limit``."""
    return FACTORY_SETTING_PREFIX + limit.upper()

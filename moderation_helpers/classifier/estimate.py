"""How long a training job should take here: a short timed calibration of one step's shape.

The factory shows ``expected_duration_seconds`` when it validates a job; the step time is
measured once per base encoder, batch shape and precision (about 2 s for all-MiniLM-L6-v2),
cached in the process and in a file.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from moderation_helpers.classifier.encoders import DEFAULT_ENCODER, encoder_for
from moderation_helpers.classifier.network import (
    MAX_SEQ_LEN,
    Classifier,
    Target,
    autocast,
    clamp_seq_len,
    encoder_path,
    load_encoder,
    pick_device,
)
from moderation_helpers.classifier.training import loss
from moderation_helpers.core.files import atomic_write_text

# (batch size, tokens, precision, encoder name) -> seconds per step
_STEP_SECONDS_CACHE: dict[tuple[int, int, str, str], float] = {}


def _calibrate_step_seconds(
    batch_size: int, tokens: int, precision: str = "auto", encoder: str = DEFAULT_ENCODER
) -> float:
    """Mean seconds of a training step (forward, backward, update) around this batch shape.

    Real batches vary in width (length bucketing, dynamic padding) and each new width costs
    oneDNN a kernel set-up, so the steps timed here vary too, around 1.1x the mean text length
    (length bucketing keeps about 91% of padded tokens real).
    """
    torch.manual_seed(0)
    dev = pick_device(None)
    targets = [Target("t", ["a", "b"], "multi_class")]
    model = Classifier(load_encoder(encoder_path(encoder)), targets).to(dev)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    y = {"t": torch.zeros(batch_size, 2, device=dev)}
    widths = [tokens] + [
        max(8, min(MAX_SEQ_LEN, round(tokens * f))) for f in (1.1, 0.6, 1.6, 0.85, 1.35)
    ]
    times = []
    for width in widths:
        ids = torch.randint(1000, 20000, (batch_size, width), device=dev)
        t0 = time.perf_counter()
        with autocast(dev, precision):
            logits = model(ids, torch.ones_like(ids))
        step_loss = loss(logits, y, targets)
        optimizer.zero_grad()
        step_loss.backward()
        optimizer.step()
        step_loss.item()  # waits for the device
        times.append(time.perf_counter() - t0)
    return float(np.mean(times[1:]))  # the first step warms up, the rest vary like training


def estimate_training_seconds(
    training_steps: int,
    batch_size: int,
    mean_tokens_per_text: float,
    *,
    seq_len: int = MAX_SEQ_LEN,
    precision: str = "auto",
    cache_path: str | Path | None = None,
    encoder: str | None = None,
) -> float:
    """Seconds that ``training_steps`` steps of the base encoder ``encoder`` (a name
    :func:`.encoders.encoder_for` reads) should take on this machine.

    Based on a short timed calibration (about 2 s) of one training step at this batch shape,
    cached in this process (and in ``cache_path`` when given, so a restart need not re-measure).
    """
    tokens = int(min(max(8, math.ceil(mean_tokens_per_text)), clamp_seq_len(seq_len)))
    # Round to a multiple of 8 so that nearby shapes share one calibration.
    tokens = int(math.ceil(tokens / 8) * 8)
    key = (int(batch_size), tokens, precision, encoder_for(encoder).name)
    if key not in _STEP_SECONDS_CACHE and cache_path is not None:
        _STEP_SECONDS_CACHE.update(_read_cache(Path(cache_path)))
    if key not in _STEP_SECONDS_CACHE:
        _STEP_SECONDS_CACHE[key] = _calibrate_step_seconds(*key)
        if cache_path is not None:
            _write_cache(Path(cache_path))
    return float(training_steps) * _STEP_SECONDS_CACHE[key]


def _read_cache(path: Path) -> dict[tuple[int, int, str, str], float]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rows = raw.get("step_seconds", [])
        return dict(_cache_row(row) for row in rows)
    except (OSError, ValueError, TypeError):
        return {}


def _cache_row(row: list) -> tuple[tuple[int, int, str, str], float]:
    if len(row) == 4:  # written before there was a choice of encoder: the default's
        batch, tokens, precision, seconds = row
        encoder = DEFAULT_ENCODER
    else:
        batch, tokens, precision, encoder, seconds = row
    return (int(batch), int(tokens), str(precision), str(encoder)), float(seconds)


def _write_cache(path: Path) -> None:
    rows = [[b, t, p, e, s] for (b, t, p, e), s in sorted(_STEP_SECONDS_CACHE.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"step_seconds": rows}, indent=2))

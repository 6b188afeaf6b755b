"""The training loop: fine-tune the encoder and one head per target for a number of steps.

``multi_class`` targets learn with binary cross-entropy per label, ``single_class`` targets with
cross-entropy over their labels; target weights weight the loss.

Speed on a 2-core CPU (issue 6), from the profile: a step was 0.9 s of fp32 matmuls over rows
padded to 128 tokens. Texts are tokenized once; batches are length-bucketed and padded to their
own longest row; matmuls run in bfloat16 autocast where oneDNN does bf16 natively (master
weights, optimizer and heads stay float32); AdamW is fused. Torch keeps its default of one thread
per physical core: on a machine shared with other busy processes, ``OMP_NUM_THREADS=1`` avoids
threads waiting on each other.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from moderation_helpers.classifier.batches import (
    encode_labels,
    epoch_batches,
    pad,
    tokenize,
    with_label_scores,
)
from moderation_helpers.classifier.checkpoint import save
from moderation_helpers.classifier.coherence import implications
from moderation_helpers.classifier.encoders import DEFAULT_ENCODER, encoder_for
from moderation_helpers.classifier.network import (
    Classifier,
    Target,
    autocast,
    clamp_seq_len,
    load_encoder,
    load_tokenizer,
    pick_device,
)
from moderation_helpers.core.conversation import encoder_inputs, rendering_for


@dataclass
class TrainSettings:
    """The job's hyperparameters, as the API names them (plus local-only extras at the end).

    ``head_learning_rate``: the freshly initialised heads start from random weights, so they get
    a larger rate than the pretrained encoder (which gets the job's ``learning_rate``).
    ``precision``: ``"auto"`` computes in bfloat16 (autocast; weights and optimizer state stay
    float32) where the hardware does bf16 natively, else float32; or ``"bf16"`` / ``"fp32"``.
    ``encoder``: the base encoder to fine-tune, a name :func:`.encoders.encoder_for` reads (the
    job's ``model``; names it does not know get all-MiniLM-L6-v2).
    ``coherent_labels``: read which labels imply which off the training file and keep each
    parent's score at or above its children's (:mod:`.coherence`).
    ``layer_decay``: layer-wise learning-rate decay; the encoder's top layer gets
    ``learning_rate`` and each layer below it ``layer_decay`` times the one above (1.0: every
    layer the same rate, the default; 0.8 was measured and not kept, docs/benchmarks.md).
    ``pooling``: how the heads read a text (:mod:`moderation_helpers.core.pooling`; ``mean``,
    the default; ``mean_max`` was measured and not kept, docs/benchmarks.md).
    """

    training_steps: int = 100
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_fraction: float = 0.05
    seq_len: int = 128
    batch_size: int = 16
    seed: int = 0
    checkpoint_every: int | None = None
    head_learning_rate: float | None = 2e-3
    precision: str = "auto"
    encoder: str = DEFAULT_ENCODER
    coherent_labels: bool = True
    layer_decay: float = 1.0
    pooling: str = "mean"


@dataclass
class Checkpoint:
    """Metrics at one step: mean train loss since the previous checkpoint, validation loss."""

    step: int
    train_loss: float
    valid_loss: float | None


class TrainingCancelled(Exception):
    """Raised by :func:`train` when ``should_stop()`` returned True."""


@dataclass
class TrainResult:
    """What a training run did. ``seconds`` is the whole call; the parts are given apart."""

    trained_tokens: int
    seconds: float
    checkpoints: list[Checkpoint]
    train_seconds: float = 0.0
    valid_seconds: float = 0.0
    setup_seconds: float = 0.0


def loss(
    logits: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    targets: Sequence[Target],
) -> torch.Tensor:
    """The weighted mean of the targets' losses; rows without a value for a target (NaN or
    -100, see ``batches.encode_labels``) do not count for it."""
    total = logits[targets[0].name].new_zeros(())
    weight_sum = 0.0
    for t in targets:
        y = labels[t.name]
        if t.loss_function == "multi_class":
            keep = ~torch.isnan(y).any(dim=1)
            if not keep.any():
                continue
            part = F.binary_cross_entropy_with_logits(logits[t.name][keep], y[keep])
        else:
            if not (y != -100).any():
                continue
            part = F.cross_entropy(logits[t.name], y, ignore_index=-100)
        total = total + t.weight * part
        weight_sum += t.weight
    return total / weight_sum if weight_sum else total


@dataclass
class _Encoded:
    """A split tokenized once: token ids per text and the label tensors per target."""

    ids: list[list[int]]
    labels: dict[str, torch.Tensor]


@dataclass
class _Fit:
    """What every step needs: the network, its tokenizer, targets, device and precision."""

    model: Classifier
    tokenizer: Any
    targets: list[Target]
    device: torch.device
    precision: str

    def encode(self, examples: Sequence[dict], seq_len: int) -> _Encoded:
        texts = encoder_inputs(examples, self.tokenizer, seq_len)
        # the labels' own 0/1 decide the label hierarchy (``with_implications``); the loss
        # trains towards the examples' label scores where they give them
        labels = with_label_scores(examples, self.targets, encode_labels(examples, self.targets))
        return _Encoded(tokenize(self.tokenizer, texts, seq_len), labels)

    def batch_loss(self, data: _Encoded, idx: np.ndarray) -> tuple[torch.Tensor, int]:
        """The loss of rows ``idx`` and the real (unpadded) tokens they hold."""
        input_ids, attention = pad(self.tokenizer, [data.ids[i] for i in idx])
        with autocast(self.device, self.precision):
            logits = self.model(input_ids.to(self.device), attention.to(self.device))
        labels = {k: v[idx].to(self.device) for k, v in data.labels.items()}
        return loss(logits, labels, self.targets), int(attention.sum())

    @torch.inference_mode()
    def mean_loss(self, data: _Encoded, batch_size: int = 32) -> float:
        """The loss over a whole split (validation), in length-sorted batches."""
        was_training = self.model.training
        self.model.eval()
        order = np.argsort([len(x) for x in data.ids], kind="stable")
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            total += float(self.batch_loss(data, idx)[0]) * len(idx)
        self.model.train(was_training)
        return total / len(order)


def train(
    train_examples: Sequence[dict],
    valid_examples: Sequence[dict] | None,
    targets: Sequence[Target],
    settings: TrainSettings,
    out_dir: str | Path,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    device: str | None = None,
) -> TrainResult:
    """Fine-tune the encoder and heads for exactly ``settings.training_steps`` steps.

    Checkpoints every ``checkpoint_every`` steps (default: about a tenth of the run) and at the
    end, each handed to ``on_checkpoint`` as it is made. ``should_stop`` is checked between steps;
    when it returns True, :class:`TrainingCancelled` is raised and nothing is saved. The model is
    saved to ``out_dir`` for ``checkpoint.load_model``.
    """
    t_start = time.perf_counter()
    targets = list(targets)
    _check(train_examples, targets, settings)
    seq_len = clamp_seq_len(settings.seq_len)
    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    dev = pick_device(device)
    base = encoder_for(settings.encoder)
    tokenizer = load_tokenizer(str(base.path()))
    if settings.coherent_labels:
        targets = with_implications(targets, train_examples)
    model = Classifier(load_encoder(base.path()), targets, settings.pooling).to(dev)
    fit = _Fit(model, tokenizer, targets, dev, settings.precision)
    train_data = fit.encode(train_examples, seq_len)
    valid_data = fit.encode(valid_examples, seq_len) if valid_examples else None
    setup_seconds = time.perf_counter() - t_start

    checkpoints, trained_tokens, valid_seconds = _run_steps(
        fit, train_data, valid_data, settings, on_checkpoint, should_stop
    )

    t_save = time.perf_counter()
    save(
        model,
        tokenizer,
        targets,
        seq_len,
        Path(out_dir),
        base.hub_id,
        rendering_for(train_examples),
    )
    return TrainResult(
        trained_tokens=trained_tokens,
        seconds=time.perf_counter() - t_start,
        checkpoints=checkpoints,
        train_seconds=t_save - t_start - setup_seconds - valid_seconds,
        valid_seconds=valid_seconds,
        setup_seconds=setup_seconds + (time.perf_counter() - t_save),
    )


def with_implications(targets: Sequence[Target], examples: Sequence[dict]) -> list[Target]:
    """``targets`` with each multi_class target's ``implied_by`` read off ``examples``
    (:func:`.coherence.implications`)."""
    encoded = encode_labels(examples, targets)
    return [
        replace(t, implied_by=implications(encoded[t.name].numpy(), t.labels))
        if t.loss_function == "multi_class"
        else t
        for t in targets
    ]


def _check(train_examples: Sequence[dict], targets: list[Target], settings: TrainSettings):
    if not targets:
        raise ValueError("no classifier targets")
    if not train_examples:
        raise ValueError("no training examples")
    if int(settings.training_steps) < 1:
        raise ValueError(f"training_steps must be >= 1, got {settings.training_steps}")


def _run_steps(
    fit: _Fit,
    train_data: _Encoded,
    valid_data: _Encoded | None,
    settings: TrainSettings,
    on_checkpoint: Callable[[Checkpoint], None] | None,
    should_stop: Callable[[], bool] | None,
) -> tuple[list[Checkpoint], int, float]:
    """The optimisation steps: ``(checkpoints, trained tokens, seconds of validation)``."""
    steps = int(settings.training_steps)
    every = settings.checkpoint_every or max(1, round(steps / 10))
    optimizer, scheduler = _optimizer(fit.model, settings)
    lengths = np.fromiter(map(len, train_data.ids), dtype=np.int64, count=len(train_data.ids))
    rng = random.Random(settings.seed)
    batches: list[np.ndarray] = []
    pending: list[float] = []
    checkpoints: list[Checkpoint] = []
    trained_tokens, valid_seconds = 0, 0.0
    fit.model.train()
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"stopped before step {step} of {steps}")
        if not batches:
            batches = epoch_batches(lengths, settings.batch_size, rng)
        step_loss, tokens = fit.batch_loss(train_data, batches.pop())
        trained_tokens += tokens
        optimizer.zero_grad(set_to_none=True)
        step_loss.backward()
        optimizer.step()
        scheduler.step()
        pending.append(float(step_loss.detach()))
        if step % every == 0 or step == steps:
            t_valid = time.perf_counter()
            valid_loss = fit.mean_loss(valid_data) if valid_data is not None else None
            valid_seconds += time.perf_counter() - t_valid
            checkpoints.append(Checkpoint(step, float(np.mean(pending)), valid_loss))
            pending = []
            if on_checkpoint is not None:
                on_checkpoint(checkpoints[-1])
    return checkpoints, trained_tokens, valid_seconds


def _optimizer(model: Classifier, settings: TrainSettings):
    """AdamW (no decay on biases and LayerNorm) with linear warmup then linear decay."""
    head_lr = settings.head_learning_rate or settings.learning_rate
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    named = list(model.encoder.named_parameters())
    depths = encoder_depths(n for n, _ in named)
    top = max(depths.values())
    groups = [
        {
            "params": [
                p for n, p in named if depths[n] == depth and n.endswith(no_decay) == exempt
            ],
            "weight_decay": 0.0 if exempt else settings.weight_decay,
            "lr": settings.learning_rate * settings.layer_decay ** (top - depth),
        }
        for depth in sorted(set(depths.values()))
        for exempt in (False, True)
    ]
    groups = [g for g in groups if g["params"]]
    groups.append({"params": list(model.heads.parameters()), "weight_decay": 0.0, "lr": head_lr})
    # fused: one kernel for the whole update instead of a loop over ~100 tensors
    optimizer = torch.optim.AdamW(groups, fused=True)
    steps = int(settings.training_steps)
    warmup = int(round(settings.warmup_fraction * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _linear_schedule(s, warmup, steps)
    )
    return optimizer, scheduler


# A transformer layer's parameters: "encoder.layer.3.attention…" (BERT, MPNet).
_LAYER = re.compile(r"\blayers?\.(\d+)\.")


def encoder_depths(names: Iterable[str]) -> dict[str, int]:
    """Each encoder parameter's depth for :attr:`TrainSettings.layer_decay`: 0 for the
    embeddings, ``i + 1`` for transformer layer ``i`` (``…layer.<i>.…``), the top layer's depth
    for anything else (a pooler)."""
    depths: dict[str, int] = {}
    rest = []
    for name in names:
        layer = _LAYER.search(name)
        if layer:
            depths[name] = int(layer.group(1)) + 1
        elif "embeddings" in name:
            depths[name] = 0
        else:
            rest.append(name)
    top = max(depths.values(), default=0)
    return depths | dict.fromkeys(rest, top)


def _linear_schedule(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the full rate, then linear decay to zero at the last step."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))

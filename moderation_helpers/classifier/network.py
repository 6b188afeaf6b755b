"""The network the factory fine-tunes: a base encoder, pooling, one linear head per target.

The API's ``model`` picks the base encoder (:mod:`.encoders`: all-MiniLM-L6-v2 unless the name
is another registered encoder), shipped by PyPI packages and loaded offline with
``transformers``. ``multi_class``
targets get an independent sigmoid per label (a comment can be both toxic and an insult),
``single_class`` targets a softmax over their labels. A ``multi_class`` target's ``implied_by``
(:mod:`.coherence`, read off the training file) keeps a parent label's score at or above its
children's. Pooling (:mod:`moderation_helpers.core.pooling`) is the mean of the token vectors
by default, or that mean beside their maximum (``mean_max``).

Matmuls run in bfloat16 autocast where the hardware does bf16 natively (AVX-512 BF16 / AMX,
Ampere+ GPUs): several times faster there; pooling and heads stay float32.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moderation_helpers.classifier.coherence import coherent_logits
from moderation_helpers.classifier.encoders import encoder_for
from moderation_helpers.core.pooling import POOLINGS

# The encoder's position embeddings stop at 512 tokens; the API's default seq_len (16384) is
# clamped to this, and so is any larger request.
MAX_SEQ_LEN = 512
LOSS_FUNCTIONS = ("multi_class", "single_class")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class Target:
    """One classifier target: a name, its labels and how they are scored; ``implied_by``:
    ``{parent: [children]}``, labels whose score never falls below their children's."""

    name: str
    labels: list[str]
    loss_function: str
    weight: float = 1.0
    implied_by: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss_function not in LOSS_FUNCTIONS:
            raise ValueError(
                f"target {self.name!r}: loss_function must be one of {LOSS_FUNCTIONS}, "
                f"got {self.loss_function!r}"
            )
        if not self.labels:
            raise ValueError(f"target {self.name!r}: no labels")
        self.labels = list(self.labels)
        self.implied_by = {k: list(v) for k, v in (self.implied_by or {}).items()}
        if self.implied_by and self.loss_function != "multi_class":
            raise ValueError(f"target {self.name!r}: implied_by needs a multi_class target")
        named = set(self.implied_by).union(*self.implied_by.values())
        if not named <= set(self.labels):
            raise ValueError(
                f"target {self.name!r}: implied_by names labels it lacks: "
                f"{sorted(named - set(self.labels))}"
            )


def encoder_path(encoder: str | None = None) -> Path:
    """The folder holding the config, tokenizer and safetensors weights of the base encoder
    ``encoder`` names (:func:`.encoders.encoder_for`: the default, all-MiniLM-L6-v2, when None)."""
    return encoder_for(encoder).path()


@lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    """The fast tokenizer saved in ``path`` (cached: the trainer and the factory reuse it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No "Loading weights" bars in the factory's log; the caller's setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_encoder(path: str | Path) -> nn.Module:
    """The encoder in float32 whatever its checkpoint holds (transformers 5 keeps a checkpoint's
    dtype: a float16 one trained to NaN scores without an error)."""
    from transformers import AutoModel

    with quiet_progress():
        return AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)


def count_tokens(texts: Sequence[str], encoder: str | None = None) -> int:
    """Tokens in ``texts`` as the base encoder's tokenizer counts them (special tokens
    included)."""
    texts = list(texts)
    if not texts:
        return 0
    tokenizer = load_tokenizer(str(encoder_path(encoder)))
    enc = tokenizer(texts, add_special_tokens=True, truncation=False)
    return int(sum(len(ids) for ids in enc["input_ids"]))


def clamp_seq_len(seq_len: int) -> int:
    """The job's seq_len, clamped to what the encoder can read."""
    return max(8, min(int(seq_len), MAX_SEQ_LEN))


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One float32 vector per text from its token vectors ``(batch, tokens, width)``, padding
    left out: their mean, or for ``mean_max`` the mean and the per-dimension maximum side by
    side."""
    mask = attention_mask.unsqueeze(-1).float()
    hidden = hidden.float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if pooling == "mean":
        return mean
    # a large negative, not -inf: a row of padding only still gives finite numbers
    peak = hidden.masked_fill(mask == 0, -1e4).amax(1)
    return torch.cat([mean, peak], dim=-1)


class Classifier(nn.Module):
    """Encoder + pooling (:func:`pool`) + one linear head per target; ``forward`` returns
    logits."""

    def __init__(self, encoder: nn.Module, targets: Sequence[Target], pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.targets = list(targets)
        self.pooling = pooling
        width = encoder.config.hidden_size * (2 if pooling == "mean_max" else 1)
        self.heads = nn.ModuleDict({t.name: nn.Linear(width, len(t.labels)) for t in targets})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{target: logits (batch, n_labels)}``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Pooling and heads in float32 even under bf16 autocast: bf16 logits would round scores
        # into ties (hurting ROC-AUC) and the loss would lose precision.
        with torch.autocast(input_ids.device.type, enabled=False):
            pooled = pool(hidden, attention_mask, self.pooling)
            return {name: head(pooled) for name, head in self.heads.items()}

    def scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``{target: scores (batch, n_labels)}``: the sigmoid (or softmax) of the logits made
        coherent by each target's ``implied_by``; what the checkpoint and the exported graph
        serve."""
        logits = self.forward(input_ids, attention_mask)
        out = {}
        for t in self.targets:
            z = logits[t.name].float()
            if t.loss_function == "multi_class":
                out[t.name] = torch.sigmoid(coherent_logits(z, t.labels, t.implied_by))
            else:
                out[t.name] = torch.softmax(z, -1)
        return out


def pick_device(device: str | None) -> torch.device:
    """``device`` when given, else CUDA where there is one, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matmuls are native here (oneDNN on AVX-512 CPUs, Ampere+ GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Mixed precision for the encoder's matmuls: ``auto`` uses bf16 where it is native."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    enabled = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

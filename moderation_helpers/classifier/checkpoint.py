"""A trained classifier on disk (the factory's model folder) and back, ready to score texts.

The folder holds ``encoder/`` (weights and tokenizer, ``save_pretrained``), the heads in
``heads.safetensors`` and ``checkpoint.json`` (format_version 1: base encoder, pooling,
seq_len, targets), written last so that a folder without it never loads as a model. This is the
trainer's format; the exported ONNX folder (``classifier.json``) is ``model.folder``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from moderation_helpers.classifier.batches import pad, tokenize
from moderation_helpers.classifier.encoders import DEFAULT_ENCODER, ENCODERS
from moderation_helpers.classifier.network import (
    Classifier,
    Target,
    autocast,
    load_encoder,
    load_tokenizer,
    pick_device,
    quiet_progress,
)
from moderation_helpers.core.conversation import RENDERING
from moderation_helpers.core.files import atomic_write_text

CHECKPOINT_JSON = "checkpoint.json"
HEADS_FILE = "heads.safetensors"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


def save(
    model: Classifier,
    tokenizer: Any,
    targets: Sequence[Target],
    seq_len: int,
    out: Path,
    base_encoder: str,
    rendering: Mapping[str, Any] = RENDERING,
) -> None:
    """Write the model folder that :func:`load_model` reads; ``base_encoder``: the hub id of the
    encoder it was fine-tuned from (the record; loading reads the folder's own weights)."""
    out.mkdir(parents=True, exist_ok=True)
    with quiet_progress():
        model.encoder.save_pretrained(out / ENCODER_DIR)
    tokenizer.save_pretrained(out / ENCODER_DIR)
    heads = {k: v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
    save_file(heads, str(out / HEADS_FILE))
    config = {
        "format_version": FORMAT_VERSION,
        "base_encoder": base_encoder,
        "pooling": model.pooling,
        "seq_len": seq_len,
        "rendering": dict(rendering),  # how it reads a conversation (core.conversation)
        "targets": [asdict(t) for t in targets],
    }
    # Written last, atomically: a folder without it (a crash mid-save) never loads as a model.
    atomic_write_text(out / CHECKPOINT_JSON, json.dumps(config, indent=2))


def read_config(model_dir: str | Path) -> dict[str, Any]:
    """The folder's ``checkpoint.json``; FileNotFoundError where training has not finished."""
    path = Path(model_dir) / CHECKPOINT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained classifier here")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class ClassifierModel:
    """A trained classifier, ready to score texts."""

    targets: list[Target]
    seq_len: int
    model: Classifier = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    precision: str = "auto"
    rendering: dict[str, Any] = field(default_factory=lambda: dict(RENDERING))
    base_encoder: str = ENCODERS[DEFAULT_ENCODER].hub_id

    @torch.inference_mode()
    def predict(self, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Scores per text: ``{target: {label: score}}`` (``Classifier.scores``: sigmoid or
        softmax per target, coherent by its ``implied_by``)."""
        texts = list(texts)
        if not texts:
            return []
        self.model.eval()
        ids = tokenize(self.tokenizer, texts, self.seq_len)
        # Sorting by length keeps each batch's padding small; results go back in input order.
        order = np.argsort([len(x) for x in ids], kind="stable")
        scores = {
            t.name: np.zeros((len(texts), len(t.labels)), dtype=np.float64) for t in self.targets
        }
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            input_ids, attention = pad(self.tokenizer, [ids[i] for i in idx])
            with autocast(self.device, self.precision):
                batch = self.model.scores(input_ids.to(self.device), attention.to(self.device))
            for t in self.targets:
                scores[t.name][idx] = batch[t.name].cpu().numpy()
        return [
            {
                t.name: dict(zip(t.labels, scores[t.name][i].tolist(), strict=True))
                for t in self.targets
            }
            for i in range(len(texts))
        ]


def load_model(
    model_dir: str | Path, *, device: str | None = None, precision: str = "auto"
) -> ClassifierModel:
    """Load a model saved by training from ``model_dir`` (nothing else is needed)."""
    out = Path(model_dir)
    config = read_config(out)
    targets = [Target(**t) for t in config["targets"]]
    dev = pick_device(device)
    model = Classifier(load_encoder(out / ENCODER_DIR), targets, config.get("pooling", "mean"))
    model.heads.load_state_dict(load_file(str(out / HEADS_FILE)))
    model.to(dev).eval()
    tokenizer = load_tokenizer(str(out / ENCODER_DIR))
    return ClassifierModel(
        targets,
        int(config["seq_len"]),
        model,
        tokenizer,
        dev,
        precision=precision,
        rendering=config.get("rendering", RENDERING),  # older checkpoints read whole chats
        base_encoder=config.get("base_encoder") or ENCODERS[DEFAULT_ENCODER].hub_id,
    )

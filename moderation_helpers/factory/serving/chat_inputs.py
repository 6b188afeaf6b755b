"""Conversations of a chat request turned into a model's encoder inputs.

The rendering is :mod:`moderation_helpers.core.conversation`'s, with the token budget of the model
that will read it (its ``seq_len`` and tokenizer, from the model folder), so a conversation
longer than the model reads keeps its latest turns, exactly as in training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from moderation_helpers.core.conversation import RENDERING, Message, render_many, token_limits


@lru_cache(maxsize=8)
def _limits(model_path: str) -> dict[str, Any]:
    from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON, ENCODER_DIR
    from moderation_helpers.classifier.network import encoder_path

    folder = Path(model_path)
    config = folder / CHECKPOINT_JSON
    if not config.is_file():  # a model of another trainer (tests): no token budget known
        return {}
    checkpoint = json.loads(config.read_text(encoding="utf-8"))
    seq_len = int(checkpoint["seq_len"])
    tokenizer_dir = folder / ENCODER_DIR
    if not tokenizer_dir.is_dir():
        tokenizer_dir = encoder_path()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return {
        "rendering": checkpoint.get("rendering", RENDERING),
        **token_limits(tokenizer, seq_len),
    }


def conversation_texts(
    record: dict[str, Any], conversations: Sequence[Sequence[Message]]
) -> list[str]:
    """Each conversation as the text the model ``record`` reads: its latest turn alone for a
    model trained on texts, else the rendering within its ``seq_len`` (latest turns kept)."""
    return render_many(conversations, **_limits(str(record["path"])))

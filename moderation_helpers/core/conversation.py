"""One rendering of a conversation into the encoder's input, shared by everything that reads chats.

The Classifier Factory takes two dataset kinds: ``text`` lines and conversations as ``messages``
lines (``{"messages": [{"role": "user", "content": "..."}, ...], "labels": {...}}``). The encoder
reads one string, so a conversation is rendered as its turns in order, one per line, each marked
with its role::

    user: is this comment ok?
    assistant: which one?

When the rendering is longer than the model's ``seq_len``, the **earliest** turns are dropped
(the latest turn is what is being moderated), and a latest turn that alone is too long keeps its
beginning, as a text would.

A model trained on texts only has never seen such a rendering: the "user: ..." lines of earlier
turns move its scores (a toxic last turn after two benign turns was flagged a quarter as often
as alone, a benign one after toxic turns far more often). Such a model reads a conversation as
its **latest turn alone** (:data:`LATEST_TURN`), exactly the text it was trained on; a model
trained on conversations reads the whole rendering (:data:`RENDERING`). The trainer records which
(:func:`rendering_for`), and every reader passes it to :func:`render_many`. The validator, the
trainer, the factory's chat routes, the exported model folder and the Moderator all call this
module, so a chat reads the same everywhere.

Training lines hold ``content`` as a string; API requests (``/v1/chat/classifications``) may also
send the API's content chunks (``[{"type": "text", "text": "..."}]``): their text parts are joined.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# The roles of Mistral's chat messages (openapi.yaml: SystemMessage, UserMessage,
# AssistantMessage, ToolMessage).
ROLES = ("system", "user", "assistant", "tool")
TURN_SEPARATOR = "\n"
RENDERING = {
    "name": "role-prefixed-turns",
    "version": 1,
    "turn_template": "{role}: {content}",
    "separator": TURN_SEPARATOR,
    "truncation": "drop earliest turns first; the latest turn keeps its beginning",
}
LATEST_TURN = {
    "name": "latest-turn",
    "version": 1,
    "description": "trained on texts: a conversation is read as its latest turn alone",
}
RENDERINGS = {r["name"]: r for r in (RENDERING, LATEST_TURN)}

Message = Mapping[str, Any]
CountTokens = Callable[[Sequence[str]], Sequence[int]]


def message_problems(
    messages: Any, field: str = "messages", *, allow_chunks: bool = False
) -> list[tuple[str, str]]:
    """What is wrong with a ``messages`` value, as ``(field, message)`` pairs (empty if valid).

    ``messages`` must be a non-empty list of objects, each with a known ``role`` and a non-empty
    string ``content``; fields are named like ``messages[2].role`` so an error points at the turn.
    ``allow_chunks`` (an API request's messages) also accepts the API's content chunks, of which
    only ``text`` ones can be read, and an empty or null content (not for ``system``; an
    assistant turn that only called tools may also leave it out): the turn is then rendered
    with its role alone.
    """
    if not isinstance(messages, list):
        return [(field, f"expected a list of messages, got {type(messages).__name__}")]
    if not messages:
        return [(field, "empty list: a conversation needs at least one message")]
    problems: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            problems.append((where, f"expected an object, got {type(message).__name__}"))
            continue
        role = message.get("role")
        if "role" not in message:
            problems.append((f"{where}.role", "missing"))
        elif role not in ROLES:
            problems.append((f"{where}.role", f"unknown role {role!r}; expected one of {ROLES}"))
        content = message.get("content")
        # The API lets an assistant turn leave content out, and any turn but system's be null.
        if "content" not in message and not (allow_chunks and role == "assistant"):
            problems.append((f"{where}.content", "missing"))
        elif allow_chunks and isinstance(content, list):
            problems += _chunk_problems(content, f"{where}.content")
        elif allow_chunks and (content == "" or (content is None and role != "system")):
            continue
        elif not isinstance(content, str):
            problems.append(
                (f"{where}.content", f"expected a string, got {type(content).__name__}")
            )
        elif not content.strip():
            problems.append((f"{where}.content", "empty content"))
    return problems


def _chunk_problems(chunks: list, where: str) -> list[tuple[str, str]]:
    problems = []
    for j, chunk in enumerate(chunks):
        if not isinstance(chunk, dict) or chunk.get("type", "text") != "text":
            kind = chunk.get("type") if isinstance(chunk, dict) else type(chunk).__name__
            problems.append((f"{where}[{j}]", f"only text chunks can be classified, got {kind!r}"))
        elif not isinstance(chunk.get("text"), str):
            problems.append((f"{where}[{j}].text", "expected a string"))
    return problems


def content_text(content: Any) -> str:
    """A message's content as text: a string, or the text chunks joined (None reads as "")."""
    if content is None:
        return ""
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content)


def rendering_for(examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How a model trained on ``examples`` reads conversations: the whole rendering when any
    example is a conversation, else the latest turn alone."""
    return dict(RENDERING if any("messages" in ex for ex in examples) else LATEST_TURN)


def render_many(
    conversations: Sequence[Sequence[Message]],
    *,
    rendering: Mapping[str, Any] = RENDERING,
    count_tokens: CountTokens | None = None,
    max_tokens: int | None = None,
) -> list[str]:
    """Each conversation as one string; with ``count_tokens`` and ``max_tokens``, only the latest
    turns that fit. With ``rendering`` :data:`LATEST_TURN`, the latest turn's content alone.

    ``count_tokens(strings)`` returns each string's token count without special tokens (one
    call for every turn of every conversation); ``max_tokens`` is the budget for a rendering (the
    model's ``seq_len`` less its special tokens). The latest turn is always kept, even when it
    alone is over budget (the tokenizer then truncates its end, as for a text).
    """
    if not len(conversations):
        return []
    if rendering["name"] == LATEST_TURN["name"]:
        return [content_text(messages[-1].get("content")).strip() for messages in conversations]
    if rendering["name"] != RENDERING["name"]:
        raise ValueError(f"unknown rendering {rendering['name']!r}: one of {sorted(RENDERINGS)}")
    turns = pd.Series(list(conversations), dtype=object).explode().dropna()
    frame = pd.DataFrame.from_records(turns.tolist(), columns=["role", "content"])
    frame.index = turns.index  # the conversation each turn belongs to
    contents = frame["content"].map(content_text).str.strip()
    frame["turn"] = frame["role"].astype(str) + ": " + contents
    if count_tokens is not None and max_tokens is not None:
        # Tokens from each turn to the end of its conversation (1 per separator, to be safe):
        # the turns kept are those whose suffix fits, and always the last one.
        cost = pd.Series(np.asarray(count_tokens(frame["turn"].tolist())) + 1, index=frame.index)
        from_end = cost[::-1].groupby(level=0).cumsum()[::-1] - 1
        last = ~frame.index.duplicated(keep="last")
        frame = frame[(from_end.to_numpy() <= max_tokens) | last]
    rendered = frame.groupby(level=0)["turn"].agg(TURN_SEPARATOR.join)
    return rendered.reindex(range(len(conversations)), fill_value="").tolist()


def render(
    messages: Sequence[Message],
    *,
    count_tokens: CountTokens | None = None,
    max_tokens: int | None = None,
) -> str:
    """One conversation as one string (see :func:`render_many`)."""
    return render_many([messages], count_tokens=count_tokens, max_tokens=max_tokens)[0]


def example_texts(
    examples: Sequence[Mapping[str, Any]],
    *,
    count_tokens: CountTokens | None = None,
    max_tokens: int | None = None,
) -> list[str]:
    """The encoder inputs of JSONL examples: each ``text``, or its rendered ``messages`` (all the
    conversations rendered in one :func:`render_many` call)."""
    texts: list[str | None] = [ex.get("text") for ex in examples]
    chats = [i for i, ex in enumerate(examples) if "messages" in ex]
    rendered = render_many(
        [examples[i]["messages"] for i in chats], count_tokens=count_tokens, max_tokens=max_tokens
    )
    for i, text in zip(chats, rendered, strict=True):
        texts[i] = text
    return texts  # type: ignore[return-value]


def frame_texts(
    frame: pd.DataFrame,
    *,
    count_tokens: CountTokens | None = None,
    max_tokens: int | None = None,
) -> pd.Series:
    """The encoder inputs of a frame of JSONL lines (``text`` and/or ``messages`` columns)."""
    texts = frame["text"] if "text" in frame else pd.Series(None, index=frame.index)
    texts = texts.astype(object).copy()
    if "messages" in frame:
        chats = frame["messages"].notna().to_numpy()
        texts[chats] = render_many(
            frame["messages"][chats].tolist(), count_tokens=count_tokens, max_tokens=max_tokens
        )
    return texts


def example_text(
    example: Mapping[str, Any],
    *,
    count_tokens: CountTokens | None = None,
    max_tokens: int | None = None,
) -> str:
    """The encoder input of one JSONL example: its ``text``, or its rendered ``messages``."""
    return example_texts([example], count_tokens=count_tokens, max_tokens=max_tokens)[0]


def token_limits(tokenizer: Any, seq_len: int) -> dict[str, Any]:
    """``count_tokens`` and ``max_tokens`` for a Hugging Face tokenizer reading ``seq_len``
    tokens (special tokens included), to pass on as ``render_many(..., **token_limits(...))``."""

    def count_tokens(strings: Sequence[str]) -> list[int]:
        ids = tokenizer(list(strings), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    return {
        "count_tokens": count_tokens,
        "max_tokens": seq_len - tokenizer.num_special_tokens_to_add(pair=False),
    }


def encoder_inputs(
    examples: Sequence[Mapping[str, Any]], tokenizer: Any, seq_len: int
) -> list[str]:
    """:func:`example_texts` within a Hugging Face tokenizer's ``seq_len`` (what the trainer
    feeds the encoder: a conversation keeps its latest turns that fit)."""
    return example_texts(examples, **token_limits(tokenizer, seq_len))

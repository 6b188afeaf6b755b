"""One rendering of a conversation into the encoder's input, shared by everything that reads chats.

The Classifier Factory takes two dataset kinds: ``text`` lines and conversations as ``messages``
lines (``{"messages": [{"role": "user", "content": "..."}, ...], "labels": {...}}``). The encoder
reads one string, so a conversation is rendered as its turns in order, one per line, each marked
with its role::

    user: is this comment ok?
    assistant: which one?

When the rendering is longer than the model's ``seq_len``, the **earliest** turns are dropped
(the latest turn is what is being moderated), and a latest turn that alone is too long keeps its
beginning, as a text would. The validator, the trainer, the factory's chat routes, the exported
model folder and the Moderator all call this module, so a chat reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

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

Message = Mapping[str, Any]


def message_problems(messages: Any, field: str = "messages") -> list[tuple[str, str]]:
    """What is wrong with a ``messages`` value, as ``(field, message)`` pairs (empty if valid).

    ``messages`` must be a non-empty list of objects, each with a known ``role`` and a non-empty
    string ``content``; fields are named like ``messages[2].role`` so an error points at the turn.
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
        if "content" not in message:
            problems.append((f"{where}.content", "missing"))
        elif not isinstance(content, str):
            problems.append(
                (f"{where}.content", f"expected a string, got {type(content).__name__}")
            )
        elif not content.strip():
            problems.append((f"{where}.content", "empty content"))
    return problems


def render_turn(message: Message) -> str:
    """One turn as the encoder reads it: ``"{role}: {content}"`` with the content stripped."""
    return f"{message['role']}: {str(message['content']).strip()}"


def render(
    messages: Sequence[Message],
    *,
    count_tokens: Callable[[Sequence[str]], Sequence[int]] | None = None,
    max_tokens: int | None = None,
) -> str:
    """The conversation as one string; with ``count_tokens`` and ``max_tokens``, only the
    latest turns that fit.

    ``count_tokens(strings)`` returns each string's token count without special tokens;
    ``max_tokens`` is the budget for the rendering (the model's ``seq_len`` less its special
    tokens). The latest turn is always kept, even when it alone is over budget (the tokenizer
    then truncates its end, as for a text).
    """
    turns = [render_turn(m) for m in messages]
    if count_tokens is None or max_tokens is None or len(turns) <= 1:
        return TURN_SEPARATOR.join(turns)
    lengths = list(count_tokens(turns))
    # Each separator costs nothing for BERT-style tokenizers (whitespace); count 1 to be safe.
    used, first = lengths[-1], len(turns) - 1
    while first > 0 and used + 1 + lengths[first - 1] <= max_tokens:
        first -= 1
        used += 1 + lengths[first]
    return TURN_SEPARATOR.join(turns[first:])


def render_many(
    conversations: Sequence[Sequence[Message]],
    *,
    count_tokens: Callable[[Sequence[str]], Sequence[int]] | None = None,
    max_tokens: int | None = None,
) -> list[str]:
    """:func:`render` for each conversation."""
    return [render(c, count_tokens=count_tokens, max_tokens=max_tokens) for c in conversations]


def example_text(
    example: Mapping[str, Any],
    *,
    count_tokens: Callable[[Sequence[str]], Sequence[int]] | None = None,
    max_tokens: int | None = None,
) -> str:
    """The encoder input of one JSONL example: its ``text``, or its rendered ``messages``."""
    if "messages" in example:
        return render(example["messages"], count_tokens=count_tokens, max_tokens=max_tokens)
    return example["text"]

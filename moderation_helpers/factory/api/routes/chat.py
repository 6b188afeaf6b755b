"""The conversations of a chat request, in any of the shapes the API takes, checked once.

``/v1/chat/classifications`` takes ``{"messages": [...]}`` or a list of them (the SDK's
``classify_chat``); ``/v1/chat/moderations`` takes a list of messages or a list of such lists
(``moderate_chat``). Both routes accept every shape. Each message is checked by
:func:`moderation_helpers.core.conversation.message_problems` (API content chunks allowed, text ones
only), and a problem is a 422 whose ``loc`` names the field, e.g. ``input[1].messages[0].role``.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from moderation_helpers.core.conversation import message_problems

MAX_CONVERSATIONS = 1_000


def _shape(inputs: Any) -> list[tuple[str, Any]]:
    """``(field, messages)`` per conversation, before the messages themselves are checked."""
    if isinstance(inputs, dict):
        return [("input.messages", inputs.get("messages"))]
    if not isinstance(inputs, list) or not inputs:
        got = "an empty list" if inputs == [] else type(inputs).__name__
        raise _invalid("input", f"expected a conversation or a list of them, got {got}", inputs)
    if all(isinstance(x, dict) and "messages" in x for x in inputs):
        return [(f"input[{i}].messages", x["messages"]) for i, x in enumerate(inputs)]
    if all(isinstance(x, list) for x in inputs):
        return [(f"input[{i}]", x) for i, x in enumerate(inputs)]
    return [("input", inputs)]  # one conversation as a bare list of messages


def conversations_of(inputs: Any) -> list[list[dict[str, Any]]]:
    """The request's conversations, or a 422 naming the first fields that are wrong."""
    shaped = _shape(inputs)
    if len(shaped) > MAX_CONVERSATIONS:
        raise _invalid("input", f"at most {MAX_CONVERSATIONS} conversations per request", None)
    errors = [
        {"loc": ("body", fld), "msg": msg, "type": "value_error"}
        for field, messages in shaped
        for fld, msg in message_problems(messages, field, allow_chunks=True)
    ]
    if errors:
        raise RequestValidationError(errors[:20])
    return [messages for _, messages in shaped]


def _invalid(field: str, msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", field), "msg": msg, "type": "value_error", "input": value}]
    )

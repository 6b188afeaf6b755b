"""Errors of calls to a server speaking the Mistral API (the Mistral API or the local factory),
read the same way whether the SDK raised them or the HTTP layer under it: one readable line each,
and which ones are worth retrying."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
from mistralai.client import errors

# Statuses worth retrying when they escape the SDK's own retry_config.
RETRYABLE_HTTP = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# What a call to the server can raise; anything else is a bug and propagates as it is.
API_ERRORS = (errors.MistralError, errors.NoResponseError, httpx.HTTPError, ConnectionError)
T = TypeVar("T")


def as_text(value: Any) -> str:
    """A server's message, error list or error object as one line of text."""
    if isinstance(value, list):
        return "; ".join(as_text(v) for v in value)
    if isinstance(value, Mapping):
        return value.get("message") or value.get("msg") or str(dict(value))
    return str(value)


def describe_api_error(exc: BaseException) -> str:
    """One readable line for an SDK/HTTP error: status and the server's ``detail``/``message``."""
    if isinstance(exc, errors.MistralError):
        detail = exc.body
        try:
            body = exc.raw_response.json()
            if isinstance(body, Mapping):
                detail = as_text(body.get("detail") or body.get("message") or body)
        except (ValueError, AttributeError):
            pass
        return f"HTTP {exc.status_code}: {str(detail).strip()[:500]}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """True for errors a poll loop should wait out: 429/5xx, timeouts, dropped connections."""
    if isinstance(exc, errors.MistralError):
        return exc.status_code in RETRYABLE_HTTP
    return isinstance(exc, (httpx.TransportError, errors.NoResponseError, ConnectionError))


def call_with_retry(call: Callable[[], T], what: str, max_attempts: int, retry_wait: float) -> T:
    """Run ``call()``; retry transient failures with exponential backoff, up to max_attempts."""
    for attempt in range(1, max_attempts + 1):
        try:
            return call()
        except API_ERRORS as exc:
            if not is_transient(exc):
                raise RuntimeError(f"{what} failed: {describe_api_error(exc)}") from exc
            if attempt == max_attempts:
                why = describe_api_error(exc)
                raise RuntimeError(f"{what} failed after {attempt} attempts: {why}") from exc
            time.sleep(retry_wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")

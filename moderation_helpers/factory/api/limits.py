"""What the factory refuses to serve, refused before any work is done or anything written.

=================================  =======  ==============================  =========
limit                              default  ``MODERATION_FACTORY_`` + env   beyond it
=================================  =======  ==============================  =========
inputs per classification request  1,024    ``MAX_INPUTS``                  422
characters per text                20,000   ``MAX_TEXT_CHARS``              422
upload size (``POST /v1/files``)   512 MiB  ``MAX_UPLOAD_BYTES``            413
any other request body             64 MiB   ``MAX_BODY_BYTES``              413
unfinished requests per model      64       ``MAX_QUEUED_REQUESTS``         503
=================================  =======  ==============================  =========

Each is also a ``serve`` option (``--max-inputs`` ...).
Sizes in bytes are 413 (Content Too Large) and are checked on ``Content-Length`` before the body
is read, then counted while it streams in (a chunked upload has no length). Counts and lengths of
fields are 422, like every other invalid field, with ``loc`` naming the field. A full queue is
503 with ``Retry-After``: the request is valid and would be served a moment later, and the
overload is the server's, not this client's (429 says "you sent too many").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from moderation_helpers.factory.config import ServingConfig, env_name
from moderation_helpers.factory.serving.batcher import QueueFull

RETRY_AFTER_SECONDS = 1


def check_texts(texts: Sequence[str], config: ServingConfig, field: str = "input") -> None:
    """422 naming the limit and the value when there are too many texts or one is too long."""
    if len(texts) > config.max_inputs:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", field),
                    "msg": f"{len(texts)} inputs is more than max_inputs={config.max_inputs} "
                    f"per request (set by {env_name('max_inputs')}); split the request",
                    "type": "too_long",
                    "input": None,
                }
            ]
        )
    lengths = [len(t) for t in texts]
    too_long = [i for i, n in enumerate(lengths) if n > config.max_text_chars]
    if too_long:
        i = too_long[0]
        raise RequestValidationError(
            [
                {
                    "loc": ("body", field, i),
                    "msg": f"text of {lengths[i]} characters is longer than max_text_chars="
                    f"{config.max_text_chars} (set by {env_name('max_text_chars')}); "
                    f"{len(too_long)} input(s) too long",
                    "type": "string_too_long",
                    "input": None,  # never echo a megabyte back
                }
            ]
        )


def queue_full(exc: QueueFull) -> HTTPException:
    """503 with Retry-After, naming the limit (see the module docstring for why not 429)."""
    return HTTPException(
        status_code=503,
        detail=f"server busy: {exc.queued} requests already queued for this model, "
        f"max_queued_requests={exc.limit} (set by {env_name('max_queued_requests')}); "
        f"retry after {RETRY_AFTER_SECONDS} s",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class BodyTooLarge(HTTPException):
    """413 raised while a body streams in; FastAPI passes HTTPExceptions from body parsing on."""

    def __init__(self, what: str, limit_name: str, limit: int, seen: str):
        super().__init__(
            status_code=413,
            detail=f"{what} too large: {seen} is more than {limit_name}={limit} bytes "
            f"(set by {env_name(limit_name)})",
        )


class BodyLimitMiddleware:
    """ASGI middleware: refuse a body over its limit from ``Content-Length`` before reading it,
    and count the bytes of a body that streams in without one."""

    def __init__(self, app: Any, config: ServingConfig):
        self.app = app
        self.config = config

    def _limit(self, scope: dict) -> tuple[str, str, int]:
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/files":
            return "upload", "max_upload_bytes", self.config.max_upload_bytes
        return "request body", "max_body_bytes", self.config.max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        what, name, limit = self._limit(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_error(send, BodyTooLarge(what, name, limit, f"{int(length)} bytes"))
            return
        received = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(what, name, limit, f"more than {limit} bytes received")
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_error(send, exc)


async def _send_error(send: Any, exc: HTTPException) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

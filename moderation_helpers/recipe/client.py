"""A ready ``mistralai`` client for a training backend: the Mistral API or the local factory.

- ``mistral``: the real API at ``$MISTRAL_SERVER_URL`` (default ``https://api.mistral.ai``), with
  the key from ``$MISTRAL_API_KEY`` only.
- ``local``: the local Classifier Factory at ``$MODERATION_FACTORY_URL`` (default
  ``http://127.0.0.1:8765``). When nothing answers there, a factory is started at that address
  as a detached process (it outlives the notebook kernel that started it), over the store
  ``$MODERATION_FACTORY_STORE`` (default ``~/.cache/moderation-cookbook/factory``); stop it with
  ``python -m moderation_helpers.factory stop``.
- ``auto``: ``mistral`` when ``MISTRAL_API_KEY`` is set, ``local`` otherwise.

The client retries 429/5xx responses and dropped connections itself (the SDK's backoff), so
callers need no retry loops for those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig

from moderation_helpers.core.env import (
    DEFAULT_FACTORY_URL,
    DEFAULT_MISTRAL_URL,
    FACTORY_TOKEN_ENV,
    FACTORY_URL_ENV,
    MISTRAL_API_KEY_ENV,
    MISTRAL_URL_ENV,
    default_store,
)

BACKENDS = ("auto", "local", "mistral")
# The base model a job fine-tunes when none is named: the local factory's default encoder, or
# Mistral's classifier base. Job ids, job.json and figure titles then name what really trains.
DEFAULT_BASE_MODELS = {"local": "all-MiniLM-L6-v2", "mistral": "ministral-3b-latest"}
# The local factory needs no key unless it was started with a token; the SDK wants one anyway.
LOCAL_PLACEHOLDER_KEY = "local-factory"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Backend:
    """Which backend, at which URL, and a client for it (kept out of the repr: it holds a key)."""

    name: str
    server_url: str
    client: Mistral = field(repr=False)


def resolve_backend(backend: str = "auto") -> str:
    """``"auto"`` → ``"mistral"`` when ``MISTRAL_API_KEY`` is set, else ``"local"``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "mistral" if os.environ.get(MISTRAL_API_KEY_ENV) else "local"
    return backend


def default_base_model(backend: str = "auto") -> str:
    """The base model a job on ``backend`` fine-tunes unless told otherwise."""
    return DEFAULT_BASE_MODELS[resolve_backend(backend)]


def retry_config() -> RetryConfig:
    """Exponential backoff (0.5 s doubling-ish to 30 s, 5 min in all) on 429/5xx and
    connection errors."""
    return RetryConfig(
        "backoff",
        BackoffStrategy(
            initial_interval=500, max_interval=30_000, exponent=1.5, max_elapsed_time=300_000
        ),
        retry_connection_errors=True,
    )


def connect(
    backend: str = "auto", *, server_url: str | None = None, start_local: bool = True
) -> Backend:
    """A :class:`Backend` with a ready client (see the module docstring for URLs and keys).

    For ``local``, raises ConnectionError when nothing answers at the URL and ``start_local``
    is False (or the URL is not on this machine).
    """
    name = resolve_backend(backend)
    if name == "mistral":
        key = os.environ.get(MISTRAL_API_KEY_ENV)
        if not key:
            raise RuntimeError(
                "backend 'mistral' needs an API key in the environment variable "
                f"{MISTRAL_API_KEY_ENV}"
            )
        url = server_url or os.environ.get(MISTRAL_URL_ENV) or DEFAULT_MISTRAL_URL
    else:
        url = server_url or os.environ.get(FACTORY_URL_ENV) or DEFAULT_FACTORY_URL
        url = ensure_local_factory(url, start=start_local)
        key = os.environ.get(FACTORY_TOKEN_ENV) or LOCAL_PLACEHOLDER_KEY
    client = Mistral(api_key=key, server_url=url.rstrip("/"), retry_config=retry_config())
    return Backend(name=name, server_url=url.rstrip("/"), client=client)


def ensure_local_factory(url: str, *, start: bool = True) -> str:
    """The URL of a factory answering at ``url``, starting one there (detached) if needed."""
    from moderation_helpers.factory.process import answers, start_factory

    if answers(url):
        return url
    parts = urlsplit(url)
    if not start:
        raise ConnectionError(
            f"no local Classifier Factory answers at {url}; start one with "
            "`python -m moderation_helpers.factory serve --port PORT` or connect(start_local=True)"
        )
    if parts.hostname not in LOOPBACK_HOSTS or parts.port is None:
        raise ConnectionError(
            f"no local Classifier Factory answers at {url}, and it is not a loopback "
            "host:port where one could be started"
        )
    store = default_store()
    handle = start_factory(
        store,
        host=parts.hostname,
        port=parts.port,
        token=os.environ.get(FACTORY_TOKEN_ENV),
        detach=True,
    )
    return handle.url


def require_fine_tuning(client: Mistral) -> None:
    """Raise a clear RuntimeError when the installed SDK has no ``client.fine_tuning``."""
    try:
        fine_tuning = client.fine_tuning
    except AttributeError:
        fine_tuning = None
    if fine_tuning is None or not hasattr(fine_tuning, "jobs"):
        import mistralai

        version = getattr(mistralai, "__version__", None)
        if version is None:
            from mistralai.client._version import __version__ as version
        raise RuntimeError(
            f"mistralai {version} has no client.fine_tuning (removed in 2.5.2); "
            "install the pinned release: pip install 'mistralai==2.5.1'"
        )

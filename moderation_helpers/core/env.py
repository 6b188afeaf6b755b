"""Environment variable names and the defaults they override: defined once, read everywhere.

Secrets (the API keys and the factory's token) are read from the environment only, never from a
parameter, so that they never reach a notebook, a run folder or a log.
"""

from __future__ import annotations

import os
from pathlib import Path

MISTRAL_API_KEY_ENV = "MISTRAL_API_KEY"
MISTRAL_URL_ENV = "MISTRAL_SERVER_URL"
FACTORY_URL_ENV = "MODERATION_FACTORY_URL"
FACTORY_TOKEN_ENV = "MODERATION_FACTORY_TOKEN"
FACTORY_STORE_ENV = "MODERATION_FACTORY_STORE"
FACTORY_SETTING_PREFIX = "MODERATION_FACTORY_"  # + a serving limit's name, upper case
# The module the factory trains with; tests name a stand-in that fails or runs slowly on purpose.
FACTORY_TRAINER_ENV = "MODERATION_FACTORY_TRAINER"
# Where encoders shipped as split zips (all-mpnet-base-v2) are unzipped, once.
ENCODER_CACHE_ENV = "MODERATION_ENCODER_CACHE"
WANDB_API_KEY_ENV = "WANDB_API_KEY"
HF_TOKEN_ENV = "HF_TOKEN"

# Every variable whose value must never be written anywhere.
SECRET_ENV = (MISTRAL_API_KEY_ENV, WANDB_API_KEY_ENV, FACTORY_TOKEN_ENV, HF_TOKEN_ENV)

DEFAULT_MISTRAL_URL = "https://api.mistral.ai"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_FACTORY_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DEFAULT_FACTORY_STORE = "~/.cache/moderation-cookbook/factory"
DEFAULT_ENCODER_CACHE = "~/.cache/moderation-cookbook/encoders"


def default_store() -> Path:
    """The factory's store folder: ``$MODERATION_FACTORY_STORE``, else the user's cache."""
    return Path(os.environ.get(FACTORY_STORE_ENV) or DEFAULT_FACTORY_STORE).expanduser()


def factory_headers(token: str | None = None) -> dict[str, str]:
    """The headers that authenticate to a local factory: ``token``, else
    ``$MODERATION_FACTORY_TOKEN``, as a bearer token; none when neither is set."""
    token = token or os.environ.get(FACTORY_TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def default_encoder_cache() -> Path:
    """The unzipped encoders' folder: ``$MODERATION_ENCODER_CACHE``, else the user's cache."""
    return Path(os.environ.get(ENCODER_CACHE_ENV) or DEFAULT_ENCODER_CACHE).expanduser()


def secret_values(environ: os.Mapping[str, str] | None = None, min_length: int = 4) -> list[str]:
    """The values of the secret variables that are set (longest first, for masking)."""
    environ = os.environ if environ is None else environ
    values = {environ[n] for n in SECRET_ENV if len(environ.get(n) or "") >= min_length}
    return sorted(values, key=len, reverse=True)

"""backends: which backend ``auto`` picks, where each points, keys kept out of reprs, a local
factory started when none answers, and the SDK-version guard. Never touches the real API: the
"mistral" backend is pointed at a local factory that requires the key as its token."""

from __future__ import annotations

import json
import os
import socket

import pytest
from mistralai.client import errors as sdk_errors

from moderation_helpers.factory.process import pid_alive, start_factory, stop_factory
from moderation_helpers.recipe.client import (
    DEFAULT_FACTORY_URL,
    DEFAULT_MISTRAL_URL,
    connect,
    default_base_model,
    require_fine_tuning,
    resolve_backend,
)
from tests.sdk_jobs import fine_tuned

SECRET = "sk-test-not-a-real-key-0123456789"


@pytest.fixture
def clean_env(monkeypatch):
    """No backend variables from the caller's environment leak into a test."""
    for name in (
        "MISTRAL_API_KEY",
        "MISTRAL_SERVER_URL",
        "MODERATION_FACTORY_URL",
        "MODERATION_FACTORY_STORE",
        "MODERATION_FACTORY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_auto_picks_mistral_only_when_a_key_is_set(clean_env):
    assert resolve_backend("auto") == "local"
    assert resolve_backend() == "local"
    clean_env.setenv("MISTRAL_API_KEY", SECRET)
    assert resolve_backend("auto") == "mistral"
    assert resolve_backend("local") == "local"
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("openai")


def test_the_default_base_model_is_what_the_backend_trains(clean_env):
    # The local factory fine-tunes all-MiniLM-L6-v2: job ids and figure titles must say so.
    assert default_base_model("local") == default_base_model() == "all-MiniLM-L6-v2"
    assert default_base_model("mistral") == "ministral-3b-latest"
    clean_env.setenv("MISTRAL_API_KEY", SECRET)
    assert default_base_model("auto") == "ministral-3b-latest"


def test_mistral_backend_needs_the_key_from_the_environment(clean_env):
    with pytest.raises(RuntimeError, match="MISTRAL_API_KEY"):
        connect("mistral")


def test_mistral_backend_defaults_to_the_real_api_and_hides_the_key(clean_env):
    clean_env.setenv("MISTRAL_API_KEY", SECRET)
    backend = connect("mistral")  # builds a client; sends nothing
    assert backend.name == "mistral" and backend.server_url == DEFAULT_MISTRAL_URL
    assert SECRET not in repr(backend) and SECRET not in str(backend)
    config = backend.client.sdk_configuration
    assert config.retry_config.strategy == "backoff"
    assert config.retry_config.retry_connection_errors is True
    require_fine_tuning(backend.client)


def test_auto_with_a_key_targets_mistral_at_the_server_url(clean_env, tmp_path):
    """MISTRAL_SERVER_URL points at a local factory whose token is the key: auto → mistral."""
    handle = start_factory(tmp_path / "store", port=0, token=SECRET)
    try:
        clean_env.setenv("MISTRAL_API_KEY", SECRET)
        clean_env.setenv("MISTRAL_SERVER_URL", handle.url)
        backend = connect("auto")
        assert backend.name == "mistral" and backend.server_url == handle.url
        assert fine_tuned(backend.client.models.list()) == []  # the key was accepted as the token

        clean_env.setenv("MISTRAL_API_KEY", "wrong-key")
        with pytest.raises(sdk_errors.MistralError) as err:
            connect("auto").client.files.list()
        assert err.value.status_code == 401
        log = (handle.store / "server.log").read_text()
        assert SECRET not in log
    finally:
        stop_factory(handle)
    assert not pid_alive(handle.pid)


def test_local_uses_the_factory_url_from_the_environment(factory, clean_env):
    clean_env.setenv("MODERATION_FACTORY_URL", factory.url)
    backend = connect("auto")
    assert backend.name == "local" and backend.server_url == factory.url
    assert backend.client.files.list().object == "list"
    assert DEFAULT_FACTORY_URL == "http://127.0.0.1:8765"


def test_local_without_start_raises_when_nothing_answers(clean_env):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match="no local Classifier Factory answers"):
        connect("local", server_url=url, start_local=False)


def test_local_starts_a_detached_factory_when_none_answers(clean_env, tmp_path):
    store = tmp_path / "factory-store"
    clean_env.setenv("MODERATION_FACTORY_STORE", str(store))
    url = f"http://127.0.0.1:{free_port()}"
    backend = connect("local", server_url=url)
    info = (store / "server.json").read_text()
    pid = int(json.loads(info)["pid"])
    try:
        assert backend.name == "local" and backend.server_url == url
        assert backend.client.fine_tuning.jobs.list().total == 0
        # Its own session: it outlives the kernel (process group) that started it.
        assert os.getsid(pid) != os.getsid(0)
        # A second connect finds it answering and starts nothing.
        assert connect("local", server_url=url).server_url == url
    finally:
        assert stop_factory(store) == pid
    assert not pid_alive(pid)
    assert stop_factory(store) is None


def test_require_fine_tuning_names_the_pin():
    class NoFineTuning:
        pass

    with pytest.raises(RuntimeError, match=r"mistralai==2\.5\.1"):
        require_fine_tuning(NoFineTuning())

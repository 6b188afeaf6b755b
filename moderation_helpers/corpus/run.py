"""Moderate a corpus with an exported model on Ray Data (the ``moderate-corpus`` command).

    moderate-corpus --model runs/demo/model --input comments.parquet --output moderated/
    moderate-corpus --model DIR --input dump.jsonl --output OUT --address ray://head:10001

The driver reads the corpus with Arrow and cuts it into fixed blocks of rows
(:mod:`moderation_helpers.corpus.files`). Ray Data sends each block to an actor pool: every actor
holds one Moderator, that is one ONNX Runtime session, with ``threads`` intra-op threads, and
``actors × threads`` is about the number of cores. An actor scores its block in batches sized
by tokens and writes the block's part file itself, atomically
(:mod:`moderation_helpers.corpus.scoring`); the driver only sees one small stats row per block,
which moves the progress bar. So the output keeps every input row and column in input order,
plus ``row``, ``error``, ``score/{target}/{label}``, ``flagged/{target}`` and ``is_flagged``;
a re-run resumes where a run stopped, and a block that fails costs only that block.

Without ``address`` an embedded local Ray is started (no dashboard, quiet logs) and shut down
afterwards; with one, the running cluster is used: its workers must see the model folder, the
output folder and this package (installed, or through ``runtime_env``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moderation_helpers.core.flags import DEFAULT_THRESHOLD, SAFE_LABEL
from moderation_helpers.corpus.files import (
    ROW_COLUMN,
    CorpusError,
    default_block_rows,
    input_fingerprint,
    n_blocks,
    output_totals,
    prepare_output,
    read_corpus,
    reserved_conflicts,
    write_manifest,
)
from moderation_helpers.corpus.scoring import (
    BlockScorer,
    ModeratorLoader,
    ScorerSettings,
    labels_of,
    load_moderator,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

__all__ = ["CorpusError", "moderate_corpus"]

LOOPBACK = "127.0.0.1"


def available_cpus() -> int:
    """The cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def choose_pool(
    cpus: int, num_actors: int | None = None, threads: int | None = None
) -> tuple[int, int]:
    """``(actors, threads per actor)`` with actors × threads ≈ ``cpus``.

    By default one thread per actor up to 4 cores (small matmuls scale better across sessions
    than across threads), two beyond: fewer model copies in memory on a big machine.
    """
    if threads is None:
        threads = max(1, cpus // num_actors) if num_actors else (1 if cpus <= 4 else 2)
    if num_actors is None:
        num_actors = max(1, cpus // threads)
    return num_actors, threads


def cuda_available(log: Callable[[str], None]) -> bool:
    """Whether this onnxruntime build has the CUDA provider; says so when it has not."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return True
    log("GPUs found, but this onnxruntime has no CUDA provider (install onnxruntime-gpu): CPU")
    return False


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int | None, log: Callable[[str], None]
) -> Iterator[dict[str, float]]:
    """Ray for the run: the one already initialised, the cluster at ``address``, or an
    embedded local one (shut down afterwards). Yields the cluster's resources."""
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
        quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
        if address:
            ray.init(address=address, **quiet)
        else:
            # An embedded Ray talks to itself on loopback only, never on the machine's network.
            ray.init(
                num_cpus=num_cpus or available_cpus(),
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
                **quiet,
            )
    try:
        resources = ray.cluster_resources()
        where = f"Ray cluster at {address}" if address else "local Ray"
        gpus = f", {resources['GPU']:.0f} GPUs" if resources.get("GPU") else ""
        log(
            f"{where}: {resources.get('CPU', 0):.0f} CPUs{gpus}"
            + ("" if started else " (already running)")
        )
        yield resources
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[Any]:
    """Ray Data without its own bars and INFO lines: the run has one bar, over texts."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = context.enable_progress_bars
    logger = logging.getLogger("ray.data")
    level = logger.level
    context.enable_progress_bars = False
    logger.setLevel(logging.WARNING)
    try:
        yield context
    finally:
        context.enable_progress_bars = saved
        logger.setLevel(level)


def resolve_thresholds(moderator: Any, default: float | None) -> tuple[dict[str, list[float]], str]:
    """Per target, a threshold per label (the model's order), and where they came from.

    The model folder's ``thresholds.json`` (tuned by 04_infer) wins; a label it lacks gets
    ``default`` (0.5) and the source says which; ``default=None`` makes that an error.
    """
    given = getattr(moderator, "thresholds", None) or {}
    limits, defaulted = {}, []
    for target, labels in labels_of(moderator).items():
        row = []
        for label in labels:
            value = (given.get(target) or {}).get(label)
            if value is None:
                defaulted.append(f"{target}/{label}")
                value = default
            row.append(value)
        limits[target] = row
    if defaulted and default is None:
        raise CorpusError(f"the model folder has no threshold for {defaulted}")
    if not defaulted:
        return limits, "model folder"
    if len(defaulted) == sum(len(v) for v in limits.values()):
        return limits, f"default {default} (the model folder has no thresholds.json)"
    return limits, f"model folder; default {default} for {defaulted}"


def model_fingerprint(model_dir: str | os.PathLike) -> list[list[Any]]:
    """Name, size and modification time of the model folder's files."""
    files = sorted(p for p in Path(model_dir).rglob("*") if p.is_file())
    return [[str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def moderate_corpus(
    model_dir: str | os.PathLike,
    input: str | os.PathLike,  # noqa: A002 - the CLI's name for it
    output: str | os.PathLike,
    *,
    text_column: str = "text",
    address: str | None = None,
    variant: str = "fp32",
    num_actors: int | None = None,
    threads: int | None = None,
    num_cpus: int | None = None,
    batch_tokens: int | None = None,
    block_rows: int | None = None,
    overwrite: bool = False,
    default_threshold: float | None = DEFAULT_THRESHOLD,
    providers: Sequence[str] | None = None,
    progress: bool = True,
    load: ModeratorLoader = load_moderator,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score every row of the corpus at ``input`` into the folder ``output``; return a summary.

    ``output`` gets ``part-NNNNN.parquet`` files (one per block of ``block_rows`` input rows)
    and ``_manifest.json``; ``read_moderated(output)`` or ``pd.read_parquet(output)`` reads
    them in input order. A folder from an earlier run of the same input, model and settings is
    resumed; another one is refused unless ``overwrite``. ``load`` builds the Moderator in each
    actor (the default loads the exported folder). The summary says how many rows, bad rows
    and flagged rows there are, which blocks failed (``complete`` is False then: run again to
    resume), the pool, the providers and the speed.
    """
    started = time.perf_counter()
    if variant not in ("fp32", "int8"):
        raise CorpusError(f"variant must be 'fp32' or 'int8', got {variant!r}")
    table = read_corpus(input, text_column)
    conflicts = reserved_conflicts(table.column_names)
    if conflicts:
        raise CorpusError(f"{input}: columns {conflicts} would be overwritten by the output's")
    model_dir = str(Path(model_dir).resolve())
    probe = load(  # a bad folder fails here, before Ray starts
        model_dir, variant=variant, threads=1, providers=providers, token_budget=batch_tokens
    )
    labels = labels_of(probe)
    limits, threshold_source = resolve_thresholds(probe, default_threshold)
    safe_label = getattr(probe, "safe_label", None) or SAFE_LABEL
    del probe
    n_rows = table.num_rows
    block_rows = block_rows or default_block_rows(n_rows)
    plan = {
        "input": input_fingerprint(input),
        "rows": n_rows,
        "text_column": text_column,
        "model": model_fingerprint(model_dir),
        "variant": variant,
        "labels": labels,
        "thresholds": limits,
        "threshold_source": threshold_source,
        "safe_label": safe_label,
        "block_rows": block_rows,
    }
    out, done = prepare_output(output, plan, overwrite=overwrite)
    total_blocks = n_blocks(n_rows, block_rows)
    todo = [b for b in range(total_blocks) if b not in done]
    log(
        f"{n_rows} rows in {total_blocks} blocks of {block_rows}; {len(done)} already written"
        f"{', resuming' if done else ''}; thresholds: {threshold_source}"
    )
    write_manifest(out, plan, complete=False)

    stats: list[dict[str, Any]] = []
    pool: dict[str, Any] = {}
    if todo:
        table = table.add_column(0, ROW_COLUMN, pa.array(np.arange(n_rows, dtype=np.int64)))
        blocks = [table.slice(b * block_rows, block_rows) for b in todo]
        settings_kw = dict(
            model_dir=model_dir,
            out_dir=str(out.resolve()),
            text_column=text_column,
            block_rows=block_rows,
            n_rows=n_rows,
            labels=labels,
            limits=limits,
            safe_label=safe_label,
            variant=variant,
            providers=list(providers) if providers else None,
            batch_tokens=batch_tokens,
            loader=load,
        )
        with ray_session(address, num_cpus, log) as resources:
            cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
            on_gpu = gpus > 0 and providers is None and cuda_available(log)
            if on_gpu:  # one actor per GPU: a GPU session needs few CPU threads
                actors, per_actor = num_actors or gpus, threads or 1
            else:
                actors, per_actor = choose_pool(cpus, num_actors, threads)
            actors = min(actors, len(todo))
            gpu_share = gpus / actors if on_gpu else 0
            pool = {"actors": actors, "threads_per_actor": per_actor, "cpus": cpus, "gpus": gpus}
            log(
                f"actor pool: {actors} × {per_actor} thread(s)"
                + (f" and {gpu_share:g} GPU" if on_gpu else "")
                + f", one Moderator ({variant}) each"
            )
            settings = ScorerSettings(threads=per_actor, **settings_kw)
            stats = _run_blocks(blocks, settings, actors, per_actor, gpu_share, progress)
    failed = {s["block"]: s["failure"] for s in stats if s["failure"]}
    for block, failure in sorted(failed.items()):
        log(f"block {block} (rows from {block * block_rows}) failed: {failure}")
    totals = output_totals(out)
    elapsed = time.perf_counter() - started
    rows_scored = sum(s["rows"] for s in stats if not s["failure"])
    busy = sum(s["seconds"] for s in stats)
    providers_used = sorted({s["providers"] for s in stats if s["providers"]})
    summary = {
        "output": str(out),
        **totals,
        "input_rows": n_rows,
        "complete": totals["rows"] == n_rows and not failed,
        "blocks": total_blocks,
        "blocks_skipped": len(done),
        "blocks_scored": len(stats) - len(failed),
        "failed_blocks": sorted(failed),
        "threshold_source": threshold_source,
        "providers": providers_used,
        **pool,
        "seconds": round(elapsed, 3),
        "texts_per_second": round(rows_scored / elapsed, 1),
        # Without starting Ray and the actors: rows over the actors' busy time.
        "scoring_texts_per_second": (
            round(rows_scored * pool["actors"] / busy, 1) if busy and pool else None
        ),
    }
    write_manifest(out, plan, **{k: v for k, v in summary.items() if k != "output"})
    if providers_used:
        log(f"scored with onnxruntime providers: {', '.join(providers_used)}")
    if not summary["complete"]:
        log(f"{len(failed)} block(s) failed: run the same command again to score only those")
    return summary


def _run_blocks(
    blocks: list[pa.Table],
    settings: ScorerSettings,
    actors: int,
    threads: int,
    gpus: float,
    progress: bool,
) -> list[dict[str, Any]]:
    """Score the blocks on an actor pool; one stats row per block, as they finish."""
    import ray.data

    stats = []
    total = settings.n_rows
    already = total - sum(b.num_rows for b in blocks)  # resuming: the bar starts there
    bar = tqdm(total=total, initial=already, unit="text", desc="moderate", disable=not progress)
    with _quiet_ray_data(), bar:
        dataset = ray.data.from_arrow(blocks).map_batches(
            BlockScorer,
            fn_constructor_args=(settings,),
            batch_size=None,  # one call per block: the block is the unit that is written
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=threads,
            num_gpus=gpus or None,  # Ray hides the GPUs from actors that do not ask for one
        )
        for row in dataset.iter_rows():
            stats.append(row)
            bar.update(row["rows"])
    return stats

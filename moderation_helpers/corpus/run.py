"""Moderate a corpus with an exported model on Ray Data (the ``moderate-corpus`` command).

    moderate-corpus --model runs/demo/model --input comments.parquet --output moderated/
    moderate-corpus --model DIR --input dump.jsonl --output OUT --address ray://head:10001

This module runs the steps: plan (read and check the corpus, load the model once, fingerprint
both, ready the output folder), score the missing blocks on Ray, summarize. The driver reads
the corpus with Arrow and cuts it into fixed blocks of rows
(:mod:`moderation_helpers.corpus.files`). Ray Data sends each block to an actor pool
(:mod:`moderation_helpers.corpus.ray_pool`): every actor holds one Moderator, that is one ONNX
Runtime session, with ``threads`` intra-op threads, and ``actors × threads`` is about the number
of cores. An actor scores its block in batches sized by tokens and writes the block's part file
itself, atomically (:mod:`moderation_helpers.corpus.scoring`); the driver only sees one small
stats row per block, which moves the progress bar. So the output keeps every input row and
column in input order, plus ``row``, ``error``, ``score/{target}/{label}``, ``flagged/{target}``
and ``is_flagged``; a re-run resumes where a run stopped, and a block that fails costs only
that block.

Without ``address`` an embedded local Ray is started (no dashboard, quiet logs) and shut down
afterwards; with one, the running cluster is used: its workers must see the model folder, the
output folder and this package (installed, or through ``runtime_env``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moderation_helpers.core.flags import (
    DEFAULT_THRESHOLD,
    SAFE_LABEL,
    ThresholdTable,
    thresholds_table,
)
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
from moderation_helpers.corpus.ray_pool import ray_session, run_blocks, size_pool
from moderation_helpers.corpus.scoring import (
    ModeratorLoader,
    ScorerSettings,
    labels_of,
    load_moderator,
)

__all__ = ["CorpusError", "moderate_corpus"]

VARIANTS = ("fp32", "int8")


def resolve_thresholds(moderator: Any, default: float | None) -> ThresholdTable:
    """A threshold per label the model scores, and where each came from.

    The model folder's ``thresholds.json`` (tuned by 04_infer) wins; a label it lacks gets
    ``default`` (0.5) and the table's ``source`` says which; ``default=None`` makes that an
    error, and so does a threshold for a label the model does not score.
    """
    given = getattr(moderator, "thresholds", None) or {}
    try:
        return thresholds_table(labels_of(moderator), given, default=default)
    except ValueError as exc:
        raise CorpusError(f"the model folder's thresholds: {exc}") from exc


def model_fingerprint(model_dir: str | os.PathLike) -> list[list[Any]]:
    """Name, size and modification time of the model folder's files."""
    files = sorted(p for p in Path(model_dir).rglob("*") if p.is_file())
    return [[str(p.relative_to(model_dir)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


@dataclass(frozen=True)
class RunPlan:
    """What a run scores and where, settled before Ray starts."""

    table: pa.Table  # the whole corpus, as read
    model_dir: str  # resolved: the actors may run elsewhere
    text_column: str
    variant: str
    block_rows: int
    labels: dict[str, list[str]]  # {target: [labels]}, the model's order
    thresholds: ThresholdTable
    safe_label: str
    out: Path
    explain: bool  # a spans column: the reasons for each flagged row's flags
    done: frozenset[int]  # blocks an earlier run of the same plan wrote
    manifest: dict[str, Any]  # the manifest's plan: only the same plan resumes

    @property
    def n_rows(self) -> int:
        return self.table.num_rows

    @property
    def total_blocks(self) -> int:
        return n_blocks(self.n_rows, self.block_rows)

    @property
    def todo(self) -> list[int]:
        """The blocks this run scores, in order."""
        return [b for b in range(self.total_blocks) if b not in self.done]

    @property
    def limits(self) -> dict[str, list[float]]:
        """Per target, a threshold per label in the model's order (what the actors apply)."""
        return {t: self.thresholds.row(t, labels).tolist() for t, labels in self.labels.items()}


def plan_run(
    model_dir: str | os.PathLike,
    input: str | os.PathLike,  # noqa: A002 - the CLI's name for it
    output: str | os.PathLike,
    *,
    text_column: str,
    variant: str,
    block_rows: int | None,
    overwrite: bool,
    default_threshold: float | None,
    probe_model: Callable[[str], Any],
    explain: bool = False,
) -> RunPlan:
    """Read and check the corpus, load the model once (a bad folder fails here, before Ray
    starts), fingerprint both and make the output folder ready: resumed or fresh."""
    if variant not in VARIANTS:
        raise CorpusError(f"variant must be 'fp32' or 'int8', got {variant!r}")
    table = read_corpus(input, text_column)
    conflicts = reserved_conflicts(table.column_names)
    if conflicts:
        raise CorpusError(f"{input}: columns {conflicts} would be overwritten by the output's")
    model_dir = str(Path(model_dir).resolve())
    probe = probe_model(model_dir)
    labels = labels_of(probe)
    thresholds = resolve_thresholds(probe, default_threshold)
    safe_label = getattr(probe, "safe_label", None) or SAFE_LABEL
    del probe
    block_rows = block_rows or default_block_rows(table.num_rows)
    manifest = {
        "input": input_fingerprint(input),
        "rows": table.num_rows,
        "text_column": text_column,
        "model": model_fingerprint(model_dir),
        "variant": variant,
        "labels": labels,
        "thresholds": {t: thresholds.row(t, labs).tolist() for t, labs in labels.items()},
        "threshold_source": thresholds.source,
        "safe_label": safe_label,
        "block_rows": block_rows,
        # Only when on: the output of an earlier run without spans still resumes.
        **({"explain": True} if explain else {}),
    }
    out, done = prepare_output(output, manifest, overwrite=overwrite)
    return RunPlan(
        table=table,
        model_dir=model_dir,
        text_column=text_column,
        variant=variant,
        block_rows=block_rows,
        labels=labels,
        thresholds=thresholds,
        safe_label=safe_label,
        out=out,
        explain=explain,
        done=frozenset(done),
        manifest=manifest,
    )


def score_blocks(
    plan: RunPlan,
    *,
    address: str | None,
    num_cpus: int | None,
    num_actors: int | None,
    threads: int | None,
    providers: Sequence[str] | None,
    batch_tokens: int | None,
    load: ModeratorLoader,
    progress: bool,
    log: Callable[[str], None],
    log_file: str | os.PathLike | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Score the plan's missing blocks on a Ray actor pool: one stats row per block, and the
    pool's figures (none when there is nothing to score: Ray is not started then). With
    ``log_file``, Ray's own lines in this process go there instead of stderr."""
    todo = plan.todo
    if not todo:
        return [], {}
    rows = pa.array(np.arange(plan.n_rows, dtype=np.int64))
    table = plan.table.add_column(0, ROW_COLUMN, rows)
    blocks = [table.slice(b * plan.block_rows, plan.block_rows) for b in todo]
    with ray_session(address, num_cpus, log, log_file) as resources:
        pool = size_pool(
            resources,
            len(blocks),
            num_actors=num_actors,
            threads=threads,
            providers=providers,
            log=log,
        )
        log(pool.describe(plan.variant))
        settings = ScorerSettings(
            model_dir=plan.model_dir,
            out_dir=str(plan.out.resolve()),
            text_column=plan.text_column,
            block_rows=plan.block_rows,
            n_rows=plan.n_rows,
            labels=plan.labels,
            limits=plan.limits,
            safe_label=plan.safe_label,
            variant=plan.variant,
            threads=pool.threads,
            providers=list(providers) if providers else None,
            batch_tokens=batch_tokens,
            explain=plan.explain,
            loader=load,
        )
        stats = run_blocks(blocks, settings, pool, progress)
    return stats, pool.summary()


def summarize(
    plan: RunPlan, stats: list[dict[str, Any]], pool: dict[str, int], seconds: float
) -> dict[str, Any]:
    """The run's summary: the output folder's totals (earlier runs' blocks included), which
    blocks failed, the pool, the providers and the speed."""
    failed = sorted(s["block"] for s in stats if s["failure"])
    totals = output_totals(plan.out)
    rows_scored = sum(s["rows"] for s in stats if not s["failure"])
    busy = sum(s["seconds"] for s in stats)
    return {
        "output": str(plan.out),
        **totals,
        "input_rows": plan.n_rows,
        "complete": totals["rows"] == plan.n_rows and not failed,
        "blocks": plan.total_blocks,
        "blocks_skipped": len(plan.done),
        "blocks_scored": len(stats) - len(failed),
        "failed_blocks": failed,
        "threshold_source": plan.thresholds.source,
        "providers": sorted({s["providers"] for s in stats if s["providers"]}),
        **pool,
        "seconds": round(seconds, 3),
        "texts_per_second": round(rows_scored / seconds, 1),
        # Without starting Ray and the actors: rows over the actors' busy time.
        "scoring_texts_per_second": (
            round(rows_scored * pool["actors"] / busy, 1) if busy and pool else None
        ),
    }


def _report(
    plan: RunPlan,
    stats: list[dict[str, Any]],
    summary: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Log what went wrong per block, the providers, and how to finish an incomplete run."""
    failures = sorted((s["block"], s["failure"]) for s in stats if s["failure"])
    for block, failure in failures:
        log(f"block {block} (rows from {block * plan.block_rows}) failed: {failure}")
    if summary["providers"]:
        log(f"scored with onnxruntime providers: {', '.join(summary['providers'])}")
    if not summary["complete"]:
        log(f"{len(failures)} block(s) failed: run the same command again to score only those")


@contextlib.contextmanager
def notes_log(
    log: Callable[[str], None] | None, log_file: str | os.PathLike | None
) -> Iterator[Callable[[str], None]]:
    """Where a run's notes go: ``log`` when given, else appended to ``log_file`` (closed
    afterwards) when there is one, else printed."""
    if log is not None or log_file is None:
        yield log or print
        return
    with Path(log_file).open("a", encoding="utf-8") as notes:
        yield functools.partial(print, file=notes, flush=True)


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
    explain: bool = False,
    progress: bool = True,
    load: ModeratorLoader = load_moderator,
    log: Callable[[str], None] | None = None,
    log_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score every row of the corpus at ``input`` into the folder ``output``; return a summary.

    ``output`` gets ``part-NNNNN.parquet`` files (one per block of ``block_rows`` input rows)
    and ``_manifest.json``; ``read_moderated(output)`` or ``pd.read_parquet(output)`` reads
    them in input order. A folder from an earlier run of the same input, model and settings is
    resumed; another one is refused unless ``overwrite``. ``load`` builds the Moderator in each
    actor (the default loads the exported folder). The summary says how many rows, bad rows
    and flagged rows there are, which blocks failed (``complete`` is False then: run again to
    resume), the pool, the providers and the speed. ``explain`` adds a ``spans`` column: per
    flagged row, the JSON of :meth:`Moderator.explain`'s ``{category: spans}`` for its flags
    (null for the other rows); explaining costs a few times what scoring does.

    ``log`` gets the run's notes (blocks, the pool, failures; default: printed, or appended to
    ``log_file`` when there is one). ``log_file`` also gets what Ray itself prints in this
    process (its loggers and its C++ core worker), which would otherwise reach stderr: a
    notebook's output, and the terminal of the process that started its kernel.
    """
    with notes_log(log, log_file) as note:
        started = time.perf_counter()
        plan = plan_run(
            model_dir,
            input,
            output,
            text_column=text_column,
            variant=variant,
            block_rows=block_rows,
            overwrite=overwrite,
            default_threshold=default_threshold,
            explain=explain,
            probe_model=lambda folder: load(
                folder, variant=variant, threads=1, providers=providers, token_budget=batch_tokens
            ),
        )
        note(
            f"{plan.n_rows} rows in {plan.total_blocks} blocks of {plan.block_rows}; "
            f"{len(plan.done)} already written{', resuming' if plan.done else ''}; "
            f"thresholds: {plan.thresholds.source}"
        )
        write_manifest(plan.out, plan.manifest, complete=False)
        stats, pool = score_blocks(
            plan,
            address=address,
            num_cpus=num_cpus,
            num_actors=num_actors,
            threads=threads,
            providers=providers,
            batch_tokens=batch_tokens,
            load=load,
            progress=progress,
            log=note,
            log_file=log_file,
        )
        summary = summarize(plan, stats, pool, time.perf_counter() - started)
        write_manifest(
            plan.out, plan.manifest, **{k: v for k, v in summary.items() if k != "output"}
        )
        _report(plan, stats, summary, note)
        return summary

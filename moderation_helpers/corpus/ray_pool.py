"""The Ray side of a corpus run: the Ray session, the size of the actor pool, and the blocks'
trip through Ray Data to the pool's :class:`~moderation_helpers.corpus.scoring.BlockScorer`s.

Ray is imported inside the functions: the driver pays for it only once there is work to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from moderation_helpers.core.cpu import available_cpus
from moderation_helpers.corpus.scoring import BlockScorer, ScorerSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

LOOPBACK = "127.0.0.1"


# Ray's Python loggers: "ray" (ray.init's notes, e.g. token authentication) and "ray.data"
# (which keeps its own handlers and does not propagate).
RAY_LOGGERS = ("ray", "ray.data")


@contextlib.contextmanager
def _loggers_to(path: Path, names: Sequence[str]) -> Iterator[None]:
    """The named loggers write to ``path`` instead of the console while inside; their other
    handlers (Ray's session files) are kept."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = list(logger.handlers)
        logger.handlers = [
            h
            for h in logger.handlers
            if not isinstance(h, logging.StreamHandler) or isinstance(h, logging.FileHandler)
        ] + [handler]
    try:
        yield
    finally:
        for name, handlers in saved.items():
            logging.getLogger(name).handlers = handlers
        handler.close()


@contextlib.contextmanager
def _native_stderr_to(path: Path) -> Iterator[None]:
    """This process's file descriptor 2 appends to ``path`` while inside; ``sys.stderr`` keeps
    writing where it did (a progress bar stays on the terminal).

    Ray's C++ core worker in the driver prints its ERROR lines (such as Ray Data's warning about
    actors whose constructor arguments live in the object store) to the process's stderr, and
    no Ray setting sends them elsewhere: ``RAY_BACKEND_LOG_LEVEL=fatal`` would drop them from
    Ray's own log files too, and itself prints a line. In a Jupyter kernel, whatever reaches
    descriptor 2 lands in the cell's output and on the terminal that started the kernel.
    """
    saved_stream = sys.stderr
    try:
        saved_stream.flush()
        on_fd2 = saved_stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # none, or a kernel's or a test's capture
        on_fd2 = False
    saved_fd = os.dup(2)
    if on_fd2:  # a plain process: Python's stderr keeps the terminal through a copy of fd 2
        sys.stderr = open(os.dup(saved_fd), "w", buffering=1, encoding="utf-8")  # noqa: SIM115
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)
    try:
        yield
    finally:
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        if on_fd2:
            sys.stderr.close()
            sys.stderr = saved_stream


@contextlib.contextmanager
def ray_output_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Ray's own lines in this process, its Python loggers' and its C++ core worker's, go to
    the file ``path`` (appended) while inside; with ``path=None`` nothing changes.

    The workers' lines stay in Ray's session folder (``log_to_driver=False``)."""
    if path is None:
        yield
        return
    import ray.data  # noqa: F401 - configures the "ray.data" logger, which is then redirected

    with _loggers_to(Path(path), RAY_LOGGERS), _native_stderr_to(Path(path)):
        yield


@contextlib.contextmanager
def ray_session(
    address: str | None,
    num_cpus: int | None,
    log: Callable[[str], None],
    log_file: str | os.PathLike | None = None,
) -> Iterator[dict[str, float]]:
    """Ray for the run: the one already initialised, the cluster at ``address``, or an
    embedded local one (shut down afterwards). Yields the cluster's resources.

    With ``log_file``, what Ray itself prints in this process goes there, not to stderr."""
    with ray_output_to(log_file), _ray_cluster(address, num_cpus, log) as resources:
        yield resources


@contextlib.contextmanager
def _ray_cluster(
    address: str | None, num_cpus: int | None, log: Callable[[str], None]
) -> Iterator[dict[str, float]]:
    """Connect to or start Ray; shut down only an embedded one this call started."""
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
def quiet_ray_data() -> Iterator[Any]:
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


@dataclass(frozen=True)
class ActorPool:
    """How many Moderator actors score the blocks, and what each one gets."""

    actors: int
    threads: int  # ONNX Runtime intra-op threads (and Ray CPUs) per actor
    cpus: int  # the cluster's
    gpus: int  # the cluster's
    gpu_share: float = 0.0  # GPUs per actor; 0 when scoring on CPU

    def summary(self) -> dict[str, int]:
        """The pool's figures as the run's summary reports them."""
        return {
            "actors": self.actors,
            "threads_per_actor": self.threads,
            "cpus": self.cpus,
            "gpus": self.gpus,
        }

    def describe(self, variant: str) -> str:
        """One log line: actors, threads and GPU share."""
        gpu = f" and {self.gpu_share:g} GPU" if self.gpu_share else ""
        return (
            f"actor pool: {self.actors} × {self.threads} thread(s){gpu}, "
            f"one Moderator ({variant}) each"
        )


def size_pool(
    resources: Mapping[str, float],
    n_blocks: int,
    *,
    num_actors: int | None,
    threads: int | None,
    providers: Sequence[str] | None,
    log: Callable[[str], None],
) -> ActorPool:
    """The pool for ``n_blocks`` blocks on a cluster of ``resources``: one actor per GPU when
    there are GPUs (and no providers were forced), else actors × threads ≈ its CPUs."""
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    on_gpu = gpus > 0 and providers is None and cuda_available(log)
    if on_gpu:  # a GPU session needs few CPU threads
        actors, per_actor = num_actors or gpus, threads or 1
    else:
        actors, per_actor = choose_pool(cpus, num_actors, threads)
    actors = min(actors, n_blocks)  # an actor without a block would only cost its start
    return ActorPool(
        actors=actors,
        threads=per_actor,
        cpus=cpus,
        gpus=gpus,
        gpu_share=gpus / actors if on_gpu else 0.0,
    )


def run_blocks(
    blocks: list[pa.Table], settings: ScorerSettings, pool: ActorPool, progress: bool
) -> list[dict[str, Any]]:
    """Score the blocks on an actor pool; one stats row per block, as they finish."""
    import ray.data

    stats = []
    total = settings.n_rows
    already = total - sum(b.num_rows for b in blocks)  # resuming: the bar starts there
    bar = tqdm(total=total, initial=already, unit="text", desc="moderate", disable=not progress)
    with quiet_ray_data(), bar:
        dataset = ray.data.from_arrow(blocks).map_batches(
            BlockScorer,
            fn_constructor_args=(settings,),
            batch_size=None,  # one call per block: the block is the unit that is written
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.threads,
            num_gpus=pool.gpu_share or None,  # Ray hides the GPUs from actors that ask for none
        )
        for row in dataset.iter_rows():
            stats.append(row)
            bar.update(row["rows"])
    return stats

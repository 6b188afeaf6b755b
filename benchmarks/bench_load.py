"""Issue 11 benchmark: the local factory under concurrent classification traffic.

Starts a factory on loopback (a temporary store, or ``--store`` with ``--model``), trains a short
job through the SDK unless a model is given, then for each level runs N concurrent SDK clients
(threads, one ``Mistral`` client each) sending requests of ``--texts`` comments from the mirror
for ``--seconds`` (and at most ``--max-requests``); then the single-client reference with
batches of 100, and both again while a training job runs (which must still finish). Prints one
Markdown table (texts/s, p50/p95/p99 latency, errors per level), the CPU (``lscpu``) and the
load average, and checks the targets at 8 clients × 16 texts. Right after the job it trains
reports SUCCESS it times the first classification (16 texts) against warm ones: the export and
the runtime calibration are made in training, so the first should cost at most 2 s more.

    python benchmarks/bench_load.py                      # prepares the mirror, trains 20 steps
    python benchmarks/bench_load.py --run-dir RUN --levels 1 8 --seconds 5
    python benchmarks/bench_load.py --window-ms 2 --max-batch-tokens 4096   # tune the batcher

Bounded: every level stops after ``--seconds`` (requests in flight finish), the whole run in
about 2-3 minutes on 2 cores. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_factory import DEFAULT_SOURCE, TERMINAL, load_average, prepare, wait_for  # noqa: E402

REFERENCE_BATCH = 100


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` says (what figures depend on), and the cores this
    process may use."""
    name = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def first_request(url: str, model: str, texts: Sequence[str], size: int = 16) -> dict:
    """Seconds of the model's first classification (``size`` texts) and the best of three warm
    ones after it, and the graph that answered (``X-Moderation-Graph``)."""
    import httpx

    def once(batch: Sequence[str]) -> tuple[float, str | None]:
        t0 = time.perf_counter()
        response = httpx.post(
            f"{url}/v1/classifications", json={"model": model, "input": list(batch)}, timeout=600
        )
        response.raise_for_status()
        return time.perf_counter() - t0, response.headers.get("x-moderation-graph")

    first, graph = once(texts[:size])
    warm = min(once(texts[size * (i + 1) : size * (i + 2)])[0] for i in range(3))
    return {"first": first, "warm": warm, "graph": graph}


@dataclass
class Level:
    """One measured load level."""

    name: str
    clients: int
    texts_per_request: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def texts_per_second(self) -> float:
        return len(self.latencies) * self.texts_per_request / self.seconds if self.seconds else 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def run_level(
    url: str,
    model: str,
    texts: Sequence[str],
    clients: int,
    per_request: int,
    seconds: float,
    max_requests: int,
    name: str,
) -> Level:
    """``clients`` threads, each a Mistral client sending ``per_request`` texts per request in a
    loop until ``seconds`` have passed or ``max_requests`` were sent in all."""
    from mistralai.client import Mistral

    level = Level(name, clients, per_request)
    lock = threading.Lock()
    sent = 0
    sdks = [Mistral(api_key="bench", server_url=url) for _ in range(clients)]
    for sdk in sdks:  # one warm-up request each: connections open, the model loaded
        sdk.classifiers.classify(model=model, inputs=list(texts[:per_request]))
    start_barrier = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        nonlocal sent
        sdk = sdks[i]
        offset = i * 997  # each client its own comments
        start_barrier.wait()
        while time.perf_counter() < deadline:
            with lock:
                if sent >= max_requests:
                    return
                sent += 1
                offset += per_request
            batch = [texts[(offset + j) % len(texts)] for j in range(per_request)]
            t0 = time.perf_counter()
            try:
                sdk.classifiers.classify(model=model, inputs=batch)
            except Exception as exc:  # noqa: BLE001 (counted and shown, not fatal)
                with lock:
                    level.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                level.latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    start_barrier.wait()
    for thread in threads:
        thread.join(seconds + 120)
    level.seconds = time.perf_counter() - started
    return level


def train_short_job(client, run_dir: Path, steps: int, *, wait: bool = True):
    """Upload the prepared splits and train a ``steps``-step classifier job."""
    ids = {}
    for split in ("train", "validation"):
        path = run_dir / f"{split}.jsonl"
        ids[split] = client.files.upload(
            file={"file_name": path.name, "content": path.read_bytes()}, purpose="fine-tune"
        ).id
    job = client.fine_tuning.jobs.create(
        model="ministral-3b-latest",
        job_type="classifier",
        training_files=[{"file_id": ids["train"], "weight": 1}],
        validation_files=[ids["validation"]],
        hyperparameters={"training_steps": steps, "learning_rate": 5e-5},
        auto_start=True,
    )
    if not wait:
        return job
    job = wait_for(client, job.id, {"SUCCESS"})
    if job.status != "SUCCESS":
        raise RuntimeError(f"job {job.id} ended {job.status}")
    return job


HEADER = "| level | clients × texts | requests | texts/s | p50 ms | p95 ms | p99 ms | errors |"


def row(lv: Level) -> str:
    """One level as a Markdown table row."""
    return (
        f"| {lv.name} | {lv.clients} × {lv.texts_per_request} | {len(lv.latencies)} | "
        f"{lv.texts_per_second:.0f} | {lv.percentile(50):.0f} | {lv.percentile(95):.0f} | "
        f"{lv.percentile(99):.0f} | {len(lv.errors)} |"
    )


def print_table(levels: list[Level]) -> None:
    print(HEADER)
    print("|---|---|---|---|---|---|---|---|")
    for lv in levels:
        print(row(lv))
    for lv in levels:
        for error in sorted(set(lv.errors))[:3]:
            print(f"  {lv.name}: {error}")


def check_targets(levels: list[Level], clients: int = 8) -> list[str]:
    """The issue's targets at 8 clients × 16 texts against the single-client reference."""
    lines = []
    for phase in ("", " (training)"):
        ref = next((lv for lv in levels if lv.name == f"reference{phase}"), None)
        at = next((lv for lv in levels if lv.name == f"{clients} clients{phase}"), None)
        if ref is None or at is None or not ref.latencies or not at.latencies:
            continue
        in_flight = clients * at.texts_per_request
        bound = 1.5 * in_flight / ref.texts_per_second * 1000
        p99 = at.percentile(99)
        lines.append(
            f"{clients} clients{phase}: texts/s {at.texts_per_second:.0f} vs reference "
            f"{ref.texts_per_second:.0f} (ratio {at.texts_per_second / ref.texts_per_second:.2f}"
            f", target >= 1); p99 {p99:.0f} ms (target <= 500 ms, or <= 1.5 × {in_flight} "
            f"texts at the reference rate = {bound:.0f} ms: ratio {p99 / bound:.2f}); "
            f"errors {len(at.errors)}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a prepared run folder (default: prepare)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="data to prepare")
    parser.add_argument("--store", type=Path, help="factory store (default: a temporary one)")
    parser.add_argument("--model", help="a fine-tuned model id already in --store")
    parser.add_argument("--steps", type=int, default=20, help="steps of the model to serve")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--texts", type=int, default=16, help="texts per request")
    parser.add_argument("--seconds", type=float, default=8.0, help="per level")
    parser.add_argument("--max-requests", type=int, default=2000, help="per level")
    parser.add_argument("--training-steps", type=int, default=100, help="job trained under load")
    parser.add_argument("--no-training", action="store_true", help="skip the training phase")
    parser.add_argument("--window-ms", type=float, help="the server's batch window")
    parser.add_argument("--max-batch-tokens", type=int, help="the server's batch budget")
    parser.add_argument("--graph", choices=("auto", "fp32", "int8"), help="the server's graph")
    args = parser.parse_args(argv)

    from moderation_helpers.factory.process import start_factory, stop_factory
    from moderation_helpers.recipe.client import connect

    for name, value in (
        ("BATCH_WINDOW_MS", args.window_ms),
        ("MAX_BATCH_TOKENS", args.max_batch_tokens),
        ("GRAPH", args.graph),
    ):
        if value is not None:
            os.environ["MODERATION_FACTORY_" + name] = str(value)
    print(f"CPU: {cpu_model()}; load average before: {load_average()}", flush=True)
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        run_dir = prepare(args.run_dir, args.source, Path(tmp))
        import pandas as pd

        texts = pd.read_json(run_dir / "train.jsonl", lines=True)["text"].tolist()
        handle = start_factory(args.store or Path(tmp) / "store", port=0)
        try:
            client = connect("local", server_url=handle.url, start_local=False).client
            model = args.model or train_short_job(client, run_dir, args.steps).fine_tuned_model
            print(f"serving {model} (reuse it: --store STORE --model {model})", flush=True)
            if not args.model:
                cold = first_request(handle.url, model, texts)
                print(
                    f"first classification right after SUCCESS: {cold['first']:.2f} s, warm "
                    f"{cold['warm']:.2f} s: {cold['first'] - cold['warm']:.2f} s above "
                    f"(target <= 2 s); graph {cold['graph']}",
                    flush=True,
                )

            def measure(suffix: str) -> None:
                common = (args.seconds, args.max_requests)
                ref = run_level(handle.url, model, texts, 1, REFERENCE_BATCH, *common, "")
                ref.name = f"reference{suffix}"
                levels.append(ref)
                print("measured:", row(ref), flush=True)
                for n in args.levels if not suffix else [8]:
                    level = run_level(handle.url, model, texts, n, args.texts, *common, "")
                    level.name = f"{n} clients{suffix}"
                    levels.append(level)
                    print("measured:", row(level), flush=True)

            measure("")
            if not args.no_training:
                job = train_short_job(client, run_dir, args.training_steps, wait=False)
                wait_for(client, job.id, {"RUNNING"})
                measure(" (training)")
                job = wait_for(client, job.id, TERMINAL)
                status = client.fine_tuning.jobs.get(job_id=job.id).status
                print(
                    f"training job under load: {job.status}, still RUNNING after: "
                    f"{'no' if status != 'RUNNING' else 'yes'}"
                )
        finally:
            stop_factory(handle)
    print(f"load average after: {load_average()}")
    print_table(levels)
    for line in check_targets(levels):
        print(line)


if __name__ == "__main__":
    main()

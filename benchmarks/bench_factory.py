"""Issue 6 benchmark: the local Classifier Factory against a bag-of-words baseline and the API.

One run prepares the mirror (unless ``--run-dir`` holds a prepared run folder), starts a local
factory on a free port with a temporary store, trains a default classifier job through the
``mistralai`` SDK exactly as the cookbook does (learning_rate 1e-4, weight_decay 0.1,
warmup_fraction 0.05), classifies through the SDK, trains the TF-IDF + logistic regression
baseline on the same JSONL, and prints one Markdown table:

    python benchmarks/bench_factory.py                 # 200 steps on ../shared/data/civil_comments
    python benchmarks/bench_factory.py --steps 50 --run-dir RUN

The machine is shared: the load average is printed before and after so figures can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import (  # noqa: E402
    label_frame,
    labels_of,
    load_split,
    roc_auc_table,
    score_frame,
    tfidf_logreg,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "civil_comments"
API_RECORD = REPO.parent / "shared" / "reference" / "mistral_api" / "job_validated.json"
API_EXPECTED_SECONDS = 3400  # job_validated.json's metadata.expected_duration_seconds
BATCH_TEXTS = 1000
SHORT_TEXT = "You are an idiot and everyone knows it."
TERMINAL = {"SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"}


def load_average() -> str:
    """The 1-minute load average: on a shared 2-core machine it says how far to trust timings."""
    return f"{os.getloadavg()[0]:.2f}"


def prepare(run_dir: Path | None, source: Path, workdir: Path) -> Path:
    """A prepared run folder: the one given, or 01_prepare executed on ``source``."""
    if run_dir is not None:
        return run_dir
    import papermill

    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(Path(__file__).resolve().parents[1] / "notebooks" / "01_prepare.ipynb"),
        str(run_dir / "01_prepare.ipynb"),
        parameters=dict(
            source=str(source),
            run_dir=str(run_dir),
            seed=0,
            max_label_fraction=1.0,
            zero_flags_fraction=0.4,
        ),
        progress_bar=False,
    )
    return run_dir


def wait_for(client, job_id: str, statuses: set[str], timeout: float = 3600.0):
    """Poll the job until its status is one of ``statuses`` (or terminal)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.get(job_id=job_id)
        if job.status in statuses or job.status in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s")
        time.sleep(0.2)


def train_job(client, run_dir: Path, steps: int, learning_rate: float) -> dict:
    """Upload, create (validated first), start and wait: the cookbook's 02/03 steps."""
    file_ids = {}
    for split in ("train", "validation"):
        path = run_dir / f"{split}.jsonl"
        uploaded = client.files.upload(
            file={"file_name": path.name, "content": path.read_bytes()}, purpose="fine-tune"
        )
        file_ids[split] = uploaded.id
    job = client.fine_tuning.jobs.create(
        model="ministral-3b-latest",
        job_type="classifier",
        training_files=[{"file_id": file_ids["train"], "weight": 1}],
        validation_files=[file_ids["validation"]],
        hyperparameters={
            "training_steps": steps,
            "learning_rate": learning_rate,
            "weight_decay": 0.1,
            "warmup_fraction": 0.05,
        },
        auto_start=False,
    )
    job = wait_for(client, job.id, {"VALIDATED"})
    if job.status != "VALIDATED":
        raise RuntimeError(f"job {job.id} ended {job.status} in validation")
    expected = job.metadata.expected_duration_seconds if job.metadata else None
    started = time.perf_counter()
    client.fine_tuning.jobs.start(job_id=job.id)
    job = wait_for(client, job.id, {"SUCCESS"})
    wall = time.perf_counter() - started
    if job.status != "SUCCESS":
        raise RuntimeError(f"job {job.id} ended {job.status}")
    return {"job": job, "wall_seconds": wall, "expected_seconds": expected}


def training_breakdown(store: Path, job_id: str) -> dict:
    """The trainer's own timings, from the job's result.json in the factory's store."""
    from moderation_helpers.factory.queue.training import RESULT_JSON
    from moderation_helpers.factory.store.db import Store

    path = Store(store).job_dir(job_id) / RESULT_JSON
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def classify(client, model: str, texts: Sequence[str]) -> list[dict[str, dict[str, float]]]:
    """Scores per text, through the SDK: ``{target: {label: score}}``."""
    response = client.classifiers.classify(model=model, inputs=list(texts))
    return [{name: dict(r[name].scores) for name in r} for r in response.results]


def classification_speed(client, model: str, test_texts: Sequence[str], repeats: int = 3):
    """Texts/s for one batch of 1,000 test texts (cycled), median of ``repeats``; and the
    median latency of one short text over 30 calls, after a warm-up call."""
    batch = [test_texts[i % len(test_texts)] for i in range(BATCH_TEXTS)]
    classify(client, model, [SHORT_TEXT])  # loads the model into the server's memory
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        classify(client, model, batch)
        rates.append(len(batch) / (time.perf_counter() - t0))
    latencies = []
    for _ in range(30):
        t0 = time.perf_counter()
        classify(client, model, [SHORT_TEXT])
        latencies.append(time.perf_counter() - t0)
    return statistics.median(rates), statistics.median(latencies)


def fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--run-dir", type=Path, help="a prepared run folder (default: prepare)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="data to prepare")
    parser.add_argument("--store", type=Path, help="factory store (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from moderation_helpers.factory.process import start_factory, stop_factory
    from moderation_helpers.recipe.client import connect

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-factory-") as tmp:
        workdir = Path(tmp)
        run_dir = prepare(args.run_dir, args.source, workdir)
        train, test = load_split(run_dir, "train"), load_split(run_dir, "test")
        labels = labels_of(train)
        test_texts = [ex["text"] for ex in test]
        truth = label_frame(test, labels)

        store = args.store or workdir / "store"
        handle = start_factory(store, port=0)
        try:
            client = connect("local", server_url=handle.url, start_local=False).client
            trained = train_job(client, run_dir, args.steps, args.learning_rate)
            job = trained["job"]
            timings = training_breakdown(store, job.id)
            scores = classify(client, job.fine_tuned_model, test_texts)
            texts_per_s, latency = classification_speed(client, job.fine_tuned_model, test_texts)
        finally:
            stop_factory(handle)

        local = roc_auc_table(truth, pd.DataFrame([s["moderation"] for s in scores])[labels])
        t0 = time.perf_counter()
        baseline_model = tfidf_logreg([ex["text"] for ex in train], label_frame(train, labels))
        baseline_fit = time.perf_counter() - t0
        baseline = roc_auc_table(truth, score_frame(baseline_model, test_texts, labels))

    # The trainer's step-only time when the worker records it, else its whole train() call
    # (steps + validation passes + loading + saving), which overstates the steps' share.
    steps_only = "train_seconds" in timings
    train_s = timings.get("train_seconds", timings.get("seconds"))
    figures = {
        "steps": args.steps,
        "training_seconds": train_s,
        "training_seconds_steps_only": steps_only,
        "seconds_per_step": train_s / args.steps if train_s else None,
        "validation_seconds": timings.get("valid_seconds"),
        "setup_seconds": timings.get("setup_seconds"),
        "trainer_seconds": timings.get("seconds"),
        "job_wall_seconds": trained["wall_seconds"],
        "expected_duration_seconds": trained["expected_seconds"],
        "texts_per_second": texts_per_s,
        "single_text_latency_ms": latency * 1000,
        "local_auc": local,
        "tfidf_auc": baseline,
        "tfidf_fit_seconds": baseline_fit,
        "wall_over_api_estimate": trained["wall_seconds"] / API_EXPECTED_SECONDS,
        "load_average": [load_before, load_average()],
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print_table(figures, labels)


def print_table(f: dict, labels: Sequence[str]) -> None:
    """The figures side by side, as Markdown."""
    estimate_error = (
        f["expected_duration_seconds"] / f["training_seconds"] - 1
        if f["expected_duration_seconds"] and f["training_seconds"]
        else None
    )
    rows = [
        ("training steps", f"{f['steps']}", "n/a (closed form fit)", "200"),
        (
            "training seconds"
            + (" (steps only)" if f["training_seconds_steps_only"] else " (whole train() call)"),
            fmt(f["training_seconds"], ".1f"),
            fmt(f["tfidf_fit_seconds"], ".1f"),
            "n/a",
        ),
        ("seconds per step", fmt(f["seconds_per_step"], ".3f"), "", ""),
        (
            "validation / setup seconds (apart)",
            f"{fmt(f['validation_seconds'], '.1f')} / {fmt(f['setup_seconds'], '.1f')}",
            "",
            "",
        ),
        (
            "job wall seconds (start → SUCCESS)",
            fmt(f["job_wall_seconds"], ".1f"),
            "",
            f"{API_EXPECTED_SECONDS} (estimate)",
        ),
        (
            "expected_duration_seconds (error vs training)",
            f"{fmt(f['expected_duration_seconds'], 'd')} ({fmt(estimate_error, '+.0%')})",
            "",
            f"{API_EXPECTED_SECONDS}",
        ),
        ("wall time / API estimate", fmt(f["wall_over_api_estimate"], ".3f"), "", "1"),
        ("texts/s classified (batch of 1,000, SDK)", fmt(f["texts_per_second"], ".0f"), "", ""),
        ("median single-text latency (ms, SDK)", fmt(f["single_text_latency_ms"], ".1f"), "", ""),
        (
            "macro ROC-AUC (6 labels, test)",
            fmt(f["local_auc"]["macro"]),
            fmt(f["tfidf_auc"]["macro"]),
            "",
        ),
    ]
    for label in labels:
        rows.append(
            (
                f"ROC-AUC {label}" + (" (apart)" if label == "safe" else ""),
                fmt(f["local_auc"]["per_label"].get(label)),
                fmt(f["tfidf_auc"]["per_label"].get(label)),
                "",
            )
        )
    print(f"load average (1 min) before / after: {f['load_average'][0]} / {f['load_average'][1]}")
    print()
    print("| figure | local factory (MiniLM fine-tune) | TF-IDF + logreg | Mistral API |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

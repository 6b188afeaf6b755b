"""Issue 10 benchmark: the ways to run a fine-tuned model, against what a user would write.

One run, on the same texts (the mirror's validation and test comments, repeated to ``--texts``):

* baseline: all-MiniLM-L6-v2 with ``transformers`` in float32, batches of 32 sorted by length,
  mean pooling: the plain loop a user would write;
* the local factory through the ``mistralai`` SDK, batches of 100;
* the exported model in-process (``Moderator``), fp32 and int8, each in a fresh process that
  imports only onnxruntime, tokenizers and numpy (its load time and resident memory too);
* ``moderate-corpus`` on Ray Data over ``--corpus-rows`` comments resampled from the mirror
  (default 200,000), checking that every row is written.

Ratios are to the baseline of the same run, since machines differ. The model is trained
through a local factory as ``bench_factory.py`` does (200 steps), or reused from ``--run-dir``
(a pipeline run folder: its ``job.json`` and the store in ``RUN/factory`` or ``--store``)::

    python benchmarks/bench_serving.py
    python benchmarks/bench_serving.py --run-dir runs/demo --corpus-rows 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_factory import DEFAULT_SOURCE, load_average, prepare, train_job  # noqa: E402
from bench_load import cpu_model, first_request  # noqa: E402

from moderation_helpers.factory.config import DEFAULT_GRAPH, GRAPHS  # noqa: E402
from moderation_helpers.model.explain import explain_speed  # noqa: E402
from moderation_helpers.model.moderator import Moderator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASELINE_BATCH = 32
SDK_BATCH = 100
# A fresh process that loads the export with onnxruntime + tokenizers + numpy only, scores the
# texts once to warm up and once timed, and reports what it cost.
MODERATOR_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from moderation_helpers.model.moderator import Moderator
m = Moderator.load(sys.argv[1], variant=sys.argv[2])
load = time.perf_counter() - t0
texts = json.load(open(sys.argv[3]))
m.score(texts[:64])
t0 = time.perf_counter()
m.score(texts)
seconds = time.perf_counter() - t0
# Peak RSS of this process image (VmHWM; ru_maxrss would carry the forking parent's over exec).
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({"load_seconds": load, "seconds": seconds, "texts": len(texts),
    "rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    "torch_imported": "torch" in sys.modules, "provider": m.providers[0]}))
"""


def mirror_texts(source: Path, splits: Sequence[str]) -> list[str]:
    """The mirror's comments of ``splits`` (its parquet files), in file order."""
    files = [next((source / "data").glob(f"{split}-*.parquet")) for split in splits]
    return pd.concat([pd.read_parquet(f, columns=["text"]) for f in files])["text"].tolist()


def baseline_texts_per_second(texts: list[str], seq_len: int) -> float:
    """The plain loop: transformers fp32, length-sorted batches of 32, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from moderation_helpers.classifier.network import encoder_path

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path()))
    model = AutoModel.from_pretrained(str(encoder_path()), dtype=torch.float32).eval()

    def embed(batch_texts: list[str]) -> np.ndarray:
        enc = tokenizer(
            batch_texts, padding=True, truncation=True, max_length=seq_len, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1)).numpy()

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    embed([texts[i] for i in order[:BASELINE_BATCH]])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(order), BASELINE_BATCH):
        embed([texts[i] for i in order[start : start + BASELINE_BATCH]])
    return len(texts) / (time.perf_counter() - started)


def moderator_probe(model_dir: Path, variant: str, texts_file: Path) -> dict[str, Any]:
    """Load time, resident memory and texts/s of a Moderator in a fresh process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", MODERATOR_PROBE, str(model_dir), variant, str(texts_file)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["texts_per_second"] = figures["texts"] / figures["seconds"]
    return figures


def trained_model(client, run_dir: Path, steps: int, learning_rate: float) -> str:
    """The run's fine-tuned model when ``job.json`` names a finished one, else a new job's."""
    job_file = run_dir / "job.json"
    if job_file.is_file():
        record = json.loads(job_file.read_text(encoding="utf-8"))
        if record.get("status") == "SUCCESS" and record.get("fine_tuned_model"):
            return record["fine_tuned_model"]
    return train_job(client, run_dir, steps, learning_rate)["job"].fine_tuned_model


def resampled_corpus(texts: Sequence[str], rows: int, path: Path, seed: int = 0) -> Path:
    """``rows`` comments drawn with replacement from ``texts``, with an id, as parquet."""
    picks = np.random.default_rng(seed).integers(0, len(texts), size=rows)
    frame = pd.DataFrame({"id": np.arange(rows), "text": np.asarray(texts, dtype=object)[picks]})
    frame.to_parquet(path, index=False)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--run-dir", type=Path, help="reuse this run folder's data and model")
    parser.add_argument("--store", type=Path, help="factory store (default: RUN/factory or temp)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the mirror")
    parser.add_argument("--texts", type=int, default=1000, help="texts timed per engine")
    parser.add_argument("--corpus-rows", type=int, default=200_000, help="Ray corpus size")
    parser.add_argument("--ray-variant", choices=("fp32", "int8"), default="int8")
    parser.add_argument(
        "--graph", choices=GRAPHS, help=f"the factory's graph (default {DEFAULT_GRAPH})"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from moderation_helpers.corpus.run import moderate_corpus
    from moderation_helpers.factory.exports import export_from_store
    from moderation_helpers.factory.process import start_factory, stop_factory
    from moderation_helpers.model.folder import read_classifier
    from moderation_helpers.recipe.classify import classify_texts
    from moderation_helpers.recipe.client import connect
    from moderation_helpers.recipe.deploy import (
        cycle,
        export_inputs,
        exported_model_id,
        texts_per_second,
    )

    load_before = load_average()
    figures: dict[str, Any] = {"cpu": cpu_model()}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        run_dir = prepare(args.run_dir, args.source, workdir)
        store = args.store or (
            run_dir / "factory" if (run_dir / "factory").is_dir() else workdir / "store"
        )
        texts = cycle(mirror_texts(args.source, ["validation", "test"]), args.texts)
        texts_file = workdir / "texts.json"
        texts_file.write_text(json.dumps(texts), encoding="utf-8")

        if args.graph:
            os.environ["MODERATION_FACTORY_GRAPH"] = args.graph
        handle = start_factory(store, port=0)
        try:
            client = connect("local", server_url=handle.url, start_local=False).client
            model = trained_model(client, run_dir, args.steps, args.learning_rate)
            model_dir = run_dir / "model"
            if (
                exported_model_id(model_dir) != model
                or not (model_dir / "model.int8.onnx").is_file()
            ):
                model_dir = workdir / "model"
                started = time.perf_counter()
                thresholds = (run_dir / "thresholds.json").is_file()
                inputs = export_inputs(run_dir) if thresholds else {}
                export_from_store(store, model, model_dir, int8=True, **inputs)
                figures["export_seconds"] = time.perf_counter() - started
            figures["graph"] = first_request(handle.url, model, texts)["graph"]
            figures["factory_sdk"] = texts_per_second(
                lambda t: classify_texts(client, model, t, batch_size=SDK_BATCH, progress=False),
                texts,
            )["texts_per_second"]
        finally:
            stop_factory(handle)

        seq_len = int(read_classifier(model_dir)["seq_len"])
        figures["model"], figures["seq_len"] = model, seq_len
        figures["baseline"] = baseline_texts_per_second(texts, seq_len)
        for variant in ("fp32", "int8"):
            figures[f"moderator_{variant}"] = moderator_probe(model_dir, variant, texts_file)
        # Explanations cost a few scoring calls per text: timed on a slice beside moderate().
        figures["explain"] = explain_speed(Moderator.load(model_dir, variant="int8"), texts[:200])

        corpus_file = resampled_corpus(
            mirror_texts(args.source, ["train", "validation", "test"]),
            args.corpus_rows,
            workdir / "corpus.parquet",
        )
        summary = moderate_corpus(
            model_dir, corpus_file, workdir / "moderated", variant=args.ray_variant, progress=False
        )
        written = len(pd.read_parquet(workdir / "moderated", columns=["row"]))
        figures["ray"] = {**summary, "rows_read_back": written}
    figures["load_average"] = [load_before, load_average()]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print_table(figures, args)


def print_table(f: dict[str, Any], args: argparse.Namespace) -> None:
    """The figures as Markdown, with the ratio of each engine to the baseline."""
    base = f["baseline"]
    ray = f["ray"]
    rows = [
        ("baseline: transformers fp32, batches of 32, mean pooling", base, ""),
        (f"factory through the SDK, batches of {SDK_BATCH}", f["factory_sdk"], ""),
    ]
    for variant in ("fp32", "int8"):
        m = f[f"moderator_{variant}"]
        rows.append(
            (
                f"Moderator {variant}, in-process",
                m["texts_per_second"],
                f"load {m['load_seconds']:.2f} s, RSS {m['rss_mb']:.0f} MB, {m['provider']}, "
                f"torch imported: {m['torch_imported']}",
            )
        )
    rows += [
        (
            f"moderate-corpus on Ray ({args.ray_variant}), end to end",
            ray["texts_per_second"],
            f"{ray['rows_read_back']:,} of {ray['input_rows']:,} rows written in "
            f"{ray['seconds']:.0f} s; {ray['actors']} actors × {ray['threads_per_actor']} thread",
        ),
        ("moderate-corpus on Ray, scoring only", ray["scoring_texts_per_second"], ""),
        (
            "Moderator int8, explain (spans per flag)",
            f["explain"]["explain_texts_per_s"],
            f"{f['explain']['explain_cost_x']:.1f}x the cost of moderate() on the same 200 texts "
            f"({f['explain']['moderate_texts_per_s']:,.0f} texts/s)",
        ),
    ]
    print(f"CPU: {f['cpu']}; model {f['model']} (seq_len {f['seq_len']}); graph {f['graph']}")
    print(f"load average (1 min) before / after: {f['load_average'][0]} / {f['load_average'][1]}")
    print(f"texts: {args.texts} validation+test comments of the mirror, the same for every engine")
    print()
    print("| engine | texts/s | × baseline | notes |")
    print("|---|---|---|---|")
    for name, rate, note in rows:
        ratio = f"{rate / base:.2f}" if rate else "n/a"
        print(f"| {name} | {rate:,.0f} | {ratio} | {note} |" if rate else f"| {name} | n/a | | |")


if __name__ == "__main__":
    main()

"""Does a comment's score depend on the comments batched with it? fp32 against int8.

    python benchmarks/bench_int8_batching.py --model runs/docs/model [--run-dir runs/docs]
        [--threads 2] [--rounds 2]

The int8 graph is dynamically quantized (``export/quantize.py``): onnxruntime computes one
activation scale per tensor at run time, and a batch is one tensor, so a text's int8 scores can
move with its batch mates. The Moderator batches by padded tokens and the factory's batcher
shares batches across concurrent requests, so that would make one caller's scores depend on
another's texts. For each variant, the run's validation and test texts are scored one at a time,
in the Moderator's default batches and in one batch; printed: the largest and median score
difference from scoring alone, and how many texts' flags (the folder's thresholds) differ. Then
the speed of scoring one text per call against the default batches, on the same texts (one text
per call is the fix that needs no new export), beside the same run's fp32. Figures, not
assertions: the command, the CPU and the load are printed with them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_explain import cpu_name  # noqa: E402
from bench_token_budget import best_seconds  # noqa: E402

from moderation_helpers.core.conversation import example_texts  # noqa: E402
from moderation_helpers.core.jsonl import read_jsonl  # noqa: E402
from moderation_helpers.model.moderator import DEFAULT_TOKEN_BUDGET, Moderator  # noqa: E402
from moderation_helpers.recipe.run_folder import SPLIT_FILES  # noqa: E402

ONE_BATCH = 10**9  # a token budget no request reaches


def split_texts(run_dir: Path) -> list[str]:
    """The run's validation and test texts (04's, real comments only; a chat run's renderings)."""
    return [
        text
        for split in ("validation", "test")
        for text in example_texts(read_jsonl(run_dir / SPLIT_FILES[split]))
    ]


def scores(moderator: Moderator, texts: list[str], budget: int) -> pd.DataFrame:
    """Every flag label's scores (texts x (target, label)) with ``budget`` padded tokens per
    batch (1: one text per call)."""
    moderator.token_budget = budget
    frame = moderator.score_frame(texts)
    return frame.loc[:, frame.columns.get_level_values("label") != moderator.safe_label]


def texts_per_second(moderator: Moderator, texts: list[str], budget: int, rounds: int) -> float:
    """Scoring ``texts`` in one call, the best of ``rounds`` after a warm-up."""
    moderator.token_budget = budget
    return len(texts) / best_seconds(lambda: moderator.score_frame(texts), rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--run-dir", type=Path, help="default: the model folder's parent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    run_dir = args.run_dir or args.model.parent
    texts = split_texts(run_dir)
    logging.disable(logging.WARNING)  # the int8 Moderator warns about fp32-tuned thresholds
    load_before = os.getloadavg()
    for variant in ("fp32", "int8"):
        moderator = Moderator.load(args.model, variant=variant, threads=args.threads)
        alone_frame = scores(moderator, texts, 1)
        limits = np.array([moderator.thresholds[t][label] for t, label in alone_frame.columns])
        alone = alone_frame.to_numpy()
        for name, budget in (("default batches", DEFAULT_TOKEN_BUDGET), ("one batch", ONE_BATCH)):
            batched = scores(moderator, texts, budget).to_numpy()
            gap = np.abs(batched - alone)
            flips = ((batched >= limits) != (alone >= limits)).any(axis=1).sum()
            print(
                f"{variant}, alone vs {name}: max |score difference| {gap.max():.3g}, median "
                f"{np.median(gap):.3g}; texts whose flags differ {flips} of {len(texts)}"
            )
        speeds = {
            name: texts_per_second(moderator, texts, budget, args.rounds)
            for name, budget in (("default batches", DEFAULT_TOKEN_BUDGET), ("one per call", 1))
        }
        print(f"{variant} texts/s: " + ", ".join(f"{k} {v:.0f}" for k, v in speeds.items()))
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"cpu: {cpu_name()}; threads {args.threads}; {len(texts)} texts")
    print(f"load average (1/5/15 min): before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""The Moderator's token budget (padded tokens per onnxruntime call) against scoring speed.

    python benchmarks/bench_token_budget.py --model runs/docs/model [--budgets 256 512 1024 4096]

Times, on the mirror's 1,000 comments (full length, the encoder truncating at its seq_len), the
Moderator fp32 and int8 at each budget (the best of ``--rounds``), two ways: the whole set in one
call (a corpus block) and requests of 100 texts (the factory's SDK batches), against the plain
``transformers`` loop of ``bench_moderator.py`` timed in the same run. Machines differ and may be
shared: read the ratios to the baseline, and the CPU line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import cpu_model  # noqa: E402
from bench_moderator import MIRROR, baseline  # noqa: E402
from bench_serving import mirror_texts  # noqa: E402

from moderation_helpers.model.moderator import DEFAULT_TOKEN_BUDGET, Moderator  # noqa: E402

REQUEST_TEXTS = 100  # the SDK batches 04 and the serving benchmark send


def best_seconds(run: Callable[[], None], rounds: int) -> float:
    """The fastest of ``rounds`` timed runs (after one warm-up)."""
    run()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--source", type=Path, default=MIRROR)
    parser.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 512, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime and torch threads (default: all cores)",
    )
    args = parser.parse_args(argv)
    if args.threads:  # the baseline too, so that the ratios compare like with like
        import torch

        torch.set_num_threads(args.threads)
    texts = mirror_texts(args.source, ["train", "validation", "test"])
    print(f"command: python {' '.join(sys.argv)}")
    print(f"CPU: {cpu_model()}; load average (1 min) before: {os.getloadavg()[0]:.2f}")
    base = len(texts) / best_seconds(baseline(texts), args.rounds)
    print(f"{len(texts)} texts; baseline (transformers fp32, batches of 32): {base:.0f} texts/s\n")
    print(
        "| variant | token budget | whole set: texts/s | × baseline "
        f"| requests of {REQUEST_TEXTS} | × baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for variant in ("fp32", "int8"):
        moderator = Moderator.load(args.model, variant=variant, threads=args.threads)
        ids = moderator.encode(texts)
        chunks = [ids[i : i + REQUEST_TEXTS] for i in range(0, len(ids), REQUEST_TEXTS)]
        for budget in args.budgets:
            moderator.token_budget = budget  # read by each call's batching: one session serves all
            whole = len(texts) / best_seconds(
                lambda m=moderator, i=ids: m.score_encoded(i), args.rounds
            )
            parts = len(texts) / best_seconds(
                lambda m=moderator, c=chunks: [m.score_encoded(x) for x in c], args.rounds
            )
            mark = " (default)" if budget == DEFAULT_TOKEN_BUDGET else ""
            print(
                f"| {variant} | {budget}{mark} | {whole:.0f} | {whole / base:.2f} "
                f"| {parts:.0f} | {parts / base:.2f} |"
            )
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

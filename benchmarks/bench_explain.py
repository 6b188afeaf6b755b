"""Span quality and cost of ``model.explain`` on the SemEval-2021 Task 5 toxic spans data.

    python benchmarks/bench_explain.py --model MODEL_FOLDER --spans-csv tsd_trial.csv \
        [--variant int8] [--threads 2] [--label toxicity]

The CSV has the task's columns ``spans`` (a list of character offsets, as a string) and
``text`` (the public TRIAL set, MIT licence: ipavlopoulos/toxic_spans ``data/tsd_trial.csv``).
Every post's ``--label`` is explained (flagged or not) and scored with the task's metric:
character-offset F1 per post (both empty: 1, one empty: 0), mean over posts. Reported for all
posts, for the posts the model flags, and for the two seeded halves the knobs were tuned on
(``tune``) and not (``held-out``); beside it, on some held-out posts, the baseline (occlude every
content word, weight = the label's own drop). Then explain's texts/s beside moderate's on the
same texts (the one ``explain`` call above; ``model.explain.explain_speed`` times it for
bench_serving), the CPU and the command.
"""

from __future__ import annotations

import argparse
import ast
import csv
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderation_helpers.model.explain import explain  # noqa: E402
from moderation_helpers.model.moderator import Moderator  # noqa: E402

SPLIT_SEED = 0  # the tune / held-out halves of the trial set


def span_f1(predicted: set[int], gold: set[int]) -> float:
    """The task's per-post F1 on character offsets (both empty: 1, one empty: 0)."""
    if not predicted and not gold:
        return 1.0
    hits = len(predicted & gold)
    if not hits:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(gold)
    return 2 * precision * recall / (precision + recall)


def offsets(spans: Iterable[dict]) -> set[int]:
    """The character offsets a list of explain spans covers."""
    return {i for span in spans for i in range(span["start"], span["end"])}


def read_spans_csv(path: str | Path) -> tuple[list[str], list[set[int]]]:
    """Texts and gold offsets of a toxic spans CSV."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [set(ast.literal_eval(r["spans"])) for r in rows]


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded tune / held-out halves of ``n`` posts."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return order[: n // 2], order[n // 2 :]


def cpu_name() -> str:
    """The CPU model as lscpu names it (the platform's name where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line]
    return names[0] if names else platform.machine()


def f1_table(f1: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Mean F1 over all posts, the tune and held-out halves and the flagged posts."""
    tune, held = halves(len(f1))
    rows = {"all": f1.mean(), "tune": f1[tune].mean(), "held-out": f1[held].mean()}
    rows["flagged"] = f1[flagged].mean() if flagged.any() else float("nan")
    return {k: float(v) for k, v in rows.items()}


def explained_f1(
    moderator: Moderator, texts: Sequence[str], gold: Sequence[set[int]], label: str, **knobs
) -> tuple[np.ndarray, float]:
    """Per-post span F1 of explaining ``label`` on every post, and the seconds it took."""
    start = time.perf_counter()
    explained = explain(moderator, texts, [label], **knobs)
    seconds = time.perf_counter() - start
    f1 = np.array([span_f1(offsets(e[label]), g) for e, g in zip(explained, gold, strict=True)])
    return f1, seconds


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the exported model folder")
    parser.add_argument("--spans-csv", required=True, help="toxic spans CSV (spans, text)")
    parser.add_argument("--variant", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    parser.add_argument("--label", default="toxicity", help="the label explained")
    parser.add_argument(
        "--baseline-posts",
        type=int,
        default=100,
        help="held-out posts the baseline (occlude every content word) is scored on",
    )
    args = parser.parse_args(argv)

    moderator = Moderator.load(args.model, variant=args.variant, threads=args.threads)
    texts, gold = read_spans_csv(args.spans_csv)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_name()}; onnxruntime {moderator.providers[0]}, {args.variant}")
    print(f"posts: {len(texts)} ({sum(not g for g in gold)} without a gold span)")
    start = time.perf_counter()
    flagged = np.array([d.is_flagged for d in moderator.moderate(texts)])
    moderate_s = time.perf_counter() - start
    f1, explain_s = explained_f1(moderator, texts, gold, args.label)
    table = f1_table(f1, flagged)
    print(f"\nspan F1 of {args.label!r}, mean over posts ({int(flagged.sum())} flagged)")
    print("  " + "  ".join(f"{k} {v:.3f}" for k, v in table.items()))
    held = halves(len(texts))[1][: args.baseline_posts]
    sub = [texts[i] for i in held], [gold[i] for i in held]
    ours = f1[held].mean()
    plain = {"alone_weight": 0.0, "max_occluded": 10**6, "own_share": 1.0}
    base, _ = explained_f1(moderator, *sub, args.label, **plain)
    print(
        f"on {len(held)} held-out posts: explain {ours:.3f}, baseline word occlusion "
        f"(every content word, the label's own drop alone) {base.mean():.3f}"
    )
    print(
        f"\nspeed on the same {len(texts)} texts: explain {len(texts) / explain_s:.1f} texts/s, "
        f"moderate {len(texts) / moderate_s:.1f} texts/s: explain costs "
        f"{explain_s / moderate_s:.1f}x moderate"
    )


if __name__ == "__main__":
    main()

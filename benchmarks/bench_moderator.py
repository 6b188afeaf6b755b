"""In-process scoring speed and int8 quality of an exported model, against a plain baseline.

    python benchmarks/bench_moderator.py --model-dir STORE/models/JOB --run-dir RUN \
        [--factory-url URL --model-id ft:classifier:...]

Exports the trained model (fp32 + int8) into a temporary folder, then times, in interleaved
rounds on the same mirror texts: a plain ``transformers`` fp32 loop (all-MiniLM, batches of 32
sorted by length, mean pooling: what a user would write), the Moderator fp32 and int8, and,
when a factory URL and model id are given, the factory through the SDK in batches of 100.
With ``--run-dir``, it also reports macro ROC-AUC of fp32 and int8 on the run's test split.
Machines differ and may be shared: read the ratios to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "civil_comments"


def baseline(texts: list[str]) -> Callable[[], None]:
    """The plain loop: transformers fp32, batches of 32 sorted by length, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from moderation_helpers.classifier.network import encoder_path

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path()))
    model = AutoModel.from_pretrained(str(encoder_path()), dtype=torch.float32).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))

    @torch.inference_mode()
    def run() -> None:
        for start in range(0, len(order), 32):
            batch = [texts[i] for i in order[start : start + 32]]
            enc = tokenizer(
                batch, padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            (hidden * mask).sum(1) / mask.sum(1)

    return run


def sdk(url: str, model_id: str, texts: list[str]) -> Callable[[], None]:
    """The factory through the mistralai SDK, batches of 100."""
    from mistralai.client import Mistral

    client = Mistral(api_key="local-factory", server_url=url)

    def run() -> None:
        for start in range(0, len(texts), 100):
            client.classifiers.classify(model=model_id, inputs=texts[start : start + 100])

    return run


def macro_auc(scores: dict[str, np.ndarray], moderator, run_dir: Path) -> float:
    from sklearn.metrics import roc_auc_score

    from moderation_helpers.core.jsonl import read_jsonl

    test = list(read_jsonl(run_dir / "test.jsonl"))
    values = []
    for t in moderator.targets:
        for j, label in enumerate(t["labels"]):
            truth = [label in np.atleast_1d(ex["labels"].get(t["name"], [])) for ex in test]
            if label != "safe" and 0 < sum(truth) < len(truth):
                values.append(roc_auc_score(truth, scores[t["name"]][:, j]))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a trained model folder")
    parser.add_argument("--run-dir", type=Path, help="run folder with test.jsonl (quality)")
    parser.add_argument("--texts", type=int, default=500, help="mirror texts to score")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--factory-url")
    parser.add_argument("--model-id")
    args = parser.parse_args()

    from moderation_helpers.classifier.checkpoint import load_model
    from moderation_helpers.core.jsonl import read_jsonl
    from moderation_helpers.export.onnx import export_model
    from moderation_helpers.model.moderator import Moderator

    frame = pd.read_parquet(MIRROR / "data" / "train-00000-of-00001.parquet", columns=["text"])
    texts = frame["text"].dropna().astype(str).tolist()[: args.texts]
    folder = Path(tempfile.mkdtemp()) / "model"
    t0 = time.perf_counter()
    classifier = load_model(args.model_dir, device="cpu", precision="fp32")
    export_model(classifier, folder, int8=True)
    print(f"export (fp32 + int8): {time.perf_counter() - t0:.1f} s")
    runners: dict[str, Callable[[], None]] = {"transformers fp32 (baseline)": baseline(texts)}
    moderators = {}
    for variant in ("fp32", "int8"):
        t0 = time.perf_counter()
        moderators[variant] = Moderator.load(folder, variant=variant)
        print(f"Moderator {variant} load: {time.perf_counter() - t0:.2f} s")
        runners[f"Moderator {variant}"] = lambda m=moderators[variant]: m.score(texts)
    if args.factory_url and args.model_id:
        runners["factory via SDK, batches of 100"] = sdk(args.factory_url, args.model_id, texts)
    for run in runners.values():
        run()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - t0)
    base = len(texts) / statistics.median(seconds["transformers fp32 (baseline)"])
    print(f"\n{len(texts)} mirror texts, median of {args.rounds} interleaved rounds")
    print(f"| {'runtime':34s} | texts/s | x baseline |\n|---|---|---|")
    for name, values in seconds.items():
        rate = len(texts) / statistics.median(values)
        print(f"| {name:34s} | {rate:7.0f} | {rate / base:9.2f} |")
    if args.run_dir:
        test = [ex["text"] for ex in read_jsonl(args.run_dir / "test.jsonl")]
        aucs = {v: macro_auc(m.score(test), m, args.run_dir) for v, m in moderators.items()}
        print(
            f"\nmacro ROC-AUC on {len(test)} test texts: fp32 {aucs['fp32']:.4f}, "
            f"int8 {aucs['int8']:.4f} ({aucs['int8'] - aucs['fp32']:+.4f})"
        )


if __name__ == "__main__":
    main()

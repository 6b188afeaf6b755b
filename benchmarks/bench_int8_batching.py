"""Does a comment's score depend on the comments batched with it? fp32 against int8.

    python benchmarks/bench_int8_batching.py --model runs/docs/model [--run-dir runs/docs]
        [--threads 2] [--rounds 2] [--static N]

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

``--static N`` also measures the alternative the product does not ship: the fp32 graph
quantized statically (``onnxruntime.quantization.quantize_static``, QOperator format, int8
weights per output channel, uint8 activations with scales calibrated by min/max on ``N``
training texts), which makes scores independent of batch mates; printed beside the others, with
how far each int8 graph's scores and flags are from fp32's.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_explain import cpu_name  # noqa: E402
from bench_token_budget import best_seconds  # noqa: E402

from moderation_helpers.core.conversation import example_texts  # noqa: E402
from moderation_helpers.core.jsonl import read_jsonl  # noqa: E402
from moderation_helpers.model.folder import MODEL_INT8_ONNX, MODEL_ONNX  # noqa: E402
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


def measure(
    moderator: Moderator, label: str, texts: list[str], rounds: int, fp32: pd.DataFrame | None
) -> pd.DataFrame:
    """Print how ``moderator``'s scores move with batch mates (and from ``fp32``'s, when given)
    and its speed; return its scores in the default batches."""
    alone = scores(moderator, texts, 1)
    limits = np.array([moderator.thresholds[t][name] for t, name in alone.columns])
    flagged = alone.to_numpy() >= limits
    batches = {
        name: scores(moderator, texts, budget)
        for name, budget in (("default batches", DEFAULT_TOKEN_BUDGET), ("one batch", ONE_BATCH))
    }
    for name, batched in batches.items():
        gap = np.abs(batched.to_numpy() - alone.to_numpy())
        flips = ((batched.to_numpy() >= limits) != flagged).any(axis=1).sum()
        print(
            f"{label}, alone vs {name}: max |score difference| {gap.max():.3g}, median "
            f"{np.median(gap):.3g}; texts whose flags differ {flips} of {len(texts)}"
        )
    default = batches["default batches"]
    if fp32 is not None:
        gap = np.abs(default.to_numpy() - fp32.to_numpy())
        flips = ((default.to_numpy() >= limits) != (fp32.to_numpy() >= limits)).any(axis=1).sum()
        print(
            f"{label} vs fp32 (default batches): max |score difference| {gap.max():.3g}, "
            f"median {np.median(gap):.3g}; texts whose flags differ {flips} of {len(texts)}"
        )
    speeds = {
        name: texts_per_second(moderator, texts, budget, rounds)
        for name, budget in (("default batches", DEFAULT_TOKEN_BUDGET), ("one per call", 1))
    }
    print(f"{label} texts/s: " + ", ".join(f"{k} {v:.0f}" for k, v in speeds.items()))
    return default


def texts_per_second(moderator: Moderator, texts: list[str], budget: int, rounds: int) -> float:
    """Scoring ``texts`` in one call, the best of ``rounds`` after a warm-up."""
    moderator.token_budget = budget
    return len(texts) / best_seconds(lambda: moderator.score_frame(texts), rounds)


def typed_graph(model_path: Path, feed: dict[str, np.ndarray]):
    """The ONNX model with a type on every intermediate tensor. onnx's shape inference does not
    know onnxruntime's fused operators (Attention, SkipLayerNormalization, ...), and the static
    quantizer skips a tensor whose type it cannot find, so the types are read off one run on
    ``feed``."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(model_path))
    graph = model.graph
    known = {v.name for v in [*graph.value_info, *graph.input, *graph.output]}
    known |= {i.name for i in graph.initializer}
    names = [o for node in graph.node for o in node.output if o and o not in known]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    values = ort.InferenceSession(probe.SerializeToString(), options).run(names, feed)
    for name, value in zip(names, values, strict=True):
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
        graph.value_info.append(helper.make_tensor_value_info(name, elem, None))
    return model


def static_variant(folder: Path, texts: list[str], out: Path) -> Path:
    """A copy of ``folder`` whose int8 graph is quantized statically, calibrated on ``texts``
    in the Moderator's own batches."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    shutil.copytree(folder, out)
    moderator = Moderator.load(folder)
    ids = moderator.encode(texts)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    feeds = []
    for idx in moderator.batches(lengths):
        input_ids, mask = moderator._pad([ids[i] for i in idx])
        feeds.append({"input_ids": input_ids, "attention_mask": mask})

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.rest, None)

    typed = out / "typed.onnx"
    onnx.save(typed_graph(folder / MODEL_ONNX, feeds[0]), str(typed))
    quantize_static(
        str(typed),
        str(out / MODEL_INT8_ONNX),
        Batches(),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["MatMul", "Attention"],  # onnxruntime has no static Attention
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    typed.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--run-dir", type=Path, help="default: the model folder's parent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--static",
        type=int,
        default=0,
        metavar="N",
        help="also measure a statically quantized int8 graph calibrated on N training texts",
    )
    args = parser.parse_args()
    run_dir = args.run_dir or args.model.parent
    texts = split_texts(run_dir)
    logging.disable(logging.WARNING)  # the int8 Moderator warns about fp32-tuned thresholds
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("fp32", args.model, "fp32"), ("int8", args.model, "int8")]
        if args.static:
            train = example_texts(read_jsonl(run_dir / SPLIT_FILES["train"]))
            picked = np.random.default_rng(0).choice(len(train), args.static, replace=False)
            static = static_variant(args.model, [train[i] for i in picked], Path(tmp) / "s")
            variants.append((f"int8 static ({args.static} texts)", static, "int8"))
        fp32 = None
        for label, folder, variant in variants:
            moderator = Moderator.load(folder, variant=variant, threads=args.threads)
            fp32 = measure(moderator, label, texts, args.rounds, fp32)
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"cpu: {cpu_name()}; threads {args.threads}; {len(texts)} texts")
    print(f"load average (1/5/15 min): before {load_before}, after {os.getloadavg()}")


if __name__ == "__main__":
    main()

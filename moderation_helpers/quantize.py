"""The int8 variant of an exported model: onnxruntime dynamic quantization, of chosen MatMuls.

Quantizing every MatMul of the encoder lost about 0.009 macro ROC-AUC on the mirror's test
split (issue 10; the budget is 0.005). The choice made here, and recorded in
``classifier.json`` as :data:`INT8_METHOD`, is the one measured best within budget (see
``/work/notes`` / the README's benchmark table for the figures and the command).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# MatMul nodes of the TorchScript export are named after their module path, e.g.
# "/classifier/encoder/encoder/layer.3/intermediate/dense/MatMul".
_FFN = re.compile(r"/layer\.\d+/(intermediate|output)/dense/MatMul$")
INT8_METHOD: dict[str, Any] = {
    "tool": "onnxruntime.quantization.quantize_dynamic",
    "weights": "int8, per output channel, symmetric",
    "activations": "uint8, dynamic (per batch)",
    "quantized": "the feed-forward MatMuls of every layer (intermediate and output dense)",
    "kept_float32": "embeddings, attention projections, layer norms, pooling and the heads",
}


def ffn_matmuls(model_path: str | os.PathLike) -> list[str]:
    """Names of the feed-forward MatMul nodes of an exported graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and _FFN.search(n.name)]


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write the int8 variant of ``src`` (an fp32 model.onnx) to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = ffn_matmuls(src)
    if not nodes:
        raise RuntimeError(f"{src}: no feed-forward MatMul found to quantize (unexpected graph)")
    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    return Path(dst)

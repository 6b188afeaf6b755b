"""Export a trained classifier into a self-contained ONNX model folder (see ``model.folder``).

``export_model(classifier, "deploy/", int8=True, thresholds=...)`` is handed a loaded
``classifier.checkpoint.ClassifierModel`` (the factory's training process exports each model it
trains: ``factory.exports``) and writes one ONNX graph (encoder, pooling, every target's
head and its sigmoid or softmax), the fast tokenizer configured to truncate at the model's
``seq_len``, ``classifier.json`` (with each variant's macro ROC-AUC on the job's validation
examples), the tuned ``thresholds.json`` when given, and a model card. :func:`repackage` makes
the same folder from an exported one, with a run folder's thresholds and evaluation, without
torch. The folder is written beside and renamed into place, so a failed export leaves nothing
half-written; before that, the ONNX scores are checked against torch's on sample texts.

Torch is imported inside the functions: importing this module stays cheap and torch-free.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moderation_helpers.core.files import atomic_folder, write_json
from moderation_helpers.export.model_card import model_card
from moderation_helpers.export.quantize import INT8_METHOD, quantize_int8
from moderation_helpers.model.folder import (
    CLASSIFIER_JSON,
    MODEL_CARD,
    MODEL_INT8_ONNX,
    MODEL_ONNX,
    THRESHOLDS_JSON,
    TOKENIZER_JSON,
    check_empty_output,
    classifier_record,
    read_classifier,
    validate_classifier,
)

if TYPE_CHECKING:
    from moderation_helpers.classifier.checkpoint import ClassifierModel

log = logging.getLogger("moderation_helpers.export.onnx")

OPSET = 17
# Scores of the exported graph must equal torch fp32's to this (max abs) on the check texts.
EXPORT_TOLERANCE = 1e-4
CHECK_TEXTS = (
    "You are a wonderful person, thank you for the kind words.",
    "Shut up, you absolute idiot. Nobody wants to read your garbage.",
    "ok",
    "The council meeting is on Tuesday; bring your comments about the new bike lanes, the "
    "budget and the library hours. " * 6,
)


class ExportRefused(RuntimeError):
    """The model cannot be exported (not finished, unknown, thresholds of another model)."""


def export_model(
    classifier: ClassifierModel,
    out_dir: str | os.PathLike,
    *,
    int8: bool = False,
    model_id: str | None = None,
    thresholds: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    validation: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write the exported model folder of ``classifier`` into ``out_dir`` (new or empty) and
    return it.

    ``int8`` adds ``model.int8.onnx``. ``thresholds``: a ``thresholds.json`` document (checked
    to name ``model_id``), copied into the folder. ``job`` (the fine-tuning job's document),
    ``evaluation`` and ``summary`` (the run folder's evaluation and prepare summary) feed the
    model card. ``validation``: the job's validation examples, on which each variant's macro
    ROC-AUC is measured (:mod:`.quality`; unmeasured without them). Load ``classifier`` on the
    CPU in fp32: its scores are the reference the exported graph is checked against.
    """
    job = dict(job or {})
    model_id = model_id or job.get("fine_tuned_model")
    _check_thresholds(thresholds, model_id)
    out = check_empty_output(out_dir)
    with atomic_folder(out) as work:
        work.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared
        write_onnx(classifier, work, model_id=model_id, int8=int8)
        record = _with_quality(work, validation)
        _write_extras(work, record, thresholds, job, evaluation, summary)
    log.info("exported %s to %s", model_id or "the classifier", out)
    return out


def repackage(
    source: Path,
    out_dir: str | os.PathLike,
    *,
    int8: bool = False,
    thresholds: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> Path:
    """:func:`export_model`'s folder made from an already exported one (``source``): its graphs
    and measured quality copied, without ``model.int8.onnx`` unless ``int8``, with this run's
    ``thresholds`` and a model card of its ``evaluation`` and ``summary``. No torch needed."""
    import shutil

    record = read_classifier(source)
    _check_thresholds(thresholds, record.get("model_id"))
    if not int8:
        record["variants"].pop("int8", None)
    out = check_empty_output(out_dir)
    with atomic_folder(out) as work:
        work.chmod(0o755)
        for name in (TOKENIZER_JSON, *(v["file"] for v in record["variants"].values())):
            shutil.copy2(source / name, work / name)
        write_json(work / CLASSIFIER_JSON, record)
        _write_extras(work, record, thresholds, dict(job or {}), evaluation, summary)
    log.info("exported %s to %s (from %s)", record.get("model_id"), out, source)
    return out


def _check_thresholds(thresholds: Mapping[str, Any] | None, model_id: str | None) -> None:
    if thresholds is not None and model_id and thresholds.get("model") not in (None, model_id):
        raise ExportRefused(
            f"the thresholds were tuned for model {thresholds['model']!r}, not {model_id!r}: "
            "export with the run folder of this model"
        )


def _with_quality(folder: Path, validation: Sequence[Mapping[str, Any]] | None) -> dict:
    """The folder's classifier.json with each variant's measured quality, rewritten."""
    from moderation_helpers.export.quality import measure_variants

    record = read_classifier(folder)
    measured = measure_variants(folder, validation)
    for name, fields in measured["variants"].items():
        record["variants"][name].update(fields)
    record["validation"] = measured["validation"]
    validate_classifier(record, folder / CLASSIFIER_JSON)
    write_json(folder / CLASSIFIER_JSON, record)
    return record


def _write_extras(
    work: Path,
    record: Mapping[str, Any],
    thresholds: Mapping[str, Any] | None,
    job: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None,
    summary: Mapping[str, Any] | None,
) -> None:
    """thresholds.json (when given) and the model card."""
    if thresholds is not None:
        write_json(work / THRESHOLDS_JSON, dict(thresholds))
    card = model_card(record, job=job, evaluation=evaluation, summary=summary)
    (work / MODEL_CARD).write_text(card, encoding="utf-8")


def write_onnx(
    classifier: ClassifierModel, out: Path, *, model_id: str | None = None, int8: bool = False
) -> dict[str, Any]:
    """Write model.onnx (+ model.int8.onnx), tokenizer.json and classifier.json into ``out``
    and return the ``classifier.json`` record.

    The lower half of :func:`export_model`: no model card, no thresholds, no emptiness check,
    no quality measured. Switches ``classifier``'s encoder to
    eager attention (the same math), which traces to a graph onnxruntime can fuse.
    """
    classifier.model.encoder.set_attn_implementation("eager")
    graph = _scoring_graph(classifier.model, classifier.targets)
    tokenizer = _configured_tokenizer(classifier.tokenizer, classifier.seq_len)
    tokenizer.save(str(out / TOKENIZER_JSON))
    _export_graph(graph, out / MODEL_ONNX, [t.name for t in classifier.targets])
    fused = _fuse(out / MODEL_ONNX, classifier.model.encoder.config)
    variants: dict[str, dict[str, Any]] = {"fp32": {"file": MODEL_ONNX}}
    if int8:
        quantize_int8(out / MODEL_ONNX, out / MODEL_INT8_ONNX)
        variants["int8"] = {"file": MODEL_INT8_ONNX, "quantization": INT8_METHOD}
    record = _record(classifier, int(tokenizer.padding["pad_id"]), model_id, variants, fused)
    write_json(out / CLASSIFIER_JSON, record)
    _check_scores(classifier, out)
    return record


def _record(
    classifier: ClassifierModel,
    pad_id: int,
    model_id: str | None,
    variants: Mapping[str, Mapping[str, Any]],
    fused: Mapping[str, Any],
) -> dict[str, Any]:
    """The folder's ``classifier.json`` document."""
    import onnx
    import onnxruntime
    import torch

    return classifier_record(
        targets=[
            {
                "name": t.name,
                "labels": t.labels,
                "loss_function": t.loss_function,
                "weight": t.weight,
                "implied_by": t.implied_by,
            }
            for t in classifier.targets
        ],
        seq_len=classifier.seq_len,
        base_encoder=classifier.base_encoder,
        pooling=classifier.model.pooling,
        pad_id=pad_id,
        rendering=classifier.rendering,
        model_id=model_id,
        opset=OPSET,
        variants=variants,
        graph={"fused_by": "onnxruntime.transformers.optimizer (model_type bert)", **fused},
        exported_with={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    )


def _configured_tokenizer(hf_tokenizer: Any, seq_len: int):
    """A copy of the fast tokenizer that truncates at ``seq_len`` and pads to the longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.enable_truncation(max_length=int(seq_len))
    pad_token = hf_tokenizer.pad_token
    tokenizer.enable_padding(pad_id=int(hf_tokenizer.pad_token_id), pad_token=pad_token)
    return tokenizer


def _scoring_graph(classifier: Any, targets: Sequence[Any]) -> Any:
    """The trainer's classifier as it scores (``Classifier.scores``: each target's score
    function, coherent by its ``implied_by``): one tensor per target, in target order (a torch
    module, defined here so that torch loads lazily)."""
    import torch
    from torch import nn

    class ScoringGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = classifier
            self.names = [t.name for t in targets]

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            scores = self.classifier.scores(input_ids, attention_mask)
            return tuple(scores[name] for name in self.names)

    return ScoringGraph().eval()


def _export_graph(graph: Any, path: Path, outputs: list[str]) -> None:
    """torch.onnx's TorchScript exporter: quick (seconds), and its BERT graph is the one
    onnxruntime's fusions (attention, layer norm, GELU) recognise."""
    import torch

    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    mask = (ids != 0).long()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            graph,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _fuse(path: Path, config: Any) -> dict[str, Any]:
    """Fuse the BERT graph in place into onnxruntime's kernels (attention, embedding + layer
    norm, skip + layer norm, bias + GELU): fewer, faster nodes, on CPU and CUDA alike. The
    fused operators are onnxruntime's (domain com.microsoft)."""
    from onnxruntime.transformers.optimizer import optimize_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = optimize_model(
            str(path),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,
        )
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(path))
    log.info("fused operators: %s", fused)
    return {"fused_operators": fused}


def _check_scores(classifier: Any, folder: Path) -> None:
    """The exported graph must reproduce torch fp32's scores; refuse the export otherwise."""
    import numpy as np

    from moderation_helpers.model.moderator import Moderator

    texts = list(CHECK_TEXTS)
    # The graph is fp32 whatever the classifier was loaded with: a model loaded for bf16
    # autocast (``precision="auto"`` on a bf16 CPU) would move its own scores by ~1e-3.
    expected = dataclasses.replace(classifier, precision="fp32").predict(texts)
    got = Moderator.load(folder, threads=1, providers=["CPUExecutionProvider"]).score(texts)
    worst = 0.0
    for t in classifier.targets:
        ref = np.array([[row[t.name][lab] for lab in t.labels] for row in expected])
        worst = max(worst, float(np.abs(ref - got[t.name]).max()))
    if worst > EXPORT_TOLERANCE:
        raise RuntimeError(
            f"the exported graph's scores differ from torch's by {worst:.2e} "
            f"(> {EXPORT_TOLERANCE}): export refused"
        )
    log.info("export check: ONNX scores match torch fp32 within %.1e", worst)

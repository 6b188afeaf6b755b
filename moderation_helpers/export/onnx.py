"""Export a fine-tuned classifier into a self-contained ONNX model folder (see model_folder.py).

``export_model("ft:classifier:...", "deploy/", store=STORE)`` (or ``moderation-factory export``)
turns the factory's torch model into one ONNX graph (encoder, mean pooling, every target's head
and its sigmoid or softmax), the fast tokenizer configured to truncate at the model's
``seq_len``, ``classifier.json``, the run's ``thresholds.json`` when given a run folder, and a
model card. The folder is written aside and renamed into place, so a failed export leaves
nothing half-written; before that, the ONNX scores are checked against torch's on sample texts.

Torch is imported inside the functions: importing this module stays cheap and torch-free.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moderation_helpers.core import conversation
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
    write_json,
)

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
    """The model cannot be exported (not finished, unknown) or the output folder is in use."""


def resolve_model(
    model: str | os.PathLike, store: str | os.PathLike | None = None
) -> tuple[Path, str | None, dict[str, Any] | None]:
    """``(model folder, model id, job document)`` for a model id in ``store`` or a folder.

    Refuses a model whose job has not succeeded or whose folder has no saved classifier.
    """
    from moderation_helpers.classifier.training import CONFIG_FILE

    model_id: str | None = None
    job: dict[str, Any] | None = None
    if store is not None and not Path(model).is_dir():
        from moderation_helpers.factory.store.db import Store

        factory_store = Store(store)
        record = factory_store.get_model(str(model))
        if record is None:
            known = [m["id"] for m in factory_store.list_models()][:5]
            raise ExportRefused(f"no model {model!r} in the factory store {store} (has {known})")
        model_id, path = record["id"], Path(record["path"])
        job_row = factory_store.get_job(record["job_id"]) or {}
        job = dict(job_row.get("doc") or {}, id=record["job_id"], status=job_row.get("status"))
        if job["status"] != "SUCCESS":
            raise ExportRefused(
                f"model {model_id} is not finished: its job {record['job_id']} is "
                f"{job['status']}; export once the job has succeeded"
            )
    else:
        path = Path(model)
    if not (path / CONFIG_FILE).is_file():
        raise ExportRefused(
            f"{path} holds no finished model ({CONFIG_FILE} is written last, when training "
            "has saved everything): wait for the job to succeed, or check the path"
        )
    return path, model_id, job


def export_model(
    model: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    int8: bool = False,
    run_dir: str | os.PathLike | None = None,
    job: Mapping[str, Any] | None = None,
    model_id: str | None = None,
) -> Path:
    """Write the exported model folder for ``model`` (a model id in ``store``, or a folder
    the trainer saved) into ``out_dir`` (new or empty), and return it.

    ``int8`` adds ``model.int8.onnx``. ``run_dir``: the run folder whose ``thresholds.json``
    (checked to name this model), ``evaluation.json``, ``prepare_summary.json`` and
    ``job.json`` go into the folder and its model card. ``job`` / ``model_id`` describe a model
    given as a folder (the store fills them for a model id).
    """
    path, found_id, found_job = resolve_model(model, store)
    model_id = model_id or found_id
    run = _read_run_folder(run_dir)
    job = dict(job or found_job or run.get("job") or {})
    model_id = model_id or job.get("fine_tuned_model")
    out = check_empty_output(out_dir)
    thresholds = run.get("thresholds")
    if thresholds is not None and model_id and thresholds.get("model") not in (None, model_id):
        raise ExportRefused(
            f"{Path(run_dir) / THRESHOLDS_JSON} was tuned for model {thresholds['model']!r}, "
            f"not {model_id!r}: export with the run folder of this model"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the folder is meant to be shared
    try:
        record = write_folder(path, work, model_id=model_id, int8=int8)
        if thresholds is not None:
            write_json(work / THRESHOLDS_JSON, thresholds)
        from moderation_helpers.export.model_card import model_card

        card = model_card(
            record, job=job, evaluation=run.get("evaluation"), summary=run.get("summary")
        )
        (work / MODEL_CARD).write_text(card, encoding="utf-8")
        # Into place in one rename: an empty out_dir is replaced, a missing one created.
        if out.is_dir():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info("exported %s to %s", model_id or path, out)
    return out


def write_folder(
    model_dir: str | os.PathLike, out: Path, *, model_id: str | None = None, int8: bool = False
) -> dict[str, Any]:
    """Write model.onnx (+ model.int8.onnx), tokenizer.json and classifier.json into ``out``.

    The lower half of :func:`export_model`, also used by the factory for its own runtime:
    no model card, no thresholds, no emptiness check.
    """
    import onnx
    import onnxruntime
    import torch

    from moderation_helpers.classifier import training as trainer

    classifier = trainer.load_model(model_dir, device="cpu", precision="fp32")
    # Eager attention traces to the classic BERT pattern, which onnxruntime fuses below;
    # the same math as the SDPA kernels the trainer uses (scores agree to ~1e-7).
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
    record = classifier_record(
        targets=[
            {
                "name": t.name,
                "labels": t.labels,
                "loss_function": t.loss_function,
                "weight": t.weight,
            }
            for t in classifier.targets
        ],
        seq_len=classifier.seq_len,
        base_encoder=trainer.BASE_ENCODER,
        pad_id=int(tokenizer.padding["pad_id"]),
        rendering=conversation.RENDERING,
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
    write_json(out / CLASSIFIER_JSON, record)
    _check_scores(classifier, out)
    return record


def _read_run_folder(run_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What the model card and folder take from a run folder (each file optional)."""
    from moderation_helpers.recipe import run_folder

    found: dict[str, Any] = {}
    if run_dir is None:
        return found
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found")
    for key, name in (
        ("thresholds", run_folder.THRESHOLDS_JSON),
        ("evaluation", run_folder.EVALUATION_JSON),
        ("summary", run_folder.PREPARE_SUMMARY),
        ("job", run_folder.JOB_JSON),
    ):
        if (Path(run_dir) / name).is_file():
            found[key] = run_folder.read_record(run_dir, name)
    return found


def _configured_tokenizer(hf_tokenizer: Any, seq_len: int):
    """A copy of the fast tokenizer that truncates at ``seq_len`` and pads to the longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.enable_truncation(max_length=int(seq_len))
    pad_token = hf_tokenizer.pad_token
    tokenizer.enable_padding(pad_id=int(hf_tokenizer.pad_token_id), pad_token=pad_token)
    return tokenizer


def _scoring_graph(classifier: Any, targets: Sequence[Any]) -> Any:
    """The trainer's classifier with each target's score function applied: one tensor per
    target, in target order (a torch module, defined here so that torch loads lazily)."""
    import torch
    from torch import nn

    class ScoringGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = classifier
            self.score_functions = [(t.name, t.loss_function) for t in targets]

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            logits = self.classifier(input_ids, attention_mask)
            return tuple(
                torch.sigmoid(logits[name]) if kind == "multi_class" else logits[name].softmax(-1)
                for name, kind in self.score_functions
            )

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
    expected = classifier.predict(texts)
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

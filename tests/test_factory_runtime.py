"""The factory's classification runtime: the exported folder (made once, with what int8 costs
measured), the graph rule (fp32 by default; int8 when pinned, or with auto within its AUC
bound), the calibration cached per model, and the Moderator tokenizing each request once in the
batcher."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moderation_helpers.classifier.network import Target
from moderation_helpers.classifier.training import TrainSettings, train
from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.exports import EXPORT_DIR, export_dir, export_trained
from moderation_helpers.factory.serving import runtime
from moderation_helpers.factory.serving.batcher import Batcher, BatchSettings
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.model.folder import MODEL_CARD, read_classifier
from moderation_helpers.model.moderator import Moderator

TEXTS = ["you are a complete idiot", "what a lovely afternoon", "I will hurt you", "thanks"]
EXAMPLES = [
    {"text": text, "labels": {"moderation": ["toxicity"], "tone": "angry"}}
    if i % 2 == 0
    else {"text": text, "labels": {"moderation": ["safe"], "tone": "calm"}}
    for i, text in enumerate(TEXTS * 2)
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-step model with a multi_class and a single_class target, exported as training
    does, its quality measured on the training lines."""
    out = tmp_path_factory.mktemp("runtime-model")
    targets = [
        Target("moderation", ["safe", "toxicity"], "multi_class"),
        Target("tone", ["calm", "angry"], "single_class"),
    ]
    train(EXAMPLES, None, targets, TrainSettings(training_steps=2, batch_size=4), out)
    export_trained(out, "ft:classifier:test", {"id": "job"}, EXAMPLES)
    return out


@pytest.mark.slow  # trains and exports a model
def test_the_export_holds_both_graphs_and_what_int8_costs(model_dir):
    folder = export_dir(model_dir)
    assert folder == model_dir / EXPORT_DIR
    record = read_classifier(folder)
    fp32, int8 = record["variants"]["fp32"], record["variants"]["int8"]
    assert 0 <= fp32["validation_macro_auc"] <= 1 and 0 <= int8["validation_macro_auc"] <= 1
    assert int8["auc_cost_vs_fp32"] == pytest.approx(
        fp32["validation_macro_auc"] - int8["validation_macro_auc"]
    )
    assert record["validation"]["texts"] == len(EXAMPLES)
    assert set(record["validation"]["labels"]) == {"moderation/toxicity", "tone/calm", "tone/angry"}
    assert "## Quantization" in (folder / MODEL_CARD).read_text()


@pytest.mark.slow  # trains and exports a model
def test_without_validation_the_cost_is_recorded_unmeasured(model_dir, tmp_path):
    from moderation_helpers.classifier.checkpoint import load_model
    from moderation_helpers.export.onnx import export_model

    target = tmp_path / "elsewhere"
    export_model(load_model(model_dir, device="cpu", precision="fp32"), target, int8=True)
    record = read_classifier(target)
    assert record["validation"] == {"unmeasured": "the job had no validation file"}
    assert record["variants"]["int8"]["auc_cost_vs_fp32"] is None
    assert "unmeasured" in (target / MODEL_CARD).read_text()


@pytest.mark.slow  # trains and exports a model
def test_calibration_measures_each_candidate_against_its_bound(model_dir):
    record = runtime.calibrate(model_dir, runtime.CALIBRATION_TEXTS[:24])
    candidates = record["candidates"]
    assert set(candidates) == set(runtime.CANDIDATES)
    assert candidates["torch-fp32"]["max_abs_diff"] < 1e-6  # itself, batched otherwise
    assert candidates["onnx-fp32"]["within_bound"]
    assert candidates["onnx-fp32"]["max_abs_diff"] <= runtime.TOLERANCE
    cost = read_classifier(export_dir(model_dir))["variants"]["int8"]["auc_cost_vs_fp32"]
    assert candidates["onnx-int8"]["auc_cost_vs_fp32"] == cost
    assert candidates["onnx-int8"]["within_bound"] == (cost <= runtime.INT8_MAX_AUC_COST)


def _record(int8_cost: float | None, speeds=(300.0, 200.0, 100.0)) -> dict:
    int8_ok = int8_cost is not None and int8_cost <= runtime.INT8_MAX_AUC_COST
    return {
        "candidates": {
            "onnx-int8": {"texts_per_second": speeds[0], "within_bound": int8_ok},
            "onnx-fp32": {"texts_per_second": speeds[1], "within_bound": True},
            "torch-fp32": {"texts_per_second": speeds[2], "within_bound": True},
        }
    }


def test_fp32_serves_by_default_and_int8_only_when_asked_for():
    assert runtime.pick(_record(0.0)) == "onnx-fp32"  # int8 faster and free: still fp32
    assert ServingConfig().graph == "fp32"
    assert runtime.pick(_record(0.004), "auto") == "onnx-int8"
    assert runtime.pick(_record(0.006), "auto") == "onnx-fp32"  # beyond its AUC bound
    assert runtime.pick(_record(None), "auto") == "onnx-fp32"  # cost unmeasured
    assert runtime.pick(_record(0.006), "int8") == "onnx-int8"
    assert runtime.pick(_record(0.004, speeds=(100.0, 300.0, 10.0)), "auto") == "onnx-fp32"
    assert runtime.pick(_record(0.0, speeds=(300.0, 100.0, 200.0))) == "torch-fp32"  # measured
    assert runtime.pick({"candidates": {}}) == "torch-fp32"
    with pytest.raises(ValueError):
        runtime.pick(_record(0.0), "fp16")


@pytest.mark.slow  # trains and exports a model
def test_the_calibration_is_cached_per_model_and_machine(model_dir, monkeypatch):
    cache = model_dir / runtime.RUNTIME_JSON
    cache.unlink(missing_ok=True)
    calls = []

    def fake_calibrate(path, texts=()):
        calls.append(path)
        return _record(0.0)

    monkeypatch.setattr(runtime, "calibrate", fake_calibrate)
    assert runtime.choose(model_dir, "auto") == "onnx-int8"
    assert runtime.choose(model_dir) == "onnx-fp32"  # the same calibration
    assert len(calls) == 1
    saved = json.loads(cache.read_text())
    assert saved["machine"] == runtime.machine()
    # Another machine (or library version): measured again.
    cache.write_text(json.dumps({**saved, "machine": {"cpu": "elsewhere"}}))
    runtime.choose(model_dir)
    assert len(calls) == 2
    cache.unlink()


@pytest.mark.slow  # trains and exports a model
def test_model_cache_serves_the_chosen_runtime(model_dir, monkeypatch):
    for choice, kind, variant in (
        ("onnx-int8", Moderator, "int8"),
        ("onnx-fp32", Moderator, "fp32"),
        ("torch-fp32", runtime.TorchRuntime, "fp32"),
    ):
        monkeypatch.setattr(runtime, "choose", lambda path, graph="fp32", c=choice: c)
        cache = ModelCache()
        loaded = cache.get("m", model_dir)
        assert isinstance(loaded, kind) and loaded.variant == variant
        rows = loaded.predict(TEXTS)
        assert set(rows[0]) == {"moderation", "tone"}
        lengths = loaded.token_lengths(TEXTS)
        assert lengths.dtype == np.int64 and lengths[0] == 7  # [CLS] 5 words [SEP]
        cache.close()


@pytest.mark.slow  # trains and exports a model
def test_the_moderator_in_the_batcher_tokenizes_each_request_once(model_dir):
    moderator = Moderator.load(export_dir(model_dir))
    expected = moderator.predict(TEXTS)
    calls = []
    tokenizer = moderator._tokenizer

    class Counting:
        def encode_batch(self, texts, *args, **kwargs):
            calls.append(len(texts))
            return tokenizer.encode_batch(texts, *args, **kwargs)

    moderator._tokenizer = Counting()
    batcher = Batcher(lambda: moderator, BatchSettings(window_ms=1))
    rows = batcher.predict(TEXTS, timeout=30)
    batcher.close(wait=True)
    assert calls == [len(TEXTS)]  # counted and scored from one tokenization
    for got, want in zip(rows, expected, strict=True):
        for target in want:
            assert got[target] == pytest.approx(want[target], abs=1e-6)

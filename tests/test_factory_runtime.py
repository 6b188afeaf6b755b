"""The factory's classification runtime: chosen by a measured calibration, cached, matching
torch fp32 within the bound."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moderation_helpers.classifier.checkpoint import load_model
from moderation_helpers.classifier.network import Target
from moderation_helpers.classifier.training import TrainSettings, train
from moderation_helpers.factory.serving import runtime
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.model.moderator import Moderator

TEXTS = ["you are a complete idiot", "what a lovely afternoon", "I will hurt you", "thanks"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-step model with a multi_class and a single_class target."""
    out = tmp_path_factory.mktemp("runtime-model")
    examples = [
        {"text": text, "labels": {"moderation": ["toxicity"], "tone": "angry"}}
        if i % 2 == 0
        else {"text": text, "labels": {"moderation": ["safe"], "tone": "calm"}}
        for i, text in enumerate(TEXTS * 2)
    ]
    targets = [
        Target("moderation", ["safe", "toxicity"], "multi_class"),
        Target("tone", ["calm", "angry"], "single_class"),
    ]
    train(examples, None, targets, TrainSettings(training_steps=2, batch_size=4), out)
    return out


def test_onnx_export_is_made_once_and_matches_torch(model_dir):
    folder = runtime.ensure_onnx(model_dir)
    assert folder == model_dir / runtime.ONNX_DIR
    made = (folder / "model.onnx").stat().st_mtime_ns
    assert runtime.ensure_onnx(model_dir) == folder
    assert (folder / "model.onnx").stat().st_mtime_ns == made  # not exported again
    assert not list(model_dir.glob(".onnx*"))  # no work folder left
    expected = load_model(model_dir, precision="fp32").predict(TEXTS)
    got = Moderator.load(folder).predict(TEXTS)
    for a, b in zip(expected, got, strict=True):
        for target in a:
            assert sum(b[target].values()) == pytest.approx(
                sum(a[target].values()), abs=1e-4 * len(a[target])
            )
            for label in a[target]:
                assert b[target][label] == pytest.approx(a[target][label], abs=1e-4)


def test_calibration_measures_each_candidate_and_picks_a_qualified_fastest(model_dir):
    record = runtime.calibrate(model_dir, runtime.CALIBRATION_TEXTS[:24])
    candidates = record["candidates"]
    assert set(candidates) == set(runtime.CANDIDATES)
    assert candidates["torch-fp32"]["max_abs_diff"] < 1e-6  # itself, batched otherwise
    assert candidates["onnx-fp32"]["within_bound"]
    speeds = {k: v["texts_per_second"] for k, v in candidates.items() if "texts_per_second" in v}
    assert record["choice"] == max(speeds, key=speeds.get)
    for entry in candidates.values():
        if "texts_per_second" in entry:
            assert entry["max_abs_diff"] <= runtime.TOLERANCE


def test_choice_is_cached_per_machine(model_dir, tmp_path, monkeypatch):
    calls = []

    def fake_calibrate(path, texts=()):
        calls.append(path)
        return {"choice": "onnx-fp32", "candidates": {}}

    monkeypatch.setattr(runtime, "calibrate", fake_calibrate)
    cache = tmp_path / runtime.RUNTIME_JSON
    assert runtime.choose(model_dir, cache) == "onnx-fp32"
    assert runtime.choose(model_dir, cache) == "onnx-fp32"
    assert len(calls) == 1
    saved = json.loads(cache.read_text())
    assert saved["machine"] == runtime.machine()
    # Another machine (or library version): measured again.
    cache.write_text(json.dumps({**saved, "machine": {"cpu": "elsewhere"}, "choice": "torch-fp32"}))
    assert runtime.choose(model_dir, cache) == "onnx-fp32"
    assert len(calls) == 2


def test_model_cache_serves_the_chosen_runtime(model_dir, tmp_path, monkeypatch):
    cache = tmp_path / runtime.RUNTIME_JSON
    for choice, kind in (("onnx-fp32", Moderator), ("torch-fp32", runtime.TorchRuntime)):
        record = {"choice": choice, "machine": runtime.machine()}
        cache.write_text(json.dumps(record))
        loaded = ModelCache(runtime_cache=cache).get("m", model_dir)
        assert isinstance(loaded, kind)
        rows = loaded.predict(TEXTS)
        assert set(rows[0]) == {"moderation", "tone"}
        lengths = loaded.token_lengths(TEXTS)
        assert lengths.dtype == np.int64 and lengths[0] == 7  # [CLS] 5 words [SEP]

"""The local trainer on tiny trainings: a few steps, a handful of short texts, seq_len 16."""

from __future__ import annotations

import json
import math

import pytest

from moderation_helpers.classifier import batches, estimate, network
from moderation_helpers.classifier import training as T
from moderation_helpers.classifier.checkpoint import CHECKPOINT_JSON, HEADS_FILE, load_model
from moderation_helpers.classifier.estimate import estimate_training_seconds
from moderation_helpers.classifier.network import Target

TEXTS = [
    ("you are a complete idiot", ["toxicity", "insult"]),
    ("what a lovely afternoon in the park", ["safe"]),
    ("I will hurt you and your family", ["toxicity", "threat"]),
    ("thanks for the thoughtful article", ["safe"]),
    ("shut up you stupid moron", ["toxicity", "insult"]),
    ("the council meets on tuesday", ["safe"]),
    ("go to hell, loser", ["toxicity", "insult"]),
    ("great point, I agree with you", ["safe"]),
]
MULTI = Target("moderation", ["safe", "toxicity", "threat", "insult"], "multi_class")
SINGLE = Target("tone", ["calm", "angry"], "single_class", weight=0.5)


def _examples(with_single: bool = True) -> list[dict]:
    out = []
    for text, labels in TEXTS:
        entry = {"moderation": labels}
        if with_single:
            entry["tone"] = "calm" if labels == ["safe"] else "angry"
        out.append({"text": text, "labels": entry})
    return out


def _settings(**kw) -> T.TrainSettings:
    base = dict(training_steps=4, batch_size=4, seq_len=16, learning_rate=1e-4, seed=3)
    base.update(kw)
    return T.TrainSettings(**base)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 4-step training with both target kinds, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("model")
    seen: list[T.Checkpoint] = []
    result = T.train(
        _examples(),
        _examples()[:4],
        [MULTI, SINGLE],
        _settings(checkpoint_every=2),
        out,
        on_checkpoint=seen.append,
    )
    return out, result, seen


def test_result_and_checkpoint_cadence(trained):
    _, result, seen = trained
    assert [c.step for c in result.checkpoints] == [2, 4]
    assert seen == result.checkpoints  # handed to on_checkpoint as each was made
    for c in result.checkpoints:
        assert math.isfinite(c.train_loss) and c.train_loss > 0
        assert c.valid_loss is not None and math.isfinite(c.valid_loss)
    assert result.trained_tokens > 0
    assert result.seconds >= result.train_seconds > 0


def test_predict_shapes_and_score_kinds(trained):
    out, _, _ = trained
    model = load_model(out)
    assert [t.name for t in model.targets] == ["moderation", "tone"]
    texts = ["you idiot", "a quiet day", "the weather, as ever, is a long story " * 4]
    scores = model.predict(texts)
    assert len(scores) == len(texts)
    for s in scores:
        assert set(s) == {"moderation", "tone"}
        assert list(s["moderation"]) == MULTI.labels
        assert list(s["tone"]) == SINGLE.labels
        assert all(0.0 < v < 1.0 for v in s["moderation"].values())
        # single_class: a softmax over the target's labels
        assert sum(s["tone"].values()) == pytest.approx(1.0, abs=1e-5)
    # multi_class: independent sigmoids, so their sum is not tied to 1
    assert any(abs(sum(s["moderation"].values()) - 1.0) > 0.05 for s in scores)
    assert model.predict([]) == []


def test_predict_order_does_not_depend_on_batching(trained):
    out, _, _ = trained
    model = load_model(out, precision="fp32")  # bf16 moves a padded text's scores by ~1e-4
    texts = [t for t, _ in TEXTS]
    together = model.predict(texts)
    alone = [model.predict([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        for label, v in a["moderation"].items():
            assert v == pytest.approx(b["moderation"][label], abs=1e-5)


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    out, _, _ = trained
    config = json.loads((out / CHECKPOINT_JSON).read_text())
    assert config["seq_len"] == 16
    assert config["targets"][0]["labels"] == MULTI.labels
    first = load_model(out).predict(["you idiot", "a quiet day"])
    second = load_model(out).predict(["you idiot", "a quiet day"])
    assert first == second


def test_the_checkpoint_records_its_base_encoder(trained):
    out, _, _ = trained
    config = json.loads((out / CHECKPOINT_JSON).read_text())
    assert config["base_encoder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert load_model(out).base_encoder == config["base_encoder"]


def test_pooling_reads_only_the_texts_own_tokens():
    import torch

    hidden = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [50.0, 50.0]]])  # the last is padding
    mask = torch.tensor([[1, 1, 0]])
    assert network.pool(hidden, mask, "mean").tolist() == [[2.0, -1.0]]
    assert network.pool(hidden, mask, "mean_max").tolist() == [[2.0, -1.0, 3.0, 0.0]]


def test_an_unknown_pooling_is_refused():
    encoder = network.load_encoder(network.encoder_path())
    with pytest.raises(ValueError, match="pooling must be one of"):
        network.Classifier(encoder, [MULTI], pooling="max")


def test_a_mean_max_model_saves_reloads_and_exports_as_it_scores(tmp_path):
    from moderation_helpers.export.onnx import export_model
    from moderation_helpers.model.folder import read_classifier
    from moderation_helpers.model.moderator import Moderator

    out = tmp_path / "model"
    T.train(_examples(False), None, [MULTI], _settings(training_steps=2, pooling="mean_max"), out)
    assert json.loads((out / CHECKPOINT_JSON).read_text())["pooling"] == "mean_max"
    model = load_model(out, precision="fp32")  # the graph is fp32; bf16 would move ~1e-3
    assert model.model.pooling == "mean_max"
    texts = ["you idiot", "a quiet day in the park with friends"]
    folder = export_model(model, tmp_path / "folder")
    assert read_classifier(folder)["pooling"] == "mean_max"
    assert "(mean + max pooling," in (folder / "README.md").read_text()
    onnx = Moderator.load(folder).score(texts)["moderation"]
    for row, scores in zip(onnx, model.predict(texts), strict=True):
        assert row.tolist() == pytest.approx(list(scores["moderation"].values()), abs=1e-4)


@pytest.mark.slow  # three trainings: the quick check leaves it to the full suite
def test_same_seed_same_losses(tmp_path):
    runs = [
        T.train(_examples(False), None, [MULTI], _settings(training_steps=3), tmp_path / str(i))
        for i in range(2)
    ]
    losses = [[c.train_loss for c in r.checkpoints] for r in runs]
    assert losses[0] == losses[1]
    other = T.train(
        _examples(False), None, [MULTI], _settings(training_steps=3, seed=4), tmp_path / "o"
    )
    assert [c.train_loss for c in other.checkpoints] != losses[0]


def test_encoder_depths_order_the_layers():
    names = [
        "embeddings.word_embeddings.weight",
        "encoder.layer.0.attention.self.query.weight",
        "encoder.layer.11.output.dense.bias",
        "encoder.relative_attention_bias.weight",
        "pooler.dense.weight",
    ]
    assert T.encoder_depths(names) == {
        names[0]: 0,
        names[1]: 1,
        names[2]: 12,
        names[3]: 12,
        names[4]: 12,
    }


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_layer_decay_sets_each_layers_rate(decay):
    model = network.Classifier(network.load_encoder(network.encoder_path()), [MULTI])
    settings = _settings(layer_decay=decay, learning_rate=1e-4, head_learning_rate=2e-3)
    optimizer, _ = T._optimizer(model, settings)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decayed = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert len(rate) == sum(len(g["params"]) for g in optimizer.param_groups)  # each once
    assert len(rate) == len(list(model.parameters()))
    named = dict(model.encoder.named_parameters())
    top = max(T.encoder_depths(named).values())
    assert top == 6  # all-MiniLM-L6-v2
    assert rate[id(named["encoder.layer.5.output.dense.weight"])] == pytest.approx(1e-4)
    assert rate[id(named["encoder.layer.0.output.dense.weight"])] == pytest.approx(1e-4 * decay**5)
    assert rate[id(named["embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 * decay**6)
    assert all(rate[id(p)] == pytest.approx(2e-3) for p in model.heads.parameters())
    assert decayed[id(named["encoder.layer.0.output.dense.weight"])] == settings.weight_decay
    assert decayed[id(named["encoder.layer.0.output.dense.bias"])] == 0.0
    assert decayed[id(named["embeddings.LayerNorm.weight"])] == 0.0


def test_no_validation_gives_no_valid_loss_and_default_cadence(tmp_path):
    result = T.train(_examples(False), [], [MULTI], _settings(training_steps=5), tmp_path)
    # default interval: about a tenth of the run, at least one step; always one at the end
    assert [c.step for c in result.checkpoints] == [1, 2, 3, 4, 5]
    assert all(c.valid_loss is None for c in result.checkpoints)


def test_cancel_raises_promptly(tmp_path):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(T.TrainingCancelled):
        T.train(
            _examples(False),
            None,
            [MULTI],
            _settings(training_steps=50),
            tmp_path / "m",
            should_stop=should_stop,
        )
    assert len(calls) == 3  # stopped at the first check that said so
    assert not (tmp_path / "m" / CHECKPOINT_JSON).exists()


def test_unknown_label_is_a_clear_error(tmp_path):
    bad = _examples(False)
    bad[2]["labels"]["moderation"] = ["toxicity", "spam"]
    with pytest.raises(ValueError, match=r"example 2.*spam"):
        T.train(bad, None, [MULTI], _settings(training_steps=1), tmp_path)


def test_seq_len_is_clamped_to_the_encoder():
    assert network.clamp_seq_len(16384) == network.MAX_SEQ_LEN == 512
    assert network.clamp_seq_len(64) == 64


def test_count_tokens_counts_special_tokens():
    assert network.count_tokens([]) == 0
    one = network.count_tokens(["hello"])
    assert one == 3  # [CLS] hello [SEP]
    assert network.count_tokens(["hello", "hello"]) == 2 * one


def test_estimate_uses_cached_calibration(tmp_path, monkeypatch):
    cache = tmp_path / "calibration.json"
    calls = []

    def fake(batch_size: int, tokens: int, precision: str, encoder: str) -> float:
        calls.append((batch_size, tokens, precision, encoder))
        return 0.25

    monkeypatch.setattr(estimate, "_STEP_SECONDS_CACHE", {})
    monkeypatch.setattr(estimate, "_calibrate_step_seconds", fake)
    assert estimate_training_seconds(200, 16, 50.2, cache_path=cache) == pytest.approx(50.0)
    assert estimate_training_seconds(100, 16, 51, cache_path=cache) == pytest.approx(25.0)
    assert calls == [(16, 56, "auto", "all-MiniLM-L6-v2")]
    # a fresh process reads the file instead of re-measuring
    monkeypatch.setattr(estimate, "_STEP_SECONDS_CACHE", {})
    assert estimate_training_seconds(10, 16, 50, cache_path=cache) == pytest.approx(2.5)
    assert calls == [(16, 56, "auto", "all-MiniLM-L6-v2")]


def test_bf16_and_fp32_scores_agree(trained):
    out, _, _ = trained
    texts = [t for t, _ in TEXTS]
    fast = load_model(out, precision="auto").predict(texts)
    exact = load_model(out, precision="fp32").predict(texts)
    for a, b in zip(fast, exact, strict=True):
        for label, v in a["moderation"].items():
            assert v == pytest.approx(b["moderation"][label], abs=0.02)


def test_folder_without_config_is_not_a_model(tmp_path):
    (tmp_path / HEADS_FILE).write_bytes(b"partial")
    with pytest.raises(FileNotFoundError, match="no trained classifier"):
        load_model(tmp_path)


def test_label_encoding_masks_missing_targets():
    examples = [
        {"text": "a", "labels": {"moderation": ["toxicity", "insult"], "tone": "angry"}},
        {"text": "b", "labels": {"moderation": "safe"}},
        {"text": "c", "labels": {"tone": "calm"}},
    ]
    y = batches.encode_labels(examples, [MULTI, SINGLE])
    assert y["moderation"][0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert y["moderation"][1].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert y["moderation"][2].isnan().all()
    assert y["tone"].tolist() == [1, -100, 0]


def test_label_scores_replace_the_zero_one_targets_they_give():
    examples = [
        {
            "text": "a",
            "labels": {"moderation": ["toxicity"], "tone": "angry"},
            "label_scores": {"moderation": {"toxicity": 0.75, "insult": 0.25}},
        },
        {"text": "b", "labels": {"moderation": "safe"}},
        {"text": "c", "labels": {"tone": "calm"}, "label_scores": {"moderation": {"insult": 1}}},
    ]
    hard = batches.encode_labels(examples, [MULTI, SINGLE])
    y = batches.with_label_scores(examples, [MULTI, SINGLE], hard)
    assert y["moderation"][0].tolist() == [0.0, 0.75, 0.0, 0.25]  # safe, toxicity, threat, insult
    assert y["moderation"][1].tolist() == hard["moderation"][1].tolist()
    assert y["moderation"][2].isnan().all(), "a row without the target stays masked"
    assert y["tone"] is hard["tone"]
    assert hard["moderation"][0].tolist() == [0.0, 1.0, 0.0, 0.0], "the 0/1 labels are kept"


def test_single_class_with_two_labels_is_a_clear_error():
    examples = [{"text": "a", "labels": {"tone": ["calm", "angry"]}}]
    with pytest.raises(ValueError, match=r"example 0: labels.tone is single_class"):
        batches.encode_labels(examples, [SINGLE])


def test_encoder_loads_in_float32_whatever_the_checkpoint_holds(tmp_path):
    import torch

    half = network.load_encoder(network.encoder_path()).to(torch.float16)
    half.save_pretrained(tmp_path)
    assert {p.dtype for p in half.parameters()} == {torch.float16}
    loaded = network.load_encoder(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}


def test_the_package_is_the_factory_trainer(monkeypatch):
    from moderation_helpers.core.env import FACTORY_TRAINER_ENV
    from moderation_helpers.factory.queue.training import load_trainer

    monkeypatch.delenv(FACTORY_TRAINER_ENV, raising=False)
    trainer = load_trainer()
    assert trainer.train is T.train and trainer.Target is Target
    assert trainer.estimate_training_seconds is estimate_training_seconds
    assert set(trainer.__all__) == {
        "Target",
        "TrainSettings",
        "TrainingCancelled",
        "clamp_seq_len",
        "count_tokens",
        "estimate_training_seconds",
        "train",
    }

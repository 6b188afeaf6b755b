"""The batch command: parameter routing and secrets (tiny notebooks), then the whole chain."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from moderation_helpers.cli import cookbook_main
from moderation_helpers.corpus.files import read_moderated
from moderation_helpers.recipe import pipeline
from moderation_helpers.recipe.deploy import exported_model_id
from moderation_helpers.recipe.run_folder import (
    DEPLOY_JSON,
    JOB_JSON,
    LOSS_PNG,
    METRICS_CSV,
    MODEL_DIR,
    MODERATED_DIR,
    read_record,
)

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "fake-mistral-key-7f3c9a1e5b2d4c6f"
FT_MODEL = re.compile(r"^ft:classifier:[\w.-]+:[0-9a-f]{8}:\d{8}:[0-9a-f]{8}$")
SMALL = ["-p", "training_steps", "6", "-p", "n_train", "800", "-p", "poll_interval", "0.5"]
SMALL_DEPLOY = ["-p", "speed_texts", "64"]


def tiny_notebooks(folder: Path, fail_at: str | None = None) -> Path:
    """One-cell step notebooks declaring a few parameters; ``fail_at`` raises."""
    declared = {
        "01_prepare": "run_dir = 'x'\nsource = 'x'\nmax_label_fraction = 0.2\nn_train = 10",
        "02_train": "run_dir = 'x'\nbackend = 'auto'\ntraining_steps = 200\nmodel = None\n"
        "learning_rate = 1e-4",
        "03_monitor": "run_dir = 'x'\ntimeout = 3600",
        "04_infer": "run_dir = 'x'",
        "05_deploy": "run_dir = 'x'\nspeed_texts = 1000",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for step, params in declared.items():
        body = "import os\nprint('factory', os.environ.get('MODERATION_FACTORY_URL'))"
        if step == fail_at:
            body = "raise RuntimeError('boom in ' + run_dir)"
        nb = nbformat.v4.new_notebook(
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
            },
            cells=[
                nbformat.v4.new_markdown_cell(f"# {step}"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body),
            ],
        )
        nbformat.write(nb, folder / f"{step}.ipynb")
    return folder


def injected(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(
        c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("6", 6),
        ("0.5", 0.5),
        ("True", True),
        ("None", None),
        ("runs/x", "runs/x"),
        ("1e-4", "1e-4"),
        ("[1, 2]", [1, 2]),
    ],
)
def test_parse_value_like_papermill(text, value):
    assert pipeline.parse_value(text) == value


def test_parameters_go_only_to_the_notebooks_declaring_them(tmp_path):
    notebooks = pipeline.notebook_paths(tiny_notebooks(tmp_path / "nb"))
    routed = pipeline.route_parameters(
        notebooks, {"run_dir": "r", "source": "s", "training_steps": 6, "timeout": 9}
    )
    assert routed["01_prepare"] == {"run_dir": "r", "source": "s"}
    assert routed["02_train"] == {"run_dir": "r", "training_steps": 6}
    assert routed["03_monitor"] == {"run_dir": "r", "timeout": 9}
    assert routed["04_infer"] == {"run_dir": "r"}
    with pytest.raises(pipeline.PipelineError, match=r"\['trainig_steps'\].*training_steps"):
        pipeline.route_parameters(notebooks, {"trainig_steps": 6})


def test_missing_notebook_is_named(tmp_path):
    folder = tiny_notebooks(tmp_path / "nb")
    (folder / "04_infer.ipynb").unlink()
    with pytest.raises(pipeline.PipelineError, match="04_infer.ipynb"):
        pipeline.notebook_paths(folder)


def test_keys_are_refused_as_parameters(monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
    with pytest.raises(pipeline.PipelineError, match="api_key"):
        pipeline.check_no_secrets({"api_key": "x"})
    with pytest.raises(pipeline.PipelineError, match="suffix"):
        pipeline.check_no_secrets({"suffix": FAKE_KEY})
    pipeline.check_no_secrets({"suffix": "mine", "training_steps": 6})


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def factory_pids(lines: list[str]) -> list[int]:
    return [int(m) for line in lines for m in re.findall(r"pid (\d+)", line)]


def test_tiny_chain_routes_parameters_and_stops_its_factory(tmp_path, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    lines: list[str] = []
    run = tmp_path / "run"
    executed = pipeline.run_pipeline(
        run,
        "some/source",
        {"training_steps": 3, "backend": "local"},
        notebooks_dir=tiny_notebooks(tmp_path / "nb"),
        log=lines.append,
    )
    assert [p.name for p in executed.values()] == [f"{s}.ipynb" for s in pipeline.STEPS]
    assert "max_label_fraction = 1.0" in injected(run / "01_prepare.ipynb")
    assert "zero_flags_fraction" not in injected(run / "01_prepare.ipynb")
    assert "training_steps = 3" in injected(run / "02_train.ipynb")
    assert "training_steps" not in injected(run / "03_monitor.ipynb")
    printed = nbformat.read(run / "04_infer.ipynb", as_version=4).cells[-1].outputs[0].text
    assert printed.startswith("factory http://127.0.0.1:")
    (pid,) = set(factory_pids(lines))
    assert not pid_alive(pid), "the pipeline left its factory running"
    assert (run / "factory").is_dir()


def test_failing_step_is_named_and_the_factory_still_stops(tmp_path, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    lines: list[str] = []
    with pytest.raises(pipeline.PipelineError, match=r"02_train failed \(RuntimeError: boom"):
        pipeline.run_pipeline(
            tmp_path / "run",
            "s",
            {"backend": "local"},
            notebooks_dir=tiny_notebooks(tmp_path / "nb", fail_at="02_train"),
            store=tmp_path / "store",
            log=lines.append,
        )
    assert (tmp_path / "run" / "02_train.ipynb").is_file()
    assert not (tmp_path / "run" / "03_monitor.ipynb").exists()
    (pid,) = set(factory_pids(lines))
    assert not pid_alive(pid)


def test_unknown_preset_is_refused_naming_the_known_ones(tmp_path):
    with pytest.raises(pipeline.PipelineError, match=r"'fast'.*\['default', 'quality'\]"):
        pipeline.run_pipeline(tmp_path / "run", "s", preset="fast")
    assert not (tmp_path / "run").exists()


def missing_mpnet(monkeypatch) -> None:
    """Make the quality preset's encoder look uninstalled, whatever this machine has."""
    real = pipeline.find_encoder

    def find(name):
        spec = real(name)
        return spec and dataclasses.replace(spec, distributions=("no-such-dist-xyz",))

    monkeypatch.setattr(pipeline, "find_encoder", find)


def test_an_encoder_the_run_cannot_train_stops_it_before_any_step(tmp_path, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    missing_mpnet(monkeypatch)
    nb = tiny_notebooks(tmp_path / "nb")
    with pytest.raises(
        pipeline.PipelineError, match=r"preset 'quality'.*moderation-cookbook\[mpnet\]"
    ):
        pipeline.run_pipeline(tmp_path / "run", "s", notebooks_dir=nb, preset="quality")
    with pytest.raises(
        pipeline.PipelineError, match=r"^model all-mpnet-base-v2, which is not inst"
    ):
        pipeline.run_pipeline(
            tmp_path / "run", "s", {"model": "all-mpnet-base-v2"}, notebooks_dir=nb
        )
    assert not (tmp_path / "run").exists(), "the run folder was made for a run that cannot train"
    # another name is the backend's business (the local factory trains its default encoder)
    pipeline.check_encoder({"model": "ministral-3b-latest"}, "local", "default")
    with pytest.raises(pipeline.PipelineError, match="mistral backend trains its own models"):
        pipeline.check_encoder({"model": "all-MiniLM-L6-v2"}, "mistral", "default")


def test_a_preset_sets_its_parameters_and_p_overrides_them(tmp_path, monkeypatch):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.setattr(pipeline, "check_encoder", lambda *args: None)  # mpnet may be absent
    lines: list[str] = []
    run = tmp_path / "run"
    pipeline.run_pipeline(
        run,
        "s",
        {"training_steps": 3, "backend": "local"},
        notebooks_dir=tiny_notebooks(tmp_path / "nb"),
        preset="quality",
        log=lines.append,
    )
    train = injected(run / "02_train.ipynb")
    quality = pipeline.PRESETS["quality"]
    assert f'model = "{quality["model"]}"' in train
    assert f"learning_rate = {quality['learning_rate']}" in train
    assert "training_steps = 3" in train, "-p did not override the preset"
    assert "\npreset: quality (model=all-mpnet-base-v2" in "\n".join(lines)


# --------------------------------------------------------------------------- the whole chain

MISSING = [s for s in pipeline.STEPS if not (REPO / "notebooks" / f"{s}.ipynb").is_file()]
needs_infer = pytest.mark.skipif(
    bool(MISSING), reason=f"step notebook(s) {MISSING} do not exist yet (their issues add them)"
)


def assert_chain_outputs(run: Path, steps=pipeline.STEPS) -> dict:
    for step in steps:
        assert (run / f"{step}.ipynb").is_file(), step
    metrics = pd.read_csv(run / METRICS_CSV)
    assert len(metrics) >= 1 and metrics["step"].is_unique
    assert metrics[["train_loss", "valid_loss"]].notna().any().all(), "a curve is empty"
    assert (run / LOSS_PNG).read_bytes()[:4] == b"\x89PNG"
    record = read_record(run, JOB_JSON)
    assert record["status"] == "SUCCESS" and FT_MODEL.match(record["fine_tuned_model"])
    return record


@pytest.mark.slow
@pytest.mark.needs_data
@needs_infer
def test_whole_chain_on_the_local_factory(civil_comments_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    run = tmp_path / "demo"
    status = cookbook_main(
        [
            "--run-dir",
            str(run),
            "--source",
            str(civil_comments_dir),
            "-p",
            "backend",
            "local",
            *SMALL,
            *SMALL_DEPLOY,
        ]
    )
    captured = capsys.readouterr()
    out = captured.out
    assert status == 0, out + captured.err
    record = assert_chain_outputs(run)
    assert record["backend"] == "local"
    # 05_deploy: the exported model, in-process and int8, and the whole test split through Ray.
    assert exported_model_id(run / MODEL_DIR) == record["fine_tuned_model"]
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json"} <= set(os.listdir(run / MODEL_DIR))
    deployed = read_record(run, DEPLOY_JSON)
    n_test = len((run / "test.jsonl").read_text(encoding="utf-8").splitlines())
    assert deployed["corpus"]["complete"] and deployed["corpus"]["rows"] == n_test
    assert len(read_moderated(run / MODERATED_DIR)) == n_test
    assert f"outputs in {run}" in out and "metrics.csv" in out
    (pid,) = set(factory_pids(out.splitlines()))
    assert not pid_alive(pid)


@pytest.mark.slow
@pytest.mark.needs_data
@needs_infer
def test_with_a_key_auto_targets_mistral_and_no_key_is_written(
    civil_comments_dir, tmp_path, monkeypatch, capsys
):
    """A local factory that demands the token stands in for the Mistral API at a set URL."""
    from moderation_helpers.factory.process import start_factory, stop_factory

    stand_in = start_factory(tmp_path / "stand-in-store", port=0, token=FAKE_KEY)
    try:
        monkeypatch.setenv("MISTRAL_API_KEY", FAKE_KEY)
        monkeypatch.setenv("MISTRAL_SERVER_URL", stand_in.url)
        monkeypatch.delenv("MODERATION_FACTORY_URL", raising=False)
        run = tmp_path / "demo"
        status = cookbook_main(["--run-dir", str(run), "--source", str(civil_comments_dir), *SMALL])
        out = capsys.readouterr()
        assert status == 0, out.out + out.err
    finally:
        stop_factory(stand_in)
    record = assert_chain_outputs(run, [s for s in pipeline.STEPS if s != "05_deploy"])
    assert record["backend"] == "mistral" and record["server_url"] == stand_in.url
    assert "05_deploy skipped: the model lives on the mistral backend" in out.out
    assert not (run / "05_deploy.ipynb").exists()
    assert not (run / "factory").exists(), "a local factory was started for a mistral run"
    assert FAKE_KEY not in out.out + out.err
    leaks = [p for p in run.rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == [], f"the key was written to {leaks}"


@pytest.mark.slow
@pytest.mark.needs_data
@needs_infer
def test_whole_chain_on_conversations(civil_comments_dir, tmp_path, monkeypatch, capsys):
    """01_prepare's chat format (each comment a user turn): the same four steps on chats."""
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    run = tmp_path / "chat"
    args = ["--run-dir", str(run), "--source", str(civil_comments_dir), "-p", "backend", "local"]
    status = cookbook_main([*args, "-p", "dataset_format", "chat", *SMALL])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    assert_chain_outputs(run)
    first = json.loads((run / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"messages", "labels", "label_scores"}
    assert first["messages"][1]["role"] == "user"
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert predictions["text"].str.startswith("system: ").all()
    executed = (run / "04_infer.ipynb").read_text(encoding="utf-8")
    assert "thresholds used by the factory's moderation routes: tuned" in executed

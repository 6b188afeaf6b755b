"""The run folder: the contract between the notebooks (see DESIGN.md).

Each step reads what the previous one left here and writes its own results; nothing secret is
ever written. Names live here so that no notebook or helper spells a file name twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from moderation_helpers.core.files import write_json

TRAIN_JSONL = "train.jsonl"
VALIDATION_JSONL = "validation.jsonl"
TEST_JSONL = "test.jsonl"
SPLIT_FILES = {"train": TRAIN_JSONL, "validation": VALIDATION_JSONL, "test": TEST_JSONL}
PREPARE_SUMMARY = "prepare_summary.json"
DISTRIBUTION_PNG = "distribution.png"
JOB_JSON = "job.json"
METRICS_CSV = "metrics.csv"
LOSS_PNG = "loss.png"
PREDICTIONS = "predictions.parquet"
EVALUATION_JSON = "evaluation.json"
THRESHOLDS_JSON = "thresholds.json"
MODEL_DIR = "model"  # the exported model folder (05_deploy): model.onnx, tokenizer.json, ...
MODERATED_DIR = "moderated"  # moderate-corpus's output on the deploy corpus (05_deploy)
RENDERED_TEST = "test_rendered.parquet"  # a chat run's test split as texts, for Ray (05_deploy)
DEPLOY_JSON = "deploy.json"  # speeds and the corpus summary (05_deploy)


def ensure_run_dir(run_dir: str | os.PathLike) -> Path:
    """Create the run folder if missing and return it as a Path."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_record(run_dir: str | os.PathLike, name: str) -> Any:
    """Read a JSON record of the run folder; a missing file names the step that writes it."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run the step that writes {name} first (see DESIGN.md's run folder)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def write_record(run_dir: str | os.PathLike, name: str, data: Any) -> Path:
    """Write a JSON record into the run folder atomically, with the project's formatting."""
    return write_json(Path(run_dir) / name, data)

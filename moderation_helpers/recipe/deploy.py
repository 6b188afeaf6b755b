"""What 05_deploy calls: export the run's model into the run folder, and time the ways to run it.

The model folder itself (format, Moderator) lives in ``model``, its export in ``export``,
corpus moderation in ``corpus``. This module only ties them to the run folder
and measures texts per second the same way for every engine.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from moderation_helpers.core.env import default_store
from moderation_helpers.model.folder import CLASSIFIER_JSON, VARIANT_FILES
from moderation_helpers.recipe.moderate import fine_tuned_model
from moderation_helpers.recipe.run_folder import (
    EVALUATION_JSON,
    JOB_JSON,
    MODEL_DIR,
    PREPARE_SUMMARY,
    THRESHOLDS_JSON,
    read_record,
)

PIPELINE_STORE = "factory"  # where the pipeline's factory keeps its store, inside the run


def factory_store(run_dir: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """The local factory store that holds the run's model: ``store`` when given, else the
    pipeline's (``run_dir/factory``) when there is one, else ``$MODERATION_FACTORY_STORE`` or
    ``~/.cache/moderation-cookbook/factory`` (where a factory started by 02_train keeps it)."""
    if store is not None:
        return Path(store).expanduser()
    in_run = Path(run_dir) / PIPELINE_STORE
    if in_run.is_dir():
        return in_run
    return default_store()


def exported_model_id(folder: str | os.PathLike) -> str | None:
    """The model id an exported folder was made from, or None where there is none."""
    path = Path(folder) / CLASSIFIER_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("model_id")


def export_inputs(run_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What an export takes from a run folder (each file optional): ``thresholds``,
    ``evaluation`` and ``summary``, as keyword arguments of ``export_from_store``."""
    found: dict[str, Any] = {}
    if run_dir is None:
        return found
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} not found")
    for key, name in (
        ("thresholds", THRESHOLDS_JSON),
        ("evaluation", EVALUATION_JSON),
        ("summary", PREPARE_SUMMARY),
    ):
        if (Path(run_dir) / name).is_file():
            found[key] = read_record(run_dir, name)
    return found


def export_run_model(
    run_dir: str | os.PathLike,
    *,
    store: str | os.PathLike | None = None,
    int8: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Export the run's fine-tuned model (``job.json``) into ``run_dir/model``, with its
    thresholds, evaluation and model card; return the folder.

    An export of the same model (with int8 when asked) is kept; an export of another model is
    replaced, since the run folder belongs to this run. Only a local job can be exported: the
    Mistral API does not hand out weights.
    """
    from moderation_helpers.factory.exports import export_from_store

    run_path = Path(run_dir)
    record = read_record(run_path, JOB_JSON)
    model = fine_tuned_model(record)
    if record.get("backend") != "local":
        raise RuntimeError(
            f"model {model} lives on the {record.get('backend')} backend, which does not hand "
            "out weights: only a model trained by the local factory can be exported"
        )
    out = run_path / MODEL_DIR
    variants = ["fp32", *(["int8"] if int8 else [])]
    if exported_model_id(out) == model and all(
        (out / VARIANT_FILES[v]).is_file() for v in variants
    ):
        log(f"{out} already holds {model} ({', '.join(variants)}): kept")
        return out
    if out.exists():
        shutil.rmtree(out)
    where = factory_store(run_path, store)
    started = time.perf_counter()
    export_from_store(where, model, out, int8=int8, **export_inputs(run_path))
    log(f"exported {model} from {where} in {time.perf_counter() - started:.1f} s")
    return out


def cycle(texts: Sequence[str], n: int) -> list[str]:
    """``n`` texts, repeating ``texts`` as often as needed (the same list for every engine)."""
    if not texts:
        raise ValueError("no texts to time")
    return [texts[i % len(texts)] for i in range(n)]


def texts_per_second(score: Callable[[list[str]], Any], texts: Sequence[str]) -> dict[str, Any]:
    """Time ``score(texts)`` once, after a warm-up call on a few of them (first-call costs:
    memory arenas, a model load on the server), and return texts, seconds and texts/s."""
    texts = list(texts)
    score(texts[:8])
    started = time.perf_counter()
    score(texts)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds}

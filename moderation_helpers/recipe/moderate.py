"""The moderation service the recipe promises: texts in, flagged labels and their scores out.

``moderate(texts, run_dir)`` classifies with the fine-tuned model named in the run folder's
``job.json``, on the backend that trained it (local factory or Mistral API), and flags each
label whose score reaches the threshold that ``04_infer`` tuned on the validation split and
saved in ``thresholds.json``. The notebook turns its own test scores into decisions with the
same :func:`decide`, so both give the same answer for the same scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from moderation_helpers.core.env import factory_headers
from moderation_helpers.core.flags import FLAG_RULE, SAFE_LABEL, Thresholds, thresholds_table
from moderation_helpers.core.statuses import SUCCESS
from moderation_helpers.model.decisions import Decision
from moderation_helpers.model.decisions import decide as decide_scores
from moderation_helpers.recipe.classify import classify_texts, targets_of
from moderation_helpers.recipe.run_folder import (
    JOB_JSON,
    PREPARE_SUMMARY,
    THRESHOLDS_JSON,
    read_record,
    write_record,
)


def fine_tuned_model(job: Mapping[str, Any]) -> str:
    """The model id of a finished job record (``job.json``), or a clear error saying why not."""
    model = job.get("fine_tuned_model")
    if job.get("status") != SUCCESS or not model:
        raise RuntimeError(
            f"job {job.get('job_id')} is {job.get('status')} and has no fine-tuned model yet: "
            "wait for it with 03_monitor before classifying"
        )
    return model


def thresholds_record(
    table: pd.DataFrame,
    *,
    model: str,
    backend: str,
    safe_label: str = SAFE_LABEL,
    graph: str | None = None,
) -> dict[str, Any]:
    """The ``thresholds.json`` document from a ``best_f1_thresholds`` table. ``graph``: the
    graph whose scores they were tuned on (``fp32`` or ``int8``, :func:`factory_graph`; None
    where not known, as on the Mistral API), so that a Moderator loading another one can say so."""
    thresholds: dict[str, dict[str, float]] = {}
    for (target, label), value in table["threshold"].items():
        thresholds.setdefault(target, {})[label] = float(value)
    return {
        "model": model,
        "backend": backend,
        "safe_label": safe_label,
        "rule": FLAG_RULE,
        "graph": graph,
        "thresholds": thresholds,
    }


def save_thresholds(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write ``thresholds.json`` into the run folder (atomically)."""
    return write_record(run_dir, THRESHOLDS_JSON, dict(record))


def _thresholds_url(server_url: str, model: str) -> str:
    return f"{server_url.rstrip('/')}/v1/fine_tuning/models/{model}/thresholds"


def factory_graph(
    server_url: str, model: str, *, token: str | None = None, timeout: float = 30
) -> str | None:
    """The graph (``fp32`` or ``int8``) the local factory at ``server_url`` scores ``model``
    with now, None while it has not loaded the model (a local-only field of
    ``GET /v1/fine_tuning/models/{model}/thresholds``). Ask after classifying with it."""
    import httpx

    response = httpx.get(
        _thresholds_url(server_url, model), headers=factory_headers(token), timeout=timeout
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"asking {server_url} which graph scores {model} failed: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json().get("graph")


def publish_thresholds(
    server_url: str, record: Mapping[str, Any], *, token: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Send a ``thresholds.json`` record to the local factory that serves its model, so that
    its ``/v1/moderations`` routes flag with the tuned thresholds (a local-only route:
    ``PUT /v1/fine_tuning/models/{model}/thresholds``). Returns what the factory now uses.

    The token, if the factory requires one, comes from ``$MODERATION_FACTORY_TOKEN`` (or
    ``token``), never from a parameter that is written anywhere.
    """
    import httpx

    response = httpx.put(
        _thresholds_url(server_url, record["model"]),
        json={
            "thresholds": record["thresholds"],
            "safe_label": record.get("safe_label"),
            "graph": record.get("graph"),
        },
        headers=factory_headers(token),
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"publishing thresholds of {record['model']} to {server_url} failed: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response.json()


def load_thresholds(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``thresholds.json`` (written by 04_infer) from the run folder."""
    return read_record(run_dir, THRESHOLDS_JSON)


def decide(
    texts: Sequence[str],
    scores: pd.DataFrame,
    thresholds: Mapping[tuple[str, str], float],
    *,
    safe_label: str = SAFE_LABEL,
) -> list[Decision]:
    """Turn a score frame into one :class:`Decision` per text (``model.decisions.decide``)."""
    layout = targets_of(scores)
    given = {}
    for (target, label), value in thresholds.items():
        if label in layout.get(target, ()):
            given.setdefault(target, {})[label] = value
    table = thresholds_table(layout, given, default=None)
    by_target = {t: scores[t].to_numpy() for t in layout}
    return decide_scores(texts, by_target, layout, table, safe_label)


def _client_for(job: Mapping[str, Any], run_dir: str | os.PathLike) -> Any:
    """A client for the job's backend; for a local job, the factory that holds the model."""
    from moderation_helpers.recipe.client import connect

    try:
        # start_local=False: a fresh factory over another store would not know the model.
        return connect(job["backend"], server_url=job.get("server_url"), start_local=False).client
    except ConnectionError as exc:
        port = urlsplit(job.get("server_url") or "").port or 0
        raise ConnectionError(
            f"{exc}. The model lives in the store of the factory that trained it (the "
            f"pipeline's is {Path(run_dir) / 'factory'}): start it again with `python -m "
            f"moderation_helpers.factory serve --store STORE --port {port}`, or pass a client"
        ) from exc


def moderate(
    texts: str | Sequence[str],
    run_dir: str | os.PathLike = "runs/latest",
    *,
    client: Any = None,
    thresholds: Thresholds | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> list[Decision]:
    """Moderate ``texts`` with the run's fine-tuned model and tuned thresholds.

    The model and backend come from ``job.json``; thresholds from ``thresholds.json``, where
    ``thresholds`` (``{target: {label: value}}``) overrides some or all of them. Without a
    ``client``, one is made with ``client.connect`` for the job's backend and server URL
    (the key, for the Mistral API, only from the environment); a local factory is not
    started, since a fresh one would not hold the model: the error says how to restart it.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        return []
    job = read_record(run_dir, JOB_JSON)
    model = fine_tuned_model(job)
    saved: dict[str, Any] = {}
    if (Path(run_dir) / THRESHOLDS_JSON).is_file() or thresholds is None:
        saved = load_thresholds(run_dir)
        if saved.get("model") not in (None, model):
            raise RuntimeError(
                f"{Path(run_dir) / THRESHOLDS_JSON} was tuned for model {saved['model']!r} but "
                f"job.json names {model!r}: re-run 04_infer to tune thresholds for this model"
            )
    if client is None:
        client = _client_for(job, run_dir)
    scores = classify_texts(client, model, texts, batch_size=batch_size, progress=progress)
    try:
        table = thresholds_table(
            targets_of(scores), saved.get("thresholds"), thresholds, default=None
        )
    except ValueError as exc:
        raise ValueError(f"model {model!r}: {exc}; set `thresholds` or re-run 04_infer") from None
    safe_label = saved.get("safe_label") or safe_label_of(run_dir)
    return decide(texts, scores, table.limits, safe_label=safe_label)


def decisions_frame(decisions: Sequence[Decision]) -> pd.DataFrame:
    """Decisions as a table for display: text, flagged labels per target, is_flagged."""
    return pd.DataFrame(
        {
            "text": [d.text for d in decisions],
            **{
                f"flagged/{t}": [d.flagged[t] for d in decisions]
                for t in (decisions[0].flagged if decisions else {})
            },
            "is_flagged": [d.is_flagged for d in decisions],
        }
    )


def safe_label_of(run_dir: str | os.PathLike) -> str:
    """The label the prepare step gave texts with no flag (``prepare_summary.json``)."""
    path = Path(run_dir) / PREPARE_SUMMARY
    if not path.is_file():
        return SAFE_LABEL
    summary = read_record(run_dir, PREPARE_SUMMARY)
    return (summary.get("parameters") or {}).get("safe_label") or SAFE_LABEL


def agreement(decisions: Sequence[Decision], predictions: pd.DataFrame) -> dict[str, Any]:
    """Compare decisions with the rows of ``predictions.parquet`` for the same texts, in order.

    Returns how many texts there are, how many have the same text and the same flagged labels
    for every target, and the largest score difference.
    """
    if len(decisions) != len(predictions):
        raise ValueError(f"{len(decisions)} decisions for {len(predictions)} prediction rows")
    theirs = predictions.reset_index(drop=True)
    ours = decisions_frame(decisions)
    score_columns = [c for c in theirs.columns if c.startswith("score/")]
    our_scores = pd.DataFrame.from_records(
        [
            {f"score/{t}/{lab}": v for t, labels in d.scores.items() for lab, v in labels.items()}
            for d in decisions
        ],
        columns=score_columns,
    )
    same = ours["text"].eq(theirs["text"])
    for column in (c for c in theirs.columns if c.startswith("flagged/")):
        # parquet gives lists back as arrays: compare as tuples
        same &= ours[column].map(tuple).eq(theirs[column].map(tuple))
    diff = (our_scores - theirs[score_columns]).abs().to_numpy()
    return {
        "texts": len(decisions),
        "same": int(same.sum()),
        "max_score_difference": float(diff.max()) if diff.size else 0.0,
    }

"""Classify in batches, measure per-label quality, and choose a threshold per label.

Scores and truths are DataFrames with one column per ``(target, label)`` (a two-level column
index named ``target`` / ``label``), one row per text, so that multi-target classifiers need no
special case. The Classifier Factory answers one dict per text keyed by target, each holding
``{"scores": {label: float}}``. On the Mistral API a target's scores are a softmax over its
labels (they sum to 1 even for multi-label targets); the local factory gives multi-label targets
a sigmoid per label. Either way each label gets its own threshold, tuned on the validation
split, instead of a fixed 0.5.

Metrics that a split cannot define (ROC-AUC without negatives, anything without positives) are
``None`` with a ``note``, and are left out of the macro means rather than turned into NaN.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from mistralai.client import errors
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
)

from moderation_helpers.recipe.jobs import describe_api_error, is_transient

with warnings.catch_warnings():
    # Without ipywidgets tqdm.auto falls back to the text bar, with a warning we don't need.
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

COLUMN_NAMES = ["target", "label"]
METRICS = ["roc_auc", "average_precision", "precision", "recall", "f1"]
DEFAULT_THRESHOLD = 0.5
SAFE_LABEL = "safe"
# What a call to the server can raise; anything else is a bug and propagates as it is.
API_ERRORS = (errors.MistralError, errors.NoResponseError, httpx.HTTPError, ConnectionError)
# Mistral's general moderation categories that mean the same as a civil_comments label.
MODERATION_API_CATEGORIES = {
    "threat": "violence_and_threats",
    "identity_attack": "hate_and_discrimination",
    "sexual_explicit": "sexual",
}


def _as_dict(obj: Any) -> Any:
    """SDK responses are pydantic models; fakes and recordings are plain dicts."""
    return obj.model_dump() if hasattr(obj, "model_dump") else obj


def _columns(pairs: Sequence[tuple[str, str]]) -> pd.MultiIndex:
    return pd.MultiIndex.from_tuples(list(pairs), names=COLUMN_NAMES)


def targets_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The ``{target: [labels]}`` layout of a score or truth frame, in column order."""
    out: dict[str, list[str]] = {}
    for target, label in frame.columns:
        out.setdefault(target, []).append(label)
    return out


def score_frame(
    results: Sequence[Mapping[str, Any]], targets: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """Turn the ``results`` of a classification response into a score frame.

    ``targets`` fixes the column order and checks that every expected label was scored; by
    default the layout of the first result is used, labels sorted.
    """
    # ``response.results`` holds plain dicts of SDK models: convert both levels.
    results = [{t: _as_dict(v) for t, v in _as_dict(r).items()} for r in results]
    if targets is None:
        first = results[0] if results else {}
        targets = {t: sorted(v["scores"]) for t, v in sorted(first.items())}
    parts = []
    for target, labels in targets.items():
        try:
            rows = [r[target]["scores"] for r in results]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"classification result without scores for target {target!r}: {exc!r}"
            ) from exc
        part = pd.DataFrame.from_records(rows, columns=list(labels))
        missing = part.columns[part.isna().any()].tolist()
        if missing:
            raise ValueError(f"classification results lack scores for {target}/{missing}")
        parts.append(part.set_axis(_columns([(target, lab) for lab in labels]), axis=1))
    if not parts:
        return pd.DataFrame(columns=_columns([]), dtype=float)
    return pd.concat(parts, axis=1).astype(float)


def _call_with_retry(call, what: str, max_attempts: int, retry_wait: float):
    """Run ``call()``; retry transient failures with exponential backoff, up to max_attempts."""
    for attempt in range(1, max_attempts + 1):
        try:
            return call()
        except API_ERRORS as exc:
            if not is_transient(exc):
                raise RuntimeError(f"{what} failed: {describe_api_error(exc)}") from exc
            if attempt == max_attempts:
                why = describe_api_error(exc)
                raise RuntimeError(f"{what} failed after {attempt} attempts: {why}") from exc
            time.sleep(retry_wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def classify_texts(
    client: Any,
    model: str,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    targets: Mapping[str, Sequence[str]] | None = None,
    max_attempts: int = 3,
    retry_wait: float = 2.0,
    progress: bool = True,
    desc: str = "classify",
) -> pd.DataFrame:
    """Classify ``texts`` with ``client.classifiers.classify`` in batches; one score row each.

    The client's own retry_config already retries 429/5xx and connection errors; a batch whose
    failure escapes it (a dropped connection mid-response) is retried here ``max_attempts``
    times in all. Anything else (a 4xx: bad model id, bad input) raises a RuntimeError naming
    the model and the rows of the batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    texts = list(texts)
    frames = []
    bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
    with bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            what = f"classifying texts {start}..{start + len(batch) - 1} with model {model!r}"
            response = _call_with_retry(
                lambda b=batch: client.classifiers.classify(model=model, inputs=b),
                what,
                max_attempts,
                retry_wait,
            )
            results = _as_dict(response)["results"]
            if len(results) != len(batch):
                raise RuntimeError(f"{what}: got {len(results)} results for {len(batch)} texts")
            frame = score_frame(results, targets)
            targets = targets or targets_of(frame)
            frames.append(frame)
            bar.update(len(batch))
    if not frames:
        return score_frame([], targets or {})
    return pd.concat(frames, ignore_index=True)


def labels_matrix(
    examples: Sequence[Mapping[str, Any]], target: str, labels: Sequence[str]
) -> pd.DataFrame:
    """Truth of one target as a bool frame (one column per label) from parsed JSONL examples.

    A target's value may be one label (single_class) or a list (multi_class); an example that
    does not label this target counts as negative for all its labels. A label outside
    ``labels`` is an error: the model could never have predicted it.
    """
    given = pd.Series([ex.get("labels", {}) for ex in examples], dtype=object)
    exploded = given.str.get(target).explode().dropna()
    unknown = sorted(set(exploded) - set(labels))
    if unknown:
        raise ValueError(
            f"target {target!r}: label(s) {unknown} in the data but not among the model's "
            f"labels {list(labels)}"
        )
    truth = pd.crosstab(exploded.index, exploded).astype(bool)
    truth = truth.rename_axis(index=None, columns=None)
    return truth.reindex(index=range(len(examples)), columns=list(labels), fill_value=False)


def truth_frame(
    examples: Sequence[Mapping[str, Any]], targets: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Truth for every target, with the same two-level columns as a score frame."""
    parts = [
        labels_matrix(examples, t, labels).set_axis(_columns([(t, lab) for lab in labels]), axis=1)
        for t, labels in targets.items()
    ]
    return pd.concat(parts, axis=1)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold that maximizes F1 on one label, or why there is none."""

    threshold: float | None
    f1: float | None
    note: str | None = None


def best_f1_threshold(y_true: Sequence[bool], scores: Sequence[float]) -> ThresholdChoice:
    """The score threshold (flag when ``score >= threshold``) that maximizes F1.

    Candidates come from ``precision_recall_curve``. The threshold returned sits halfway
    between the chosen score and the next lower score, so that it separates the classes
    instead of touching the lowest flagged example. Ties in F1 go to the higher threshold:
    same quality, fewer texts flagged. Without positives there is nothing to tune (``None``).
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos = int(y.sum())
    if n_pos == 0:
        return ThresholdChoice(None, None, "no positive examples to tune on")
    precision, recall, thresholds = precision_recall_curve(y, s)
    # Exact counts make equal F1s compare equal (IEEE division rounds a/b == c/d alike).
    tp = np.rint(recall[:-1] * n_pos)
    predicted = y.size - np.searchsorted(np.sort(s), thresholds, side="left")
    f1 = 2 * tp / (predicted + n_pos)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    chosen = float(thresholds[best])
    below = s[s < chosen]
    threshold = (chosen + float(below.max())) / 2 if below.size else chosen
    note = None if n_pos < y.size else "no negative examples: every text is flagged"
    return ThresholdChoice(threshold, float(f1[best]), note)


def best_f1_thresholds(
    truth: pd.DataFrame, scores: pd.DataFrame, *, default: float = DEFAULT_THRESHOLD
) -> pd.DataFrame:
    """Per label: the F1-maximizing threshold on this split (usually validation).

    Columns: ``threshold``, ``source`` ("validation_f1" or "default" where the split has no
    positives, which then gets ``default``), ``validation_f1``, ``note``.
    """
    rows = []
    for column in scores.columns:
        choice = best_f1_threshold(truth[column].to_numpy(), scores[column].to_numpy())
        tuned = choice.threshold is not None
        note = choice.note
        if not tuned:
            note = f"{note} in validation: default threshold {default} used"
        rows.append(
            {
                "threshold": choice.threshold if tuned else default,
                "source": "validation_f1" if tuned else "default",
                "validation_f1": choice.f1,
                "note": note,
            }
        )
    return pd.DataFrame(rows, index=scores.columns)


def label_metrics(
    y_true: Sequence[bool], scores: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Quality of one label on one split: ranking (ROC-AUC, AP) and P/R/F1 at ``threshold``.

    A metric the split cannot define is ``None`` and ``note`` says why: without positives
    nothing is defined; without negatives ROC-AUC is not. Precision with no text flagged is 0.
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    support, negatives = int(y.sum()), int((~y).sum())
    out: dict[str, Any] = {"support": support, "negatives": negatives}
    out.update(dict.fromkeys(METRICS))
    out["note"] = None
    if support == 0:
        out["note"] = "no positive examples in this split: metrics undefined, left out of macro"
        return out
    predicted = s >= threshold
    p, r, f, _ = precision_recall_fscore_support(y, predicted, average="binary", zero_division=0.0)
    out.update(precision=float(p), recall=float(r), f1=float(f))
    out["average_precision"] = float(average_precision_score(y, s))
    if negatives == 0:
        out["note"] = "no negative examples in this split: ROC-AUC undefined"
    else:
        out["roc_auc"] = float(roc_auc_score(y, s))
    return out


def evaluate_labels(
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: pd.DataFrame | Mapping[tuple[str, str], float],
    *,
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """One row per ``(target, label)``: threshold, support and the metrics of ``label_metrics``.

    ``thresholds`` is the frame of ``best_f1_thresholds`` (its source/validation_f1/note are
    carried along) or a plain ``{(target, label): threshold}`` mapping. ``is_flag`` is False for
    the safe label, which is reported but kept out of the flag labels' macro.
    """
    table = (
        thresholds.copy()
        if isinstance(thresholds, pd.DataFrame)
        else pd.DataFrame({"threshold": pd.Series(thresholds)}).reindex(scores.columns)
    )
    table.index = table.index.set_names(COLUMN_NAMES)
    rows = [
        label_metrics(truth[c].to_numpy(), scores[c].to_numpy(), float(table.at[c, "threshold"]))
        for c in scores.columns
    ]
    metrics = pd.DataFrame(rows, index=scores.columns)
    if "note" in table:
        notes = pd.concat([table.pop("note"), metrics.pop("note")], axis=1)
        metrics["note"] = notes.apply(lambda r: "; ".join(r.dropna()) or None, axis=1)
    report = pd.concat([table, metrics], axis=1)
    report.insert(0, "is_flag", report.index.get_level_values("label") != safe_label)
    return report


def macro_means(report: pd.DataFrame) -> dict[str, Any]:
    """Macro means over the flag labels (safe excluded) of the metrics each label defines.

    ``n_labels`` says how many labels each mean covers; a mean over no label is ``None``.
    """
    flags = report[report["is_flag"]]
    values = flags[METRICS].apply(pd.to_numeric, errors="coerce")
    means = values.mean()
    out: dict[str, Any] = {m: (None if pd.isna(means[m]) else float(means[m])) for m in METRICS}
    out["n_labels"] = {m: int(values[m].notna().sum()) for m in METRICS}
    out["labels"] = [f"{t}/{lab}" for t, lab in flags.index]
    return out


def predict(scores: pd.DataFrame, thresholds: Mapping[tuple[str, str], float]) -> pd.DataFrame:
    """Bool frame: ``score >= threshold`` for each label (safe included)."""
    limits = pd.Series({c: float(thresholds[c]) for c in scores.columns}).reindex(scores.columns)
    return scores.ge(limits, axis=1)


def flagged_labels(
    scores: pd.DataFrame, predicted: pd.DataFrame, *, safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """Per text and target, the flagged labels (safe is never a flag), highest score first."""
    stacked = {
        name: frame.rename_axis("row").stack(COLUMN_NAMES, future_stack=True)
        for name, frame in (("score", scores), ("flag", predicted))
    }
    long = pd.DataFrame(stacked).reset_index()
    long = long[long["flag"].astype(bool) & (long["label"] != safe_label)]
    long = long.sort_values(["row", "target", "score", "label"], ascending=[1, 1, 0, 1])
    grouped = long.groupby(["row", "target"])["label"].agg(list).unstack("target")
    grouped = grouped.reindex(index=scores.index, columns=list(targets_of(scores)))
    # Texts with nothing flagged have no group: give them an empty list.
    return grouped.apply(lambda col: col.map(lambda v: v if isinstance(v, list) else []))


def _flat_name(kind: str, column: tuple[str, ...]) -> str:
    return "/".join((kind, *column))


def predictions_frame(
    texts: Sequence[str],
    truth: pd.DataFrame,
    scores: pd.DataFrame,
    thresholds: Mapping[tuple[str, str], float],
    *,
    split: str = "test",
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """One split's predictions, flat for parquet: ``split``, ``row``, ``text``, then per label
    ``truth/<target>/<label>``, ``score/...``, ``pred/...`` (score >= threshold, safe included)
    and per target ``flagged/<target>`` (the list a moderator acts on, safe excluded)."""
    predicted = predict(scores, thresholds)
    flags = flagged_labels(scores, predicted, safe_label=safe_label)
    parts = {
        "truth": truth.reindex(columns=scores.columns),
        "score": scores,
        "pred": predicted,
    }
    flat = [
        frame.set_axis([_flat_name(kind, c) for c in frame.columns], axis=1)
        for kind, frame in parts.items()
    ]
    flat.append(flags.set_axis([_flat_name("flagged", (t,)) for t in flags.columns], axis=1))
    head = pd.DataFrame({"split": split, "row": range(len(texts)), "text": list(texts)})
    return pd.concat([head, *(f.reset_index(drop=True) for f in flat)], axis=1)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a frame as parquet atomically: a temporary file, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def table_to_records(report: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{target: {label: {field: value}}}`` with None (never NaN) for undefined figures."""
    clean = report.astype(object).where(report.notna(), None)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (target, label), row in clean.iterrows():
        out.setdefault(target, {})[label] = {
            k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()
        }
    return out


def moderation_api_scores(
    client: Any,
    texts: Sequence[str],
    *,
    model: str = "mistral-moderation-latest",
    batch_size: int = 64,
    max_attempts: int = 3,
    retry_wait: float = 2.0,
    progress: bool = True,
) -> pd.DataFrame:
    """Category scores of Mistral's general moderation endpoint, one column per category."""
    texts = list(texts)
    rows: list[dict[str, float]] = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="moderation API", disable=not progress):
        batch = texts[start : start + batch_size]
        what = f"moderating texts {start}..{start + len(batch) - 1} with {model!r}"
        response = _call_with_retry(
            lambda b=batch: client.classifiers.moderate(model=model, inputs=b),
            what,
            max_attempts,
            retry_wait,
        )
        rows.extend((r.get("category_scores") or {}) for r in _as_dict(response)["results"])
    return pd.DataFrame.from_records(rows).astype(float)


def compare_with_moderation_api(
    truth: pd.DataFrame,
    api_scores: pd.DataFrame,
    *,
    target: str = "moderation",
    categories: Mapping[str, str] = MODERATION_API_CATEGORIES,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """Baseline figures of the general moderation endpoint on the labels it has a category for.

    Only labels present in ``truth`` and categories present in ``api_scores`` are compared;
    P/R/F1 use the endpoint's scores at ``threshold``.
    """
    pairs = [
        (label, cat)
        for label, cat in categories.items()
        if (target, label) in truth.columns and cat in api_scores.columns
    ]
    rows = {
        (target, label): {
            "category": cat,
            **label_metrics(truth[(target, label)], api_scores[cat], threshold),
        }
        for label, cat in pairs
    }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if not frame.empty:
        frame.index = frame.index.set_names(COLUMN_NAMES)
    return frame


def evaluation_record(
    report: pd.DataFrame,
    *,
    model: str,
    backend: str,
    split_sizes: Mapping[str, int],
    job_id: str | None = None,
    safe_label: str = SAFE_LABEL,
    **extra: Any,
) -> dict[str, Any]:
    """The ``evaluation.json`` document: per-label figures, flag macro, safe label apart."""
    per_label = table_to_records(report)
    return {
        "model": model,
        "backend": backend,
        "job_id": job_id,
        "evaluated_on": "test",
        "thresholds_tuned_on": "validation",
        "split_sizes": dict(split_sizes),
        "safe_label": safe_label,
        "per_label": per_label,
        "macro": macro_means(report),
        "safe": {t: labels[safe_label] for t, labels in per_label.items() if safe_label in labels},
        **extra,
    }

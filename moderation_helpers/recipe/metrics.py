"""A job's checkpoints as a metrics frame (``step``, ``train_loss``, ``valid_loss``), keyed by the
*step number*, and its ``metrics.csv`` in the run folder.

The original recipe tested ``step in df.index`` (the row index, not the step) and appended the
same checkpoints again at every poll; here a step is one row, however often it is seen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from moderation_helpers.core.files import atomic_write_text
from moderation_helpers.recipe.job_record import job_to_dict

METRIC_COLUMNS = ["step", "train_loss", "valid_loss"]


def empty_metrics() -> pd.DataFrame:
    """A metrics frame with no rows and the right dtypes."""
    return pd.DataFrame(
        {
            "step": pd.Series(dtype="int64"),
            "train_loss": pd.Series(dtype="float64"),
            "valid_loss": pd.Series(dtype="float64"),
        }
    )


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per step, sorted, with the metric columns only."""
    frame = frame.reindex(columns=METRIC_COLUMNS)
    frame = frame.dropna(subset=["step"]).astype(
        {"step": "int64", "train_loss": "float64", "valid_loss": "float64"}
    )
    frame = frame.groupby("step", sort=True).last()  # last non-null value per step
    return frame.reset_index()[METRIC_COLUMNS]


def checkpoints_to_frame(job: Any) -> pd.DataFrame:
    """The job's checkpoints as ``step, train_loss, valid_loss``: once per step, in step order.

    Tolerates checkpoints newest first (the API's order), repeated, or without ``valid_loss``
    (NaN). Repeats of one step keep the last non-null value of each metric.
    """
    checkpoints = job_to_dict(job).get("checkpoints") or []
    if not checkpoints:
        return empty_metrics()
    flat = pd.json_normalize(checkpoints)
    flat = flat.rename(
        columns={
            "step_number": "step",
            "metrics.train_loss": "train_loss",
            "metrics.valid_loss": "valid_loss",
        }
    )
    return _tidy(flat)


def merge_metrics(old: pd.DataFrame | None, new: pd.DataFrame | None) -> pd.DataFrame:
    """Union of two metrics frames by ``step``: the newer value wins, gaps filled from the old.

    Re-following a job therefore adds only steps not seen before, and a later poll that brings
    a step's ``valid_loss`` completes that row instead of duplicating it.
    """
    frames = [f for f in (old, new) if f is not None and len(f)]
    if not frames:
        return empty_metrics()
    return _tidy(pd.concat([f.reindex(columns=METRIC_COLUMNS) for f in frames], ignore_index=True))


def read_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """The metrics saved by an earlier follow (``metrics.csv``), or an empty frame."""
    path = Path(path)
    if not path.is_file():
        return empty_metrics()
    frame = pd.read_csv(path)
    missing = set(METRIC_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {METRIC_COLUMNS}")
    return _tidy(frame)


def write_metrics(metrics: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Save the metrics as CSV atomically (a crash mid-write keeps the previous file)."""
    return atomic_write_text(path, _tidy(metrics).to_csv(index=False))

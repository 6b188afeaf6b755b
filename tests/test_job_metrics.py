"""metrics.py (checkpoints to a frame, merge on restart, metrics.csv) and the loss plots."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from fake_jobs import as_sdk_model, checkpoint, job_with, recorded

from moderation_helpers.pages.plots.loss import LiveLossPlot, plot_loss
from moderation_helpers.recipe import metrics

# --------------------------------------------------------------------------- metrics


def test_checkpoints_newest_first_repeated_and_without_valid_loss():
    job = job_with(
        "RUNNING",
        [
            checkpoint(30, 0.5),
            checkpoint(20, 0.6, 0.65),
            checkpoint(10, 0.9, 0.8),
            checkpoint(20, 0.6, 0.65),
        ],
    )
    frame = metrics.checkpoints_to_frame(job)
    assert frame["step"].tolist() == [10, 20, 30]
    assert frame["train_loss"].tolist() == [0.9, 0.6, 0.5]
    assert frame["valid_loss"].iloc[:2].tolist() == [0.8, 0.65]
    assert math.isnan(frame["valid_loss"].iloc[2])


def test_checkpoints_from_the_sdk_model(reference_dir):
    raw = recorded(reference_dir, "job_started")
    raw["checkpoints"] = [checkpoint(20, 0.4, 0.5), checkpoint(10, 0.7)]
    frame = metrics.checkpoints_to_frame(as_sdk_model(raw))
    assert frame["step"].tolist() == [10, 20]
    assert frame["valid_loss"].isna().tolist() == [True, False]


def test_merge_keys_on_step_values_not_on_the_row_index():
    # The recipe's bug: `step in df.index` compared steps 10, 20 to row numbers 0, 1.
    seen = metrics.checkpoints_to_frame(
        job_with("RUNNING", [checkpoint(10, 0.9), checkpoint(20, 0.7)])
    )
    again = metrics.checkpoints_to_frame(
        job_with("RUNNING", [checkpoint(20, 0.7), checkpoint(10, 0.9)])
    )
    merged = metrics.merge_metrics(seen, again)
    assert merged["step"].tolist() == [10, 20]
    assert merged["step"].is_unique


def test_merge_on_restart_adds_new_steps_and_completes_old_ones():
    old = pd.DataFrame(
        {"step": [1, 2, 3], "train_loss": [1.0, 0.9, 0.8], "valid_loss": [1.1, None, None]}
    )
    new = metrics.checkpoints_to_frame(
        job_with("SUCCESS", [checkpoint(5, 0.5, 0.6), checkpoint(3, 0.8, 0.85), checkpoint(4, 0.7)])
    )
    merged = metrics.merge_metrics(old, new)
    assert merged["step"].tolist() == [1, 2, 3, 4, 5]
    assert merged.loc[merged.step == 3, "valid_loss"].item() == 0.85
    assert merged.loc[merged.step == 1, "valid_loss"].item() == 1.1
    assert math.isnan(merged.loc[merged.step == 2, "valid_loss"].item())
    # Merging again changes nothing (restart on a finished job).
    pd.testing.assert_frame_equal(metrics.merge_metrics(merged, new), merged)


def test_merge_of_nothing_is_an_empty_frame():
    merged = metrics.merge_metrics(None, metrics.empty_metrics())
    assert merged.empty and list(merged.columns) == metrics.METRIC_COLUMNS


def test_metrics_csv_round_trip(tmp_path):
    frame = metrics.checkpoints_to_frame(
        job_with("RUNNING", [checkpoint(2, 0.5), checkpoint(1, 0.7, 0.6)])
    )
    path = metrics.write_metrics(frame, tmp_path / "metrics.csv")
    assert path.read_text().splitlines()[0] == "step,train_loss,valid_loss"
    pd.testing.assert_frame_equal(metrics.read_metrics(path), frame)
    assert metrics.read_metrics(tmp_path / "absent.csv").empty


def test_metrics_csv_with_a_missing_column_names_it(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.5\n")
    with pytest.raises(ValueError, match=r"metrics.csv.*train_loss"):
        metrics.read_metrics(path)


# --------------------------------------------------------------------------- plots


def test_loss_plot_draws_both_curves_and_tolerates_gaps(tmp_path):
    metrics = pd.DataFrame(
        {"step": [1, 2, 3], "train_loss": [0.9, 0.7, 0.5], "valid_loss": [0.95, None, 0.6]}
    )
    ax = plot_loss(metrics).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["train loss"].get_xdata()) == [1, 2, 3]
    assert list(lines["validation loss"].get_xdata()) == [1, 3]


def test_live_plot_headless_saves_one_png(tmp_path):
    live = LiveLossPlot()
    live.update(metrics.empty_metrics())
    frame = pd.DataFrame({"step": [1, 2], "train_loss": [0.9, 0.7], "valid_loss": [None, 0.8]})
    fig = live.finish(frame, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]

"""Thresholds for a target base rate, on synthetic scores with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from moderation_helpers.recipe import base_rate as br
from moderation_helpers.recipe import base_rate_curve as curve
from moderation_helpers.recipe import evaluate as ev

TOX = ("moderation", "toxicity")
THREAT = ("moderation", "threat")
SAFE = ("moderation", "safe")


def frames(columns: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    out = pd.DataFrame({i: v for i, v in enumerate(columns.values())})
    out.columns = pd.MultiIndex.from_tuples(list(columns), names=ev.COLUMN_NAMES)
    return out


def synthetic(n: int = 4000, rate: float = 0.6, seed: int = 0):
    """A balanced-like validation split: positives score higher, with overlap; scores rounded
    so that ties happen."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    s = np.where(y, rng.normal(0.65, 0.15, n), rng.normal(0.35, 0.15, n))
    return y, np.clip(s, 0, 1).round(3)


def single(y, s, column=TOX):
    return frames({column: y}), frames({column: s})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unsmoothed_at_the_validation_rate_it_is_the_plain_best_f1_threshold(seed):
    y, s = synthetic(seed=seed)
    truth, scores = single(y, s)
    plain = ev.best_f1_threshold(y, s)
    table = br.tune_for_base_rate(truth, scores, {TOX: float(y.mean())}, smooth=False)
    assert table.at[TOX, "threshold"] == plain.threshold
    assert table.at[TOX, "expected_f1"] == pytest.approx(plain.f1)
    assert table.at[TOX, "expected_flag_rate"] == pytest.approx((s >= plain.threshold).mean())


def test_a_lower_base_rate_raises_the_threshold_and_its_expectations_hold():
    y, s = synthetic()
    truth, scores = single(y, s)
    table = br.tune_for_base_rate(truth, scores, {TOX: 0.08})
    row = table.loc[TOX]
    plain = ev.best_f1_threshold(y, s).threshold
    assert row["threshold"] > plain
    assert row["base_rate"] == 0.08 and row["validation_rate"] == pytest.approx(y.mean())

    # A population at the target rate, resampled from the split's positives and negatives.
    rng = np.random.default_rng(7)
    size = 400_000
    n_pos = int(0.08 * size)
    population_s = np.r_[rng.choice(s[y], n_pos), rng.choice(s[~y], size - n_pos)]
    population_y = np.r_[np.ones(n_pos, bool), np.zeros(size - n_pos, bool)]
    flagged = population_s >= row["threshold"]
    assert row["expected_flag_rate"] == pytest.approx(flagged.mean(), abs=0.003)
    assert row["expected_precision"] == pytest.approx(population_y[flagged].mean(), abs=0.01)
    assert row["expected_recall"] == pytest.approx(flagged[population_y].mean(), abs=0.01)
    # The plain threshold would flag far more than the rate at the natural rate.
    at_plain = br.expected_at_rate(truth, scores, {TOX: plain}, {TOX: 0.08}).loc[TOX]
    assert at_plain["expected_flag_rate"] > 2 * row["expected_flag_rate"]
    assert at_plain["expected_precision"] < row["expected_precision"]


def test_the_unsmoothed_threshold_maximizes_the_reweighted_f1():
    y, s = synthetic(n=600, seed=3)
    truth, scores = single(y, s)
    chosen = br.tune_for_base_rate(truth, scores, {TOX: 0.1}, smooth=False).loc[TOX]
    candidates = np.unique(s)
    f1s = [curve.expected_metrics(y, s, t, 0.1)["expected_f1"] for t in candidates]
    assert chosen["expected_f1"] == pytest.approx(np.nanmax(f1s))


def test_weighted_curve_matches_a_direct_weighted_count():
    y, s = synthetic(n=300, seed=4)
    w = curve.prior_weights(y, 0.2)
    assert w[y] == pytest.approx(0.2 / y.mean()) and w[~y] == pytest.approx(0.8 / (1 - y.mean()))
    thresholds, f1 = curve.weighted_f1_curve(y, s, w)
    assert (np.diff(thresholds) < 0).all()
    for t, value in zip(thresholds[::37], f1[::37], strict=True):
        hit = s >= t
        tp, predicted, pos = (w * (hit & y)).sum(), (w * hit).sum(), (w * y).sum()
        assert value == pytest.approx(2 * tp / (predicted + pos))


def test_default_rates_scale_other_labels_like_toxicity():
    rng = np.random.default_rng(0)
    tox = rng.random(1000) < 0.6
    threat = tox & (rng.random(1000) < 0.1)
    truth = frames({TOX: tox, THREAT: threat, SAFE: ~tox})
    rates = br.default_base_rates(truth)
    factor = br.TOXICITY_BASE_RATE / tox.mean()
    assert rates[TOX] == br.TOXICITY_BASE_RATE == 0.08
    assert rates[THREAT] == pytest.approx(threat.mean() * factor)
    assert rates[SAFE] == pytest.approx(1 - br.TOXICITY_BASE_RATE)
    scores = frames({TOX: tox * 0.5 + 0.2, THREAT: threat * 0.7, SAFE: (~tox) * 0.9})
    table = br.tune_for_base_rate(truth, scores, {THREAT: 0.003})
    assert list(table.columns) == br.COLUMNS
    assert table.index.names == ev.COLUMN_NAMES and list(table.index) == [TOX, THREAT, SAFE]
    assert table.at[THREAT, "base_rate"] == 0.003  # the caller's rate wins
    assert table.at[TOX, "base_rate"] == 0.08
    with pytest.raises(ValueError, match="reference label"):
        br.default_base_rates(frames({THREAT: threat}))


def test_labels_without_positives_get_the_default_threshold():
    y, s = synthetic(n=200)
    truth = frames({TOX: y, THREAT: np.zeros_like(y)})
    scores = frames({TOX: s, THREAT: s / 2})
    table = br.tune_for_base_rate(truth, scores, {THREAT: 0.001})
    assert table.at[THREAT, "threshold"] == 0.5
    assert "default threshold" in table.at[THREAT, "note"]
    assert np.isnan(table.at[THREAT, "expected_recall"])
    assert table.at[TOX, "note"] is None


def test_expected_at_rate_takes_a_threshold_table():
    y, s = synthetic(n=500)
    truth, scores = single(y, s)
    plain = ev.best_f1_thresholds(truth, scores)
    table = br.expected_at_rate(truth, scores, plain, {TOX: float(y.mean())})
    assert table.at[TOX, "threshold"] == plain.at[TOX, "threshold"]
    assert table.at[TOX, "expected_f1"] == pytest.approx(plain.at[TOX, "validation_f1"])


def test_the_readable_table_puts_each_figure_beside_its_range():
    y, s = synthetic(n=200)
    truth = frames({TOX: y, THREAT: np.zeros_like(y)})
    scores = frames({TOX: s, THREAT: s / 2})
    table = br.tune_for_base_rate(truth, scores, {THREAT: 0.001})
    view = br.readable_table(table, ev.best_f1_thresholds(truth, scores))
    assert list(view.index) == [TOX[1], THREAT[1]]  # one target: labels alone
    assert list(view.columns) == [
        "best F1 threshold", "threshold", "base rate", "validation rate", "flagged",
        "precision", "precision range", "recall", "recall range", "F1", "note",
    ]  # fmt: skip
    low, high = table.at[TOX, "expected_precision_low"], table.at[TOX, "expected_precision_high"]
    assert view.at[TOX[1], "precision range"] == f"{low:.2f}–{high:.2f}"
    assert view.at[THREAT[1], "recall range"] == "–"  # no positives: nothing to range
    assert "note" not in br.readable_table(table.loc[[TOX]])  # no note, no column
    assert "best F1 threshold" not in br.readable_table(table)


def normal_split(n: int, rate: float, seed: int):
    """Logit scores: negatives N(-1, 1), positives N(1.5, 1); the population is known."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    z = np.where(y, rng.normal(1.5, 1.0, n), rng.normal(-1.0, 1.0, n))
    return y, 1 / (1 + np.exp(-z))


def population_best(pi: float) -> float:
    """The threshold with the best F1 at base rate ``pi`` for :func:`normal_split`'s classes."""
    from scipy.stats import norm

    z = np.linspace(-4, 6, 20001)
    recall, false = norm.sf(z - 1.5), norm.sf(z + 1.0)
    f1 = 2 * pi * recall / (pi * recall + (1 - pi) * false + pi)
    return float(1 / (1 + np.exp(-z[np.argmax(f1)])))


def test_the_smoothed_curve_finds_the_population_threshold_on_a_large_split():
    y, s = normal_split(20000, 0.6, seed=5)
    chosen = curve.base_rate_threshold(y, s, 0.08)
    assert chosen == pytest.approx(population_best(0.08), abs=0.02)
    thresholds, f1 = curve.smoothed_f1_curve(y, s, 0.08)
    assert (np.diff(thresholds) < 0).all() and ((0 <= f1) & (f1 <= 1)).all()


def test_smoothing_steadies_the_threshold_of_small_splits():
    """Over 60 splits of 100 rows of bell-shaped classes, the peak smoothed with Silverman's
    bandwidth (right for such classes) strays less from the population's best than the raw
    reweighted peak, and is closer on average."""
    best = population_best(0.08)
    smoothed, raw = [], []
    for seed in range(60):
        y, s = normal_split(100, 0.6, seed)
        smoothed.append(curve.base_rate_threshold(y, s, 0.08, bandwidth_scale=1.0) - best)
        raw.append(curve.base_rate_threshold(y, s, 0.08, smooth=False) - best)
    smoothed, raw = np.abs(smoothed), np.abs(raw)
    assert smoothed.mean() < raw.mean()
    assert np.percentile(smoothed, 90) < np.percentile(raw, 90)


def test_a_gap_among_the_negatives_is_not_read_as_no_negatives():
    """No negative between 0.2 and 0.95: the raw peak sits under the lowest positive, the
    smoothed one higher, where fewer of the (unseen) negatives would be flagged."""
    negatives = np.r_[np.linspace(0.01, 0.2, 39), 0.96]
    positives = np.linspace(0.35, 0.999, 60)
    y = np.r_[np.zeros(40, bool), np.ones(60, bool)]
    s = np.r_[negatives, positives]
    raw = curve.base_rate_threshold(y, s, 0.08, smooth=False)
    assert raw < 0.36
    assert curve.base_rate_threshold(y, s, 0.08) > raw + 0.05


def test_a_class_too_small_to_smooth_falls_back_to_the_raw_peak():
    y = np.r_[np.zeros(1, bool), np.ones(20, bool)]
    s = np.r_[0.3, np.linspace(0.4, 0.9, 20)]
    assert curve.base_rate_threshold(y, s, 0.08) == curve.base_rate_threshold(
        y, s, 0.08, smooth=False
    )


def test_one_stray_benign_score_barely_moves_the_default_threshold():
    """A fine-tuned model's benign scores: a spike near 0 and a stray. Moving one benign row
    from logit -2 to 5 swings the Silverman peak by 0.17-0.51; the default's wider kernel
    keeps it within 0.15, and steadier than Silverman's on every split."""
    y = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    for seed in range(5):
        rng = np.random.default_rng(seed)
        z = np.r_[rng.normal(3.0, 1.5, 60), rng.normal(-5.0, 1.5, 39)]
        swing = {}
        for scale in (1.0, curve.BANDWIDTH_SCALE):
            chosen = [
                curve.base_rate_threshold(y, expit(np.r_[z, stray]), 0.08, bandwidth_scale=scale)
                for stray in (-2, 0, 1, 2, 3, 4, 5)
            ]
            swing[scale] = max(chosen) - min(chosen)
        assert swing[curve.BANDWIDTH_SCALE] < 0.15
        assert swing[curve.BANDWIDTH_SCALE] < swing[1.0]


def test_toxicity_gets_the_wide_kernel_and_every_other_label_silvermans():
    """The same scores as toxicity and as threat: each label is tuned with its own kernel."""
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(15, bool), np.zeros(85, bool)]
    s = expit(np.r_[rng.normal(2.0, 1.5, 15), rng.normal(-3.0, 2.0, 85)])
    truth, scores = frames({TOX: y, THREAT: y}), frames({TOX: s, THREAT: s})
    table = br.tune_for_base_rate(truth, scores, {TOX: 0.02, THREAT: 0.02})
    wide = curve.base_rate_threshold(y, s, 0.02, bandwidth_scale=curve.BANDWIDTH_SCALE)
    own = curve.base_rate_threshold(y, s, 0.02, bandwidth_scale=curve.LABEL_BANDWIDTH_SCALE)
    assert wide != own
    assert table.at[TOX, "threshold"] == wide and table.at[THREAT, "threshold"] == own


def sub_label_split(n: int = 3000, seed: int = 5):
    """A balanced-like split where insult comes only with toxicity, and toxic comments without
    insult score high on insult too (as a fine-tuned head does), benign ones low."""
    rng = np.random.default_rng(seed)
    tox = rng.random(n) < 0.6
    insult = tox & (rng.random(n) < 0.4)
    s = np.where(insult, rng.normal(0.75, 0.1, n), np.where(tox, rng.normal(0.5, 0.15, n), 0.0))
    s = np.where(tox, s, rng.normal(0.1, 0.08, n))
    return tox, insult, np.clip(s, 0.001, 0.999).round(3)


def test_the_traffic_mix_keeps_toxic_negatives_as_rare_as_traffic_has_them():
    tox, insult, _ = sub_label_split()
    cells, shares = curve.traffic_mix(insult, 0.03, reference=tox, reference_rate=0.08)
    assert shares == pytest.approx([0.92, 0.05, 0.0, 0.03])
    assert (cells == 2 * insult + tox).all()
    weights = curve.mix_weights(cells, shares)
    assert weights[tox & ~insult].sum() / weights.sum() == pytest.approx(0.05)
    # Without a reference the cells are the label's classes: the prior-ratio weights.
    plain, plain_shares = curve.traffic_mix(insult, 0.03)
    assert plain_shares == pytest.approx([0.97, 0.0, 0.0, 0.03])
    assert curve.mix_weights(plain, plain_shares) == pytest.approx(
        curve.prior_weights(insult, 0.03)
    )
    # A label that cannot sit inside toxicity (more toxic positives than traffic has toxic
    # comments) is read on its own classes.
    unrelated = tox & (np.arange(tox.size) % 2 == 0) | (~tox & (np.arange(tox.size) % 3 == 0))
    cells, shares = curve.traffic_mix(unrelated, 0.3, reference=tox, reference_rate=0.08)
    assert shares == pytest.approx([0.7, 0.0, 0.0, 0.3]) and set(cells) <= {0, 3}
    # A cell validation lacks hands its share to its class's other cell.
    _, no_toxic_negatives = curve.traffic_mix(insult, 0.03, reference=insult, reference_rate=0.08)
    assert no_toxic_negatives == pytest.approx([0.97, 0.0, 0.0, 0.03])


def test_expected_figures_for_a_sub_label_match_traffic_resampled_at_its_mix():
    tox, insult, s = sub_label_split()
    threshold = 0.6
    rng = np.random.default_rng(11)
    size = 400_000
    n_tox = int(0.08 * size)
    rows = np.r_[
        rng.choice(np.flatnonzero(tox), n_tox), rng.choice(np.flatnonzero(~tox), size - n_tox)
    ]
    flagged, truth = s[rows] >= threshold, insult[rows]
    rate = float(truth.mean())
    mixed = curve.expected_metrics(insult, s, threshold, rate, reference=tox, reference_rate=0.08)
    assert mixed["expected_flag_rate"] == pytest.approx(flagged.mean(), abs=0.002)
    assert mixed["expected_precision"] == pytest.approx(truth[flagged].mean(), abs=0.01)
    assert mixed["expected_recall"] == pytest.approx(flagged[truth].mean(), abs=0.01)
    # Weighting insult's own classes keeps validation's toxic negatives: far too many flags.
    own = curve.expected_metrics(insult, s, threshold, rate)
    assert own["expected_flag_rate"] > 2 * flagged.mean()
    assert own["expected_precision"] < truth[flagged].mean() - 0.2


def test_thresholds_are_tuned_on_the_labels_own_classes_and_read_with_the_mix():
    tox, insult, s = sub_label_split(n=400)
    INSULT = ("moderation", "insult")
    truth = frames({TOX: tox, INSULT: insult})
    scores = frames({TOX: np.where(tox, 0.8, 0.1), INSULT: s})
    rates = br.default_base_rates(truth)
    table = br.tune_for_base_rate(truth, scores, rates)
    own = curve.base_rate_threshold(insult, s, rates[INSULT], bandwidth_scale=1.0)
    mix = dict(reference=tox, reference_rate=rates[TOX])
    assert table.at[INSULT, "threshold"] == own
    expected = curve.expected_metrics(insult, s, own, rates[INSULT], **mix)
    assert table.at[INSULT, "expected_precision"] == pytest.approx(expected["expected_precision"])
    # Tuned for the mix: the toxic negatives weigh less, so the threshold falls.
    tuned = br.tune_for_base_rate(truth, scores, rates, tune_for_traffic_mix=True)
    at_mix = curve.base_rate_threshold(insult, s, rates[INSULT], bandwidth_scale=1.0, **mix)
    assert tuned.at[INSULT, "threshold"] == at_mix < own
    assert tuned.at[TOX, "threshold"] == table.at[TOX, "threshold"]
    # Without toxicity in the frame every label is read on its own classes.
    alone = br.expected_at_rate(
        frames({INSULT: insult}), frames({INSULT: s}), {INSULT: own}, {INSULT: 0.03}
    )
    assert alone.at[INSULT, "expected_flag_rate"] == pytest.approx(
        curve.expected_metrics(insult, s, own, 0.03)["expected_flag_rate"]
    )


def test_a_clean_small_split_reads_precision_1_with_a_range_that_says_how_little_it_knows():
    y = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    s = np.r_[np.linspace(0.6, 1.0, 60), np.linspace(0.0, 0.3, 40)]
    small = curve.expected_metrics(y, s, 0.5, 0.08)
    assert small["expected_precision"] == 1.0 and small["expected_precision_high"] == 1.0
    # 0 of 40 benign flagged cannot rule out ~9%: about as many false flags as true ones at 8%.
    assert 0.4 < small["expected_precision_low"] < 0.6
    assert small["expected_recall_low"] < small["expected_recall"] == 1.0
    # Ten times the comments, the same picture: a far narrower range.
    large = curve.expected_metrics(np.repeat(y, 10), np.repeat(s, 10), 0.5, 0.08)
    assert large["expected_precision_low"] > 0.85


def test_the_precision_range_covers_the_traffics_precision_as_its_confidence_says():
    rng = np.random.default_rng(5)
    # A population whose truth at 8% toxic is known; validation splits of 60 toxic + 40 benign.
    pos, neg = rng.normal(0.7, 0.15, 200_000), rng.normal(0.3, 0.15, 200_000)
    threshold, rate = 0.55, 0.08
    tpr, fpr = (pos >= threshold).mean(), (neg >= threshold).mean()
    truth_precision = rate * tpr / (rate * tpr + (1 - rate) * fpr)
    y = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    held = point_off = 0
    for _ in range(300):
        s = np.r_[rng.choice(pos, 60), rng.choice(neg, 40)]
        m = curve.expected_metrics(y, s, threshold, rate)
        held += m["expected_precision_low"] <= truth_precision <= m["expected_precision_high"]
        point_off += abs(m["expected_precision"] - truth_precision) > 0.1
    assert held / 300 >= 0.9
    assert point_off / 300 > 0.2  # the point alone is often far off: why the range is shown

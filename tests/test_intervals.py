"""The range a small count leaves open, and which of many counts lie above a rate."""

import numpy as np
import pytest

from moderation_helpers.recipe.intervals import above_rate, wilson

Z = 1.959964


def test_wilson_is_not_zero_width_at_none_of_n_and_undefined_without_cases():
    low, high = wilson([0, 40, 0], [40, 40, 0])
    assert low[0] == 0.0 and high[0] == pytest.approx(Z**2 / (40 + Z**2), 1e-4)
    assert high[1] == 1.0 and low[1] == pytest.approx(40 / (40 + Z**2), 1e-4)
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_a_count_above_the_rate_alone_is_not_above_it_among_many():
    # 11 of 40 against 11%: p = 0.003, enough alone, not for one of 27 (0.05 / 27 = 0.0019)
    assert above_rate([11], [40], 0.111).tolist() == [True]
    crowd = above_rate([11] + [4] * 26, [40] * 27, 0.111)
    assert not crowd.any()
    crowd = above_rate([20] + [4] * 26, [40] * 27, 0.111)
    assert crowd.tolist() == [True] + [False] * 26
    assert above_rate([0, 3], [0, 3], 0.5).tolist() == [False, False]  # no cases; 3 of 3: p 0.125


def test_the_identity_spread_benchmark_prints_a_row_per_rate(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_identity_spread.py"
    spec = importlib.util.spec_from_file_location("bench_identity_spread", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--runs", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0.")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {rate:.2f}" for rate in bench.RATES]

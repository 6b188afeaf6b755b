"""Which identity terms raise the score in the same sentences: the shift, its range, and a
family-wise test that names a fair term rarely and a leaning one reliably."""

import numpy as np
import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour, identity_shift

CASES = behaviour.identity_cases()


def scores(seed: int, lean: dict[str, float] | None = None, noise: float = 1.0) -> np.ndarray:
    """Scores whose logit is the template's tone plus noise, plus ``lean[term]`` for a term."""
    rng = np.random.default_rng(seed)
    templates = CASES["template"].unique()
    tone = dict(zip(templates, rng.normal(-2.0, 2.5, len(templates)), strict=True))
    logit = CASES["template"].map(tone).to_numpy() + rng.normal(0, noise, len(CASES))
    logit += CASES["term"].map(lean or {}).fillna(0.0).to_numpy()
    return 1 / (1 + np.exp(-logit))


def test_a_term_that_raises_the_score_is_listed_first_with_its_odds():
    table = identity_shift.score_shift(CASES, scores(0, {"blind": 1.5}), permutations=500)
    assert table.index[0] == "blind"
    assert identity_shift.above(table)[0] == "blind"
    blind = table.loc["blind"]
    # centred on the template's mean over 27 terms, blind's own lean included
    truth = np.exp(1.5 * (1 - 1 / 27))
    assert blind["odds_low"] < truth < blind["odds_high"]
    assert blind["odds"] == pytest.approx(np.exp(blind["shift"]))
    assert blind["group"] == "disability" and blind["n"] == 40
    assert list(table.columns) == [
        "group",
        "n",
        "shift",
        "odds",
        "odds_low",
        "odds_high",
        "p",
        "above",
    ]


def test_a_fair_model_rarely_gets_a_term_listed():
    listed = [
        bool(
            identity_shift.above(
                identity_shift.score_shift(CASES, scores(seed), seed=seed + 1000, permutations=100)
            )
        )
        for seed in range(200)
    ]
    # family-wise 5%: 200 fair reports list a term in about 10 (0.05 +- 0.015); a rule with
    # no correction for the 27 terms lists one in most
    assert sum(listed) / len(listed) < 0.12


def test_the_same_sentences_told_apart_by_scores_not_by_flags():
    lean = scores(1, {"Muslim": 1.0}, noise=0.5)
    flagged = lean >= 0.9
    spread = behaviour.identity_spread(behaviour.identity_report(CASES, flagged))
    assert "Muslim" not in spread.loc["term", "above_overall"]
    assert "Muslim" in identity_shift.above(identity_shift.score_shift(CASES, lean))


def test_groups_saturated_scores_and_the_record():
    raw = scores(2, {"Black": 2.0, "white": 2.0})
    # a float32 sigmoid saturates: the logits stay finite
    raw[np.flatnonzero(CASES["term"] == "Black")[:5]] = 1.0
    raw[np.flatnonzero(CASES["term"] == "Buddhist")[:5]] = 0.0
    terms = identity_shift.score_shift(CASES, raw, permutations=300)
    groups = identity_shift.score_shift(CASES, raw, by="group", permutations=300)
    assert np.isfinite(terms["shift"]).all()
    assert groups.index[0] == "ethnicity" and groups.index.name == "group"
    assert groups.loc["ethnicity", "n"] == int((CASES["group"] == "ethnicity").sum())
    record = identity_shift.shift_record(terms, groups)
    assert record["above"]["terms"][:2] == ["Black", "white"] or record["above"]["terms"][:2] == [
        "white",
        "Black",
    ]
    assert "ethnicity" in record["above"]["groups"]
    assert list(record["terms"]) == terms.index.tolist()
    assert set(record["terms"]["Black"]) == {"odds", "odds_low", "odds_high", "p"}


def test_reproducible_and_refuses_a_score_count_that_does_not_match():
    raw = scores(3, {"deaf": 0.7})
    first = identity_shift.score_shift(CASES, raw, permutations=200, seed=5)
    again = identity_shift.score_shift(CASES, raw, permutations=200, seed=5)
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ValueError, match=f"{len(CASES) - 1} scores for {len(CASES)}"):
        identity_shift.score_shift(CASES, raw[:-1])


def test_the_shift_benchmark_prints_a_row_per_multiple(capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_identity_shift.py"
    spec = importlib.util.spec_from_file_location("bench_identity_shift", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    logits = identity_shift.logits(scores(4))[:, None]
    monkeypatch.setattr(bench, "identity_logits", lambda model: (CASES, logits, np.array([1.0])))
    assert bench.main(["--model", "unused", "--runs", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == [f"| {m:.3f}" for m in bench.MULTIPLES]

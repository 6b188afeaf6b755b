"""The prepare step's helpers: thresholds, the recipe's balancing, rare labels, JSONL, the figure.

Loading a source and the whole step on a run folder: test_prepare_step.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from prepare_steps import load_baseline

from moderation_helpers.core.jsonl import read_jsonl, validate_jsonl
from moderation_helpers.recipe import prepare as data
from moderation_helpers.recipe import source


def frame(rows: list[list[bool]], columns="abc") -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns[: len(rows[0])]), dtype=bool)


# ----------------------------------------------------------------------------- threshold


def test_threshold_is_strictly_greater_and_compares_in_float64():
    df = pd.DataFrame(
        {
            "a": np.array([0.5, 0.5000001, 0.9, 0.0], dtype="float64"),
            # float32(0.3) is 0.30000001...: above 0.3, as the recipe's Python floats see it
            "b": np.array([0.3, 0.29, 0.31, 0.3], dtype="float32"),
            "c": pd.array([0.7, None, 0.2, 1.0], dtype="Float32"),
            "d": [True, False, True, False],
            "e": pd.array([True, None, False, True], dtype="boolean"),
        }
    )
    assert data.threshold_labels(df, ["a"], 0.5)["a"].tolist() == [False, True, True, False]
    assert data.threshold_labels(df, ["b"], 0.3)["b"].tolist() == [True, False, True, True]
    flags = data.threshold_labels(df, ["e", "d", "c"], 0.5)
    assert list(flags.columns) == ["e", "d", "c"], "label order is kept"
    assert flags.dtypes.eq(bool).all()
    assert flags["c"].tolist() == [True, False, False, True], "missing scores are no flag"
    assert flags["d"].tolist() == [True, False, True, False], "booleans are taken as they are"
    assert flags["e"].tolist() == [True, False, False, True]


def test_label_columns_are_the_numeric_and_boolean_ones():
    df = pd.DataFrame({"text": ["x"], "lang": ["en"], "score": [0.1], "n": [3], "flag": [True]})
    assert source.infer_label_columns(df) == ["score", "n", "flag"]
    assert source.infer_label_columns(df, text_column="lang") == ["score", "n", "flag"]


# ------------------------------------------------------------------------------- balance


def test_balance_keeps_the_recipe_share_of_unflagged_rows_in_order():
    # 9 flagged rows, 20 without a flag: total 9 / 0.9 = 10, so 1 unflagged row, the first.
    flags = pd.DataFrame({"a": [False] * 20 + [True] * 9})
    kept = data.balance(flags, zero_flags_fraction=0.1, max_label_fraction=1.0)
    assert sorted(kept.index) == [0, *range(20, 29)]
    kept = data.balance(flags, zero_flags_fraction=0.5, max_label_fraction=1.0)
    assert sorted(kept.index) == [*range(9), *range(20, 29)]


def test_the_cap_is_greedy_in_row_order_and_bounds_every_label():
    # 10 flagged rows, cap 0.2 -> at most 2 rows per label, decided row by row.
    rows = [
        [True, False],  # a=1 kept
        [True, True],  # a=2 b=1 kept
        [True, False],  # a would be 3: dropped
        [True, True],  # a would be 3: dropped, b does not count it
        [False, True],  # b=2 kept
        [False, True],  # b would be 3: dropped
    ] + [[True, False]] * 4
    flags = frame(rows, "ab")
    kept = data.balance(flags, zero_flags_fraction=0.0, max_label_fraction=0.2)
    assert sorted(kept.index) == [0, 1, 4]
    assert kept.sum().max() <= 0.2 * len(flags)


def test_toxicity_on_every_flagged_row_makes_the_cap_keep_a_fifth():
    rng = np.random.default_rng(0)
    n = 1000
    others = rng.random((n, 3)) < 0.3
    flags = pd.DataFrame(
        np.column_stack([np.ones(n, bool), others]), columns=["toxicity", "x", "y", "z"]
    )
    kept = data.balance(flags, zero_flags_fraction=0.1, max_label_fraction=0.2)
    assert len(kept) == 200, "every row has toxicity: the cap lets 20% of the flagged rows in"


def test_balance_agrees_with_the_recipe_loops_on_random_data():
    baseline = load_baseline()
    rng = np.random.default_rng(7)
    for trial in range(60):
        n, n_labels = int(rng.integers(0, 200)), int(rng.integers(1, 6))
        flags = pd.DataFrame(
            rng.random((n, n_labels)) < rng.uniform(0, 0.6, n_labels),
            columns=[f"l{i}" for i in range(n_labels)],
        )
        zero = float(rng.choice([0.0, 0.1, 0.4, rng.uniform(0, 0.95)]))
        cap = float(rng.choice([0.0, 0.05, 0.2, 1.0, rng.uniform(0, 1)]))
        samples = [{"text": str(i), **row} for i, row in enumerate(flags.to_dict(orient="records"))]
        expected = baseline.recipe_filter(samples, list(flags.columns), zero, cap)
        kept = data.balance(flags, zero, cap, seed=trial)
        assert sorted(kept.index) == sorted(int(r["text"]) for r in expected), (trial, zero, cap)


def test_balance_is_seeded_and_keeps_labels_with_their_rows():
    rng = np.random.default_rng(3)
    flags = pd.DataFrame(rng.random((500, 3)) < 0.3, columns=list("abc"))
    first = data.balance(flags, 0.1, 0.5, seed=1)
    assert first.equals(data.balance(flags, 0.1, 0.5, seed=1))
    other = data.balance(flags, 0.1, 0.5, seed=2)
    assert sorted(other.index) == sorted(first.index)
    assert list(other.index) != list(first.index), "the seed changes the order"
    assert first.equals(flags.loc[first.index]), "rows keep their flags"


def test_balance_handles_no_rows_and_no_flags_and_refuses_bad_fractions():
    assert data.balance(pd.DataFrame({"a": pd.Series([], dtype=bool)})).empty
    assert data.balance(pd.DataFrame({"a": [False] * 5})).empty, "no flagged rows: 0 in total"
    flags = pd.DataFrame({"a": [True, False]})
    for bad in (dict(zero_flags_fraction=1.0), dict(zero_flags_fraction=-0.1)):
        with pytest.raises(ValueError, match="zero_flags_fraction"):
            data.balance(flags, **bad)
    with pytest.raises(ValueError, match="max_label_fraction"):
        data.balance(flags, max_label_fraction=1.5)


# --------------------------------------------------------------------------- rare labels


def test_rare_labels_are_judged_over_all_splits_and_their_rows_become_safe():
    train = frame([[True, False], [False, False], [True, False], [False, False]], "ab")
    test = frame([[False, True], [True, False]], "ab")
    kept, dropped = data.drop_rare_labels({"train": train, "test": test}, 0.2)
    assert dropped == ["b"], "b is on 1 of 6 rows: under 20%"
    assert list(kept["test"].columns) == ["a"]
    _, lists = data.label_sets(kept["test"])
    assert ["safe"] in lists, "the row that only had b is now safe"
    _, dropped = data.drop_rare_labels({"train": train, "test": test}, 1 / 6)
    assert dropped == [], "exactly at the fraction is kept"


# ---------------------------------------------------------------------------------- JSONL


def test_label_lists_follow_column_order_and_use_safe():
    flags = frame([[False, True, True], [False, False, False], [True, False, True]], "zab")
    codes, lists = data.label_sets(flags)
    per_row = [lists[c] for c in codes]
    assert per_row == [["a", "b"], ["safe"], ["z", "b"]]
    with pytest.raises(ValueError, match="safe_label"):
        data.label_sets(frame([[True]], ["safe"]))


def test_jsonl_round_trip_keeps_texts_exactly(tmp_path):
    texts = pd.Series(
        {
            10: 'a/b "quoted" \\ back\\/slash',
            11: "émoji 😀 and\nnew line\r\n and \t tab",
            12: "separators \u2028 \u2029 \u0085 end",
            13: "plain",
        }
    )
    flags = pd.DataFrame({"insult": [True, False, False], "toxicity": [True, True, False]})
    flags.index = [12, 10, 11]  # the flags decide order and rows; texts align on the index
    path = data.write_split_jsonl(texts, flags, tmp_path / "out.jsonl", target="mod")
    assert read_jsonl(path) == [
        {"text": texts[12], "labels": {"mod": ["insult", "toxicity"]}},
        {"text": texts[10], "labels": {"mod": ["toxicity"]}},
        {"text": texts[11], "labels": {"mod": ["safe"]}},
    ]
    body = path.read_text(encoding="utf-8")
    assert len(body.splitlines()) == 3, "no raw line separator inside a line"
    assert body.isascii(), "non-ASCII characters are escaped, as json.dumps does by default"
    assert "a/b" in body, "no needless \\/ escapes"
    assert body.splitlines()[1] == json.dumps(
        {"text": texts[10], "labels": {"mod": ["toxicity"]}}, separators=(",", ":")
    ), "the same bytes as compact json.dumps"


def test_a_failing_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("previous\n")
    flags = pd.DataFrame({"a": [True]}, index=[99])
    with pytest.raises(KeyError):
        data.write_split_jsonl(pd.Series({0: "text"}), flags, path)
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_the_distribution_figure_has_three_panels_per_split(tmp_path):
    from moderation_helpers.pages.plots.distribution import plot_distribution

    flags = {
        "train": frame([[True, False], [False, False], [True, True]], "ab"),
        "test": frame([[True, True]], "ab").iloc[:0],  # an empty split still gets its row
    }
    fig = plot_distribution(flags, path=tmp_path / "fig" / "distribution.png")
    assert len(fig.axes) == 6
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "Train: share of rows per label (3 rows)"
    assert titles[3] == "Test: share of rows per label (0 rows)"
    assert "no rows" in [t.get_text() for t in fig.axes[3].texts]
    # Shares of rows, not of label assignments: a is on 2 of 3 rows, safe on 1 (top bar first).
    widths = [round(b.get_width(), 1) for b in fig.axes[0].patches]
    assert widths == [33.3, 33.3, 66.7], "safe, b, a: drawn bottom-up"
    bars = fig.axes[2].patches
    assert [b.get_height() for b in bars] == [1, 2, 2, 1], "not flagged, then flagged, per label"
    assert (tmp_path / "fig" / "distribution.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in (tmp_path / "fig").iterdir()] == ["distribution.png"]


def test_chat_format_writes_each_text_as_the_user_turn_of_a_conversation(tmp_path):
    from moderation_helpers.core.conversation import example_texts

    texts = pd.Series(['he said "hi", "labels": {} \\', "café \u2028 a/b", "two\nlines"])
    flags = pd.DataFrame({"insult": [True, False, False], "threat": [False, False, True]})
    data.write_split_jsonl(texts, flags, tmp_path / "text.jsonl")
    data.write_split_jsonl(texts, flags, tmp_path / "chat.jsonl", dataset_format="chat")
    assert validate_jsonl(tmp_path / "chat.jsonl").label_counts == (
        validate_jsonl(tmp_path / "text.jsonl").label_counts
    )
    lines = read_jsonl(tmp_path / "chat.jsonl")
    assert [ex["labels"] for ex in lines] == [
        ex["labels"] for ex in read_jsonl(tmp_path / "text.jsonl")
    ]
    assert [ex["messages"][1] for ex in lines] == [{"role": "user", "content": t} for t in texts]
    assert {ex["messages"][0]["content"] for ex in lines} == {data.CHAT_CONTEXT}
    assert example_texts(lines)[2] == f"system: {data.CHAT_CONTEXT}\nuser: two\nlines"
    with pytest.raises(ValueError, match="dataset_format"):
        data.write_split_jsonl(texts, flags, tmp_path / "x.jsonl", dataset_format="dialog")


def test_label_scores_are_written_after_the_labels_with_the_flags_where_none_was_given(tmp_path):
    texts = pd.Series({10: 'a "quoted" \\ text', 11: "b", 12: "added"})
    flags = pd.DataFrame(
        {"insult": [True, False, False], "toxicity": [True, True, True]}, index=[10, 11, 12]
    )
    # the loaded split: rater fractions for its own rows only, and a column thresholded away
    raw = pd.DataFrame(
        {"toxicity": [0.83333, 0.51], "insult": [0.6, 0.1], "threat": [0.0, 0.2]}, index=[10, 11]
    )
    for fmt in ("text", "chat"):
        path = data.write_split_jsonl(
            texts, flags, tmp_path / f"{fmt}.jsonl", target="mod", scores=raw, dataset_format=fmt
        )
        lines = read_jsonl(path)
        assert [ex["label_scores"] for ex in lines] == [
            {"mod": {"insult": 0.6, "toxicity": 0.8333}},
            {"mod": {"insult": 0.1, "toxicity": 0.51}},
            {"mod": {"insult": 0.0, "toxicity": 1.0}},  # an added row: its exact flags
        ]
        assert [ex["labels"] for ex in lines][0] == {"mod": ["insult", "toxicity"]}
        assert validate_jsonl(path).n_scored == 3
    assert read_jsonl(path)[0]["messages"][1]["content"] == texts[10]
    assert (
        "label_scores" not in data.write_split_jsonl(texts, flags, tmp_path / "x.jsonl").read_text()
    )


def test_label_scores_outside_zero_to_one_are_refused_naming_the_row(tmp_path):
    path = tmp_path / "train.jsonl"
    flags = pd.DataFrame({"toxicity": [True, False]}, index=["r1", "r2"])
    texts = pd.Series({"r1": "a", "r2": "b"})
    counts = pd.DataFrame({"toxicity": [1.0, 7.0]}, index=["r1", "r2"])
    with pytest.raises(ValueError, match=r"column 'toxicity' of row 'r2' is 7.0"):
        data.write_split_jsonl(texts, flags, path, scores=counts)
    assert not path.exists()

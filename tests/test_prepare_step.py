"""The prepare step on a run folder: loading a source (local or hub), then the whole step as 01
runs it, on a made-up dataset and on the mirror (the recipe's rows, seeded, against the loops)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prepare_steps import load_baseline, prepare_steps

from moderation_helpers.core.jsonl import read_jsonl, validate_jsonl
from moderation_helpers.recipe import source
from moderation_helpers.recipe.run_folder import DISTRIBUTION_PNG, PREPARE_SUMMARY, SPLIT_FILES

MIRROR_SIZES = dict(n_train=800, n_validation=100, n_test=101)
# The recipe's rows alone: none of 01's additions to the training split.
NO_ADDITIONS = dict.fromkeys(
    (
        "spelling_variants",
        "identity_examples",
        "identity_attacks",
        "context_examples",
        "abuse_examples",
        "opinion_examples",
        "idiom_examples",
        "profanity_examples",
    ),
    0,
)


def write_hub_layout(folder: Path, splits: dict[str, pd.DataFrame]) -> Path:
    (folder / "data").mkdir(parents=True)
    for split, df in splits.items():
        df.to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", index=False)
    return folder


@pytest.fixture
def spam_dataset(tmp_path) -> Path:
    """A made-up dataset that is not civil_comments: other columns, a boolean label, blanks."""
    rng = np.random.default_rng(0)

    def split(n):
        return pd.DataFrame(
            {
                "comment": [f"message {i}" if i % 17 else "  " for i in range(n)],
                "lang": ["en"] * n,
                "spam": rng.random(n) < 0.3,
                "phishing": rng.random(n).astype("float32"),
            }
        )

    return write_hub_layout(
        tmp_path / "spam", {"train": split(200), "validation": split(40), "test": split(40)}
    )


def test_load_splits_takes_the_first_rows_and_drops_blank_texts(spam_dataset):
    frames = source.load_splits(
        str(spam_dataset), {"train": 50, "validation": 0}, text_column="comment", progress=False
    )
    train = frames["train"]
    assert list(train.columns) == ["comment", "spam", "phishing"], "strings are not labels"
    assert train.attrs == {"rows_drawn": 50, "rows_without_text": 3}
    assert train["comment"].iloc[0] == "message 1" and len(train) == 47
    assert len(frames["validation"]) == 0 and list(frames["validation"].columns)[0] == "comment"
    chosen = source.load_splits(
        str(spam_dataset),
        {"test": 5},
        text_column="comment",
        label_columns=["spam"],
        progress=False,
    )
    assert list(chosen["test"].columns) == ["comment", "spam"]


def test_load_splits_names_missing_columns_splits_and_folders(spam_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\]"):
        source.load_splits(str(spam_dataset), {"train": 5}, progress=False)
    with pytest.raises(ValueError, match=r"no split\(s\) \['dev'\]"):
        source.load_splits(str(spam_dataset), {"dev": 5}, text_column="comment", progress=False)
    with pytest.raises(ValueError, match="neither numeric nor boolean"):
        source.load_splits(
            str(spam_dataset),
            {"train": 5},
            text_column="comment",
            label_columns=["lang"],
            progress=False,
        )
    missing = str(tmp_path / "no" / "such")
    with pytest.raises(source.SourceUnavailableError, match="`source` parameter") as info:
        source.open_source(missing)
    assert missing in str(info.value)


def test_an_unreachable_hub_fails_fast_in_one_sentence(monkeypatch):
    import datasets
    import httpx

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("load_dataset must not be tried: it retries for a minute")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(httpx, "head", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", never)
    with pytest.raises(source.SourceUnavailableError) as info:
        source.open_source("google/civil_comments")
    message = str(info.value)
    assert "source='google/civil_comments'" in message and "`source` parameter" in message
    assert source.LOCAL_MIRROR_HINT in message
    assert "\n" not in message and info.value.__suppress_context__


def test_an_offline_hub_error_is_one_sentence_too(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'google/civil_comments' on the Hub (Offline)")

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(source.SourceUnavailableError, match="`source` parameter") as info:
        source.open_source("google/civil_comments")
    assert info.value.__suppress_context__


def test_prepare_step_works_for_any_labelled_dataset(spam_dataset, tmp_path):
    summary = prepare_steps(
        str(spam_dataset),
        tmp_path / "run",
        n_train=200,
        n_validation=40,
        n_test=40,
        text_column="comment",
        threshold=0.8,
        max_label_fraction=1.0,
        zero_flags_fraction=0.5,
    )
    assert summary["labels"] == ["spam", "phishing", "safe"]
    assert summary["splits"]["train"]["rows_without_text"] == 12
    for split in ("train", "validation", "test"):
        report = validate_jsonl(
            tmp_path / "run" / SPLIT_FILES[split], {"moderation": summary["labels"]}
        )
        assert report.n_lines == summary["splits"][split]["rows_kept"]
        counts = summary["splits"][split]["label_counts"]
        assert report.label_counts["moderation"] == {k: v for k, v in counts.items() if v}


def test_prepare_step_on_the_mirror_reproduces_the_recipe(civil_comments_dir, tmp_path):
    summary = prepare_steps(str(civil_comments_dir), tmp_path, **NO_ADDITIONS, **MIRROR_SIZES)
    splits = summary["splits"]
    assert [splits[s]["rows_drawn"] for s in SPLIT_FILES] == [799, 100, 101]
    assert [splits[s]["rows_kept"] for s in SPLIT_FILES] == [149, 19, 18]
    assert summary["dropped_labels"] == ["severe_toxicity"]
    assert summary["labels"] == [
        "toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
        "sexual_explicit",
        "safe",
    ]
    assert splits["train"]["label_counts_drawn"]["toxicity"] == 469
    for name in (*SPLIT_FILES.values(), DISTRIBUTION_PNG, PREPARE_SUMMARY):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / DISTRIBUTION_PNG).read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((tmp_path / PREPARE_SUMMARY).read_text())
    assert on_disk == summary
    assert {"source", "seed", "threshold", "target", "parameters"} <= set(on_disk)
    for split in SPLIT_FILES:
        labels = {
            label
            for line in read_jsonl(tmp_path / SPLIT_FILES[split])
            for label in line["labels"]["moderation"]
        }
        assert labels <= set(summary["labels"]) and "severe_toxicity" not in labels


def test_prepare_step_is_byte_identical_for_a_seed(civil_comments_dir, tmp_path):
    params = dict(MIRROR_SIZES, max_label_fraction=1.0, zero_flags_fraction=0.4)
    params.update(NO_ADDITIONS)
    prepare_steps(str(civil_comments_dir), tmp_path / "a", seed=5, **params)
    prepare_steps(str(civil_comments_dir), tmp_path / "b", seed=5, **params)
    prepare_steps(str(civil_comments_dir), tmp_path / "c", seed=6, **params)
    for name in SPLIT_FILES.values():
        a, b, c = ((tmp_path / run / name).read_bytes() for run in "abc")
        assert a == b
        assert a != c and sorted(a.splitlines()) == sorted(c.splitlines())


def test_the_loop_baseline_writes_the_same_examples(civil_comments_dir, tmp_path):
    """bench_prepare.py compares like with like: both write the same set of lines."""
    params = dict(MIRROR_SIZES, max_label_fraction=0.5, zero_flags_fraction=0.2, seed=0)
    # The loop baseline is the recipe as written: no sentences added, no label_scores.
    fast_params = dict(NO_ADDITIONS, rater_scores=False)
    prepare_steps(str(civil_comments_dir), tmp_path / "fast", **fast_params, **params)
    load_baseline().prepare_loop(str(civil_comments_dir), tmp_path / "loop", **params)
    for name in SPLIT_FILES.values():
        fast = read_jsonl(tmp_path / "fast" / name)
        loop = read_jsonl(tmp_path / "loop" / name)
        assert sorted(map(json.dumps, fast)) == sorted(map(json.dumps, loop))


def test_label_scores_are_the_fractions_the_labels_were_cut_from(prepared_run_dir):
    """Every line's label_scores agree with its labels at 01's threshold (0.5); the mirror's
    rows keep the raters' fractions, the rows added to train their exact 0/1."""
    fractions = set()
    for name in SPLIT_FILES.values():
        for line in read_jsonl(prepared_run_dir / name):
            scores = line["label_scores"]["moderation"]
            flagged = {label for label, score in scores.items() if score > 0.5}
            assert flagged == set(line["labels"]["moderation"]) - {"safe"}, line
            fractions |= {s for s in scores.values() if 0 < s < 1}
    assert len(fractions) > 50, "the raters' fractions, not only 0/1"

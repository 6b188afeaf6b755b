"""moderate-corpus: reading, block scoring, flags, and whole runs on one local Ray.

Most tests score with a stand-in that has the Moderator's interface (deterministic scores from
the text, an injectable failure), so they check the corpus machinery alone and run in seconds
once Ray is up; ``test_corpus_with_exported_model.py`` runs the real exported model.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from moderation_helpers.cli import _corpus_args, corpus_main
from moderation_helpers.corpus.files import (
    MANIFEST,
    CorpusError,
    read_corpus,
    read_moderated,
)
from moderation_helpers.corpus.run import moderate_corpus, plan_run
from moderation_helpers.corpus.scoring import (
    EMPTY_TEXT,
    MISSING_TEXT,
    ScorerSettings,
    flag_lists,
    labels_of,
    score_block,
    text_errors,
)
from moderation_helpers.recipe.predictions import flagged_labels

LABELS = ["insult", "safe", "toxicity"]
THRESHOLDS = {"moderation": {"insult": 0.5, "safe": 0.5, "toxicity": 0.3}}
BOOM = "this comment makes the stand-in fail"


class StandInModerator:
    """The Moderator's interface, scores a pure function of each text (no batch effects)."""

    targets = [{"name": "moderation", "labels": LABELS, "loss_function": "multi_class"}]
    seq_len = 12
    providers = ["CPUExecutionProvider"]
    safe_label = "safe"

    def __init__(self, thresholds=THRESHOLDS, fail_on: str | None = None):
        self.thresholds = thresholds
        self.fail_on = fail_on

    def score(self, texts):
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise RuntimeError("injected failure")
        size = np.array([len(t) for t in texts], dtype=np.float32)
        insult = (size * 7 % 10) / 10
        toxicity = (size * 3 % 10) / 10
        safe = 1 - np.maximum(insult, toxicity)
        return {"moderation": np.stack([insult, safe, toxicity], axis=1).astype(np.float32)}


def stand_in_loader(model_dir, *, variant, threads, providers, token_budget, **kw):
    assert Path(model_dir, "classifier.json").is_file() and token_budget in (None, 2048)
    return StandInModerator(**kw)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: two CPUs, no dashboard; workers unpickle this module's
    stand-in by value (they cannot import a test module)."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "classifier.json").write_text("{}", encoding="utf-8")
    return folder


def corpus_frame(n: int = 50) -> pd.DataFrame:
    """Texts of many lengths, a few bad ones, and extra columns to carry through."""
    texts = [("word " * (i % 17 + 1) + f"comment {i}").strip() for i in range(n)]
    for row, bad in {3: "", 10: "   ", 21: None}.items():
        if row < n:
            texts[row] = bad
    return pd.DataFrame({"id": [f"c{i:03d}" for i in range(n)], "text": texts, "likes": range(n)})


def write_corpus(frame: pd.DataFrame, folder: Path, kind: str) -> Path:
    path = folder / f"corpus.{kind}"
    if kind == "parquet":
        frame.to_parquet(path, index=False)
    elif kind == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path


def run(model_dir, source, output, **kw):
    kw.setdefault("load", stand_in_loader)
    kw.setdefault("num_actors", 2)
    kw.setdefault("threads", 1)
    kw.setdefault("block_rows", 8)
    kw.setdefault("batch_tokens", 2048)
    return moderate_corpus(model_dir, source, output, progress=False, log=lambda _: None, **kw)


def reference_flags(scores: np.ndarray) -> list[list[str]]:
    """The flags the notebooks' own decide() path gives for these scores."""
    frame = pd.DataFrame(
        scores,
        columns=pd.MultiIndex.from_tuples(
            [("moderation", lab) for lab in LABELS], names=["target", "label"]
        ),
    )
    limits = {("moderation", lab): v for lab, v in THRESHOLDS["moderation"].items()}
    return flagged_labels(frame, limits)["moderation"].tolist()


# ------------------------------------------------------------------ pieces, without Ray


def test_text_errors_name_missing_empty_and_non_string():
    errors = text_errors(pa.array(["ok", "", "  \n", None, "fine"]))
    assert errors.to_pylist() == [None, EMPTY_TEXT, EMPTY_TEXT, MISSING_TEXT, None]
    numbers = text_errors(pa.array([1, None, 3]))
    assert numbers.to_pylist() == [
        "text is not a string (int64)",
        MISSING_TEXT,
        "text is not a string (int64)",
    ]


def test_flag_lists_match_the_decide_path():
    scores = np.random.default_rng(1).random((200, 3)).astype(np.float32)
    scores[5] = np.nan  # an unscored row flags nothing
    limits = np.array([THRESHOLDS["moderation"][lab] for lab in LABELS])
    lists, any_flag = flag_lists(scores, LABELS, limits, "safe")
    assert lists.to_pylist() == reference_flags(scores)
    assert any_flag.tolist() == [bool(f) for f in reference_flags(scores)]


def test_read_corpus_names_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl: line 3"):
        read_corpus(bad)
    good = write_corpus(corpus_frame(5), tmp_path, "csv")
    with pytest.raises(CorpusError, match=r"corpus\.csv: no field 'body'.*'text'"):
        read_corpus(good, "body")
    (tmp_path / "notes.txt").write_text("text\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"notes\.txt: unknown corpus format '\.txt'"):
        read_corpus(tmp_path / "notes.txt")


def test_json_texts_of_other_types_become_row_errors(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "fine", "n": 1}, {"text": 5, "n": 2}, {"n": 3}, {"text": "ok", "n": 4}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    table = read_corpus(path)
    assert table["text"].to_pylist() == ["fine", None, None, "ok"]
    assert table["__read_error__"].to_pylist() == [None, "text is not a string", None, None]


# ------------------------------------------------------------------ whole runs on local Ray


@pytest.mark.parametrize(
    "kind", ["parquet", *(pytest.param(k, marks=pytest.mark.slow) for k in ("jsonl", "csv"))]
)  # the quick check runs one format on Ray; the reading tests above read JSONL and CSV
def test_every_row_in_order_with_its_columns_scores_and_flags(local_ray, model_dir, tmp_path, kind):
    frame = corpus_frame()
    source = write_corpus(frame, tmp_path, kind)
    summary = run(model_dir, source, tmp_path / "out")
    assert summary["complete"] and summary["rows"] == len(frame) == summary["input_rows"]
    assert summary["blocks"] == 7 and summary["blocks_scored"] == 7
    assert summary["threshold_source"] == "tuned"
    out = read_moderated(tmp_path / "out")
    assert len(out) == len(frame)
    assert out["row"].tolist() == list(range(len(frame)))
    assert out["id"].tolist() == frame["id"].tolist() and out["likes"].tolist() == list(range(50))
    bad = out["error"].notna()
    assert out.index[bad].tolist() == [3, 10, 21] and summary["errors"] == 3
    # CSV has no null apart from an empty field: there the missing text reads as empty.
    assert out.loc[3, "error"] == EMPTY_TEXT
    assert out.loc[21, "error"] == (EMPTY_TEXT if kind == "csv" else MISSING_TEXT)
    score_columns = [f"score/moderation/{lab}" for lab in LABELS]
    assert out.loc[bad, score_columns].isna().all().all()
    assert (
        out.loc[bad, "flagged/moderation"].isna().all() and out.loc[bad, "is_flagged"].isna().all()
    )
    good = out[~bad]
    expected = StandInModerator().score(good["text"].tolist())["moderation"]
    np.testing.assert_array_equal(good[score_columns].to_numpy(np.float32), expected)
    assert good["flagged/moderation"].map(list).tolist() == reference_flags(expected)
    assert good["is_flagged"].sum() == summary["flagged"] > 0
    assert pd.read_parquet(tmp_path / "out")["row"].tolist() == list(range(50))  # plain pandas
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] is True and manifest["plan"]["rows"] == 50


@pytest.mark.slow  # several runs on Ray: the quick check keeps one
def test_a_failed_block_is_reported_and_a_rerun_resumes_to_the_same_output(
    local_ray, model_dir, tmp_path
):
    frame = corpus_frame()
    frame.loc[30, "text"] = BOOM  # block 3 (rows 24..31) fails
    source = write_corpus(frame, tmp_path, "parquet")
    failing = functools.partial(stand_in_loader, fail_on=BOOM)
    first = run(model_dir, source, tmp_path / "out", load=failing)
    assert not first["complete"] and first["failed_blocks"] == [3]
    assert first["rows"] == len(frame) - 8 and first["blocks_scored"] == 6
    assert not (tmp_path / "out" / "part-00003.parquet").exists()
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["complete"] is False

    (tmp_path / "out" / "part-00005.parquet").unlink()  # as if lost before the manifest knew
    second = run(model_dir, source, tmp_path / "out")
    assert second["complete"] and second["blocks_skipped"] == 5 and second["blocks_scored"] == 2
    run(model_dir, source, tmp_path / "clean")
    pd.testing.assert_frame_equal(
        read_moderated(tmp_path / "out"), read_moderated(tmp_path / "clean")
    )


@pytest.mark.slow  # several runs on Ray: the quick check keeps one
def test_other_settings_are_refused_unless_overwrite(local_ray, model_dir, tmp_path):
    source = write_corpus(corpus_frame(20), tmp_path, "csv")
    run(model_dir, source, tmp_path / "out")
    with pytest.raises(CorpusError, match=r"another run \(differs in \['block_rows'\]\)"):
        run(model_dir, source, tmp_path / "out", block_rows=5)
    # Overwritten by a run of a model folder without thresholds: 0.5, and the summary says so.
    untuned = functools.partial(stand_in_loader, thresholds=None)
    with pytest.raises(CorpusError, match="no threshold for"):
        run(model_dir, source, tmp_path / "out", load=untuned, default_threshold=None)
    summary = run(model_dir, source, tmp_path / "out", block_rows=5, load=untuned, overwrite=True)
    assert summary["complete"] and summary["blocks"] == 4 and summary["blocks_skipped"] == 0
    assert summary["threshold_source"] == "default-0.5"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MANIFEST,
        *[f"part-0000{i}.parquet" for i in range(4)],
    ]
    out = read_moderated(tmp_path / "out").dropna(subset=["is_flagged"])
    insult = out["score/moderation/insult"] >= 0.5
    assert (out["flagged/moderation"].map(lambda f: "insult" in f) == insult).all()
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(CorpusError, match="did not write"):
        run(model_dir, source, tmp_path, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep"


EMBEDDED_RUN = """
import sys
import ray
sys.path.insert(0, {tests!r})
import test_corpus
ray.cloudpickle.register_pickle_by_value(test_corpus)
from moderation_helpers.corpus.run import moderate_corpus
summary = moderate_corpus(
    {model!r}, {source!r}, {out!r}, load=test_corpus.stand_in_loader, num_cpus=2, num_actors=2,
    threads=1, block_rows=8, batch_tokens=2048, progress=False, log_file={log!r},
)
print("complete:", summary["complete"])
"""


@pytest.mark.slow  # starts its own Ray: 20 s or more
def test_an_embedded_run_prints_nothing_of_ray_and_logs_to_its_file(model_dir, tmp_path):
    """What 05_deploy and the README's run command rely on: the corpus step starts its own
    Ray, and Ray's lines (ray.init's warnings, Ray Data's, the driver's C++ core worker's) go to
    ``log_file`` with the run's notes, not to the terminal or a notebook's output."""
    source = write_corpus(corpus_frame(20), tmp_path, "parquet")
    log = tmp_path / "moderate_corpus.log"
    script = EMBEDDED_RUN.format(
        tests=str(Path(__file__).parent), model=str(model_dir), source=str(source),
        out=str(tmp_path / "out"), log=str(log),
    )  # fmt: skip
    repo = Path(__file__).resolve().parents[1]  # `-c` imports the package from its cwd
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=repo
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "complete: True\n" and done.stderr == ""
    notes = log.read_text(encoding="utf-8")
    assert "20 rows in 3 blocks of 8" in notes and "local Ray: 2 CPUs" in notes


def test_cli_reports_bad_input_without_a_traceback(model_dir, tmp_path, capsys):
    source = write_corpus(corpus_frame(5), tmp_path, "csv")
    status = corpus_main(
        ["--model", str(model_dir), "--input", str(source), "--output", str(tmp_path / "o"),
         "--text-column", "body"]
    )  # fmt: skip
    assert status == 1
    assert "no field 'body'" in capsys.readouterr().err


def test_explain_is_part_of_the_plan_and_a_cli_option(model_dir, tmp_path):
    source = write_corpus(corpus_frame(5), tmp_path, "csv")
    plan = functools.partial(
        plan_run,
        model_dir,
        source,
        text_column="text",
        variant="fp32",
        block_rows=None,
        overwrite=False,
        default_threshold=0.5,
        probe_model=lambda folder: StandInModerator(),
    )
    assert plan(tmp_path / "spans", explain=True).manifest["explain"] is True
    assert "explain" not in plan(tmp_path / "plain").manifest  # earlier outputs still resume
    argv = ["--model", "m", "--input", "i", "--output", "o"]
    assert _corpus_args([*argv, "--explain"]).explain and not _corpus_args(argv).explain


def widest_gap_thresholds(moderator, texts) -> dict[str, dict[str, float]]:
    """Per label, the midpoint of the widest gap between the texts' scores: some rows flag,
    none sits at its threshold."""
    scores = moderator.score(texts)
    out = {}
    for target, labels in moderator.labels_by_target.items():
        column = np.sort(scores[target], axis=0)
        gaps = np.diff(column, axis=0)
        k = gaps.argmax(axis=0)
        cols = np.arange(len(labels))
        middles = ((column[k, cols] + column[k + 1, cols]) / 2).tolist()
        out[target] = dict(zip(labels, middles, strict=True))
    return out


@pytest.mark.slow
@pytest.mark.needs_data
def test_explain_gives_flagged_rows_the_moderators_spans(exported_model, prepared_run_dir):
    from moderation_helpers.core.jsonl import read_jsonl
    from moderation_helpers.model.moderator import Moderator

    moderator = Moderator.load(exported_model, threads=1)
    texts = [ex["text"] for ex in read_jsonl(prepared_run_dir / "test.jsonl")][:16]
    thresholds = widest_gap_thresholds(moderator, texts)
    labels = labels_of(moderator)
    table = pa.table({"text": [*texts, "", None]})
    settings = ScorerSettings(
        model_dir=str(exported_model),
        out_dir=str(exported_model),
        text_column="text",
        block_rows=table.num_rows,
        n_rows=table.num_rows,
        labels=labels,
        limits={t: [thresholds[t][lab] for lab in labs] for t, labs in labels.items()},
        safe_label=moderator.safe_label,
        explain=True,
    )
    out = score_block(moderator, table, settings)
    spans = out["spans"].to_pylist()
    flagged = out["is_flagged"].to_pylist()
    assert spans[-2:] == [None, None]  # bad rows
    assert any(flagged)
    rows = [i for i, hit in enumerate(flagged) if hit]
    assert [i for i, s in enumerate(spans) if s is not None] == rows
    expected = moderator.explain([texts[i] for i in rows], thresholds=thresholds)
    for i, want in zip(rows, expected, strict=True):
        got = json.loads(spans[i])
        assert got.keys() == want.keys() and want
        for name, got_spans in got.items():
            assert [(s["start"], s["end"]) for s in got_spans] == [
                (s["start"], s["end"]) for s in want[name]
            ]
            assert [s["weight"] for s in got_spans] == pytest.approx(
                [s["weight"] for s in want[name]], abs=1e-3
            )

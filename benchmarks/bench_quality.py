"""Issue 16: model choices made measurable, by k-fold cross-validation on the prepared mirror rows.

    python benchmarks/bench_quality.py                       # 5 folds, every installed encoder
    OMP_NUM_THREADS=1 python benchmarks/bench_quality.py --folds 5 --max-folds 2 \
        --encoders all-MiniLM-L6-v2                         # the first 2 of 5 folds only

Prepares the mirror as the default pipeline does (notebooks/01_prepare.ipynb: every split,
``max_label_fraction=1.0``, ``zero_flags_fraction=0.4``, rare labels dropped), pools the splits'
rows (with the raters' fractions as ``label_scores``, as 01 writes them, unless
``--no-label-scores``) and cross-validates the project's classifier (``recipe.cv``) on them, for
each base encoder,
with 02's steps (``--steps``) and 01's additions to the training split (``recipe.augment``;
defaults as the notebooks'): the template sentences (``--identity-examples``,
``--identity-attacks``, ``--context-examples``, ``--abuse-examples``, ``--opinion-examples``,
``--idiom-examples``, ``--profanity-examples``)
join every training fold and are never scored; the respelled copies (``--spelling-variants``)
are made from each fold's own training rows. Prints per-label ROC-AUC and AP as mean ± sd over
the folds run, the training steps' seconds, the behavioural suite (``recipe.behaviour``) per
behaviour at the toxicity threshold 04 would tune on each held-out fold (and by any label at
the thresholds 04 tunes for each, with the identity terms' lean: ``identity_shift``), and the
int8 texts/s of the first fold's model exported (``export_model(int8=True)``) and scored by the
Moderator on its held-out texts; then the command, the CPU (``lscpu``) and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "civil_comments"


def prepared_rows(source: Path, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """The mirror's rows prepared as 01_prepare does (all splits pooled) and the template rows
    01 adds to training (identity, attack, context, abuse and opinion sentences)."""
    import pandas as pd

    from moderation_helpers.recipe import prepare
    from moderation_helpers.recipe import source as sources

    sizes = {"train": 1_000_000, "validation": 50_000, "test": 50_000}
    raw = sources.load_splits(str(source), sizes, progress=False)
    labels = sources.infer_label_columns(raw["train"], "text")
    flags = {split: prepare.threshold_labels(df, labels, 0.5) for split, df in raw.items()}
    balanced = {
        split: prepare.balance(frame, 0.4, 1.0, seed=args.seed) for split, frame in flags.items()
    }
    kept, _dropped = prepare.drop_rare_labels(balanced, 0.01)

    def named(frames: dict) -> pd.DataFrame:  # one frame of the splits, rows named "split-i"
        return pd.concat([f.set_axis(f.index.map(f"{s}-{{}}".format)) for s, f in frames.items()])

    pooled = named(raw)
    texts = pooled["text"]
    flags_all = named(kept)
    records = prepare.to_records(texts, flags_all)
    if args.no_label_scores:
        rows = records.to_dict("records")
    else:  # the lines 01_prepare writes: labels and the raters' fractions as label_scores
        scores = prepare.aligned_scores(pooled, flags_all)
        rows = [json.loads(line) for line in prepare.records_to_jsonl(records, scores).splitlines()]
    from moderation_helpers.recipe.augment import template_additions

    extra = template_additions(
        list(flags_all.columns),
        identity=args.identity_examples,
        attacks=args.identity_attacks,
        context=args.context_examples,
        abuse=args.abuse_examples,
        opinion=args.opinion_examples,
        idioms=args.idiom_examples,
        profanity=args.profanity_examples,
        seed=args.seed,
    )
    augment = []
    for frame in extra.values():
        augment += prepare.to_records(frame["text"], frame.drop(columns="text")).to_dict("records")
    return rows, augment


def respelled_copies(n: int, seed: int) -> Any:
    """``derive`` for ``cv.cross_validate``: ``n`` respelled copies of a fold's toxic training
    rows (``recipe.spelling_variants``), as 01_prepare adds them to the training split."""
    import pandas as pd

    from moderation_helpers.core.flags import SAFE_LABEL
    from moderation_helpers.recipe import cv, prepare
    from moderation_helpers.recipe.spelling_variants import spelling_variants

    def derive(train_rows: list[dict]) -> list[dict]:
        labels = sorted({label for row in train_rows for label in row["labels"]["moderation"]})
        labels.remove(SAFE_LABEL)
        texts = pd.Series([row["text"] for row in train_rows])
        flags = pd.DataFrame(cv.label_matrix(train_rows, "moderation", labels), columns=labels)
        copies = spelling_variants(texts, flags, n, seed)
        return prepare.to_records(copies["text"], copies.drop(columns="text")).to_dict("records")

    return derive if n else None


def suite_check(
    predict: Any, test_rows: list[dict], base_rate: float, save: Path | None = None
) -> dict[str, float]:
    """The behavioural suite (``recipe.behaviour``) flagged by the fold model's toxicity score at
    the threshold 04 would tune on the fold's held-out rows for ``base_rate``
    (``base_rate_curve.base_rate_threshold``: the smoothed F1 peak at that rate): accuracy per
    behaviour, overall, the identity sentences' flag rate, and the threshold; then the same
    flagged by any label at the thresholds 04 tunes for each (``tune_for_base_rate``, keys
    ``any label: …``), as ``moderate()`` would flag it."""
    import bench_heldout
    import numpy as np
    import pandas as pd

    from moderation_helpers.core.conversation import example_texts
    from moderation_helpers.recipe import base_rate_curve as curve
    from moderation_helpers.recipe import behaviour, cv

    cases, identity = behaviour.load_cases(), behaviour.identity_cases()
    labels = sorted(k for k in predict(cases["text"][:1].tolist())[0]["moderation"])

    def scores(texts: list[str]) -> np.ndarray:
        """One column per label of ``labels``."""
        return np.array([[row["moderation"][k] for k in labels] for row in predict(texts)])

    held_out_all, truth = (
        scores(example_texts(test_rows)),
        cv.label_matrix(test_rows, "moderation", labels),
    )
    suite_all, identity_all = scores(list(cases["text"])), scores(list(identity["text"]))
    tox = labels.index("toxicity")
    y, held_out = truth[:, tox], held_out_all[:, tox]
    threshold = curve.base_rate_threshold(y, held_out, base_rate)  # 04's rule: the smoothed peak
    report = behaviour.behaviour_report(cases, suite_all[:, tox] >= threshold)
    out = {f"suite {name}": float(acc) for name, acc in report["accuracy"].items()}
    out["identity flagged"] = float(np.mean(identity_all[:, tox] >= threshold))
    out["toxicity threshold"] = float(threshold)
    out |= any_label_readings(labels, truth, held_out_all, suite_all, identity_all, base_rate)
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        sets = pd.concat(
            {
                p.stem: bench_heldout.load_set(p)
                for p in sorted(bench_heldout.HELDOUT.glob("*.csv"))
            },
            names=["set", None],
        ).reset_index("set")
        # Every label as a column of the ``*_all`` arrays, named by ``labels``
        # (bench_thresholds reads them; its older files had toxicity alone).
        np.savez(
            save,
            labels=np.array(labels),
            held_out_all=held_out_all,
            y_all=truth,
            cases_all=suite_all,
            identity_all=identity_all,
            heldout_all=scores(list(sets["text"])),
            heldout_set=sets["set"].to_numpy(str),
            heldout_kind=sets["kind"].to_numpy(str),
        )
    return out


def any_label_readings(
    labels: list[str],
    truth: Any,
    held_out: Any,
    suite: Any,
    identity: Any,
    base_rate: float,
    tune_for_traffic_mix: bool = False,
) -> dict[str, float]:
    """What a team meets: every label at the threshold 04 tunes for it on the fold's held-out
    rows (``truth``, ``held_out``: one column per label of ``labels``), a suite case flagged
    when any label is (identity_attack's own threshold can flag what toxicity's leaves alone):
    accuracy per behaviour (keys ``any label: suite …``), the identity sentences flagged, and
    how far a name alone leans the score (``identity_shift``: the top term's odds multiple and
    the number of terms listed)."""
    import numpy as np
    import pandas as pd

    from moderation_helpers.core.flags import SAFE_LABEL
    from moderation_helpers.recipe import base_rate as br
    from moderation_helpers.recipe import behaviour, identity_shift

    flag = [i for i, label in enumerate(labels) if label != SAFE_LABEL]
    columns = pd.MultiIndex.from_tuples([("moderation", labels[i]) for i in flag])
    fold_truth = pd.DataFrame(truth[:, flag].astype(bool), columns=columns)
    tuned = br.tune_for_base_rate(
        fold_truth,
        pd.DataFrame(held_out[:, flag], columns=columns),
        br.default_base_rates(fold_truth, reference_rate=base_rate),
        tune_for_traffic_mix=tune_for_traffic_mix,
    )
    limits = tuned["threshold"].to_numpy(float)
    report = behaviour.behaviour_report(
        behaviour.load_cases(), (suite[:, flag] >= limits).any(axis=1)
    )
    out = {f"any label: suite {name}": float(acc) for name, acc in report["accuracy"].items()}
    out["any label: identity flagged"] = float(np.mean((identity[:, flag] >= limits).any(1)))
    # 04's score test: how far the name alone moves the highest flag-label score
    lean = identity_shift.score_shift(behaviour.identity_cases(), identity[:, flag].max(axis=1))
    out["identity lean: top odds"] = float(lean["odds"].iloc[0])
    out["identity lean: terms listed"] = float(lean["above"].sum())
    return out


def int8_texts_per_second(model_dir: Path, texts: list[str], rounds: int = 3) -> dict[str, float]:
    """Export the fold's model (fp32 + int8), then time the int8 Moderator on ``texts``: texts
    per wall-clock second (threads: the cores this process may use) and, with one thread, per
    CPU-second (what a quiet core gives, whatever else the machine runs)."""
    from moderation_helpers.classifier.checkpoint import load_model
    from moderation_helpers.export.onnx import export_model
    from moderation_helpers.model.moderator import Moderator

    folder = Path(tempfile.mkdtemp(prefix="bench-quality-")) / "model"
    export_model(load_model(model_dir, device="cpu", precision="fp32"), folder, int8=True)
    rates = {}
    for key, threads, clock in (
        ("wall", None, time.perf_counter),
        ("cpu", 1, time.process_time),
    ):
        moderator = Moderator.load(folder, variant="int8", threads=threads)
        moderator.score(texts[:64])  # warm-up
        best = float("inf")
        for _ in range(rounds):
            t0 = clock()
            moderator.score(texts)
            best = min(best, clock() - t0)
        rates[key] = len(texts) / best
    return rates


def run_encoder(name: str, rows: list[dict], augment: list[dict], args) -> dict[str, Any]:
    """Cross-validate one base encoder; its summary table, seconds and int8 rate."""
    from moderation_helpers.classifier.network import Target
    from moderation_helpers.classifier.training import TrainSettings
    from moderation_helpers.core.conversation import example_texts
    from moderation_helpers.recipe import cv

    labels = sorted({label for row in rows + augment for label in row["labels"]["moderation"]})
    targets = [Target("moderation", labels, "multi_class")]
    settings = TrainSettings(
        training_steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        encoder=name,
        coherent_labels=not args.no_coherent_labels,
        layer_decay=args.layer_decay,
        pooling=args.pooling or TrainSettings.pooling,
    )
    rate: dict[str, dict[str, float]] = {}
    suites: list[dict[str, float]] = []

    def on_fold(fold: int, model: cv.FoldModel, test_rows: list[dict]) -> None:
        print(f"  {name} fold {fold}: {model.train_seconds:.0f} s of steps", flush=True)
        if not args.no_suite:
            save = args.save_scores / f"{name}-fold{fold}.npz" if args.save_scores else None
            suites.append(suite_check(model.predict, test_rows, args.base_rate, save))
            print(f"    {suites[-1]}", flush=True)
        if fold == 0 and not args.no_int8:
            rate["int8"] = int8_texts_per_second(model.model_dir, example_texts(test_rows))

    frame = cv.cross_validate(
        rows,
        targets,
        settings,
        folds=args.folds,
        seed=args.seed,
        max_folds=args.max_folds,
        augment=augment,
        derive=respelled_copies(args.spelling_variants, args.seed),
        on_fold=on_fold,
    )
    summary = cv.summarize_cv(frame)
    return {"frame": frame, "summary": summary, "int8": rate.get("int8"), "suite": suites}


def machine() -> str:
    """The CPU model and count (``lscpu``) and the load average."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "Flags")
        fields = dict(line.partition(":")[::2] for line in out.splitlines())
        fields = {k.strip(): " ".join(v.split()) for k, v in fields.items() if k.strip() in keep}
        flags = fields.pop("Flags", "")
        fields["bf16"] = "yes" if "avx512_bf16" in flags or "amx_bf16" in flags else "no"
        cpu = "; ".join(f"{k}: {v}" for k, v in fields.items())
    except (OSError, subprocess.CalledProcessError):
        cpu = "lscpu unavailable"
    return f"{cpu}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


def parse_args() -> argparse.Namespace:
    from moderation_helpers.classifier.encoders import ENCODERS
    from moderation_helpers.core.pooling import POOLINGS

    installed = [n for n, spec in ENCODERS.items() if spec.installed()]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max-folds", type=int, help="run only the first N folds (time)")
    parser.add_argument("--steps", type=int, default=300, help="02_train's")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="the notebook's")
    parser.add_argument("--encoders", default=",".join(installed), help="comma-separated")
    parser.add_argument("--identity-examples", type=int, default=150)
    parser.add_argument("--identity-attacks", type=int, default=110)
    parser.add_argument("--context-examples", type=int, default=120)
    parser.add_argument("--abuse-examples", type=int, default=160)
    parser.add_argument("--opinion-examples", type=int, default=120)
    parser.add_argument("--idiom-examples", type=int, default=50)
    parser.add_argument("--profanity-examples", type=int, default=0)
    parser.add_argument("--spelling-variants", type=int, default=100)
    parser.add_argument("--base-rate", type=float, default=0.08, help="04's, for the suite")
    parser.add_argument("--no-suite", action="store_true", help="skip the behavioural suite")
    parser.add_argument("--save-scores", type=Path, help="a folder for each fold's suite scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-coherent-labels",
        action="store_true",
        help="score each label by its own head alone (TrainSettings.coherent_labels=False)",
    )
    parser.add_argument(
        "--layer-decay",
        type=float,
        default=1.0,
        help="each encoder layer's rate times this below the one above (TrainSettings')",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        help="how the heads read a text (default: TrainSettings'; moderation_helpers.core.pooling)",
    )
    parser.add_argument(
        "--no-label-scores",
        action="store_true",
        help="train on 0/1 labels only (01_prepare's rater_scores=False)",
    )
    parser.add_argument("--no-int8", action="store_true", help="skip the export + int8 timing")
    return parser.parse_args()


def main() -> None:
    import pandas as pd

    from moderation_helpers.recipe.cv import markdown_table, train_seconds

    args = parse_args()
    load_before = os.getloadavg()
    rows, augment = prepared_rows(args.source, args)
    print(f"{len(rows)} prepared rows (+{len(augment)} identity rows in training folds)")
    results = {}
    for name in [n.strip() for n in args.encoders.split(",") if n.strip()]:
        results[name] = run_encoder(name, rows, augment, args)
    print()
    for name, result in results.items():
        int8 = result["int8"]
        rate = (
            f"{int8['wall']:.0f} texts/s wall, {int8['cpu']:.0f} texts per CPU-second (1 thread)"
            if int8
            else "not measured"
        )
        frame = result["frame"]
        print(
            f"### {name}: {args.steps} steps {train_seconds(frame)} s wall "
            f"({train_seconds(frame, 'train_cpu_seconds')} CPU-s with loading); int8 {rate}\n"
        )
        print(markdown_table(result["summary"]) + "\n")
        if result["suite"]:
            suite = pd.DataFrame(result["suite"])
            table = pd.DataFrame({"mean": suite.mean(), "sd": suite.std(ddof=1)}).round(3)
            print(
                f"behavioural suite, toxicity flag at the base-rate threshold, then any label "
                f"at each label's ({len(suite)} folds):\n\n"
                f"{markdown_table(table.reset_index(names='check'))}\n"
            )
    print("command: " + shlex.join(["python", *sys.argv]))
    print(f"CPU: {machine()}")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}")


if __name__ == "__main__":
    main()

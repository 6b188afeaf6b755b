"""A model folder on the project's held-out sets: sentences written to check the model, never to
train it, each before the templates it judged.

    python benchmarks/bench_heldout.py --model runs/docs/model [--model OTHER ...]
        [--sets benchmarks/heldout/*.csv] [--suite]

Each CSV of ``benchmarks/heldout/`` has ``kind`` (``benign`` or the behaviour a toxic row shows),
``toxic`` (1 or 0) and ``text``; its module docstring below says when and why each was written.
For every set and toxic kind, per model: toxicity ranked against the set's benign rows (ROC-AUC,
whatever the threshold), and the share caught at the folder's thresholds by any label and by
toxicity alone; for the benign rows, the share flagged. With 12 to 48 rows a kind, a ROC-AUC is
good to about ±0.04: read several sets together. ``--suite`` adds the behavioural suite
(``recipe.behaviour``: its cases per behaviour and its identity sentences per template kind) at
the same thresholds, toxicity alone beside any label.

The sets (2026-11-30):

- ``attacks_dev.csv``: attacks on women, trans, gay, Black, disabled, Muslim, Jewish, immigrant and
  refugee people in the forms hate takes, with benign negations, counter-speech and neutral
  mentions; read while the attack templates of that session were written (a development set).
- ``attacks_sealed.csv``: the same, written in the same sitting, scored once; 32 of its rows then
  joined the behavioural suite.
- ``insults_a.csv``: plain insults in many forms and benign lookalikes, written before the insult
  templates that were tried and not kept.
- ``insults_threats_b.csv``: a second such set with threats, written before the threat labels of
  ``identity_examples.ATTACK_LABELS`` (two insults that copied a tried template were dropped).
- ``roles_veiled_threats.csv``: hate by a role or a place denied, and veiled threats, with benign
  sentences on the same topics; written before templates for that gap were tried (not kept).
- ``idioms_threats_c.csv``: violent words used figuratively ("killed it at the open
  mic", "these stairs are killing my knees") beside plain threats; written before the idiom
  templates of ``recipe.idiom_examples`` and read while they were tried (a development set).
- ``idioms_threats_d.csv``: the same, written in the same sitting; meant to be sealed, but the
  cross-validation runs that tried the idiom templates scored it, and so does every run of this
  script on all sets; no choice was made by it (docs/benchmarks.md).
- ``obfuscated_e.csv`` (2026-12-01): attacks on groups and insults respelled ("h4te", "Ihatewomen",
  "subhumn", "p a t h e t i c") beside benign sentences respelled the same ways; no template
  was written from it.
- ``frames_f.csv`` (2026-12-01): kind sentences about groups said in the attacks' frames
  ("Refugees deserve a safe home, like anyone fleeing a war.", "We need more women in
  government.") beside attacks in the same frames; a development set, read while benign
  templates in those frames were tried (not kept).
- ``frames_g.csv``: the same, written in the same sitting, kept out of the cross-validation
  runs; scored twice, on the default model of 2026-12-01 and on the pipeline run of the frame
  templates that were then not kept (docs/benchmarks.md); no template was written from it.
- ``short_hate_h.csv`` (2026-12-01, second session): hate said short and plain ("I hate
  Muslims.", "Women are revolting.", "Why are Arabs so disgusting?") beside short benign
  sentences that use the same words or name the same groups ("I hate Mondays.", "I love
  Muslims.", "I don't hate Jews, why would I?"); a development set, read while short attack
  templates were tried.
- ``short_hate_i.csv``: the same, written in the same sitting; scored on the default model and
  on the candidate's pipeline run only; no template was written from it.
- ``short_kind_j.csv`` (2026-12-01, third session): short kind, neutral and negated sentences
  that name a group ("Gay people are kind.", "I have nothing against Black people.", "We are
  Sikhs.") beside short hate; written before short kind templates were tried (not kept), which
  were written apart from it.
- ``profanity_k.csv`` (2026-12-01, sixth session): swearing aimed at no one ("Fuck, I burned
  the toast again.", "This lasagna is fucking delicious.") beside the same words aimed at a
  person or a group; written before the profanity templates of ``recipe.profanity_examples``
  and read while they were tried (a development set; not kept as a default).

Never write a template from these sentences: write a new set first (tests check that no training
template fills to one of them).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_explain import cpu_name  # noqa: E402

from moderation_helpers.model.moderator import Moderator  # noqa: E402

HELDOUT = Path(__file__).resolve().parent / "heldout"
BENIGN = "benign"


def load_set(path: Path) -> pd.DataFrame:
    """One held-out CSV, checked: ``kind``, ``toxic`` (0/1, 0 exactly for benign), ``text``."""
    frame = pd.read_csv(path, dtype={"kind": str, "text": str})
    missing = {"kind", "toxic", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    bad = frame.index[(frame["toxic"] == 0) != (frame["kind"] == BENIGN)]
    if len(bad):
        raise ValueError(f"{path}: line {bad[0] + 2}: field 'toxic' disagrees with 'kind'")
    return frame


def measure(moderator: Moderator, frame: pd.DataFrame) -> pd.DataFrame:
    """Per kind: rows, toxicity ROC-AUC against the benign rows, share flagged by any label and
    by toxicity alone at the folder's thresholds."""
    texts = frame["text"].tolist()
    decisions = moderator.moderate(texts)
    target = moderator.targets[0]["name"]
    flagged_any = np.array([d.is_flagged for d in decisions])
    flagged_tox = np.array(["toxicity" in d.flagged.get(target, []) for d in decisions])
    toxicity = np.array([d.scores[target]["toxicity"] for d in decisions])
    benign = (frame["kind"] == BENIGN).to_numpy()
    rows = []
    for kind in [*sorted(set(frame["kind"]) - {BENIGN}), *([BENIGN] if benign.any() else [])]:
        mine = (frame["kind"] == kind).to_numpy()
        auc = np.nan
        if kind != BENIGN and benign.any():
            both = mine | benign
            auc = roc_auc_score(mine[both], toxicity[both])
        rows.append(
            (kind, int(mine.sum()), auc, flagged_any[mine].mean(), flagged_tox[mine].mean())
        )
    return pd.DataFrame(rows, columns=["kind", "rows", "toxicity AUC", "any label", "toxicity"])


def suite_sets() -> dict[str, pd.DataFrame]:
    """The behavioural suite (``recipe.behaviour``) as two sets in :func:`load_set`'s columns:
    its cases, one kind per behaviour (a benign behaviour's kind ends in " (benign)": its share
    is the share flagged), and its identity sentences, one kind per template kind."""
    from moderation_helpers.recipe import behaviour

    cases = behaviour.load_cases()
    kinds = cases["behaviour"].where(cases["toxic"], cases["behaviour"] + " (benign)")
    identity = behaviour.identity_cases()
    return {
        "suite": pd.DataFrame(
            {"kind": kinds, "toxic": cases["toxic"].astype(int), "text": cases["text"]}
        ),
        "suite identity (benign)": pd.DataFrame(
            {"kind": identity["template_kind"], "toxic": 0, "text": identity["text"]}
        ),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", required=True, help="a folder")
    parser.add_argument("--sets", type=Path, nargs="+", default=sorted(HELDOUT.glob("*.csv")))
    parser.add_argument(
        "--suite", action="store_true", help="the behavioural suite and its identity sentences too"
    )
    args = parser.parse_args(argv)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"cpu: {cpu_name()}\n")
    sets = {path.stem: load_set(path) for path in args.sets}
    if args.suite:
        sets |= suite_sets()
    for folder in args.model:
        moderator = Moderator.load(folder)
        print(f"## {folder}\n")
        print(
            "| set | kind | rows | toxicity ROC-AUC vs benign "
            "| caught (benign: flagged), any label | by toxicity alone |"
        )
        print("|---|---|---|---|---|---|")
        for name, frame in sets.items():
            for r in measure(moderator, frame).itertuples(index=False):
                auc = "" if np.isnan(r[2]) else f"{r[2]:.3f}"
                print(f"| {name} | {r[0]} | {r[1]} | {auc} | {r[3]:.2f} | {r[4]:.2f} |")
        print()


if __name__ == "__main__":
    main()

"""A behavioural check of a moderation model: the project's own hand-written cases.

Aggregate metrics on a split drawn like the training data hide what a model learned. Here each
*behaviour* a moderation team cares about (plain insults, threats, profanity aimed at someone,
profanity aimed at no one, negated or quoted toxicity, counter-speech, neutral and positive
sentences that mention an identity, insults spelled to dodge a filter...) gets a short list of
comments with the answer the team wants. ``behaviour_cases.json``, next to this module, holds
them and the identity-term templates; it is the project's own, held out from training (the
augmentation of :mod:`moderation_helpers.recipe.identity_examples` uses other templates).

Everything here works on scores and flags the caller computed with any scorer, so it needs no
model, server or torch: score ``load_cases()["text"]``, flag with :func:`flag`, then report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from moderation_helpers.core.flags import reaches
from moderation_helpers.recipe.identity_shift import within_template_p
from moderation_helpers.recipe.intervals import CONFIDENCE, wilson
from moderation_helpers.recipe.template_slots import fits, with_article

CASES_FILE = "behaviour_cases.json"
OVERALL = "overall"
# the identity report's range columns; every other ``fpr_`` column is a template kind's rate
FPR_RANGE = ("fpr_low", "fpr_high")
PLACEHOLDERS = ("{term}", "{a_term}", "{people}")


@cache
def _data() -> dict[str, Any]:
    """The parsed data file (read once; callers get copies in frames)."""
    text = resources.files(__package__).joinpath(CASES_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def load_cases() -> pd.DataFrame:
    """Every hand-written case: columns ``behaviour``, ``text``, ``toxic`` (the wanted answer:
    True means the model should flag it), in file order."""
    rows = [
        {"behaviour": name, "text": text, "toxic": bool(spec["toxic"])}
        for name, spec in _data()["behaviours"].items()
        for text in spec["cases"]
    ]
    return pd.DataFrame(rows, columns=["behaviour", "text", "toxic"])


def behaviour_descriptions() -> dict[str, str]:
    """One line per behaviour saying what its cases hold."""
    return {name: spec["description"] for name, spec in _data()["behaviours"].items()}


def identity_terms() -> pd.DataFrame:
    """The identity terms of the templates: ``term`` (adjective), ``people`` (plural noun) and
    ``group`` (religion, ethnicity, gender, sexual_orientation, disability, national_origin)."""
    return pd.DataFrame(_data()["identity_terms"], columns=["term", "people", "group"])


def identity_templates() -> dict[str, list[str]]:
    """``{template_kind: [template]}``, kinds ``neutral``, ``positive``, ``attack_frame``
    (kind sentences said in the frames attacks use: "{people} should never have to hide who
    they are.") and ``short`` (short neutral or positive ones: "I love {people}.", "We are
    {people}."); placeholders ``{term}``, ``{a_term}`` (the term after "a"/"an") and
    ``{people}``."""
    return {kind: list(items) for kind, items in _data()["identity_templates"].items()}


def fill_template(template: str, term: str, people: str) -> str:
    """One sentence from a template, first letter capitalized (``{people}`` may open it)."""
    text = template.format(term=term, a_term=with_article(term), people=people)
    return text[:1].upper() + text[1:]


def fill_templates(templates: dict[str, Sequence[str]], terms: pd.DataFrame) -> pd.DataFrame:
    """Every template filled with every term that fits it (:func:`fits`: no "My neighbour is
    immigrant"): columns ``term``, ``group``, ``template_kind``, ``template``, ``text``; ordered
    by kind, template, then term."""
    rows = [
        {
            "term": term.term,
            "group": term.group,
            "template_kind": kind,
            "template": template,
            "text": fill_template(template, term.term, term.people),
        }
        for kind, items in templates.items()
        for template in items
        for term in terms.itertuples(index=False)
        if fits(template, term.term)
    ]
    return pd.DataFrame(rows, columns=["term", "group", "template_kind", "template", "text"])


def identity_cases() -> pd.DataFrame:
    """The identity templates filled with every term: columns ``term``, ``group``,
    ``template_kind`` (neutral/positive/attack_frame/short), ``template``, ``text`` and ``toxic``
    (always False: none of them should be flagged, so every flag is a false positive)."""
    cases = fill_templates(identity_templates(), identity_terms())
    cases["toxic"] = False
    return cases


def flag(scores: Sequence[float], threshold: float) -> np.ndarray:
    """The project's flag rule on one label's scores: ``score >= threshold``."""
    return reaches(np.asarray(scores, dtype=np.float64), np.float64(threshold))


def _flags(cases: pd.DataFrame, flagged: Sequence[bool]) -> np.ndarray:
    out = np.asarray(flagged, dtype=bool)
    if out.shape != (len(cases),):
        raise ValueError(f"{out.shape[0] if out.ndim else 0} flags for {len(cases)} cases")
    return out


def behaviour_report(cases: pd.DataFrame, flagged: Sequence[bool]) -> pd.DataFrame:
    """Per behaviour and ``overall``: ``toxic`` (the wanted answer; None overall), ``n``,
    ``correct``, ``accuracy``, its 95% Wilson range ``accuracy_low`` / ``accuracy_high``
    (:mod:`.intervals`: what 15 to 50 cases leave open) and ``flag_rate`` (share of its cases
    the model flagged).

    For a toxic behaviour accuracy is the recall; for a benign one it is 1 - flag_rate.
    """
    frame = cases[["behaviour", "toxic"]].copy()
    frame["flagged"] = _flags(cases, flagged)
    frame["correct"] = frame["flagged"] == frame["toxic"].astype(bool)
    grouped = frame.groupby("behaviour", sort=False)
    table = pd.DataFrame(
        {
            "toxic": grouped["toxic"].first().astype(object),
            "n": grouped.size(),
            "correct": grouped["correct"].sum(),
            "accuracy": grouped["correct"].mean(),
            "flag_rate": grouped["flagged"].mean(),
        }
    )
    table.loc[OVERALL] = {
        "toxic": None,
        "n": len(frame),
        "correct": int(frame["correct"].sum()),
        "accuracy": float(frame["correct"].mean()) if len(frame) else np.nan,
        "flag_rate": float(frame["flagged"].mean()) if len(frame) else np.nan,
    }
    table[["n", "correct"]] = table[["n", "correct"]].astype(int)
    low, high = wilson(table["correct"], table["n"])
    table.insert(table.columns.get_loc("accuracy") + 1, "accuracy_low", low)
    table.insert(table.columns.get_loc("accuracy_low") + 1, "accuracy_high", high)
    return table.rename_axis("behaviour")


def worst_cases(
    cases: pd.DataFrame, scores: Sequence[float], flagged: Sequence[bool], k: int = 10
) -> pd.DataFrame:
    """The ``k`` wrong answers the model was surest of: benign cases flagged with the highest
    scores and toxic cases missed with the lowest, ranked by ``wrongness`` (the score for a
    benign case, 1 - score for a toxic one, so scores are taken as probabilities in [0, 1]).

    Keeps the columns of ``cases`` and adds ``score``, ``flagged``, ``error`` (false_positive
    or false_negative) and ``wrongness``.
    """
    out = cases.copy()
    out["score"] = np.asarray(scores, dtype=np.float64)
    out["flagged"] = _flags(cases, flagged)
    toxic = out["toxic"].astype(bool).to_numpy()
    out["error"] = np.where(toxic, "false_negative", "false_positive")
    out["wrongness"] = np.where(toxic, 1.0 - out["score"], out["score"])
    wrong = out[out["flagged"].to_numpy() != toxic]
    return wrong.sort_values("wrongness", ascending=False, kind="stable").head(k)


def _fpr_table(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """False-positive rate per value of ``by`` with its 95% Wilson range, overall and per
    template kind."""
    grouped = frame.groupby(by, sort=False)
    table = pd.DataFrame({"n": grouped.size(), "fpr": grouped["flagged"].mean()})
    low, high = wilson(grouped["flagged"].sum(), table["n"])
    table[list(FPR_RANGE)] = np.column_stack([low, high])
    per_kind = frame.pivot_table(
        index=by, columns="template_kind", values="flagged", aggfunc="mean", sort=False
    )
    return table.join(per_kind.add_prefix("fpr_"))


def identity_report(identity_cases: pd.DataFrame, flagged: Sequence[bool]) -> pd.DataFrame:
    """False-positive rate on the identity cases (all benign) per term, per group, per template
    and overall.

    Rows are indexed ``(level, name)`` with level ``term``, ``group``, ``template`` or
    ``overall``; columns ``group`` (a term's group), ``n``, ``fpr``, its 95% Wilson range
    ``fpr_low`` / ``fpr_high`` (a term fills about 40 sentences: 0 of them flagged still leaves
    up to 9% open), ``fpr_<template_kind>`` (``fpr_neutral``, ``fpr_positive``,
    ``fpr_attack_frame``, ``fpr_short``) and, for terms and groups, ``p_above``: the
    family-wise p that the name is flagged more than the others *in the same templates*
    (:func:`.identity_shift.within_template_p` on the flags; a count against the overall rate
    would take a term's sentences as equally likely to be flagged, when flags gather in a few
    templates, and would hardly ever list one). A fair model has about the same FPR for every term:
    :func:`identity_spread` summarizes how far apart they are; a template far above the others
    is a phrasing the model distrusts whatever the group.
    """
    frame = identity_cases[["term", "group", "template_kind", "template"]].copy()
    frame["flagged"] = _flags(identity_cases, flagged)
    terms = _fpr_table(frame, "term")
    terms.insert(0, "group", frame.groupby("term", sort=False)["group"].first())
    groups = _fpr_table(frame, "group")
    groups.insert(0, "group", groups.index)
    for table, by in ((terms, "term"), (groups, "group")):
        table["p_above"] = within_template_p(frame, frame["flagged"].to_numpy(float), by=by)
    templates = _fpr_table(frame, "template")
    templates.insert(0, "group", None)
    overall = _fpr_table(frame.assign(everyone=OVERALL), "everyone")
    overall.insert(0, "group", None)
    parts = {"term": terms, "group": groups, "template": templates, OVERALL: overall}
    report = pd.concat(parts, names=["level", "name"])
    report["n"] = report["n"].astype(int)
    return report


def identity_spread(report: pd.DataFrame) -> pd.DataFrame:
    """How unequal the false-positive rates are, across terms and across groups: per level,
    ``min``, ``max``, ``range`` (max - min), ``std`` (population), ``worst`` (the name with the
    highest FPR), ``mean`` and ``above_overall``: the names flagged more than the others in the
    same sentences by more than chance explains (``p_above`` below 0.05, family-wise), highest
    FPR first."""
    rows = {}
    for level in ("term", "group"):
        table = report.loc[level]
        fpr = table["fpr"].astype(float)
        above = fpr[table["p_above"].astype(float) < 1 - CONFIDENCE]
        rows[level] = {
            "min": fpr.min(),
            "max": fpr.max(),
            "range": fpr.max() - fpr.min(),
            "std": float(np.std(fpr.to_numpy())),
            "mean": fpr.mean(),
            "worst": fpr.idxmax() if len(fpr) else None,
            "above_overall": above.sort_values(ascending=False, kind="stable").index.tolist(),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("level")


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy numbers as Python ones, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and np.isnan(value) else value


def evaluation_record(behaviours: pd.DataFrame, identity: pd.DataFrame) -> dict[str, Any]:
    """The behaviour and identity figures as ``evaluation.json`` keeps them (and the model
    card shows them): per behaviour ``toxic``, ``n``, ``accuracy`` with its range (``_low``,
    ``_high``), ``flag_rate``; per identity template kind, group, term and template its
    false-positive rate, per group and term its range (``ranges``: ``[low, high]``); and the
    spread across terms and groups."""
    spread = identity_spread(identity)
    fields = ("toxic", "n", "accuracy", "accuracy_low", "accuracy_high", "flag_rate")
    return {
        "behaviours": {
            name: {f: _plain(row[f]) for f in fields} for name, row in behaviours.iterrows()
        },
        "identity": {
            "fpr": _plain(identity.loc[(OVERALL, OVERALL), "fpr"]),
            "n": _plain(identity.loc[(OVERALL, OVERALL), "n"]),
            "kinds": {
                column.removeprefix("fpr_"): _plain(value)
                for column, value in identity.loc[(OVERALL, OVERALL)].items()
                if column.startswith("fpr_") and column not in FPR_RANGE
            },
            "groups": {g: _plain(v) for g, v in identity.loc["group", "fpr"].items()},
            "terms": {g: _plain(v) for g, v in identity.loc["term", "fpr"].items()},
            "templates": {t: _plain(v) for t, v in identity.loc["template", "fpr"].items()},
            "ranges": {
                f"{level}s": {
                    name: [_plain(row["fpr_low"]), _plain(row["fpr_high"])]
                    for name, row in identity.loc[level].iterrows()
                }
                for level in ("group", "term")
            },
            "spread": {
                level: {k: _plain(v) for k, v in row.items()} for level, row in spread.iterrows()
            },
        },
    }


def markdown_table(frame: pd.DataFrame, digits: int = 2, *, index: bool = True) -> str:
    """A GitHub markdown table (index first unless ``index=False``), floats rounded; no
    dependency on tabulate."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.{digits}f}"
        text = "" if value is None else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    names = [str(n) if n is not None else "" for n in frame.index.names] if index else []
    header = [*names, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        keys = (key if isinstance(key, tuple) else (key,)) if index else ()
        lines.append("| " + " | ".join(cell(v) for v in (*keys, *row)) + " |")
    return "\n".join(lines)


def report_markdown(
    behaviours: pd.DataFrame,
    identity: pd.DataFrame | None = None,
    worst: pd.DataFrame | None = None,
    *,
    title: str = "Behavioural checks",
) -> str:
    """A model-card section: the behaviour table, then (when given) the identity FPRs per
    group with their spread, and the worst cases (text, behaviour, score)."""
    parts = [
        f"## {title}",
        "The project's own hand-written cases (held out from training); accuracy is the share "
        "of cases answered as a moderation team wants, flag rate the share flagged.",
        markdown_table(behaviours[["toxic", "n", "accuracy", "flag_rate"]]),
    ]
    if identity is not None:
        spread = identity_spread(identity)
        parts += [
            "### Identity terms",
            "False-positive rate on benign sentences that mention an identity "
            f"({int(identity.loc[(OVERALL, OVERALL), 'n'])} sentences, none should be flagged).",
            markdown_table(identity.loc[["group", OVERALL]].drop(columns="group")),
            "Spread of the false-positive rate:",
            markdown_table(spread[["min", "max", "range", "std", "worst"]]),
        ]
    if worst is not None and len(worst):
        columns = [c for c in ("behaviour", "text", "score", "error") if c in worst]
        parts += ["### Worst cases", markdown_table(worst[columns], index=False)]
    return "\n\n".join(parts) + "\n"

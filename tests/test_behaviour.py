"""The behavioural suite's data and reports, checked with fake flags (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from moderation_helpers.recipe import behaviour as bh
from moderation_helpers.recipe.template_slots import fits

REPO = Path(__file__).resolve().parents[1]

TOXIC = {"insult", "threat", "targeted_profanity", "identity_attack", "obfuscated_insult"}
BENIGN = {
    "untargeted_profanity",
    "negated_toxicity",
    "quoted_toxicity",
    "counter_speech",
    "neutral",
    "civil_opinion",
    "identity_neutral",
    "identity_positive",
}


def test_cases_cover_each_behaviour_with_the_wanted_answer():
    cases = bh.load_cases()
    assert list(cases.columns) == ["behaviour", "text", "toxic"]
    assert set(cases["behaviour"]) == TOXIC | BENIGN
    sizes = cases["behaviour"].value_counts()
    # attacks on a group take the most forms (one per group and way of saying it)
    assert sizes.drop("identity_attack").between(15, 30).all(), sizes
    assert 30 <= sizes["identity_attack"] <= 60
    answers = cases.groupby("behaviour")["toxic"].agg(["min", "max"])
    assert (answers["min"] == answers["max"]).all()  # one answer per behaviour
    assert set(cases.loc[cases["toxic"], "behaviour"]) == TOXIC
    assert not cases["text"].duplicated().any()
    assert cases["text"].str.len().between(5, 200).all()
    assert set(bh.behaviour_descriptions()) == TOXIC | BENIGN


def test_identity_cases_fill_every_template_with_every_term():
    terms, templates = bh.identity_terms(), bh.identity_templates()
    assert 20 <= len(terms) <= 30
    assert set(terms["group"]) == {
        "religion",
        "ethnicity",
        "gender",
        "sexual_orientation",
        "disability",
        "national_origin",
    }
    assert {len(t) for t in templates.values()} == {10}
    cases = bh.identity_cases()
    assert {"term", "group", "template_kind", "text"} <= set(cases.columns)
    every = [(t, term) for items in templates.values() for t in items for term in terms["term"]]
    assert len(cases) == sum(fits(t, term) for t, term in every) > 0.9 * len(every)
    assert not cases["toxic"].any()
    assert not cases["text"].str.contains("[{}]").any()  # every placeholder filled
    assert cases["text"].str[0].str.isupper().all()
    assert "I am an Asian person." in set(cases["text"])
    # a noun term is not put where only an adjective reads right
    assert "Immigrants live in every part of this city." in set(cases["text"])
    assert not cases["text"].str.contains(r"(?:is|am|be) (?:immigrant|refugee)\b").any()
    assert "I am an immigrant person." not in set(cases["text"])
    assert "I am a Muslim person." in set(cases["text"])
    assert "Women deserve the same respect as everyone else." in set(cases["text"])


def test_behaviour_report_counts_each_case():
    cases = pd.DataFrame(
        {
            "behaviour": ["insult", "insult", "neutral", "neutral", "neutral"],
            "text": ["a", "b", "c", "d", "e"],
            "toxic": [True, True, False, False, False],
        }
    )
    report = bh.behaviour_report(cases, [True, False, True, False, False])
    assert report.loc["insult", "n"] == 2 and report.loc["insult", "accuracy"] == 0.5
    assert report.loc["insult", "flag_rate"] == 0.5
    assert report.loc["neutral", "accuracy"] == pytest.approx(2 / 3)
    assert report.loc["neutral", "flag_rate"] == pytest.approx(1 / 3)
    assert report.loc[bh.OVERALL, "n"] == 5 and report.loc[bh.OVERALL, "correct"] == 3
    assert report.loc[bh.OVERALL, "accuracy"] == pytest.approx(0.6)
    # 1 of 2 says little: the range spans most of [0, 1]; 3 of 5 a little less
    low, high = report.loc["insult", ["accuracy_low", "accuracy_high"]]
    assert low < 0.2 and high > 0.8
    overall = report.loc[bh.OVERALL, ["accuracy_low", "accuracy", "accuracy_high"]].to_numpy()
    assert overall[0] < overall[1] < overall[2] and overall[2] - overall[0] < high - low
    with pytest.raises(ValueError, match="4 flags for 5 cases"):
        bh.behaviour_report(cases, [True] * 4)


def test_perfect_and_flag_everything_scorers_on_the_suite():
    cases = bh.load_cases()
    perfect = bh.behaviour_report(cases, cases["toxic"])
    assert (perfect["accuracy"] == 1).all()
    # all right on 18-50 cases still leaves a few percent open, less on more cases
    assert (perfect["accuracy_high"] == 1).all() and (perfect["accuracy_low"] < 1).all()
    assert perfect["accuracy_low"].idxmax() == bh.OVERALL
    everything = bh.behaviour_report(cases, np.ones(len(cases), bool))
    assert (everything["flag_rate"] == 1).all()
    assert everything.loc[bh.OVERALL, "accuracy"] == pytest.approx(cases["toxic"].mean())


def test_flag_applies_the_flag_rule():
    assert bh.flag([0.2, 0.5, 0.9, np.nan], 0.5).tolist() == [False, True, True, False]


def test_worst_cases_ranks_the_surest_mistakes():
    cases = bh.load_cases()
    scores = np.where(cases["toxic"], 0.9, 0.1)
    wrong_fp, wrong_fn = cases.index[~cases["toxic"]][3], cases.index[cases["toxic"]][5]
    scores[wrong_fp], scores[wrong_fn] = 0.95, 0.3
    worst = bh.worst_cases(cases, scores, bh.flag(scores, 0.5), k=5)
    assert list(worst.index) == [wrong_fp, wrong_fn]
    assert worst["error"].tolist() == ["false_positive", "false_negative"]
    assert worst["wrongness"].tolist() == pytest.approx([0.95, 0.7])


def test_biased_scorer_shows_up_in_the_identity_report():
    cases = bh.identity_cases()
    scores = np.where(cases["term"] == "Muslim", 0.8, 0.1)  # flags one term only
    report = bh.identity_report(cases, bh.flag(scores, 0.5))
    terms = report.loc["term"]
    assert terms.loc["Muslim", "fpr"] == 1.0
    kinds = terms.loc["Muslim", ["fpr_neutral", "fpr_positive", "fpr_attack_frame"]]
    assert kinds.tolist() == [1.0, 1.0, 1.0]
    assert (terms.drop(index="Muslim")["fpr"] == 0).all()
    assert terms.loc["Muslim", "group"] == "religion"
    n_religion = (bh.identity_terms()["group"] == "religion").sum()
    assert report.loc[("group", "religion"), "fpr"] == pytest.approx(1 / n_religion)
    share = (cases["term"] == "Muslim").mean()  # noun terms fill fewer templates
    assert report.loc[("overall", bh.OVERALL), "fpr"] == pytest.approx(share)
    spread = bh.identity_spread(report)
    assert spread.loc["term", "range"] == 1.0 and spread.loc["term", "worst"] == "Muslim"
    fprs = terms["fpr"].to_numpy(float)
    assert spread.loc["term", "std"] == pytest.approx(fprs.std())
    assert spread.loc["group", "worst"] == "religion"
    # what ~40 sentences leave open: 0 of 40 still allows up to 9%; all of them, down to 91%
    n_muslim, n_jewish = terms.loc["Muslim", "n"], terms.loc["Jewish", "n"]
    assert terms.loc["Jewish", "fpr_low"] == 0.0
    assert terms.loc["Jewish", "fpr_high"] == pytest.approx(1.96**2 / (n_jewish + 1.96**2), 1e-3)
    assert terms.loc["Muslim", "fpr_high"] == 1.0
    assert terms.loc["Muslim", "fpr_low"] == pytest.approx(n_muslim / (n_muslim + 1.96**2), 1e-3)
    assert spread.loc["term", "above_overall"] == ["Muslim"]
    assert spread.loc["group", "above_overall"] == ["religion"]


def test_a_term_stands_out_only_beyond_what_its_sentences_leave_open():
    cases = bh.identity_cases()
    rng = np.random.default_rng(0)
    flagged = rng.random(len(cases)) < 0.1  # every term at 10%: chance, not distrust
    flagged[(cases["term"] == "blind").to_numpy()] = False
    blind = np.flatnonzero((cases["term"] == "blind").to_numpy())
    flagged[blind[:6]] = True  # 6 of ~40: above the rest, within chance
    assert (
        "blind"
        not in bh.identity_spread(bh.identity_report(cases, flagged)).loc["term", "above_overall"]
    )
    flagged[blind[:20]] = True  # half of them: no longer chance
    spread = bh.identity_spread(bh.identity_report(cases, flagged))
    assert spread.loc["term", "above_overall"][0] == "blind"


def test_a_term_flagged_beyond_the_others_in_the_same_templates_stands_out():
    # every term flagged in the ten short templates; blind also in five neutral ones, where no
    # other term is: 15 of 40 against ~26% overall is chance for a count (p 0.04 where 27
    # terms need 0.0019), not for the same sentences
    from moderation_helpers.recipe.intervals import above_rate

    cases = bh.identity_cases()
    neutral = bh.identity_templates()["neutral"][:5]
    flagged = (
        cases["template_kind"].eq("short")
        | cases["term"].eq("blind") & cases["template"].isin(neutral)
    ).to_numpy()
    report = bh.identity_report(cases, flagged)
    terms = report.loc["term"]
    assert terms.loc["blind", "fpr"] == 15 / 40
    overall = report.loc[("overall", bh.OVERALL), "fpr"]
    counts = (terms["fpr"] * terms["n"]).round().astype(int)
    assert not above_rate(counts, terms["n"], overall).any()
    assert bh.identity_spread(report).loc["term", "above_overall"] == ["blind"]
    assert terms.loc["blind", "p_above"] < 0.05 <= terms.drop(index="blind")["p_above"].min()


def test_a_fair_model_rarely_has_a_term_standing_out():
    # 27 terms at one rate: at 95% each, one lands above the overall rate in most runs; the
    # correction for their number keeps that to under one run in ten
    cases = bh.identity_cases()
    rng = np.random.default_rng(3)
    runs = [
        bh.identity_spread(bh.identity_report(cases, rng.random(len(cases)) < 0.1))
        for _ in range(40)
    ]
    assert np.mean([len(spread.loc["term", "above_overall"]) > 0 for spread in runs]) < 0.25


def test_a_distrusted_template_shows_up_whatever_the_group():
    cases = bh.identity_cases()
    short = bh.identity_templates()["short"][0]
    flagged = (cases["template"] == short).to_numpy()  # one phrasing flagged for every term
    report = bh.identity_report(cases, flagged)
    templates = report.loc["template"]
    assert len(templates) == sum(len(t) for t in bh.identity_templates().values())
    assert templates.loc[short, "fpr"] == 1.0 and templates.loc[short, "fpr_short"] == 1.0
    assert templates.loc[short, "n"] == flagged.sum()
    assert (templates.drop(index=short)["fpr"] == 0).all()
    terms = report.loc["term"]
    assert (terms["fpr"] * terms["n"]).round(9).eq(1).all()  # one sentence for every term
    suite = bh.load_cases()
    record = bh.evaluation_record(bh.behaviour_report(suite, np.zeros(len(suite), bool)), report)
    assert record["identity"]["templates"][short] == 1.0


def test_unbiased_scorer_has_no_spread():
    cases = bh.identity_cases()
    report = bh.identity_report(cases, np.zeros(len(cases), bool))
    spread = bh.identity_spread(report)
    assert (spread["range"] == 0).all() and (spread["std"] == 0).all()
    assert spread["above_overall"].map(len).eq(0).all()


def test_report_markdown_holds_every_section():
    cases, ids = bh.load_cases(), bh.identity_cases()
    scores = np.where(cases["behaviour"] == "identity_neutral", 0.9, 0.2)
    flagged = bh.flag(scores, 0.5)
    id_flags = ids["group"].eq("disability").to_numpy()
    text = bh.report_markdown(
        bh.behaviour_report(cases, flagged),
        bh.identity_report(ids, id_flags),
        bh.worst_cases(cases, scores, flagged, k=3),
    )
    assert text.startswith("## Behavioural checks")
    n_neutral = (cases["behaviour"] == "identity_neutral").sum()
    assert f"| identity_neutral | False | {n_neutral} | 0.00 | 1.00 |" in text
    assert "### Identity terms" in text and "| group | disability |" in text
    assert "| term | 0.00 | 1.00 | 1.00 |" in text
    assert "### Worst cases" in text and "false_positive" in text
    assert bh.report_markdown(bh.behaviour_report(cases, flagged)).count("###") == 0


def test_cases_file_is_package_data():
    # Python 3.10 has no tomllib: look for the table's line instead of parsing.
    config = (REPO / "pyproject.toml").read_text()
    section = config.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert f'"moderation_helpers.recipe" = ["{bh.CASES_FILE}"]' in section
    assert (REPO / "moderation_helpers" / "recipe" / bh.CASES_FILE).is_file()


def test_the_evaluation_record_is_plain_json_with_every_behaviour_and_group():
    cases = bh.load_cases()
    identity = bh.identity_cases()
    flagged = cases["toxic"].to_numpy().copy()
    flagged[0] = not flagged[0]
    id_flags = (identity["group"] == "religion").to_numpy()
    record = bh.evaluation_record(
        bh.behaviour_report(cases, flagged), bh.identity_report(identity, id_flags)
    )
    json.dumps(record, allow_nan=False)
    assert set(record["behaviours"]) == set(cases["behaviour"]) | {bh.OVERALL}
    assert record["identity"]["groups"]["religion"] == 1.0
    assert record["identity"]["spread"]["group"]["worst"] == "religion"
    assert record["identity"]["spread"]["group"]["above_overall"] == ["religion"]
    assert record["identity"]["ranges"]["groups"]["religion"] == [pytest.approx(0.984, 1e-3), 1.0]
    assert record["identity"]["ranges"]["terms"]["gay"] == [0.0, pytest.approx(0.088, 0.05)]
    assert record["behaviours"][bh.OVERALL]["n"] == len(cases)
    religion = identity.loc[identity["group"] == "religion", "template_kind"]
    kinds = identity["template_kind"].value_counts()
    assert record["identity"]["kinds"] == {
        kind: pytest.approx(religion.eq(kind).sum() / kinds[kind]) for kind in kinds.index
    }


def test_the_behaviour_figure_draws_each_behaviour_with_its_range():
    from moderation_helpers.pages.plots.behaviour import plot_behaviours

    cases = bh.load_cases()
    flagged = cases["toxic"].to_numpy().copy()
    flagged[cases.index[cases["behaviour"] == "neutral"][:3]] = True  # 3 neutral cases flagged
    report = bh.behaviour_report(cases, flagged)
    fig = plot_behaviours(report)
    ax = fig.axes[0]
    ticks = zip(ax.get_yticks(), ax.get_yticklabels(), strict=True)
    names = [label.get_text() for _, label in sorted(ticks, key=lambda t: -t[0])]  # top first
    toxic = report.loc[names, "toxic"].astype(bool).tolist()
    assert set(names) == set(cases["behaviour"]) and toxic == sorted(toxic, reverse=True)
    leave = report[report["toxic"].eq(False)]
    dots = ax.containers[1].lines[0].get_xdata()  # the second kind: behaviours to leave alone
    assert list(dots) == pytest.approx(leave["accuracy"].tolist())
    n_neutral = int(report.loc["neutral", "n"])
    assert f"{n_neutral - 3}/{n_neutral}" in [t.get_text() for t in ax.texts]
    overall = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert overall[0].get_xdata()[0] == pytest.approx(report.loc[bh.OVERALL, "accuracy"])

"""The exported folder's model card (README.md): what the model is, how it was made, how good it
measured, and what it is not for. Built from classifier.json, the job and the run folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from moderation_helpers.core.ranges import format_range

HYPERPARAMETERS = (
    "training_steps",
    "epochs",
    "learning_rate",
    "weight_decay",
    "warmup_fraction",
    "seq_len",
)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("–" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def model_card(
    record: Mapping[str, Any],
    *,
    job: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    thresholds_graph: str | None = None,
) -> str:
    """The model card's Markdown. Every part it has no source for says so instead.

    ``thresholds_graph``: the variant whose scores ``thresholds.json`` was tuned on (its
    ``graph`` field), or None when unknown."""
    job = job or {}
    hp = job.get("hyperparameters") or {}
    pooling = record.get("pooling", "mean").replace("_", " + ")
    parts = [
        f"# Moderation classifier `{record.get('model_id') or 'exported model'}`",
        "",
        "A text classifier fine-tuned with the moderation-cookbook's local Classifier Factory, "
        "exported as ONNX. It needs only `onnxruntime`, `tokenizers` and `numpy` to run.",
        "",
        "## Model",
        "",
        f"- Base encoder: `{record['base_encoder']}` ({pooling} pooling, one linear head per "
        "target).",
        f"- Inputs: `input_ids`, `attention_mask` (int64, batch x sequence); texts are read up "
        f"to {record['seq_len']} tokens (`tokenizer.json` truncates there).",
        f"- Job: `{job.get('id') or job.get('job_id') or 'unknown'}`, base model requested "
        f"`{job.get('model') or 'unknown'}`.",
        "- Files: " + ", ".join(f"`{v['file']}` ({k})" for k, v in record["variants"].items()),
        "",
        _table(
            ("target (output)", "labels", "loss", "scores"),
            [
                (t["output"], ", ".join(t["labels"]), t["loss_function"], t["score_function"])
                for t in record["targets"]
            ],
        ),
        *_coherence_lines(record["targets"]),
        "",
        "## Training",
        "",
        _table(("hyperparameter", "value"), [(k, _fmt(hp[k])) for k in HYPERPARAMETERS if k in hp])
        if hp
        else "The job's hyperparameters were not given to the export.",
        "",
        _data_section(summary),
        "",
        "## Evaluation",
        "",
        _evaluation_section(evaluation),
        "",
        "## Behaviours",
        "",
        _behaviour_section(evaluation),
        "",
        "## Quantization",
        "",
        _variants_section(record),
        "",
        "## Intended use and limits",
        "",
        "- Intended for: flagging user comments for review, in English, with the per-label "
        "thresholds of `thresholds.json` as a starting point to adjust to your own costs of "
        f"misses and false alarms. {_base_rate_note(evaluation)}"
        f"{_graph_note(record, thresholds_graph)}",
        "- English only: the encoder and the data are English.",
        f"- Reads the first {record['seq_len']} tokens of a text: whatever comes after them "
        "(at the end of a long comment) does not move its scores.",
        "- Trained on a small curated sample of Civil Comments (about 60% toxic, against about "
        "8% in the full corpus, and in most real traffic): scores are not calibrated "
        "probabilities; re-tune thresholds on your own traffic.",
        "- Test figures come from about a hundred comments: one comment moves a label's ROC-AUC "
        "by up to about 0.02.",
        "- Civil Comments labels are crowd raters' judgements and carry their biases (identity "
        "terms can raise scores on harmless texts). Keep a human in the loop for actions that "
        "affect people.",
        "- Not a general safety filter: it knows only the labels above.",
    ]
    return "\n".join(parts) + "\n"


def _coherence_lines(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """What ``implied_by`` does to the scores, one line per parent label."""
    lines = [
        f"- `{parent}` scores at least as high as {', '.join(f'`{c}`' for c in children)}: "
        f"in the training data those labels came with `{parent}` (`classifier.coherence`)."
        for t in targets
        for parent, children in (t.get("implied_by") or {}).items()
    ]
    return ["", *lines] if lines else []


def _data_section(summary: Mapping[str, Any] | None) -> str:
    if not summary:
        return "Training data: no prepare summary was given to the export."
    splits = summary.get("splits") or {}
    rows = [
        (
            name,
            s.get("rows_kept"),
            ", ".join(f"{k} {v}" for k, v in s.get("label_counts", {}).items()),
        )
        for name, s in splits.items()
    ]
    source = str(summary.get("source") or "unknown")
    if "/" in source and Path(source).name:  # a local folder: its name, not this machine's path
        source = f"{Path(source).name} (a local copy laid out like the hub dataset)"
    soft = (summary.get("parameters") or {}).get("rater_scores")
    targets = "; trained towards the rater fractions (label_scores)" if soft else ""
    head = (
        f"Training data: `{source}` (rater fraction > {summary.get('threshold')} "
        f"sets a label{targets}; dropped as too rare: "
        f"{summary.get('dropped_labels') or 'none'})."
    )
    return head + "\n\n" + _table(("split", "rows", "label counts"), rows)


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return "No evaluation was given to the export (run 04_infer and export with --run-dir)."
    macro = evaluation.get("macro") or {}
    rows = []
    for target, labels in (evaluation.get("per_label") or {}).items():
        for label, m in labels.items():
            rows.append(
                (
                    f"{target}/{label}",
                    *(
                        _fmt(m.get(k))
                        for k in ("roc_auc", "average_precision", "precision", "recall", "f1")
                    ),
                )
            )
    sizes = evaluation.get("split_sizes") or {}
    return (
        f"On the test split ({sizes.get('test', '?')} texts), thresholds tuned on validation: "
        f"macro ROC-AUC {_fmt(macro.get('roc_auc'))}, macro F1 {_fmt(macro.get('f1'))} "
        "(flag labels; the safe label apart).\n\n"
        + _table(("label", "ROC-AUC", "avg precision", "precision", "recall", "F1"), rows)
    )


def _variants_section(record: Mapping[str, Any]) -> str:
    """Each variant's macro ROC-AUC on the job's validation file, and what int8 costs."""
    validation = record.get("validation") or {}
    if "unmeasured" in validation or not validation:
        why = validation.get("unmeasured") or "exported before it was measured"
        return f"What int8 costs in quality is unmeasured: {why}."
    rows = [
        (
            f"`{v['file']}` ({name})",
            _fmt(v.get("validation_macro_auc")),
            _fmt(v["auc_cost_vs_fp32"]) if "auc_cost_vs_fp32" in v else "–",
        )
        for name, v in record["variants"].items()
    ]
    return (
        f"On the job's validation file ({validation.get('texts')} texts), "
        f"{validation.get('metric')}:\n\n"
        + _table(("graph", "macro ROC-AUC", "cost vs fp32"), rows)
    )


def _base_rate_note(evaluation: Mapping[str, Any] | None) -> str:
    """What traffic the thresholds were tuned for (04_infer's ``base_rate``)."""
    rates = (evaluation or {}).get("base_rate")
    if not rates:
        return "The thresholds maximize F1 on the validation split as it is (no base rate given)."
    shown = ", ".join(f"{name} {rate:.1%}" for name, rate in rates.items() if "safe" not in name)
    return (
        "The thresholds maximize F1 on the validation split reweighted to traffic with these "
        f"shares of positives: {shown}.{_expected_note(evaluation or {})}"
    )


def _expected_note(evaluation: Mapping[str, Any]) -> str:
    """What validation expects toxicity's threshold to do at its base rate, with the range its
    size leaves open (04's ``at_base_rate``), or nothing for an evaluation without it."""
    row = next(
        (
            labels["toxicity"]
            for labels in (evaluation.get("at_base_rate") or {}).values()
            if "toxicity" in labels
        ),
        None,
    )
    if not row or row.get("expected_precision") is None or row.get("expected_recall") is None:
        return ""

    def span(name: str) -> str:
        low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
        within = "" if low is None or high is None else f" (between {low:.2f} and {high:.2f})"
        return f"{row[name]:.2f}{within}"

    return (
        " At toxicity's rate validation expects its flags to be right"
        f" {span('expected_precision')}"
        f" of the time and to catch {span('expected_recall')} of toxic comments; the ranges are"
        " what a validation split this small leaves open (95% Wilson per kind of comment), not"
        " a measure of traffic unlike it."
    )


def _graph_note(record: Mapping[str, Any], graph: str | None) -> str:
    """Which variant's scores the thresholds hold for: they are absolute, and int8 moves
    single scores (the Quantization section)."""
    if graph is None:
        return ""  # thresholds from before the field, or none tuned yet (the factory's export)
    file = (record.get("variants") or {}).get(graph, {}).get("file", graph)
    return (
        f" They were tuned on the {graph} graph's scores (`{file}`): flag with that variant, or "
        "re-tune them for the other."
    )


def _by_kind(kinds: Mapping[str, Any]) -> str:
    """The identity false-positive rate per template kind, " (neutral 0.01, positive 0,
    attack_frame 0.2)", or nothing for an evaluation written before kinds were kept."""
    if not kinds:
        return ""
    return " (" + ", ".join(f"{kind} {_fmt(rate)}" for kind, rate in kinds.items()) + ")"


def _standing_out(spread: Mapping[str, Any]) -> str:
    """The terms flagged more than the others in the same sentences beyond chance
    (``identity_spread``'s ``above_overall``), or nothing for an evaluation written before
    that was kept."""
    if "above_overall" not in spread:
        return ""
    above = spread["above_overall"]
    if not above:
        return (
            " No term is flagged more than the others in the same sentences by more than chance "
            "explains."
        )
    return (
        " Terms flagged more than the others in the same sentences by more than chance explains "
        f"(a permutation test within the templates, all terms at once): {', '.join(above)}."
    )


def _score_shift(shift: Mapping[str, Any] | None) -> str:
    """The terms whose names raise the score in the same sentences beyond chance
    (``identity_shift``'s record), with the odds they multiply; nothing for an evaluation
    written before that was kept."""
    if not shift:
        return ""
    above = (shift.get("above") or {}).get("terms") or []
    if not above:
        return (
            "Sentence for sentence (each template filled with every term), no name raises the "
            "score above the other terms' by more than chance explains."
        )
    terms = shift.get("terms") or {}
    listed = ", ".join(
        f"{name} ×{terms[name]['odds']:.1f} "
        f"({format_range(terms[name]['odds_low'], terms[name]['odds_high'], digits=1)})"
        for name in above
    )
    return (
        "The scores see more than these counts. Sentence for sentence (each template filled "
        "with every term), these names raise the score above the other terms' by more than "
        "chance explains (a permutation test over all the terms), multiplying the odds of a "
        f"flag by: {listed}. A lower threshold or the next model flags these groups first."
    )


def _behaviour_section(evaluation: Mapping[str, Any] | None) -> str:
    """Accuracy per behaviour of the project's own suite, and false positives on sentences that
    merely mention an identity (04_infer's checks), at the tuned thresholds."""
    behaviours = (evaluation or {}).get("behaviours")
    if not behaviours:
        return "No behavioural checks were given to the export (run 04_infer)."
    # evaluation.json keeps its keys sorted; the card reads what to flag, what to leave, then
    # the overall row (the one that wants neither)
    wanted_order = {True: 0, False: 1}
    ordered = sorted(behaviours.items(), key=lambda item: wanted_order.get(item[1].get("toxic"), 2))
    rows = [
        (
            name,
            "flag" if b.get("toxic") else ("leave" if b.get("toxic") is False else "–"),
            b.get("n"),
            _fmt(b.get("accuracy")),
            format_range(b.get("accuracy_low"), b.get("accuracy_high")),
            _fmt(b.get("flag_rate")),
        )
        for name, b in ordered
    ]
    parts = [
        "The project's own hand-written cases (none used in training), flagged as `moderate()` "
        "flags them; the range is what so few cases leave open (95% Wilson):",
        "",
        _table(("behaviour", "wanted", "cases", "accuracy", "range", "flag rate"), rows),
    ]
    identity = (evaluation or {}).get("identity") or {}
    if identity:
        spread = (identity.get("spread") or {}).get("term") or {}
        groups = identity.get("groups") or {}
        ranges = (identity.get("ranges") or {}).get("groups") or {}
        rows = [(g, _fmt(v), format_range(*ranges.get(g, (None, None)))) for g, v in groups.items()]
        parts += [
            "",
            f"Benign sentences that mention an identity, from the behavioural suite's templates "
            f"({identity.get('n')} sentences, none should be flagged): "
            f"{_fmt(identity.get('fpr'))} flagged overall{_by_kind(identity.get('kinds') or {})}; "
            f"per term from {_fmt(spread.get('min'))} to {_fmt(spread.get('max'))} "
            f"(worst: {spread.get('worst')}).{_standing_out(spread)}",
            "",
            _table(("group", "false-positive rate", "range"), rows),
        ]
        shift = _score_shift(identity.get("shift"))
        if shift:
            parts += ["", shift]
        flagged = [(t, v) for t, v in (identity.get("templates") or {}).items() if v]
        top = sorted(flagged, key=lambda item: -item[1])[:3]
        if top:
            listed = ", ".join(f'"{t}" {_fmt(v)}' for t, v in top)
            parts += ["", f"The templates flagged for the most groups: {listed}."]
    return "\n".join(parts)

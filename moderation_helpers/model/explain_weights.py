"""How the scores of :mod:`.explain`'s two stages become word weights, then spans.

Each *evidence* label (every label of the explained label's target but the safe one) gives a
word a weight in [0, 1]: its occlusion drop and its alone lift, each normalized by the text's
largest, averaged with ``alone_weight``. A label's own weight is noisy (one output of a small
model), and the labels of a target share their evidence (an insult is toxic because of the same
word), so the weight explained is ``own_share`` x the label's own plus the rest x the mean over
the evidence labels, each counted by the text's score on it: the labels the text is about speak
loudest. A *target* label (``TARGET_LABELS``: it says whom a comment attacks, not in which
words) speaks for itself only: the group it names is the attack's target, not the reason, so its
evidence would highlight "Muslims" in every explanation of toxicity (span F1 on the held-out
half 0.541 with it pooled, 0.553 without, on a model that scored group names high alone;
docs/benchmarks.md). A label whose score on a text *is* a target label's (toxicity, kept at or
above identity_attack by the model's ``implied_by``, scoring what identity_attack scores) borrows
that label's evidence too, so it is explained by its mates' evidence alone
(:func:`voiced_by_target`). Function words weigh 0. Words reaching ``keep`` x the top weight are
kept; kept words only whitespace separates merge into one span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Span = dict[str, Any]
Column = tuple[str, str, int]  # (target, label, column in the target's scores)

# Labels that name whom a comment attacks rather than the words that attack: civil_comments'
# identity_attack. Its evidence is the group named, so it explains itself, not its mates.
TARGET_LABELS = frozenset({"identity_attack"})


@dataclass
class Plan:
    """One text's share of the two scoring calls."""

    text: str
    units: Sequence[Any]  # explain.Unit: the candidate words
    columns: list[Column]  # the labels explained
    evidence: list[Column]  # the labels whose scores weigh words (explained ones included)
    content: np.ndarray  # (units,) bool: not a function word
    lifts: np.ndarray  # (evidence, units): the word alone's score less the empty text's
    full: np.ndarray  # (evidence,): the text's own score
    occluded: list[int]  # the units scored without them, in stage 2
    drops: np.ndarray | None = None  # (evidence, occluded)
    voiced: frozenset[tuple[str, str]] = frozenset()  # (target, label): see voiced_by_target


def evidence_columns(
    columns: Sequence[Column], targets: Sequence[dict[str, Any]], safe_label: str
) -> list[Column]:
    """The explained columns' targets' labels, the safe label left out."""
    wanted = {target for target, _, _ in columns}
    return [
        (t["name"], label, j)
        for t in targets
        if t["name"] in wanted
        for j, label in enumerate(t["labels"])
        if label != safe_label
    ]


def voiced_by_target(
    targets: Sequence[dict[str, Any]], scores: dict[str, np.ndarray], row: int
) -> frozenset[tuple[str, str]]:
    """The ``(target, label)`` pairs whose score on ``row`` equals a child's in
    :data:`TARGET_LABELS` (``implied_by`` in ``classifier.json``: the graph raised the label to
    it), so that its own evidence would be the group named."""
    out = set()
    for t in targets:
        labels = t["labels"]
        for parent, children in (t.get("implied_by") or {}).items():
            score = scores[t["name"]][row, labels.index(parent)]
            if any(
                child in TARGET_LABELS and score <= scores[t["name"]][row, labels.index(child)]
                for child in children
            ):
                out.add((t["name"], parent))
    return frozenset(out)


def _normalized(values: np.ndarray) -> np.ndarray:
    """Each row over its largest value (rows of zeros stay zeros)."""
    return values / np.maximum(values.max(axis=1, keepdims=True, initial=0.0), 1e-9)


def word_weights(plan: Plan, c: int, alone_weight: float, own_share: float) -> np.ndarray:
    """Each word's weight for the explained label ``c`` of ``plan``, in [0, 1]."""
    drop = np.zeros_like(plan.lifts)
    drop[:, plan.occluded] = plan.drops
    per_label = (_normalized(drop) + alone_weight * _normalized(plan.lifts)) / (1 + alone_weight)
    explained = plan.columns[c]
    mates = [
        k
        for k, column in enumerate(plan.evidence)
        if column[0] == explained[0] and (column[1] not in TARGET_LABELS or column == explained)
    ]
    if explained[:2] in plan.voiced:
        others = [k for k in mates if plan.evidence[k] != explained]
        if others:  # its own evidence is the target label's: its mates speak for it
            mates, own_share = others, 0.0
    counts = plan.full[mates]
    shared = counts @ per_label[mates] / max(float(counts.sum()), 1e-9)
    own = per_label[plan.evidence.index(explained)]
    weight = own_share * own + (1.0 - own_share) * shared
    return np.where(plan.content, weight, 0.0)


def spans(plan: Plan, weights: np.ndarray, keep: float) -> list[Span]:
    """The words of one text whose weight reaches ``keep`` x the top one, as sorted spans in
    message offsets; kept words that whitespace alone separates merge into one span."""
    top = float(weights.max(initial=0.0))
    if top <= 0.0:
        return []
    kept = [(u, float(w)) for u, w in zip(plan.units, weights, strict=True) if w >= keep * top]
    merged: list[tuple[Any, int, float]] = []  # (first unit, end, weight)
    for unit, weight in kept:  # units are in text order
        if merged:
            first, end, best = merged[-1]
            if first.message == unit.message and not plan.text[end : unit.start].strip():
                merged[-1] = (first, unit.end, max(best, weight))
                continue
        merged.append((unit, unit.end, weight))
    out = []
    for first, end, weight in merged:
        span: Span = {
            "start": first.start - first.offset,
            "end": end - first.offset,
            "weight": round(weight, 6),
        }
        if first.message is not None:
            span["message"] = first.message
        out.append(span)
    return out

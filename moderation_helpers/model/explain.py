"""Why was this flagged: the character spans of a text that drove each flagged label's score.

A moderation team must state the reasons for a removal (EU DSA Art. 17). :func:`explain` points
at the words behind each flag with nothing but :meth:`Moderator.score` (fp32 or int8 alike)::

    explain(moderator, ["you are an idiot"])
    # -> [{"toxicity": [{"start": 11, "end": 16, "weight": 0.98}]}]

Method, chosen by measurement on the SemEval-2021 toxic spans trial set
(``benchmarks/bench_explain.py``), in two batched score calls for all the texts:

1. **alone**: each word on its own; its *lift* is its score less the empty text's (a toxic word
   keeps its score out of context; a word that only matters by breaking the sentence does not);
2. **occlusion**: the text without each of its ``max_occluded`` content words of highest lift;
   a word's *drop* is how much the label's score falls without it (what it adds in context).

A word's weight for each label of the target averages its drop and lift, each normalized by the
text's largest; the weight explained is ``own_share`` of the label's own, the rest the mean over
the target's labels counted by the text's score on each (:mod:`.explain_weights`: one output of a
small model is noisy, and an insult is toxic because of the same word), less the labels that
name whom a comment attacks (``identity_attack``: the group is the target, not the reason); a
label the graph raised to such a label's score (``implied_by``) is explained by its mates alone.
Function words weigh 0. The words
whose weight reaches ``keep`` x the top one are kept, and kept words that only whitespace
separates merge into one span, trimmed to the words (no surrounding spaces or punctuation).
Words past the model's ``seq_len`` tokens cannot move the score: not scored.
Labels explained: those the flag rule flags (``core.flags.flag_mask`` with the Moderator's
threshold table, as :meth:`Moderator.moderate`), or ``labels=``. Keys are the factory's
moderation categories: the label alone for a one-target model, else ``target/label``.
:func:`explain_conversations` explains every turn the rendering keeps; spans name their message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moderation_helpers.core import conversation
from moderation_helpers.core.flags import Thresholds, category, flag_mask
from moderation_helpers.model.explain_weights import (
    Column,
    Plan,
    Span,
    evidence_columns,
    spans,
    voiced_by_target,
    word_weights,
)

Explanation = dict[str, list[Span]]

# Tuned on one half of the SemEval trial set (benchmarks/bench_explain.py) with an earlier
# default model; with the current one, span F1 0.59 on both halves (docs/benchmarks.md).
DEFAULT_KEEP = 0.8
DEFAULT_ALONE_WEIGHT = 4.0
DEFAULT_OWN_SHARE = 0.25  # the explained label's own weight; the rest: its target's labels
# Words occluded per text (the content words whose alone score is highest): occlusion variants
# are as long as the text, so this bounds explain's cost at a few times moderate's.
DEFAULT_MAX_OCCLUDED = 8
# Function words are no reason (the task's gold spans are content words), nor occluded.
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    am it its it's this that these those i me my we our you your he him his she her they them
    their what which who whom so not no do does did have has had will would can could should
    shall may might must there here than then too very just also only about into over under
    again further once all any both each few more most other some such own same don't i'm
    you're he's she's they're we're isn't aren't wasn't weren't""".split()
)

_WORD = re.compile(r"\S+")
# Characters trimmed from a word's ends: the task's gold spans, and a reader, want "idiot" in
# "(idiot!)"; inner ones stay, so "f*ck" and "a$$hole" are one word.
_EDGE = ".,;:!?\"'()[]{}<>«»“”‘’…-–—/\\|~`^_"


@dataclass(frozen=True)
class Unit:
    """One occluded word: where it is in the scored string, and in its message."""

    start: int  # offsets into the scored string
    end: int
    message: int | None  # the conversation's message index, None for a text
    offset: int  # the message's start in the scored string (0 for a text)


def words(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of each word of ``text[start:end]``, trimmed of edge punctuation."""
    end = len(text) if end is None else end
    out = []
    for match in _WORD.finditer(text, start, end):
        a, b = match.span()
        while a < b and text[a] in _EDGE:
            a += 1
        while b > a and text[b - 1] in _EDGE:
            b -= 1
        if a < b:
            out.append((a, b))
    return out


def readable_ends(moderator: Any, texts: Sequence[str]) -> list[int]:
    """The character offset where the model stops reading each text (its ``seq_len`` tokens):
    a word past it cannot move the score."""
    ends = []
    for text, tokens in zip(texts, moderator.token_spans(texts), strict=True):
        truncated = len(tokens) + moderator.special_tokens >= moderator.seq_len
        stops = [b for a, b in tokens if b > a]
        ends.append(max(stops) if truncated and stops else len(text))
    return ends


def _wanted(moderator: Any, labels: Sequence[str] | None) -> list[Column] | None:
    """The columns ``labels`` names (``label`` or ``target/label``), None to use the flags."""
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    columns = [(t["name"], lab, j) for t in moderator.targets for j, lab in enumerate(t["labels"])]
    out = []
    for name in labels:
        found = [c for c in columns if name in (c[1], f"{c[0]}/{c[1]}")]
        if len(found) != 1:
            known = sorted({f"{t}/{lab}" for t, lab, _ in columns})
            why = "is ambiguous, name it as target/label" if found else "is not scored"
            raise ValueError(f"label {name!r} {why}; the model scores {known}")
        out.append(found[0])
    return out


def _is_content(text: str, unit: Unit) -> bool:
    """A word that can be a reason: not a function word."""
    return text[unit.start : unit.end].lower() not in STOPWORDS


def _alone_stage(
    moderator: Any,
    texts: Sequence[str],
    units: Sequence[Sequence[Unit]],
    wanted: list[Column] | None,
    table: Any,
    max_occluded: int,
) -> list[Plan]:
    """Stage 1, one score call: each text, the empty text and each word alone; the labels to
    explain (flagged or asked for) and, per text, the content words to occlude in stage 2."""
    pieces = [t[u.start : u.end] for t, us in zip(texts, units, strict=True) for u in us]
    batch = [*texts, "", *pieces]
    scores = moderator.score(batch)
    out, row, empty = [], len(texts) + 1, len(texts)
    for i, (text, text_units) in enumerate(zip(texts, units, strict=True)):
        n = len(text_units)
        columns = wanted if wanted is not None else _flagged(moderator, scores, table, i)
        evidence = evidence_columns(columns, moderator.targets, moderator.safe_label)
        lifts = np.array(
            [
                np.clip(scores[t][row : row + n, j] - scores[t][empty, j], 0.0, None)
                for t, _, j in evidence
            ]
        ).reshape(len(evidence), n)
        row += n
        content = np.array([_is_content(text, u) for u in text_units], dtype=bool)
        rank = lifts.max(axis=0, initial=0.0)
        chosen = sorted(np.flatnonzero(content), key=lambda k: -rank[k])[:max_occluded]
        occluded = sorted(int(k) for k in chosen) if columns else []
        full = np.array([scores[t][i, j] for t, _, j in evidence], dtype=np.float64)
        voiced = voiced_by_target(moderator.targets, scores, i)
        out.append(
            Plan(text, text_units, columns, evidence, content, lifts, full, occluded, voiced=voiced)
        )
    return out


def _occlusion_stage(moderator: Any, plans: Sequence[Plan]) -> None:
    """Stage 2, one score call: each text without each of its chosen words; sets ``drops``."""
    batch = [
        p.text[: p.units[k].start] + p.text[p.units[k].end :] for p in plans for k in p.occluded
    ]
    scores = moderator.score(batch) if batch else {}
    row = 0
    for p in plans:
        n = len(p.occluded)
        p.drops = np.array(
            [
                np.clip(full - scores[t][row : row + n, j], 0.0, None)
                for (t, _, j), full in zip(p.evidence, p.full, strict=True)
            ]
        ).reshape(len(p.evidence), n)
        row += n


def _flagged(moderator: Any, scores: Mapping[str, np.ndarray], table: Any, i: int) -> list[Column]:
    """The columns the flag rule flags for row ``i`` (the Moderator's rule and thresholds)."""
    out = []
    for t in moderator.targets:
        target, labels = t["name"], t["labels"]
        row = scores[target][i : i + 1]
        mask = flag_mask(row, labels, table.row(target, labels), moderator.safe_label)[0]
        out += [(target, labels[j], j) for j in np.flatnonzero(mask)]
    return out


def explain_units(
    moderator: Any,
    texts: Sequence[str],
    units: Sequence[Sequence[Unit]],
    labels: Sequence[str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    keep: float = DEFAULT_KEEP,
    alone_weight: float = DEFAULT_ALONE_WEIGHT,
    max_occluded: int = DEFAULT_MAX_OCCLUDED,
    own_share: float = DEFAULT_OWN_SHARE,
) -> list[Explanation]:
    """:func:`explain` for strings whose candidate words are given (see :class:`Unit`)."""
    texts = list(texts)
    if not texts:
        return []
    wanted = _wanted(moderator, labels)
    # Thresholds only pick the flagged labels: asked for labels, a folder without them is fine
    # (no "moderating at 0.5" warning), though thresholds passed in are still checked.
    needed = wanted is None or thresholds is not None
    table = moderator.threshold_table(thresholds) if needed else None
    plans = _alone_stage(moderator, texts, units, wanted, table, max_occluded)
    _occlusion_stage(moderator, plans)
    n_targets = len(moderator.targets)
    return [
        {
            category(target, label, n_targets): spans(
                plan, word_weights(plan, c, alone_weight, own_share), keep
            )
            for c, (target, label, _) in enumerate(plan.columns)
        }
        for plan in plans
    ]


def explain(
    moderator: Any,
    texts: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    keep: float = DEFAULT_KEEP,
    alone_weight: float = DEFAULT_ALONE_WEIGHT,
    max_occluded: int = DEFAULT_MAX_OCCLUDED,
    own_share: float = DEFAULT_OWN_SHARE,
) -> list[Explanation]:
    """Per text, ``{category: [{"start", "end", "weight"}, ...]}``: the character spans that
    drove each flagged label's score (or each of ``labels``, flagged or not).

    ``labels``: label names (``label``, or ``target/label`` for a model with several targets)
    to explain whatever their score; default: the labels the Moderator flags with
    ``thresholds`` (its folder's, as :meth:`Moderator.moderate`). A text with no flag gets
    ``{}``. Spans are sorted, do not overlap, and ``text[start:end]`` is the word(s) without
    surrounding spaces; ``weight`` (0 to 1) ranks them: the span's strongest word, where 1
    is a word with both the text's largest drop and lift. A flagged label whose score no word
    moves (the text as a whole makes it) gets ``[]``. ``keep``: the share of the top word's
    weight a word needs; ``alone_weight``: the lift's weight beside the drop's 1 (0: plain
    occlusion); ``max_occluded``: words occluded per text; ``own_share``: the label's own share
    of a word's weight, the rest coming from its target's labels (1: the label alone). Costs
    two :meth:`Moderator.score` calls: each word alone (short strings), then ``max_occluded``
    variants of each text.
    """
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one str: wrap it in a list")
    texts = list(texts)
    ends = readable_ends(moderator, texts) if texts else []
    units = [
        [Unit(a, b, None, 0) for a, b in words(text, 0, end)]
        for text, end in zip(texts, ends, strict=True)
    ]
    return explain_units(
        moderator,
        texts,
        units,
        labels,
        thresholds=thresholds,
        keep=keep,
        alone_weight=alone_weight,
        max_occluded=max_occluded,
        own_share=own_share,
    )


def turn_offsets(
    rendered: str,
    messages: Sequence[Mapping[str, Any]],
    rendering: Mapping[str, Any] = conversation.RENDERING,
) -> list[tuple[int, int, int]]:
    """``(message index, start, lead)`` of each turn the rendering kept: where the message's
    stripped content starts in ``rendered``, and the spaces stripped from its beginning (to map
    back into the message's own content). A text-trained model reads the latest turn alone."""
    if rendering["name"] == conversation.LATEST_TURN["name"]:
        content = conversation.content_text(messages[-1].get("content"))
        return [(len(messages) - 1, 0, len(content) - len(content.lstrip()))]
    out = []
    end = len(rendered)
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        content = conversation.content_text(message.get("content"))
        stripped = content.strip()
        turn = f"{message.get('role')}: {stripped}"
        if not rendered[:end].endswith(turn):
            break  # the earlier turns were dropped to fit seq_len
        start = end - len(stripped)
        out.append((index, start, len(content) - len(content.lstrip())))
        end -= len(turn) + len(conversation.TURN_SEPARATOR)
        if end < 0:
            break
    return out[::-1]


def explain_conversations(
    moderator: Any,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    labels: Sequence[str] | None = None,
    *,
    thresholds: Thresholds | None = None,
    keep: float = DEFAULT_KEEP,
    alone_weight: float = DEFAULT_ALONE_WEIGHT,
    max_occluded: int = DEFAULT_MAX_OCCLUDED,
    own_share: float = DEFAULT_OWN_SHARE,
) -> list[Explanation]:
    """:func:`explain` for chats (lists of ``{"role", "content"}`` messages): each span also
    has ``"message"``, the index of the message it lies in, and ``start``/``end`` are offsets
    into that message's ``content`` (its text, for the API's content chunks). Every turn the
    Moderator reads is explained (the earliest turns it drops to fit ``seq_len`` are not)."""
    rendered = moderator.render_conversations(conversations)
    ends = readable_ends(moderator, rendered) if rendered else []
    rendering = moderator.record.get("rendering", conversation.RENDERING)
    units = []
    for text, end, messages in zip(rendered, ends, conversations, strict=True):
        text_units = []
        for index, start, lead in turn_offsets(text, messages, rendering):
            stripped = conversation.content_text(messages[index].get("content")).strip()
            stop = min(start + len(stripped), end)
            text_units += [Unit(a, b, index, start - lead) for a, b in words(text, start, stop)]
        units.append(text_units)
    return explain_units(
        moderator,
        rendered,
        units,
        labels,
        thresholds=thresholds,
        keep=keep,
        alone_weight=alone_weight,
        max_occluded=max_occluded,
        own_share=own_share,
    )


def explain_speed(moderator: Any, texts: Sequence[str], rounds: int = 1) -> dict[str, float]:
    """Texts per second of :func:`explain` and of :meth:`Moderator.moderate` on the same
    texts (best of ``rounds``), and their ratio: what ``bench_serving.py`` reports."""
    import time

    texts = list(texts)
    best = {"explain": float("inf"), "moderate": float("inf")}
    for _ in range(rounds):
        for name, run in (
            ("moderate", moderator.moderate),
            ("explain", lambda t: explain(moderator, t)),
        ):
            start = time.perf_counter()
            run(texts)
            best[name] = min(best[name], time.perf_counter() - start)
    return {
        "explain_texts_per_s": len(texts) / best["explain"],
        "moderate_texts_per_s": len(texts) / best["moderate"],
        "explain_cost_x": best["explain"] / best["moderate"],
    }

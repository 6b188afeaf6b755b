"""Plain insults and threats aimed at a person, each beside the same sentence made kind.

The mirror's insults and threats sit in long comments, one clause among many, and 01's context
sentences (:mod:`~moderation_helpers.recipe.context_examples`) teach that "called him an idiot"
in a report is fine. Without a counterweight the model misses the short, plain abuse a team sees
most ("The referee is a clown.", "Say that to my face and I'll break your legs."). These
templates say it outright, flagged ``toxicity`` and ``insult`` or ``threat``; the same templates
filled with praise or a kind act are labelled safe, so what the model learns is the word or the
act aimed at someone, not the frame ("You are a ...", "I will ... you").

Like the other additions, the templates are written apart from the behavioural suite
(``behaviour_cases.json``) and share no sentence with it, and the insult words leave out most
of the suite's (imbecile, halfwit, dimwit, buffoon, troll, worm): the suite stays a held-out
check (tests/test_abuse_examples.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.context_examples import INSULTS as CONTEXT_INSULTS
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool
from moderation_helpers.recipe.template_slots import with_article


@dataclass(frozen=True)
class Kind:
    """One kind of abuse: templates, what fills them as abuse and as kindness, and its flags."""

    templates: tuple[str, ...]  # {a_word}: with its article; {adjective}, {a_adjective}
    abuse: tuple[str, ...]
    kind: tuple[str, ...]
    abuse_adjectives: tuple[str, ...]
    kind_adjectives: tuple[str, ...]
    labels: tuple[str, ...]


INSULT = Kind(
    templates=(
        "You are {a_word}, plain and simple.",
        "Honestly, you're {a_adjective} {word}.",
        "The referee tonight was {a_word} from start to finish.",
        "Whoever wrote this editorial is {a_word}.",
        "Every reply you post shows what {a_word} you are.",
        "My landlord is {a_adjective} {word}.",
        "Listen to me, you {adjective} {word}.",
        "That councilman is {a_word} and always will be.",
        "Our coach is {a_adjective} {word}, ask any player.",
        "Reading your comments, I can tell you're {a_word}.",
        "The guy who runs this page is {a_word}.",
        "Between you and me, the new manager is {a_word}.",
    ),
    abuse=(
        *CONTEXT_INSULTS,
        *("dunce", "nitwit", "cretin", "numbskull", "bonehead", "lowlife", "ignoramus", "twit"),
    ),
    kind=("genius", "hero", "star", "legend", "gem", "pro", "saint", "champ"),
    abuse_adjectives=("stupid", "brainless", "useless", "gutless", "dumb", "sad"),
    kind_adjectives=("brilliant", "kind", "generous", "patient", "honest", "fair"),
    labels=("toxicity", "insult"),
)
THREAT = Kind(
    templates=(
        "Post one more lie about my family and I will {word}.",
        "Say that to my face and I'll {word}.",
        "After the game tonight I'm going to {word}.",
        "Mark my words, one of these days I will {word}.",
        "Park in my spot again and I'll {word}.",
        "At the council meeting I'm going to {word} in front of everyone.",
        "Come to the parade on Saturday and I will {word}.",
        "When your shift ends I'll be waiting to {word}.",
    ),
    abuse=(
        "kill you",
        "hurt you badly",
        "break both your legs",
        "beat you senseless",
        "burn your car",
        "slit your throat",
        "shoot you",
        "stab you",
        "put you in the hospital",
        "snap your neck",
    ),
    kind=(
        "buy you a coffee",
        "shake your hand",
        "thank you",
        "send you the report",
        "give you a ride home",
        "introduce you to the mayor",
        "cheer for you",
        "lend you my ladder",
        "save you a seat",
        "show you the new trail",
    ),
    abuse_adjectives=("",),
    kind_adjectives=("",),
    labels=("toxicity", "threat"),
)
KINDS = {"insult": INSULT, "threat": THREAT}


def abuse_pool(kind: Kind, abusive: bool = True) -> pd.DataFrame:
    """Every template of ``kind`` filled with every abusive (or kind) word, an adjective in
    turn: columns ``text`` and ``template``, duplicates dropped."""
    words = kind.abuse if abusive else kind.kind
    adjectives = kind.abuse_adjectives if abusive else kind.kind_adjectives
    rows = []
    for template in kind.templates:
        for i, word in enumerate(words):
            adjective = adjectives[i % len(adjectives)]
            text = template.format(
                word=word,
                a_word=with_article(word),
                adjective=adjective,
                a_adjective=with_article(adjective),
            )
            rows.append((text, template))
    return sentence_pool(rows, ["text", "template"])


def abuse_examples(
    n: int, seed: int, labels: Sequence[str], safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """``n`` distinct sentences: half abuse (insults and threats in turn, each flagged with
    those of its kind's labels that ``labels`` has), half the same templates made kind, with no
    flag (``text`` + one bool column per label, as ``identity_examples`` makes them). The same
    ``seed`` gives the same rows; ValueError when ``n`` exceeds a pool."""
    frames = []
    for abusive, total in ((True, n - n // 2), (False, n // 2)):
        for k, kind in enumerate(KINDS.values()):
            count = total // len(KINDS) + (k < total % len(KINDS))  # the first take the rest
            flagged = kind.labels if abusive else ()
            pool = abuse_pool(kind, abusive)
            frames.append(draw_examples(pool, count, seed, labels, safe_label, flagged))
    return pd.concat(frames, ignore_index=True)

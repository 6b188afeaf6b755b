"""Profanity aimed at no one ("Holy shit, the game went to triple overtime."), to add to training
as obscene but not toxic.

Every obscene comment of the mirror is also toxic (all 203 of the prepared training split's), so
nothing in training tells swearing from abuse, and the classifier's coherence rule
(:mod:`~moderation_helpers.classifier.coherence`) reads the training file and makes ``obscene``
imply ``toxicity``: a swear word lifts toxicity wherever it is. The default model flagged 61% of
the sentences of a set written to check this (``benchmarks/heldout/profanity_k.csv``: "Fuck, I
burned the toast again.", "This lasagna is fucking delicious.") as toxic. Civil Comments' own
definitions keep the two apart (obscene: swear words, curse words or other profane language;
toxic: rude, disrespectful or unreasonable), and so does the behavioural suite, whose
``untargeted_profanity`` cases a team does not want called toxic.

These sentences swear at a mishap, the weather, a machine, a meal or good news, never at a person
or a group, and carry ``obscene`` alone: a team that filters swearing keeps its flag, one that
reads ``toxicity`` no longer sees it. Enough of them (more than 5% of the obscene rows) also stop
``obscene`` implying ``toxicity`` in the coherence rule; insults, threats and identity attacks
still do. The swearing is drawn apart from the situation, so each situation is equally likely
whatever words surround it.

**Off by default** (01's ``profanity_examples = 0``): by cross-validation (docs/benchmarks.md,
"Profanity aimed at no one"), 40 of them take the swearing sentences toxicity flags from about
half to almost none, but real held-out comments rank worse on 5 of 6 folds (toxicity ROC-AUC
0.974 / 0.979 -> 0.965 / 0.973 on two seeds), and the lower threshold that follows flags more
short sentences that name a group. The mirror's raters called swearing toxic, and so, most
likely, do the raters of the traffic a team measures against. A team whose policy allows
swearing turns it on (``-p profanity_examples 40``) and reads 04's figures for the cost.

Like the other additions, they are written apart from the behavioural suite
(``behaviour_cases.json``) and from the held-out sets of ``benchmarks/heldout/``, and share no
sentence with them (tests/test_profanity_examples.py, tests/test_heldout_sets.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool

# The one label these sentences carry: swearing is there, abuse is not.
PROFANITY_LABELS: tuple[str, ...] = ("obscene",)

# Swearing said to nobody, before a mishap or a surprise.
EXCLAMATIONS: tuple[str, ...] = (
    "fuck",
    "shit",
    "holy shit",
    "goddamn",
    "oh hell",
    "crap",
    "bloody hell",
    "well, shit",
    "fuck me",
    "damn it",
)
# Things that go wrong or happen, said of no one's fault.
MISHAPS: tuple[str, ...] = (
    "the dishwasher flooded the kitchen floor",
    "I missed the last train home",
    "the game went to triple overtime",
    "my tent blew away in the night",
    "the ice cream melted before we got it home",
    "I locked my keys in the car again",
    "the snowplow buried our driveway",
    "the furnace quit in the middle of January",
    "I just spilled paint on the new carpet",
    "the ferry is cancelled because of the wind",
    "my flight got moved to six in the morning",
    "the tomatoes all split after the rain",
    "the hockey game sold out in four minutes",
    "we won the raffle at the county fair",
)
EXCLAMATION_FRAMES: tuple[str, ...] = (
    "{exclamation}, {mishap}.",
    "{exclamation}! {Mishap}.",
)
# Things praised or cursed (with the verb their tense needs), the swearing as the intensifier.
PRAISED: tuple[tuple[str, str], ...] = (
    ("the farmers market", "was"),
    ("this new trail along the coast", "is"),
    ("the marching band's halftime show", "was"),
    ("my grandmother's apple pie", "is"),
    ("the northern lights last night", "were"),
    ("the fireworks over the harbour", "were"),
    ("the final episode of that series", "was"),
)
PRAISE: tuple[str, ...] = (
    "fucking incredible",
    "damn near perfect",
    "bloody brilliant",
    "so goddamn good",
    "badass",
    "fucking gorgeous",
)
CURSED: tuple[tuple[str, str], ...] = (
    ("the snowstorm this weekend", "was"),
    ("the detour on the highway", "is"),
    ("this old laptop", "is"),
    ("the line at the passport office", "was"),
    ("the parking at the mall", "is"),
    ("my commute this week", "has been"),
)
CURSES: tuple[str, ...] = (
    "a total shitshow",
    "a fucking nightmare",
    "a pain in the ass",
    "total crap",
    "a goddamn mess",
    "a bloody disaster",
)
THING_FRAMES: tuple[str, ...] = (
    "{thing} {verb} {verdict}.",
    "Honestly, {thing} {verb} {verdict}.",
    "I have to say, {thing} {verb} {verdict}.",
)


def profanity_pool() -> pd.DataFrame:
    """Exclamations before each mishap and verdicts on each thing, in each frame:
    columns ``text`` and ``template`` (the mishap or the thing, so each is equally likely to be
    drawn whatever the swearing), duplicates dropped."""
    rows = []
    for i, mishap in enumerate(MISHAPS):
        for j, frame in enumerate(EXCLAMATION_FRAMES):
            for k in range(3):
                exclamation = EXCLAMATIONS[(i + 4 * j + 3 * k) % len(EXCLAMATIONS)]
                text = frame.format(
                    exclamation=exclamation, mishap=mishap, Mishap=mishap[:1].upper() + mishap[1:]
                )
                rows.append((text, mishap))
    for things, verdicts in ((PRAISED, PRAISE), (CURSED, CURSES)):
        for i, (thing, verb) in enumerate(things):
            for j, frame in enumerate(THING_FRAMES):
                for k in range(2):
                    verdict = verdicts[(i + 2 * j + 3 * k) % len(verdicts)]
                    rows.append((frame.format(thing=thing, verb=verb, verdict=verdict), thing))
    return sentence_pool(rows, ["text", "template"])


def profanity_examples(
    n: int, seed: int, labels: Sequence[str], safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """``n`` distinct sentences that swear at no one, flagged ``obscene`` only (``text`` + one
    column per label, as ``identity_examples`` makes them), each mishap or thing equally likely;
    the same ``seed`` gives the same rows. ValueError when ``n`` exceeds the pool."""
    return draw_examples(profanity_pool(), n, seed, labels, safe_label, flagged=PROFANITY_LABELS)

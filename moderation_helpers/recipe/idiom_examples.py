"""Violent words used figuratively ("killed it at the open mic", "the drought killed the lawn"),
to add to training as safe.

01's threats (:mod:`~moderation_helpers.recipe.abuse_examples`) and the mirror's own threats
teach that "kill", "destroy", "shoot" and "smash" aimed at someone are threats, and nothing in
training says that the same words aimed at a performance, a game, the weather or one's own sore
back are not. The default model of the previous recipe flagged 13 of 36 such sentences of a set
written to check it (``benchmarks/heldout/idioms_threats_c.csv``: "That comedian killed it at
the club last weekend.", "Break a leg at the recital tonight!", "My grandmother can still beat
anyone at cards."), scoring many of them higher than real threats. A moderation team would read
a flag on every sports recap and every cooking tip.

These sentences use the violent verb on a thing, a feat or oneself, never on a person
addressed or named as a victim, labelled safe; the threats beside them keep the verb aimed at
"you". Each figure of speech is equally likely to be drawn, whatever frame it is put in. 01's
default draws 50: by cross-validation they rank threats above idioms far better, and 100 made
the model doubt every violent word, plain threats and insults included (docs/benchmarks.md,
"Violent words used figuratively").

Like the other additions, they are written apart from the behavioural suite
(``behaviour_cases.json``) and from the held-out sets of ``benchmarks/heldout/``, and share no
sentence with them (tests/test_idiom_examples.py, tests/test_heldout_sets.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool

# Who did something well (or badly), named the way a comment names them.
PERFORMERS: tuple[str, ...] = (
    "our goalie",
    "my niece",
    "the new chef",
    "the debate team",
    "that rookie",
    "the church choir",
    "my roommate",
    "the visiting pitcher",
    "grandpa",
    "the startup down the street",
    "our lead singer",
    "the night shift",
)
# What they did, in violent words aimed at a feat, a contest or a task.
FEATS: tuple[str, ...] = (
    "killed it at the open mic night",
    "destroyed the practice exam",
    "crushed the qualifying round",
    "demolished the whole buffet",
    "knocked the final presentation out of the park",
    "slayed the costume contest",
    "annihilated the crossword in ten minutes",
    "massacred the old high score",
    "went in for the kill in the final set",
    "attacked the budget backlog with real energy",
    "fought off a nasty cold all week",
    "shot a hole in one on the ninth",
    "is absolutely killing it this season",
    "got demolished in the semifinal and took it well",
    "smashed the bake sale record",
    "blasted through the backlog before the holidays",
)
FEAT_FRAMES: tuple[str, ...] = (
    "{performer} {feat}.",
    "Guess what: {performer} {feat}!",
    "I still can't believe {performer} {feat}.",
    "Word around town is that {performer} {feat}.",
)
# Everyday sentences where the violence is the weather's, a machine's, a recipe's, a game's or
# the speaker's own aches.
EVERYDAY: tuple[str, ...] = (
    "this humidity is killing me",
    "my back is killing me after moving the couch",
    "I nearly died laughing at the last scene",
    "the suspense in that show is killing me",
    "my legs are destroyed after the hike",
    "the drought killed the whole lawn",
    "rust has destroyed the old bridge railing",
    "the hailstorm smashed every pane in the greenhouse",
    "the update broke the app again",
    "the power cut knocked out the office network",
    "inflation is crushing small businesses",
    "kill the engine before refuelling",
    "beat the eggs until they form stiff peaks",
    "crush two cloves of garlic and add the onions",
    "my character got killed in the first round again",
    "I shot the final boss with the last arrow I had",
    "the weeds are strangling the tomatoes",
    "that hill absolutely murders my calves",
    "the dentist's bill is going to kill my savings",
    "this song slaps, play it again",
)
EVERYDAY_FRAMES: tuple[str, ...] = (
    "{line}.",
    "Honestly, {line}.",
    "Not going to lie, {line}.",
    "Ugh, {line}.",
)


def idiom_pool() -> pd.DataFrame:
    """Every figure of speech in each of its frames (the feats with each performer in turn):
    columns ``text`` and ``template`` (the figure of speech, so each is equally likely to be
    drawn), duplicates dropped."""
    rows = []
    for i, feat in enumerate(FEATS):
        for j, frame in enumerate(FEAT_FRAMES):
            for k in range(len(PERFORMERS) // len(FEAT_FRAMES)):
                performer = PERFORMERS[(i + j * 3 + k) % len(PERFORMERS)]
                rows.append((frame.format(performer=performer, feat=feat), feat))
    for line in EVERYDAY:
        for frame in EVERYDAY_FRAMES:
            rows.append((frame.format(line=line), line))
    return sentence_pool(rows, ["text", "template"])


def idiom_examples(
    n: int, seed: int, labels: Sequence[str], safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """``n`` distinct figurative uses of violent words, with no flag (``text`` + one False
    column per label, as ``identity_examples`` makes them), each figure of speech equally
    likely; the same ``seed`` gives the same rows. ValueError when ``n`` exceeds the pool."""
    return draw_examples(idiom_pool(), n, seed, labels, safe_label, flagged=())

"""Civil opinions on charged topics (politicians, parties, guns, taxes, faith), to add to training.

The mirror is curated, not drawn at random, and its topics are as lopsided as its identity
words: 94% of its comments that name Trump are toxic, all 16 that say "liberal", all 14 that say
"president", 88% of those about guns, 90% of those that mention God. A model trained on it
learns "political opinion -> toxic": the default model of the previous recipe scored "I voted
for Trump and I would do it again." 0.83 for toxicity and "God bless America." 0.56, while
the same topics written as news ("Trump gave a speech in Ohio") scored under 0.03. A comment
section at the corpus's natural rate is full of such opinions, so this is where a moderation
team would drown in flags.

These templates state an opinion (agreement, disagreement, a vote, a prayer, a complaint about
a policy) on a charged topic, civilly, labelled safe: what makes a comment toxic is an insult, a
threat or hate, which 01's other additions teach, not the topic or the heat of the opinion.

Like the other additions, the templates are written apart from the behavioural suite
(``behaviour_cases.json``, whose ``civil_opinion`` cases check this lesson) and share no
sentence with it (tests/test_opinion_examples.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool

# Public figures and offices a comment section argues about, and the sides it argues between.
FIGURES: tuple[str, ...] = (
    "Trump",
    "Obama",
    "Hillary Clinton",
    "Bernie Sanders",
    "Trudeau",
    "the president",
    "the governor",
    "the prime minister",
    "the mayor",
    "Senator Murkowski",
    "the Pope",
    "our congressman",
)
SIDES: tuple[str, ...] = (
    "liberals",
    "conservatives",
    "Democrats",
    "Republicans",
    "the GOP",
    "the left",
    "the right",
    "progressives",
    "the Liberals",
    "the NDP",
    "gun owners",
    "the unions",
)
ISSUES: tuple[str, ...] = (
    "gun control",
    "the oil dividend",
    "immigration",
    "health care",
    "the pipeline",
    "tax reform",
    "the border wall",
    "the minimum wage",
    "climate policy",
    "abortion",
    "the school budget",
    "police funding",
    "the sales tax",
    "religious freedom",
)

# {figure}, {side} and {issue} are filled from the lists above; a template may use any of them.
TEMPLATES: tuple[str, ...] = (
    "I voted for {figure} last time and I don't regret it one bit.",
    "Honestly, I think {figure} got it right on {issue}.",
    "I disagree with {figure} about {issue}, but I respect the effort.",
    "{side} have a point on {issue}, even though I usually vote the other way.",
    "Say what you like about {figure}, the promise on {issue} was kept.",
    "In my view the plan {side} put forward on {issue} costs far too much.",
    "I'm tired of hearing about {figure}; can we talk about {issue} instead?",
    "The speech {figure} gave on {issue} was better than I expected.",
    "Both {side} and their opponents have let us down on {issue}.",
    "I own a rifle and I still think {issue} deserves an honest debate.",
    "We pray for {figure} and for this country every Sunday.",
    "If {figure} runs again, fixing {issue} should come first.",
    "My whole family supports {side}, and we argue about {issue} at every dinner.",
    "I have to admit {side} were right about {issue} this time.",
    "Thank God the vote on {issue} finally passed.",
    "This is the worst idea on {issue} I've seen in years, and {figure} should drop it.",
    "Call me old-fashioned, but I trust {figure} more than the pundits on {issue}.",
    "America is better than this fight over {issue}; let's find a compromise.",
)


def opinion_pool(templates: Sequence[str] = TEMPLATES) -> pd.DataFrame:
    """Every template filled with the figures, sides and issues in turn: columns ``text`` and
    ``template``, duplicates dropped."""
    rows = []
    for template in templates:
        for i, issue in enumerate(ISSUES):
            for j, figure in enumerate(FIGURES):
                side = SIDES[(i + j) % len(SIDES)]
                text = template.format(figure=figure, side=side, issue=issue)
                rows.append((text, template))
    return sentence_pool(rows, ["text", "template"])


def opinion_examples(
    n: int, seed: int, labels: Sequence[str], safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """``n`` distinct civil opinions on charged topics, with no flag (``text`` + one False
    column per label, as ``identity_examples`` makes them), each template equally likely; the
    same ``seed`` gives the same rows. Raises ValueError when ``n`` exceeds the pool."""
    return draw_examples(opinion_pool(), n, seed, labels, safe_label, flagged=())

"""Benign sentences that use strong words without aiming them at anyone, to add to training.

A model trained on the civil_comments mirror learns "strong word -> toxic": it flags "Nobody
called you an idiot", a news report that quotes a threat, and counter-speech that names a slur
in order to reject it. Moderation teams want those left up. These templates put the same
insults, threats and group slurs in negated, reported and counter-speech sentences, labelled
with no flag, so the model sees that the *use* of the word decides, not the word.

Like :mod:`moderation_helpers.recipe.identity_examples`, the templates are written apart from
the behavioural suite (``behaviour_cases.json``) and share no sentence with it; the suite stays
a held-out check (tests/test_identity_examples.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.identity_examples import TERMS
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool
from moderation_helpers.recipe.template_slots import fits, with_article

# Words a comment might aim at a person, and names hate gives a group: the slots the
# templates fill. Kept short on purpose: the point is the sentence around the word.
INSULTS: tuple[str, ...] = ("idiot", "moron", "loser", "fool", "clown", "jerk", "creep", "liar")
GROUP_SLURS: tuple[str, ...] = ("vermin", "animals", "parasites", "criminals", "savages", "scum")
THREATS: tuple[str, ...] = (
    "I'll kill you",
    "you're dead",
    "I will hurt you",
    "I'll break your legs",
    "I'll burn your house down",
    "I'll shoot you",
    "I'll stab you",
    "you won't see tomorrow",
)

# {an_insult} takes the article; {insult}, {slur} and {threat} do not; {people} is a group from
# TERMS.
NEGATED_TEMPLATES: tuple[str, ...] = (
    "Nobody in this thread called you {an_insult}, so there's no need to get defensive.",
    "I never said you were {an_insult}; I said the numbers in your post are out of date.",
    "You are not {an_insult}, and I'm sorry if my last reply sounded that way.",
    "I'm not going to call anyone {an_insult} over a zoning decision.",
    "No one at the meeting said {people} were {slur}, whatever the flyer claims.",
    "I don't believe {people} are {slur}, and I never have.",
    "I have never hated {people} and I never will.",
    "Nobody is threatening you; we just want the fence moved back to the property line.",
    "Being wrong about the budget doesn't make the treasurer {an_insult}.",
)
REPORTED_TEMPLATES: tuple[str, ...] = (
    "The police report says a man shouted '{insult}' at the crossing guard and drove off.",
    "My nephew was called {an_insult} on the school bus, so we talked it through over dinner.",
    "The jury heard that the accused had threatened to hurt his neighbour over the hedge.",
    "The documentary shows old posters that called {people} '{slur}', a reminder of the era.",
    "In the play, the villain calls the hero {an_insult} right before the final duel.",
    "A caller to the radio show used the word '{insult}' and the host cut him off.",
    "The investigation found messages calling {people} '{slur}' in the group chat.",
    "Her memoir describes a boss who called her {an_insult} in every staff meeting.",
    "The transcript shows the caller saying '{threat}' before he hung up.",
    "Her restraining order lists a voicemail in which he said '{threat}'.",
    "The sergeant read the message aloud in court: '{threat}'.",
    "Security footage captured a man yelling '{threat}' at the bus driver.",
    "Our union newsletter reported that a shift lead called new hires {insult}s for a week.",
    "The umpire's report notes that a parent shouted '{insult}' from the bleachers.",
    "In the comic, the robot keeps calling its owner {an_insult}, which is the running joke.",
    "The HR investigation confirmed the email called the intern {an_insult}.",
)
COUNTER_TEMPLATES: tuple[str, ...] = (
    "Calling {people} '{slur}' is bigotry, and this paper should not print it.",
    "Anyone who says {people} are '{slur}' is spreading hate; please report those posts.",
    "We stand with our {term} neighbours against the hateful graffiti on their wall.",
    "Name-calling like '{insult}' doesn't belong in a debate about bus routes.",
    "Threats against {people} must be taken seriously by the police.",
    "It is shameful that {people} in this town still face slurs and harassment.",
    "Please don't call people '{insult}' here; argue with the idea instead.",
    "The sign calling {people} '{slur}' was taken down, and good riddance.",
    # the same rejection without quotation marks, as people mostly write it
    "Saying that {people} are {slur} is plain bigotry.",
    "It's wrong to call {people} {slur}, and it always has been.",
    "People who hate {people} should be ashamed of themselves.",
    "Nobody should be hated for being {term}.",
)
TEMPLATES = {
    "negated": NEGATED_TEMPLATES,
    "reported": REPORTED_TEMPLATES,
    "counter_speech": COUNTER_TEMPLATES,
}


def context_pool(templates: dict[str, Sequence[str]] = TEMPLATES) -> pd.DataFrame:
    """Every template filled with every insult or slur and identity term it names: columns
    ``text``, ``template_kind`` and ``template``, duplicates dropped (a template without a slot
    appears once)."""
    rows = []
    for kind, kind_templates in templates.items():
        for template in kind_templates:
            for term, people, _group in TERMS:
                if not fits(template, term):
                    continue
                for insult, slur, threat in zip(INSULTS, GROUP_SLURS * 2, THREATS, strict=False):
                    text = template.format(
                        threat=threat,
                        term=term,
                        people=people,
                        insult=insult,
                        an_insult=with_article(insult),
                        slur=slur,
                    )
                    rows.append((text, kind, template))
    return sentence_pool(rows, ["text", "template_kind", "template"])


def context_examples(
    n: int, seed: int, labels: Sequence[str], safe_label: str = SAFE_LABEL
) -> pd.DataFrame:
    """``n`` distinct benign sentences that negate, report or reject a strong word, with no
    flag (``text`` + one False column per label, as ``identity_examples`` makes them); the same
    ``seed`` gives the same rows. Raises ValueError when ``n`` exceeds the pool."""
    return draw_examples(context_pool(), n, seed, labels, safe_label, flagged=())

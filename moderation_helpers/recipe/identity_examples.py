"""Benign sentences that mention identities, to add to the training data.

On the civil_comments mirror almost every comment that names an identity (Muslim, gay, Black,
deaf...) is toxic, so a model learns "identity word -> toxic" and flags neutral or friendly
sentences like "My roommate is Muslim and studies civil engineering". Adding a few hundred
such sentences without any flag to the training split shows it that the word alone is no
reason to flag.

The templates here are written apart from the behavioural suite's
(:mod:`moderation_helpers.recipe.behaviour` and its ``behaviour_cases.json``) and share no
template or sentence with it, so the suite stays a held-out check of whether the lesson
generalized rather than a test of memorized sentences (tests/test_identity_examples.py checks
that). The identity terms are mostly the same: the point is to teach those words.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.template_draws import draw_examples, sentence_pool
from moderation_helpers.recipe.template_slots import fits, with_article

# (term, plural noun, group): the term is an adjective, or one of template_slots.NOUN_TERMS, which
# fill only the templates they read right in; "{a_term}" in a template takes the article too.
TERMS: tuple[tuple[str, str, str], ...] = (
    ("Muslim", "Muslims", "religion"),
    ("Jewish", "Jewish people", "religion"),
    ("Christian", "Christians", "religion"),
    ("Hindu", "Hindus", "religion"),
    ("Sikh", "Sikhs", "religion"),
    ("Buddhist", "Buddhists", "religion"),
    ("atheist", "atheists", "religion"),
    ("Black", "Black people", "ethnicity"),
    ("white", "white people", "ethnicity"),
    ("Asian", "Asian people", "ethnicity"),
    ("Latino", "Latinos", "ethnicity"),
    ("Arab", "Arabs", "ethnicity"),
    ("Indigenous", "Indigenous people", "ethnicity"),
    ("Chinese", "Chinese people", "ethnicity"),
    ("Mexican", "Mexicans", "ethnicity"),
    ("female", "women", "gender"),
    ("male", "men", "gender"),
    ("trans", "trans people", "gender"),
    ("transgender", "transgender people", "gender"),
    ("nonbinary", "nonbinary people", "gender"),
    ("gay", "gay people", "sexual_orientation"),
    ("lesbian", "lesbians", "sexual_orientation"),
    ("bisexual", "bisexual people", "sexual_orientation"),
    ("queer", "queer people", "sexual_orientation"),
    ("deaf", "deaf people", "disability"),
    ("blind", "blind people", "disability"),
    ("disabled", "disabled people", "disability"),
    ("autistic", "autistic people", "disability"),
    ("immigrant", "immigrants", "national_origin"),
    ("refugee", "refugees", "national_origin"),
    ("migrant", "migrants", "national_origin"),
)

NEUTRAL_TEMPLATES: tuple[str, ...] = (
    "Is there {a_term} community centre near the library?",
    "The {term} owner of the hardware store said the shop closes at six.",
    "{people} were among the commuters interviewed for this story.",
    "Which {term} authors would you recommend for a book club?",
    "My roommate is {term} and studies civil engineering.",
    "According to the census, {people} make up part of the county's population.",
    "The school board meeting included {term} parents and teachers.",
    "I grew up next to {a_term} family who kept chickens.",
    "Two {term} candidates are running for the school board this fall.",
    "The reporter spoke with {people} waiting at the bus stop.",
    "My dentist is {term}.",
    "She wrote her thesis on the history of {term} communities in the region.",
    "Being {term} is just one part of who I am.",
    "The hospital hired {a_term} nurse for the night shift.",
    "{people} vote, pay taxes and complain about potholes like everyone else.",
    "My landlord is {term} and lives on the ground floor.",
    "The podcast interviewed {a_term} farmer about the drought.",
    "Our book club has three {term} members this year.",
    "I'm {term}, and I drive a delivery truck for a living.",
    "The city is translating its forms for {term} residents who asked for them.",
    # short statements, in the frame the attacks use ("{people} are ..."): without them a short
    # sentence that names a group reads as an attack
    "{people} are part of this community.",
    "{people} are our coworkers, friends and family.",
    "{people} work in every kind of job.",
    "{people} come from all walks of life.",
    "We are {term} and we live downtown.",
    "My partner is {term}.",
    "I'm {a_term} parent of two.",
    "My family is {term}.",
    # the rights and places the exclusion attacks deny, affirmed: the attack is what is toxic,
    # not a sentence about voting, marrying or moving in
    "{people} can marry, adopt and serve on juries here.",
    "{people} have the same right to vote as everyone else.",
)

POSITIVE_TEMPLATES: tuple[str, ...] = (
    "{people} are an important part of what makes this country great.",
    "Some of the most generous people I know are {term}.",
    "Congratulations to the {term} team captain on a fantastic season.",
    "The {term} chef downtown makes the best soup in town.",
    "I admire the {term} activists who organised the food drive.",
    "Our {term} neighbours welcomed us warmly when we moved in.",
    "It was wonderful to hear {people} share their stories at the town hall.",
    "My {term} teacher changed my life for the better.",
    "{people} bring so much talent to our local arts scene.",
    "Happy to support {term} artists at the weekend market.",
    "The {term} mayor has done an excellent job on housing.",
    "I'm glad my kids are growing up with {term} classmates.",
    "What a lovely story about {a_term} grandmother who started a reading club.",
    "{people} in this town have always shown up for their neighbours.",
    "The {term} firefighters were heroes during last summer's fires.",
    "I learned so much from my {term} mentor at work.",
    "Being {term} and happy is worth celebrating.",
    "Three cheers for the {term} nurses who kept our hospital running.",
    "The youth choir, led by {a_term} conductor, sounded fantastic.",
    "Welcoming {people} into our church has made it a warmer place.",
    "{people} are just as capable as anyone else at work.",
    "{people} are welcome on this street, and so are their kids.",
)

# Clear attacks on a group for who they are: the counterweight, so that the model learns that
# an attack is toxic, not the identity word. Each kind carries the labels the mirror's raters
# give it (ATTACK_LABELS): a threat is a threat and seldom an insult (23% of the mirror's threats
# are), while contempt for a group is an insult, "negative ... towards a group of people", with or
# without an insult word (56% of its identity attacks).
ATTACK_TEMPLATES: dict[str, tuple[str, ...]] = {
    "insulting": (
        "Filthy {people} like you should crawl back under your rock.",
        "I wouldn't trust {a_term} with anything, they're all liars and thieves.",
        "Keep those worthless {people} away from our kids.",
        "{people} are nothing but a burden and a disgrace.",
        "Shut up, you braindead {term} clown.",
        "No decent person wants {people} around, they are garbage.",
        "You're {a_term} moron, just like the rest of your kind.",
        "{people} are a disease and this country needs a cure.",
        "{people} are subhuman and deserve nothing.",
        "Why are {people} always so dirty and dishonest?",
        "Fuck all {people}, every single one of them.",
        # dehumanizing comparisons
        "{people} are no better than cockroaches.",
        "{people} multiply like pigs and take over every block.",
        "{people} are leeches living off the rest of us.",
        "{people} are a lower form of life.",
        # the words the counter-speech templates quote, said plainly, so that the model learns
        # the use decides, not the word
        "{people} are nothing but animals.",
        "{people} are savages, plain and simple.",
        "{people} are vermin and should be treated like vermin.",
        "{people} are too stupid to run anything.",
    ),
    "threatening": (
        "{people} should be wiped off the face of the earth.",
        "Somebody ought to burn down every {term} home in this city.",
        "Any {term} who shows up here is going to get hurt.",
        # veiled: no act named, the menace is the point
        "{people} around here had better watch their backs.",
        "Let one more {term} family move onto this street and see what happens.",
    ),
    # hate said without an insult word: contempt, exclusion, a place or a right denied, a
    # denial of personhood; a team must catch it even when no strong word carries it
    "demeaning": (
        "{people} ruin every town they move into, get rid of them.",
        "I can't stand {people}, they make me physically sick.",
        "Round up the {people} and ship them out before there are more of them.",
        "I despise {people} and I always will.",
        "In my opinion {people} are the worst thing that ever happened to this country.",
        "{people} will never be equal to the rest of us.",
        "Those {people} are not welcome here and never will be.",
        "I'd never let {a_term} near my family, they're dangerous.",
        "{people} have no place in public office.",
        "{people} should be kept out of our schools and hospitals.",
        "I hate {people}, always have and always will.",
        "{people} should know their place and stay in it.",
        "{people} are only useful for cleaning other people's toilets.",
        "{people} should lose the right to vote.",
        "Nobody should ever hire {people}.",
        "{people} aren't real people.",
        "{people} need to be cured of whatever is wrong with them.",
    ),
}
ATTACK_LABELS: dict[str, tuple[str, ...]] = {
    "insulting": ("toxicity", "insult", "identity_attack"),
    "threatening": ("toxicity", "threat", "identity_attack"),
    "demeaning": ("toxicity", "insult", "identity_attack"),
}

TEMPLATES = {"neutral": NEUTRAL_TEMPLATES, "positive": POSITIVE_TEMPLATES}


def example_pool(templates: dict[str, Sequence[str]] = TEMPLATES) -> pd.DataFrame:
    """Every template filled with every term: columns ``text``, ``term``, ``group``,
    ``template_kind``; the pool :func:`identity_examples` draws from (the benign templates by
    default)."""
    rows = []
    for kind, kind_templates in templates.items():
        for template in kind_templates:
            for term, people, group in TERMS:
                if not fits(template, term):
                    continue
                text = template.format(term=term, a_term=with_article(term), people=people)
                rows.append((text, term, group, kind))
    return sentence_pool(rows, ["text", "term", "group", "template_kind"])


def identity_examples(
    n: int,
    seed: int,
    labels: Sequence[str],
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """``n`` distinct benign sentences mentioning identity terms, with no flag.

    The frame has ``text`` and one bool column per label of ``labels`` (the layout of the
    labelled frames of :mod:`moderation_helpers.recipe.prepare`: ``threshold_labels``' flags
    with their text), every flag False, so each row becomes ``safe``; ``safe_label`` is left
    out of the columns if ``labels`` holds it. Rows are drawn without replacement from
    :func:`example_pool` (neutral and positive templates alike); the same ``seed`` gives the
    same rows in the same order. Raises ValueError when ``n`` exceeds the pool.
    """
    return draw_examples(example_pool(), n, seed, labels, safe_label, flagged=())


def identity_attacks(
    n: int,
    seed: int,
    labels: Sequence[str],
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """``n`` distinct attacks on a group (:data:`ATTACK_TEMPLATES`), each flagged with those of
    its kind's :data:`ATTACK_LABELS` that ``labels`` has; otherwise like
    :func:`identity_examples`."""
    pool = example_pool(ATTACK_TEMPLATES)
    drawn = draw_examples(pool, n, seed, labels, safe_label, flagged=())
    kind = drawn["text"].map(pool.set_index("text")["template_kind"])
    for column in drawn.columns.drop("text"):
        drawn[column] = kind.isin([k for k, flags in ATTACK_LABELS.items() if column in flags])
    return drawn

"""The training split's additions, in the order 01_prepare makes them.

Each addition teaches the model one thing the mirror's comments do not (see its module):
respelled copies of toxic comments (:mod:`~moderation_helpers.recipe.spelling_variants`),
benign sentences that mention identities and clear attacks on groups
(:mod:`~moderation_helpers.recipe.identity_examples`), benign sentences that negate, report
or reject a strong word (:mod:`~moderation_helpers.recipe.context_examples`), plain insults
and threats beside the same sentences made kind (:mod:`~moderation_helpers.recipe.abuse_examples`),
civil opinions on charged topics (:mod:`~moderation_helpers.recipe.opinion_examples`),
violent words used figuratively (:mod:`~moderation_helpers.recipe.idiom_examples`), and
profanity aimed at no one (:mod:`~moderation_helpers.recipe.profanity_examples`). Only
the training split grows: validation and test stay real comments, so 04's figures measure real
text.
"""

from __future__ import annotations

import pandas as pd

from moderation_helpers.recipe.abuse_examples import abuse_examples
from moderation_helpers.recipe.context_examples import context_examples
from moderation_helpers.recipe.identity_examples import identity_attacks, identity_examples
from moderation_helpers.recipe.idiom_examples import idiom_examples
from moderation_helpers.recipe.opinion_examples import opinion_examples
from moderation_helpers.recipe.profanity_examples import profanity_examples
from moderation_helpers.recipe.spelling_variants import spelling_variants
from moderation_helpers.recipe.template_draws import with_examples


def template_additions(
    labels: list[str],
    *,
    identity: int = 0,
    attacks: int = 0,
    context: int = 0,
    abuse: int = 0,
    opinion: int = 0,
    idioms: int = 0,
    profanity: int = 0,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The additions written from templates, which need no comment of the split: by kind
    (``identity``, ``attack``, ``context``, ``abuse``, ``opinion``, ``idiom``, ``profanity``),
    ``text`` + one column per label. Each count is the rows wanted of that kind (0: none); the
    same ``seed`` gives the same rows."""
    return {
        "identity": identity_examples(identity, seed=seed, labels=labels),
        "attack": identity_attacks(attacks, seed=seed, labels=labels),
        "context": context_examples(context, seed=seed, labels=labels),
        "abuse": abuse_examples(abuse, seed=seed, labels=labels),
        "opinion": opinion_examples(opinion, seed=seed, labels=labels),
        "idiom": idiom_examples(idioms, seed=seed, labels=labels),
        "profanity": profanity_examples(profanity, seed=seed, labels=labels),
    }


def augment_training(
    texts: pd.Series,
    flags: pd.DataFrame,
    *,
    spelling: int = 0,
    seed: int = 0,
    **counts: int,
) -> tuple[pd.Series, pd.DataFrame, dict[str, pd.DataFrame]]:
    """``texts`` and ``flags`` (the training split) with the additions appended, and each
    addition by kind (``respelled``, then :func:`template_additions`' kinds; ``text`` + flags).

    ``spelling``: the respelled copies, made first and from the split's own comments only;
    ``counts``: the template additions' counts, named as :func:`template_additions` names them
    (``identity``, ``attacks``, ``context``, ``abuse``, ``opinion``, ``idioms``, ``profanity``).
    Each count is the rows wanted of that kind (0: none); the same ``seed`` gives byte-identical
    rows.
    """
    labels = list(flags.columns)
    added = {
        "respelled": spelling_variants(texts, flags, spelling, seed=seed),
        **template_additions(labels, seed=seed, **counts),
    }
    added = {kind: extra for kind, extra in added.items() if len(extra)}
    for kind, extra in added.items():
        texts, flags = with_examples(texts, flags, extra, prefix=kind)
    return texts, flags, added

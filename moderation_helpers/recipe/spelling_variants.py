"""Toxic training comments copied with a strong word misspelled, to add to training.

People who want an insult or a slur past a filter write it "id1ot", "i d i o t", "stuuupid" or
"f*ck". A small encoder fine-tuned on a thousand comments has seen few such spellings, and its
tokenizer cuts them into pieces it has no toxic meaning for. Copying some toxic training
comments with one strong word respelled, with the same labels, teaches it that the spelling does
not change what the comment says. The word list and the respellings are the project's own; the
behavioural suite's obfuscated cases (``behaviour_cases.json``) stay a held-out check.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from moderation_helpers.core.flags import SAFE_LABEL
from moderation_helpers.recipe.identity_examples import TERMS

# Words whose respelling changes nothing of a comment's meaning: insults, profanity, threats,
# and the identity words hate is aimed at.
STRONG_WORDS: tuple[str, ...] = (
    *"""
    idiot idiots stupid moron morons fool fools dumb loser losers jerk pathetic ignorant
    imbecile clown clowns liar liars hypocrite fuck fucking shit crap ass asshole bitch
    bastard damn dick kill die hate disgusting garbage trash scum pig pigs racist idiotic
    stupidity retarded crazy sick vermin animals savages
    """.split(),
    *sorted({word.lower() for term, people, _ in TERMS for word in (term, *people.split()[:1])}),
)
_WORD = re.compile(r"\b(?:" + "|".join(sorted(STRONG_WORDS, key=len, reverse=True)) + r")\b", re.I)
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "l": "1"}


def _leet(word: str, rng: np.random.Generator) -> str:
    spots = [i for i, ch in enumerate(word) if ch.lower() in _LEET]
    if not spots:
        return word + word[-1] * 2
    i = int(rng.choice(spots))
    return word[:i] + _LEET[word[i].lower()] + word[i + 1 :]


def _spaced(word: str, rng: np.random.Generator) -> str:
    return " ".join(word)


def _stretched(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word))) if len(word) > 1 else 0
    return word[: i + 1] + word[i] * 2 + word[i + 1 :]


def _dropped(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return _stretched(word, rng)
    i = int(rng.integers(1, len(word) - 1))
    return word[:i] + word[i + 1 :]


def _swapped(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return _leet(word, rng)
    i = int(rng.integers(1, len(word) - 2))
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _starred(word: str, rng: np.random.Generator) -> str:
    vowels = [i for i, ch in enumerate(word) if ch.lower() in "aeiou" and i > 0]
    if not vowels:
        return _spaced(word, rng)
    i = int(rng.choice(vowels))
    return word[:i] + "*" + word[i + 1 :]


RESPELLINGS: dict[str, Callable[[str, np.random.Generator], str]] = {
    "leet": _leet,
    "spaced": _spaced,
    "stretched": _stretched,
    "dropped": _dropped,
    "swapped": _swapped,
    "starred": _starred,
}


def respell(text: str, rng: np.random.Generator) -> str:
    """``text`` with one of its strong words (every occurrence of it) respelled one way."""
    words = sorted({m.group(0) for m in _WORD.finditer(text)})
    if not words:
        return text
    word = words[int(rng.integers(len(words)))]
    how = RESPELLINGS[list(RESPELLINGS)[int(rng.integers(len(RESPELLINGS)))]]
    new = how(word, rng)
    return re.sub(rf"\b{re.escape(word)}\b", new, text)


def spelling_variants(
    texts: pd.Series,
    flags: pd.DataFrame,
    n: int,
    seed: int,
    safe_label: str = SAFE_LABEL,
) -> pd.DataFrame:
    """Up to ``n`` flagged rows of one split (``texts`` and their bool ``flags``) that hold a
    :data:`STRONG_WORDS` word, copied with one such word respelled and the same flags: ``text``
    + the flag columns, the layout :func:`template_draws.with_examples` adds. Fewer rows
    come back when fewer qualify; the same ``seed`` gives the same rows."""
    columns = [c for c in flags.columns if c != safe_label]
    flagged = flags[columns].any(axis=1).reindex(texts.index, fill_value=False)
    eligible = texts[flagged & texts.str.contains(_WORD, na=False)]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(eligible), size=min(n, len(eligible)), replace=False)
    chosen = eligible.iloc[np.sort(picks)]
    out = pd.DataFrame({"text": [respell(text, rng) for text in chosen]})
    for column in flags.columns:
        out[column] = flags.loc[chosen.index, column].to_numpy()
    return out

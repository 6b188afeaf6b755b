"""How an identity term fills a template's slots, shared by the training templates and the
behavioural suite.

Most identity terms are adjectives ("Muslim", "deaf"), which fit both "a Muslim nurse" and "My
dentist is Muslim". A few are nouns ("immigrant", "refugee"): "an immigrant nurse" reads well,
"My dentist is immigrant" does not, so a template that puts the term after a verb, or before
"person", is not filled with them.
"""

from __future__ import annotations

import re

# Terms that are nouns: they take an article and cannot stand after "is" or "be".
NOUN_TERMS: frozenset[str] = frozenset({"immigrant", "refugee", "migrant"})
_PREDICATE_SLOT = re.compile(r"\b(?:is|are|am|I'm|be|being)\s+\{term\}|\{a_term\} person\b", re.I)


def with_article(word: str) -> str:
    """``word`` after its indefinite article, as the ``{a_...}`` slots take it: "a Muslim",
    "an Asian"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def fits(template: str, term: str) -> bool:
    """Whether ``term`` reads right in every slot of ``template`` (a noun term does not fit
    "My dentist is {term}." or "I am {a_term} person.")."""
    return term not in NOUN_TERMS or not _PREDICATE_SLOT.search(template)

"""Explanations of categories another step already flagged: the factory's moderation route and
``moderate-corpus --explain`` decide the flags from their own scores, then explain exactly those.

Texts flagged for the same categories share one :func:`~.explain.explain` call (two batched
score calls), so a block of texts costs a few calls, not two per text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moderation_helpers.model.explain import Explanation, explain


def explain_flagged(
    moderator: Any, texts: Sequence[str], flagged: Sequence[Sequence[str]], **options: Any
) -> list[Explanation]:
    """Per text, ``{category: spans}`` for the categories ``flagged`` names for it (``label``,
    or ``target/label`` for a model with several targets, as :func:`~.explain.explain` keys
    them); ``{}`` for a text with none. ``options``: :func:`~.explain.explain`'s."""
    if len(texts) != len(flagged):
        raise ValueError(f"{len(texts)} texts but {len(flagged)} lists of flagged categories")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, categories in enumerate(flagged):
        if categories:
            groups.setdefault(tuple(categories), []).append(i)
    out: list[Explanation] = [{} for _ in texts]
    for categories, rows in groups.items():
        found = explain(moderator, [texts[i] for i in rows], list(categories), **options)
        for i, explanation in zip(rows, found, strict=True):
            out[i] = explanation
    return out

"""Coherent scores: a label the training data implies by others never scores below them.

In civil_comments a comment that raters call an insult, a threat, an identity attack, obscene
or sexually explicit is one they call toxic too (every such row of the mirror but 3 of 172
identity attacks). A multi-label model with one sigmoid per label does not know that: trained on
1,000 rows, it scored "I hate Muslims." 0.98 as an identity attack and 0.70 as toxic, and a team
reading ``toxicity`` missed it. Hierarchical multi-label classification has a standard answer,
the max constraint of Giunchiglia & Lukasiewicz (C-HMCNN, NeurIPS 2020): a parent label's score
is the largest of its own and its children's, so the scores obey the hierarchy by construction.

Here the hierarchy is read off the training file, not written down: label ``child`` implies
``parent`` when ``parent`` is flagged on at least :data:`IMPLIED_SHARE` of the (at least
:data:`IMPLIED_MIN_ROWS`) rows that flag ``child``. The heads still learn their own labels; the
constraint applies to the scores (:meth:`.network.Classifier.scores`), in the exported graph too.
Measured by cross-validation in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

# A parent flagged on 95% of a child's rows: the mirror's identity attacks are 98.3% toxic (a
# few raters' splits), so an exact rule would miss the hierarchy a rater meant.
IMPLIED_SHARE = 0.95
IMPLIED_MIN_ROWS = 10  # fewer rows than this tell nothing about a label's parents


def implications(
    flags: np.ndarray,
    labels: Sequence[str],
    *,
    share: float = IMPLIED_SHARE,
    min_rows: int = IMPLIED_MIN_ROWS,
) -> dict[str, list[str]]:
    """``{parent: [children]}`` for the 0/1 label matrix ``flags`` (rows x ``labels``; rows with
    a NaN are not counted): each child flags at least ``min_rows`` rows, of which the parent
    flags at least ``share``. Labels in ``labels`` order; labels that imply nothing are absent."""
    matrix = np.asarray(flags, dtype=np.float64)
    matrix = matrix[~np.isnan(matrix).any(axis=1)] > 0.5
    counts = matrix.sum(axis=0)
    together = matrix.T.astype(np.int64) @ matrix.astype(np.int64)  # [child, parent] co-flags
    out: dict[str, list[str]] = {}
    for p, parent in enumerate(labels):
        children = [
            child
            for c, child in enumerate(labels)
            if c != p and counts[c] >= min_rows and together[c, p] >= share * counts[c]
        ]
        if children:
            out[parent] = children
    return out


def coherent_logits(
    logits: torch.Tensor, labels: Sequence[str], implied_by: Mapping[str, Sequence[str]]
) -> torch.Tensor:
    """``logits`` (batch, labels) with each parent's column raised to its children's largest.

    Taken in logit space, where the sigmoid keeps the order: the same as on scores, and the
    exported graph gains only Max operators."""
    if not implied_by:
        return logits
    index = {label: i for i, label in enumerate(labels)}
    columns = list(logits.unbind(dim=-1))
    for parent, children in implied_by.items():
        p = index[parent]
        for child in children:
            columns[p] = torch.maximum(columns[p], logits[..., index[child]])
    return torch.stack(columns, dim=-1)

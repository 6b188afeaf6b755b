"""How the project writes a range a small count leaves open: ``0.46–0.85``.

04's tables and the model card show the same 95% ranges; one spelling keeps them comparable.
"""

from __future__ import annotations

import math
from typing import Any


def format_range(low: Any, high: Any, digits: int = 2) -> str:
    """``low–high`` rounded to ``digits`` (an en dash between), or a dash alone where either
    end is missing (None or NaN: a record written before ranges were kept, or no cases)."""
    ends = (low, high)
    if any(end is None or (isinstance(end, float) and math.isnan(end)) for end in ends):
        return "–"
    return f"{float(low):.{digits}f}–{float(high):.{digits}f}"

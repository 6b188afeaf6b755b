"""How every figure the lessons keep is written: one PNG, atomically, with its title inside.

The PNG's ``Title`` text chunk holds the figure's titles (the suptitle, then each axes' title),
so a check can read what a figure says it shows, the model it names included, without looking
at its pixels: the docs check does (``pages.page_check.figure_problems``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from moderation_helpers.core.files import atomic_path


def figure_title(fig: Figure) -> str:
    """The figure's titles joined by "; ": its suptitle, then each axes' title, in order."""
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    titles = [suptitle, *(ax.get_title() for ax in fig.axes)]
    return "; ".join(t for t in titles if t)


def _metadata(fig: Figure) -> dict[str, Any] | None:
    title = figure_title(fig)
    return {"Title": title} if title else None


def save_figure(
    fig: Figure, path: str | os.PathLike, *, dpi: int = 110, bbox_inches: str | None = None
) -> Path:
    """Save ``fig`` as a PNG at ``path`` with its title in the ``Title`` chunk; written next to
    its target and renamed, so a failure leaves no half-written file."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches=bbox_inches, metadata=_metadata(fig))
    return Path(path)


def png_bytes(fig: Figure, *, dpi: int = 100) -> bytes:
    """The PNG of ``fig`` in memory (for a live display), with the same ``Title`` chunk."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=_metadata(fig))
    return buffer.getvalue()

"""The one browser the real-browser tests drive: Debian's chromium, found or skipped."""

from __future__ import annotations

import os
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str:
    """Debian's chromium (or $CHROMIUM_PATH); skip with the reason when there is none."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    candidates = [os.environ.get("CHROMIUM_PATH")] + [shutil.which(b) for b in BROWSERS]
    found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if found is None:
        pytest.skip(
            "no Chromium found (looked for $CHROMIUM_PATH and "
            f"{', '.join(BROWSERS)} on PATH): `apt-get install chromium` (.ci/run does)"
        )
    return found

"""What a published lesson page must not carry: shared by test_lesson_pages (the committed pages)
and test_page_renderer (pages rendered in the test)."""

from __future__ import annotations

import re
from pathlib import Path

from moderation_helpers.core.env import secret_values

SECRET = "sk-test-never-published-0123456789abcdef"
# Written apart from pages.sanitize's own patterns, so that a gap there is caught here.
LEAKS = {
    "an absolute path": re.compile(r"(?<![\w.~])/(?:work|root|tmp|home)/"),
    "a local server's port": re.compile(r"\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0):\d+"),
    "a key-like string": re.compile(
        r"\b(?:sk|pk|api|key|token)[-_][A-Za-z0-9_-]{16,}|\b[A-Za-z0-9+/]{40,}\b"
    ),
    "an id of one run": re.compile(
        r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    ),
}


# What GitHub would show as text or a reader must not see on a rendered page.
PAGE_FAULTS = {
    "a <style> block (GitHub prints its rules as text)": re.compile(r"<style\b", re.I),
    "pandas' CSS classes": re.compile(r"class=\"dataframe\""),
    "a port, even as a placeholder": re.compile(r":(?:<port>|&lt;port&gt;)"),
    # The fine-tuned id names the base model the job asked for, which is also what the loss and
    # speed figures are titled with: on the local factory it must be the encoder that trains.
    "a local model named after ministral": re.compile(r"ft:classifier:ministral"),
}
# A CSS rule as text: a selector, then "{ property: value; }".
CSS_TEXT = re.compile(r"[\w\-.#:\s]+\{[^{}]*:[^{}]*;[^{}]*\}")


def faults_in(text: str) -> list[str]:
    return [what for what, pattern in PAGE_FAULTS.items() if pattern.search(text)]


def leaks_in(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".md", ".txt", ".json", ".html"):
            found += leaks_in_file(path)
    return found


def leaks_in_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = []
    for what, pattern in LEAKS.items():
        found += [f"{path.name}: {what}: {m.group(0)!r}" for m in pattern.finditer(text)]
    return found + [f"{path.name}: a secret" for s in secret_values() if s in text]

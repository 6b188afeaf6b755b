"""The reference pages' in-page links: every ``#anchor`` a page links to names a heading there,
and the benchmarks page's Contents lists each of its measurements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.M)
LINK = re.compile(r"\]\(([\w./-]*?)#([\w-]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    # backticks and asterisks are markup; an underscore inside a word (identity_attack) is text
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on ``page``, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    # code blocks hold "# comments", not headings
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    for _, heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def test_slugs_follow_githubs_rule():
    assert slug("What 01's additions cost: about 0.008 of ROC-AUC") == (
        "what-01s-additions-cost-about-0008-of-roc-auc"
    )
    assert slug("Why was this flagged: span quality of `explain`") == (
        "why-was-this-flagged-span-quality-of-explain"
    )
    assert slug("Toxicity raised by identity_attack") == "toxicity-raised-by-identity_attack"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_in_page_link_names_a_heading(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target, anchor in LINK.findall(text):
        if target.startswith("http"):
            continue
        linked = page if not target else (page.parent / target).resolve()
        if linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{page.name}: links to missing headings: {broken}"


def test_the_benchmarks_contents_lists_every_measurement():
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text(encoding="utf-8")
    contents = text.split("## Contents", 1)[1].split("\n## ", 1)[0]
    listed = {anchor for _, anchor in LINK.findall(contents)}
    sections = {slug(h) for h in re.findall(r"^### (.+?)\s*$", text, re.M)}
    assert sections and sections <= listed, f"not in Contents: {sorted(sections - listed)}"

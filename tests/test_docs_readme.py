"""README.md: read in five minutes, and every link into the pages lands on a file and a heading.

The site's build checks the links between pages; the README is not a page of the site (it
is what GitHub shows), so its links are checked here, anchors included.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.*?)\s*(?:\{#(?P<id>[\w-]+)\})?\s*$")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings, as the site's toc makes them (code spans and links unwrapped)."""
    found = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or not (m := HEADING.match(line)):
            continue
        text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", m.group("text")).replace("`", "")
        found.add(m.group("id") or slugify(text, "-"))
    return found


def test_the_readme_is_at_most_150_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_every_relative_link_of_the_readme_lands_on_a_file_and_its_heading() -> None:
    links = [m.group("target") for m in LINK.finditer(README.read_text(encoding="utf-8"))]
    relative = [t for t in links if not re.match(r"^[a-z]+:", t)]
    assert len(relative) > 20  # the links into the pages, found
    for target in relative:
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else README
        assert file.exists(), f"README.md links to {target}: no such file"
        if anchor:
            assert anchor in anchors(file), f"README.md links to {target}: {path} has no heading #{anchor}"


def test_the_readme_links_every_page() -> None:
    text = README.read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    missing = [p for p in pages if f"(docs/{p}" not in text]
    assert not missing, f"pages the README does not link: {missing}"


def test_anchors_are_found_as_the_site_makes_them() -> None:
    running = anchors(ROOT / "docs" / "running.md")
    assert {"running-it-every-night", "sharding-over-several-machines", "shell-completion"} <= running
    assert "does-not-exist" not in running

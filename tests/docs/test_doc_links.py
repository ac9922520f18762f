"""Every relative link of README.md and docs/*.md leads somewhere: the file exists and, for `#anchor` links,
the target page has a heading with that anchor (GitHub's slugs), so moving a section cannot strand a link."""

from __future__ import annotations

import re
from pathlib import Path

from doc_snippets import DOCS, ROOT
from markdown_it import MarkdownIt

README_MAX_LINES = 120  # "fits on a few screens": the rest belongs in docs/


def github_anchor(heading: str) -> str:
    """GitHub's heading id: lower case, punctuation dropped except '-' and '_', spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    tokens = MarkdownIt("commonmark").parse(path.read_text())
    return {github_anchor(tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open"}


def links(path: Path) -> list[str]:
    found = []
    for token in MarkdownIt("commonmark").parse(path.read_text()):
        for child in token.children or []:
            if child.type == "link_open":
                found.append(child.attrs["href"])
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for href in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # http:, https:, mailto: are not checked (no network)
            continue
        target, _, anchor = href.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(f"{href} (no file {file})")
        elif anchor and (file.suffix != ".md" or anchor not in headings(file)):
            broken.append(f"{href} (no heading #{anchor} in {file})")
    return broken


def test_every_relative_link_resolves() -> None:
    broken = {str(p.relative_to(ROOT)): b for p in DOCS if (b := broken_links(p))}
    assert not broken, broken


def test_the_checker_sees_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Run it (`make demo`)\n\n[ok](#run-it-make-demo) [bad](#run-it) [gone](nope.md)\n")
    assert broken_links(page) == [f"#run-it (no heading #run-it in {page})", f"nope.md (no file {tmp_path / 'nope.md'})"]


def test_readme_fits_on_a_few_screens_and_points_into_docs() -> None:
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    targets = {href.partition("#")[0] for href in links(readme)}
    assert {f"docs/{p.name}" for p in DOCS if p.parent.name == "docs"} <= targets, "every docs page is linked"

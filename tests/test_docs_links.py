"""The documentation's links lead somewhere: README.md and every docs/*.md page.

Every relative markdown link (``[text](target)``, ``[text](target#anchor)``) must name a file or
folder that exists in the repository, and an anchor into a markdown page must match one of its
headings (GitHub's slugs). The docs index must list every page, the README must stay short, and
nothing may cite a file that is not in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])

#: Pages other engineers are still writing: linked already, allowed to be missing until they land.
EXPECTED_LATER: frozenset[str] = frozenset()

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def _links(page: Path) -> list[tuple[int, str]]:
    """``(line, target)`` of every link on ``page`` outside code blocks and inline code."""
    found = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        for match in _LINK.finditer(re.sub(r"`[^`]*`", "``", line)):
            found.append((number, match["target"]))
    return found


def _slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading keeps its text
    title = title.strip().lower()
    title = re.sub(r"[^\w\- ]", "", title)
    return title.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``'s headings (repeated titles get ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = _slug(match["title"])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE))


def test_the_pages_exist() -> None:
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    for name in ("README.md", "docs/index.md", "docs/run-contract.md", "docs/architecture.md"):
        assert name in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for number, target in _links(page):
        if _is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        name = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else str(resolved)
        if not resolved.exists():
            if name not in EXPECTED_LATER:
                broken.append(f"{page.name}:{number}: {target} (no such file: {name})")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{page.name}:{number}: {target} (no heading with anchor #{anchor} in {name})")
    assert broken == []


def test_links_point_inside_the_repository() -> None:
    outside = [
        f"{page.name}:{number}: {target}"
        for page in PAGES
        for number, target in _links(page)
        if not _is_external(target)
        and target.partition("#")[0]
        and not (page.parent / target.partition("#")[0]).resolve().is_relative_to(ROOT)
    ]
    assert outside == []


def test_the_index_lists_every_page() -> None:
    index = DOCS / "index.md"
    listed = {(DOCS / target.partition("#")[0]).resolve() for _, target in _links(index) if not _is_external(target)}
    pages = {page.resolve() for page in DOCS.glob("*.md") if page.name != "index.md"}
    assert sorted(p.name for p in pages - listed) == []


def test_the_readme_is_short() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    long_lines = [
        f"README.md:{number} ({len(line)} characters)" for number, line in _prose_lines(text) if len(line) > 120
    ]
    assert long_lines == []


def test_no_behaviour_notes_left_under_their_old_title() -> None:
    old = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in PAGES
        for number, line in _prose_lines(page.read_text(encoding="utf-8"))
        if _HEADING.match(line) and "issue was silent" in line
    ]
    assert old == []


def test_the_architecture_page_names_every_module() -> None:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / "src" / "wandb_bridge"
    unnamed = [
        module.relative_to(package).as_posix()
        for folder in ("core", "adapters", "callbacks", "testing")
        for module in sorted((package / folder).glob("*.py"))
        if module.name != "__init__.py" and not re.search(rf"(?<![\w.-]){re.escape(module.name)}(?!\w)", page)
    ]
    assert unnamed == []


def test_nothing_cites_a_design_file_outside_the_repository() -> None:
    missing = "DESIGN" + ".md"  # the project's design notes live outside this repository
    assert not (ROOT / missing).exists()
    citing = []
    for folder in ("src", "tests", "examples", "benchmarks", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".txt"} or not path.is_file():
                continue
            if ".egg-info" in path.as_posix():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                if missing in line:
                    citing.append(f"{path.relative_to(ROOT)}:{number}")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    citing += [f"README.md:{n}" for n, line in enumerate(readme.splitlines(), start=1) if missing in line]
    assert citing == []

"""The documents keep their promises: a README that fits on a screen and links every
page of the manual, links that lead to files that exist, and install commands that
work from a clone (drapto is not published, so `pip install 'drapto[...]'` cannot)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 200
SKIPPED = {".git", ".venv", "node_modules", "build", "dist"}
# [text](target) and ![alt](target); the target ends at whitespace or ')'.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
UNPUBLISHED_INSTALL = re.compile(r"""pip install\s+['"]?drapto\[""")


def documents() -> list[Path]:
    """Every Markdown file of the repository, outside virtual environments and builds."""
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not SKIPPED.intersection(path.relative_to(ROOT).parts)
    )


def local_links(document: Path) -> list[str]:
    """The relative link targets of a document, without their #fragment."""
    targets = []
    for target in LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def anchors(document: Path) -> set[str]:
    """The #fragments a renderer gives a document's headings (GitHub's rule: lower case,
    punctuation other than '-' and '_' dropped, spaces become '-')."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", document.read_text(encoding="utf-8"), re.M)
    }


def test_the_readme_fits_on_a_screen() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, more than {README_MAX_LINES}"


def test_the_readme_links_every_page_of_the_manual() -> None:
    linked = {(ROOT / target).resolve() for target in local_links(README)}
    pages = {page.resolve() for page in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ has no pages"
    unlinked = sorted(page.name for page in pages - linked)
    assert not unlinked, f"README.md links no docs/{unlinked}"


def test_every_link_of_every_document_leads_to_a_file() -> None:
    broken = [
        f"{document.relative_to(ROOT)}: {target}"
        for document in documents()
        for target in local_links(document)
        if not (document.parent / target).exists()
    ]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_every_link_to_a_heading_finds_it() -> None:
    missing = []
    for document in documents():
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            page, _, fragment = target.partition("#")
            if not fragment or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            linked = (document.parent / page) if page else document
            if linked.suffix == ".md" and fragment not in anchors(linked):
                missing.append(f"{document.relative_to(ROOT)}: {target}")
    assert not missing, "links to headings that do not exist:\n" + "\n".join(missing)


def test_no_document_installs_drapto_from_a_registry() -> None:
    found = [
        f"{document.relative_to(ROOT)}:{number}: {line.strip()}"
        for document in documents()
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1)
        if UNPUBLISHED_INSTALL.search(line)
    ]
    assert not found, "drapto is not published; install it from the clone:\n" + "\n".join(found)


def test_no_document_links_outside_the_repository() -> None:
    external = [
        f"{document.relative_to(ROOT)}: {target}"
        for document in documents()
        for target in LINK.findall(document.read_text(encoding="utf-8"))
        if re.match(r"^[a-z][a-z0-9+.-]*:", target)
    ]
    assert not external, "links that leave the repository:\n" + "\n".join(external)

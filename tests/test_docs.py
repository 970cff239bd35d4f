"""README.md and docs/: README stays short, every page is reachable from it, no link is dead,
and README's two commands are where CI reads the second one from."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
MAX_README_LINES = 200
CI_MARKER = "README.md, second command"

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text outside code: fenced blocks and inline code spans removed."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(prose(page.read_text()))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # no http:, mailto:


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = HEADING.findall(FENCE.sub("", page.read_text()))
    return {re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-") for heading in headings}


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """Each ```bash block's start offset and its body."""
    return [(match.start(), match.group(1)) for match in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S)]


def test_the_readme_is_under_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines: move a section to docs/"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target.split("#", 1)[0] for target in relative_links(README)}
    files = sorted(path.relative_to(REPO_ROOT).as_posix() for path in DOCS.rglob("*") if path.is_file())
    assert files, "docs/ holds no page"
    assert [path for path in files if path not in linked] == []


def test_every_relative_link_points_to_a_file_that_exists():
    dead = []
    for page in pages():
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                dead.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                dead.append(f"{page.relative_to(REPO_ROOT)}: {target} (no such heading)")
    assert dead == []


def test_the_readme_opens_with_its_two_commands_and_ci_runs_the_second_verbatim():
    text = README.read_text()
    blocks = bash_blocks(text)
    assert len(blocks) >= 2
    (first_at, first), (second_at, second) = blocks[:2]
    assert first_at < second_at < text.index("\n## "), "the two commands come before any section"
    assert first.count("\n") == 1 and "python -m bench.run --suite transfer" in first
    assert second.count("\n") == 1 and "python -m pytest" in second
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    marker = next(n for n, line in enumerate(ci) if line.startswith("#") and CI_MARKER in line)
    assert ci[marker + 1] == second.rstrip("\n")

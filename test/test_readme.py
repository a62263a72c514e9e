"""The README is a user's guide whose numbers all come from the result pages.

* Every number with a decimal point quoted in README.md (e.g. 49.3, 0.91, 4.5) appears, exactly
  as written, in docs/results.md or docs/benchmarks.md. Code (fenced blocks and `inline code`),
  link targets and tokens glued to a letter, digit, hyphen, slash or dot (version and licence
  names such as ``CC-BY-3.0`` or ``libusb-1.0-0``) are not quoted figures.
* The README stays a guide: 150 to 300 lines.
* Every relative link in README.md points to an existing file.
* No ``<<RESULT`` placeholder is left in README.md or docs/results.md (a separate test, so that it
  fails on its own until the numbers are filled in).

Pure Python and fast: no package import.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SOURCES = (REPO / "docs" / "results.md", REPO / "docs" / "benchmarks.md")
PLACEHOLDER = "<<RESULT"

#: a decimal number not glued to a word character, hyphen, slash or dot on its left, and not
#: followed by another ".digit" (1.2.3) or digit.
NUMBER = re.compile(r"(?<![\w\-/.])\d+\.\d+(?!\.?\d)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK_TARGET = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
URL = re.compile(r"\bhttps?://\S+")


def prose(text: str) -> str:
    """``text`` without fenced code, inline code, link targets and bare URLs."""
    text = FENCE.sub("", text)
    text = INLINE_CODE.sub("", text)
    text = LINK_TARGET.sub("]()", text)
    return URL.sub("", text)


def quoted_numbers(text: str) -> list[str]:
    """The decimal numbers quoted in the prose and tables of a Markdown text, in order."""
    return NUMBER.findall(prose(text))


def test_number_extraction_rules():
    text = ("AP 49.3 and 0.91; p95 4.5 ms.\n`--set score_threshold=0.3` and [x](docs/a.md) "
            "CC-BY-3.0 libusb-1.0-0 torch 2.13.0 v2.0 https://ex.org/1.5\n```\nrate 7.5\n```\n| 12.0 |")
    assert quoted_numbers(text) == ["49.3", "0.91", "4.5", "12.0"]


def test_readme_numbers_come_from_results_or_benchmarks():
    sources = {p.name: p.read_text() for p in SOURCES if p.is_file()}
    assert "results.md" in sources, "docs/results.md is missing"
    known = set()
    for text in sources.values():
        known.update(NUMBER.findall(text))
    missing = sorted(set(quoted_numbers(README.read_text())) - known, key=float)
    assert not missing, (f"README.md quotes {missing}, which appear in neither docs/results.md nor "
                         "docs/benchmarks.md: put the figure there first (or quote it as written there)")


def test_readme_length():
    n = len(README.read_text().splitlines())
    assert 150 <= n <= 300, f"README.md has {n} lines; it is a user's guide of 150-300 lines"


def test_readme_relative_links_exist():
    text = FENCE.sub("", README.read_text())
    broken = []
    for target in LINK_TARGET.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue                                            # URL, mailto:, anchor in the page
        path = target.split("#", 1)[0]
        if not (README.parent / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to missing files: {broken}"


def test_no_placeholders_left():
    left = {p.relative_to(REPO).as_posix(): p.read_text().count(PLACEHOLDER)
            for p in (README, REPO / "docs" / "results.md") if p.is_file()}
    left = {k: v for k, v in left.items() if v}
    assert not left, f"result placeholders still to fill in ({PLACEHOLDER}...>>): {left}"

"""Chapter numbers agree everywhere: file names, titles, the plan on the landing page, and the prose.

The book's chapters are the files ``chapters/NN_name.md`` (with their generated notebooks), and the
number ``NN`` is the chapter's number. Some numbers are not written yet (the plan in book/index.md
lists all sixteen), so Jupyter Book's own numbering, which counts the files present, would
disagree with the prose; instead each chapter's title carries its number (``# 5. Transformers``),
and that is what the sidebar shows.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_FILES = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
CHAPTERS = {int(p.name[:2]): p for p in CHAPTER_FILES}
#: the prose that may name chapters: the book's pages, the chapters, and lmlib's docstrings and comments (the
#: library reference shows the docstrings, whose "Taught in:" lines name chapters, planned ones included)
PROSE = sorted((ROOT / "book").rglob("*.md")) + CHAPTER_FILES + sorted((ROOT / "lmlib").rglob("*.py"))

# "Chapter 5", "chapter 3's", "chapters 9-10", "chapters 1, 4, 6, 11", "Chapters 9 and 10"
REFERENCE = re.compile(r"\b[Cc]hapters?\s+(?P<numbers>\d+(?:\s*(?:[-–]|,|and|to)\s*\d+)*)")
# a chapter of another book: "*Deep Learning*, chapter 7", "(2016, chapter 7)"
CITATION = re.compile(r"(?:\*|\d{4}),\s*$")


def plan() -> dict[int, str]:
    """Chapter number -> its entry in the plan of the whole book (the numbered list in book/index.md)."""
    text = (ROOT / "book" / "index.md").read_text(encoding="utf-8")
    section = text.split("## The plan", 1)[1].split("\n## ", 1)[0]
    entries = re.split(r"\n(?=\d+\. )", section)
    out = {}
    for entry in entries:
        m = re.match(r"(\d+)\. ", entry)
        if m:
            out[int(m[1])] = entry.split("\n\n")[0]
    return out


def numbers(group: str) -> list[int]:
    """The chapter numbers a reference names; a range ``12-16`` names every number in it."""
    out: list[int] = []
    for m in re.finditer(r"(\d+)(?:\s*(?:[-–]|to)\s*(\d+))?", group):
        lo, hi = int(m[1]), int(m[2] or m[1])
        out += list(range(lo, hi + 1))
    return out


def test_plan_lists_every_chapter_file_and_links_it():
    entries = plan()
    assert sorted(entries) == list(range(1, max(entries) + 1)), f"the plan in book/index.md skips numbers: {sorted(entries)}"
    for n, path in CHAPTERS.items():
        assert n in entries, f"{path.name} has no entry {n}. in the plan of book/index.md"
        assert f"chapters/{path.stem}" in entries[n], (
            f"the plan's entry {n}. in book/index.md should link the chapter ({{doc}}`../chapters/{path.stem}`)")
    for n, entry in entries.items():
        if n not in CHAPTERS:
            assert "(planned)" in entry, f"the plan's entry {n}. has no chapters/{n:02d}_*.md: mark it (planned)"


@pytest.mark.parametrize("path", CHAPTER_FILES, ids=lambda p: p.stem)
def test_title_carries_the_file_number(path: Path):
    title = next((ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("# ")), None)
    n = int(path.name[:2])
    assert title is not None, f"{path.name} has no title (a '# ' heading)"
    m = re.match(r"# (\d+)\. \S", title)
    assert m, f"{path.name}: the title {title!r} should start with its number: '# {n}. ...'"
    assert int(m[1]) == n, f"{path.name}: the title says chapter {m[1]}, the file name says {n}"


def test_table_of_contents_lists_chapters_in_order():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text(encoding="utf-8"))
    listed = [int(Path(ch["file"]).name[:2]) for part in toc["parts"] for ch in part.get("chapters", [])
              if ch["file"].startswith("chapters/")]
    assert listed == sorted(listed), f"book/_toc.yml lists the chapters out of order: {listed}"
    assert sorted(listed) == sorted(CHAPTERS), f"book/_toc.yml lists chapters {listed}, the files are {sorted(CHAPTERS)}"


@pytest.mark.parametrize("path", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_chapter_references_name_a_chapter_of_the_book(path: Path):
    known = set(CHAPTERS) | set(plan())
    text = path.read_text(encoding="utf-8")
    bad = []
    for m in REFERENCE.finditer(text):
        if CITATION.search(text[max(0, m.start() - 12):m.start()]):
            continue
        line = text.count("\n", 0, m.start()) + 1
        bad += [f"{path.relative_to(ROOT)}:{line}: {m[0]!r}" for n in numbers(m["numbers"]) if n not in known]
    assert not bad, ("these name a chapter that is neither a file chapters/NN_*.md nor in the plan of "
                     "book/index.md:\n" + "\n".join(bad))

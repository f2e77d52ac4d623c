"""The whole book builds with warnings as errors, and every chapter page is complete.

The build (tools/build_book.py, quick mode) runs once per session through the ``built_book``
fixture of conftest.py. Checks per notebook chapter of book/_toc.yml: it executed without errors
and within the quick-mode budget (from the execution cache), and its page has a working Colab link,
a figure, an exercise with a hidden solution, quick-mode output and no traceback.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from conftest import CHAPTERS, DOCS, ROOT, BookBuild, chapter_id, expected_colab_url, load_yaml, report

pytestmark = pytest.mark.book

QUICK_BUDGET_S = 180  # quick mode: a whole chapter in under 3 minutes on 2 CPU cores
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|^-{20,}\n\w*(Error|Exception)\b", re.M)


def page(html: Path, doc: str) -> BeautifulSoup:
    path = html / f"{doc}.html"
    assert path.is_file(), f"{doc} is in book/_toc.yml but {path} was not built"
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def article(soup: BeautifulSoup):
    art = soup.select_one("article.bd-article")
    assert art is not None, "no <article class='bd-article'> in the page: did the theme change?"
    return art


def code_cells(soup: BeautifulSoup) -> list[tuple[str, str]]:
    """(input text, output text) of every executed code cell on the page."""
    cells = []
    for cell in article(soup).select("div.cell"):
        src = cell.select_one("div.cell_input")
        out = cell.select_one("div.cell_output")
        cells.append((src.get_text() if src else "", out.get_text() if out else ""))
    return cells


def test_there_are_notebook_chapters():
    assert CHAPTERS, "book/_toc.yml lists no notebook chapter (chapters/NN_name with a .ipynb next to it)"


def test_build_succeeds_with_warnings_as_errors(book_build: BookBuild, built_book: Path):
    header = next((ln for ln in book_build.output.splitlines() if ln.startswith("==> building the book")), "")
    assert "quick mode" in header, f"the build did not announce quick mode: {header!r}"
    assert " -W" in header and "--all" in header and "--keep-going" in header, (
        f"the build must treat warnings as errors and re-read every page; it ran: {header!r}"
    )
    assert "build succeeded" in book_build.output
    # Sphinx warnings look like "path:line: WARNING: message"; a kernel's own log lines
    # ("[IPKernelApp] WARNING | ...") are not warnings about the book
    warnings = [ln for ln in book_build.output.splitlines() if re.search(r"\bWARNING: ", ln)]
    assert not warnings, "the build printed warnings:\n" + "\n".join(warnings)
    for doc in DOCS:
        assert (built_book / f"{doc}.html").is_file(), f"{doc}.html missing from the built book"
    report(f"book build: {book_build.seconds:.1f} s (tools/build_book.py, quick mode, -W)")


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_executed_in_quick_mode_within_budget(built_book: Path, doc: str):
    from jupyter_cache import get_cache

    cfg = load_yaml(ROOT / "_config.yml")
    cache = get_cache(ROOT / cfg["execute"]["cache"])
    nb_path = ROOT / f"{doc}.ipynb"
    project = {Path(r.uri): r for r in cache.list_project_records()}.get(nb_path)
    if project is not None and project.traceback:
        pytest.fail(f"{doc} failed to execute:\n{project.traceback[-4000:]}", pytrace=False)
    try:
        record = cache.match_cache_file(str(nb_path))
    except KeyError:
        older = [r for r in cache.list_cache_records() if Path(r.uri) == nb_path]
        hint = (f"; the cache holds {len(older)} run(s) of an earlier version of it, so the notebook changed "
                "after the build" if older else "")
        pytest.fail(f"{doc}: the execution cache {cache.path} has no run of the notebook as it is now; it was "
                    f"not executed successfully by the build (see _build/html/reports/){hint}", pytrace=False)
    seconds = record.data.get("execution_seconds")
    assert isinstance(seconds, (int, float)), f"{doc}: the cache record has no execution time: {record.data}"
    report(f"{doc}: executed in {seconds:.1f} s (quick mode, budget {QUICK_BUDGET_S} s)")
    assert seconds < QUICK_BUDGET_S, (
        f"{doc} took {seconds:.0f} s to execute in quick mode; the budget is {QUICK_BUDGET_S} s. "
        "Make its quick config smaller, or load a checkpoint made by a recipe (see the appendix)."
    )


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_has_colab_link_to_a_real_notebook(built_book: Path, doc: str):
    soup = page(built_book, doc)
    links = [a["href"] for a in soup.find_all("a", href=True) if "colab.research.google.com" in a["href"]]
    want = expected_colab_url(doc)
    assert want in links, f"{doc}: no Colab link {want}; Colab links on the page: {links}"
    path_in_repo = want.split("/blob/", 1)[1].split("/", 1)[1]
    assert (ROOT / path_in_repo).is_file(), f"{doc}: the Colab link points to {path_in_repo}, not a file in the repo"
    assert path_in_repo.endswith(".ipynb")


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_has_figure_exercise_and_hidden_solution(built_book: Path, doc: str):
    art = article(page(built_book, doc))
    figures = art.select("img")
    assert figures, f"{doc}: no figure (<img>) on the page"
    exercises = art.select("div.exercise")
    assert exercises, f"{doc}: no exercise box (sphinx-exercise) on the page"
    solutions = art.select("div.solution")
    assert solutions, f"{doc}: no solution on the page"
    shown = [s.get("id") for s in solutions if "dropdown" not in s.get("class", [])]
    assert not shown, f"{doc}: solutions not hidden in a dropdown (add ':class: dropdown'): {shown}"


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_outputs_have_no_traceback(built_book: Path, doc: str):
    art = article(page(built_book, doc))
    errors = art.select("div.output.traceback, div.output.error")
    assert not errors, f"{doc}: {len(errors)} error output(s), first:\n{errors[0].get_text()[:2000]}"
    for src, out in code_cells(page(built_book, doc)):
        assert not TRACEBACK_RE.search(out), f"{doc}: a cell output contains a traceback:\n{src[:500]}\n---\n{out[:2000]}"


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_markdown_outputs_render(built_book: Path, doc: str):
    """A table printed with display(Markdown(...)) becomes a <table>, not a paragraph of pipes."""
    raw = [p.get_text()[:300] for p in article(page(built_book, doc)).select("div.cell_output p")
           if re.search(r"\|\s*:?(?:-{3,}|[\u2013\u2014]+):?\s*\|", p.get_text())]  # Sphinx turns --- into an em dash
    assert not raw, f"{doc}: markdown tables in cell outputs were not rendered (nb_render_markdown_format?):\n{raw}"


def test_mode_reached_the_kernel(built_book: Path):
    """Chapters print lmlib.mode(); the rendered output must say quick (the build's mode)."""
    seen = []
    for doc in CHAPTERS:
        for src, out in code_cells(page(built_book, doc)):
            if re.search(r"\b(lmlib\.)?mode\(\)", src) and out.strip():
                seen.append((doc, out))
    if not seen:
        pytest.skip("no chapter prints lmlib.mode() in a cell output")
    for doc, out in seen:
        words = set(re.findall(r"\b(quick|full)\b", out))
        assert words == {"quick"}, f"{doc}: the cell that prints the mode shows {sorted(words)} in a quick build:\n{out[:500]}"


def test_report_html_size(built_book: Path):
    files = [p for p in built_book.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    pages = {doc: (built_book / f"{doc}.html").stat().st_size for doc in DOCS}
    report(f"HTML: {total / 1e6:.1f} MB in {len(files)} files under {built_book}")
    for doc, size in pages.items():
        report(f"  {doc}.html: {size / 1e3:.0f} kB")
    print("\n".join(f"{doc}.html {size} bytes" for doc, size in pages.items()))
    assert total > 0

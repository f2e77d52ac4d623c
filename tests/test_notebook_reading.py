"""The chapter and student notebooks read as ordinary notebooks in Jupyter and Colab; the book keeps its MyST.

Each markdown cell is rendered to HTML the way Jupyter does (nbconvert's mistune renderer, none of
the book's extensions) and must show no directive or role syntax: exercises are headings, {doc}
roles are links, solutions are marked. The book renders the same notebooks after
tools/sphinx_myst_cells.py has put each rewritten cell's MyST back: that must be exactly the text
of the chapter's source, so the rendered book is unchanged.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from lmlib.exercises.plain_markdown import LEFTOVER_PATTERNS, MystConversionError, plain_markdown
from lmlib.exercises.student import write_student_notebooks

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
import sphinx_myst_cells  # noqa: E402


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    write_student_notebooks([ROOT / "chapters"], out)
    return out


def rendered_markdown(nb: nbformat.NotebookNode) -> list[BeautifulSoup]:
    """Every markdown cell as Jupyter's renderer makes it."""
    return [BeautifulSoup(markdown2html_mistune(c.source), "html.parser") for c in nb.cells if c.cell_type == "markdown"]


def assert_reads_as_a_notebook(nb: nbformat.NotebookNode, name: str, md_source: str) -> list[BeautifulSoup]:
    cells = rendered_markdown(nb)
    for i, soup in enumerate(cells):
        text = soup.get_text()
        left = [p for p in LEFTOVER_PATTERNS if p in text]
        assert not left, f"{name}, markdown cell {i}: raw MyST {left} would show in Jupyter:\n{text[:600]}"
    headings = [h.get_text() for soup in cells for h in soup.find_all(re.compile(r"^h[2-6]$"))]
    exercises = [h for h in headings if re.fullmatch(r"Exercise \d+: .+", h)]
    assert len(exercises) == md_source.count("{exercise-start}"), f"{name}: exercise headings {exercises}"
    assert [int(h.split()[1].rstrip(":")) for h in exercises] == list(range(1, len(exercises) + 1))
    for soup in cells:
        for a in soup.find_all("a", href=True):
            assert not a["href"].startswith("{"), f"{name}: a link to {a['href']}"
    return cells


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_notebook_reads_as_an_ordinary_notebook(path):
    nb = nbformat.read(path, as_version=4)
    md = path.with_suffix(".md").read_text(encoding="utf-8")
    cells = assert_reads_as_a_notebook(nb, path.name, md)
    text = "\n".join(soup.get_text() for soup in cells)
    assert text.count("Solution to Exercise") == md.count("{solution-start}")
    for target in re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", md):  # {doc} roles became links to real files
        hrefs = [a["href"] for soup in cells for a in soup.find_all("a", href=True)]
        link = next((h for h in hrefs if h.rsplit(".", 1)[0] == target), None)
        assert link and (path.parent / link).is_file(), f"{path.name}: no working link for {{doc}}`{target}`: {hrefs}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_reads_as_an_ordinary_notebook(path, student_dir):
    nb = nbformat.read(student_dir / path.name, as_version=4)
    cells = assert_reads_as_a_notebook(nb, f"student/{path.name}", path.with_suffix(".md").read_text(encoding="utf-8"))
    text = "\n".join(soup.get_text() for soup in cells)
    assert "Solution to Exercise" not in text and "Your answer" in text
    assert all("lmbook" not in c.metadata for c in nb.cells), "the MyST kept in metadata holds the solutions' text"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_book_renders_the_chapters_own_myst(path):
    """What Sphinx parses (after the source-read hook) is the .md's text, cell for cell."""
    source = [path.read_text(encoding="utf-8")]
    app = SimpleNamespace(env=SimpleNamespace(doc2path=lambda docname: str(path)))
    sphinx_myst_cells.restore_myst(app, "chapters/" + path.stem, source)
    restored = json.loads(source[0])
    original = jupytext.read(path.with_suffix(".md"), fmt="md:myst")
    assert len(restored["cells"]) == len(original.cells)
    for i, (got, want) in enumerate(zip(restored["cells"], original.cells)):
        assert "lmbook" not in got["metadata"]
        if want.cell_type == "markdown":
            assert "".join(got["source"]) == want.source, f"{path.name}, cell {i}"


def test_conversion_of_the_myst_the_book_uses():
    md = """(sec-intro)=
## Introduction

See {doc}`../book/appendix_infrastructure`, {doc}`the notation <../book/notation>`, {ref}`sec-intro`, {math}`x^2` and {numref}`Table %s <t>`.

```{note}
A note with {ref}`a title <elsewhere>`.
```

:::{admonition} Careful
Text.
:::

````{exercise-start} Count things
:label: ex-count
````

Do it.

````{exercise-end}
````

````{solution-start} ex-count
:class: dropdown
````

Because.

````{solution-end}
````

```python
# code blocks are kept as they are: {doc}`x`
```
"""
    out = plain_markdown(md, ROOT / "chapters")
    assert '<a id="sec-intro"></a>' in out and "## Introduction" in out
    assert "[How the book is built](../book/appendix_infrastructure.md)" in out  # titled by the page's heading
    assert "[the notation](../book/notation.md)" in out
    assert "[Introduction](#sec-intro)" in out and "$x^2$" in out and "Table" in out
    assert "> **Note**\n>\n> A note with a title." in out
    assert "> **Careful**" in out
    assert '<a id="ex-count"></a>\n\n### Exercise 1: Count things\n\nDo it.' in out
    assert "<!-- solution-start ex-count -->\n\n**Solution to Exercise 1.**" in out
    assert "Because.\n\n<!-- solution-end -->\n\n*End of the solution.*" in out
    assert "```python\n# code blocks are kept as they are: {doc}`x`\n```" in out
    assert [p for p in LEFTOVER_PATTERNS if p in out.split("```python")[0]] == []
    with pytest.raises(MystConversionError, match=r"the directive \{toctree\} has no plain-Markdown form"):
        plain_markdown("```{toctree}\nx\n```")

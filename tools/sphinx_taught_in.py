"""Sphinx extension (loaded through `sphinx.local_extensions` in _config.yml): "Taught in:" lines become links.

Every public object of lmlib says in its docstring which chapter teaches it, in one form:

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).

The library reference (book/api/) shows these docstrings through autodoc. This extension rewrites
the "Taught in:" paragraph of each one (hooked on `autodoc-process-docstring`) so that

* `Chapter N, "Title" (chapters/NN_name.ipynb)` becomes a link to that chapter's page;
* `"Title" (book/page.md)` (a page of the book, such as the instructor guide) becomes a link to it,
  and a bare `(book/page.md)` a link that shows the page's title;
* a bare `Chapter N` ("used from Chapter 4 on") links to chapter N if the book has it;
* a planned chapter, `Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb)`, stays plain text.

A path that names no page of the book is left as a `:doc:` reference, so the build (run with -W)
fails on it instead of printing a dead link.

It also resolves the short cross-references the docstrings use among lmlib's objects
(``:class:`Segment``` in the package `lmlib.preferences`, whose `Segment` is documented at
`lmlib.preferences.pairs.Segment`, or ``:func:`lmlib.rl.gae``` for a re-export): a Python reference
that Sphinx cannot find links to the one documented lmlib object whose dotted name ends with it,
if there is exactly one. Anything else (torch, numpy) stays plain code, as before.

And it keeps napoleon away from the docstrings of attributes and constants: napoleon takes the
docstring `Where to train: "auto" (cuda if available...).` under a dataclass field as the
Google-style `type: description` and shows "Type: Where to train". lmlib's fields and constants
take their types from their annotations, and their docstrings are plain text, so they are shown
as written.
"""
from __future__ import annotations

import re
from pathlib import Path

from sphinx.util.nodes import make_refnode

TAUGHT_IN = "Taught in:"
# `Chapter 5, "Transformers" (chapters/05_transformers.ipynb)`, `Appendix "X" (book/x.md)`, `"X" (book/x.md)`
TITLED_PATH = re.compile(r'(?P<label>(?:(?:Chapter \d+|Appendix),? )?"[^"]+")\s*'
                         r'\((?P<path>(?:chapters|book)/\w+)\.(?:ipynb|md)\)')
BARE_PATH = re.compile(r'\((?P<path>(?:chapters|book)/\w+)\.(?:ipynb|md)\)')
BARE_CHAPTER = re.compile(r"\bChapter (?P<n>\d+)\b(?!,? \")")
ROLE = re.compile(r":doc:`[^`]*`")


def chapter_docs(srcdir: str | Path) -> dict[int, str]:
    """Chapter number -> docname of every chapter notebook the book has (``chapters/NN_name.ipynb``)."""
    return {int(p.name[:2]): f"chapters/{p.stem}" for p in sorted(Path(srcdir, "chapters").glob("[0-9][0-9]_*.ipynb"))}


def link_taught_in(text: str, chapters: dict[int, str]) -> str:
    """The reST of one "Taught in:" paragraph, with its chapter and page references turned into ``:doc:`` links."""
    text = TITLED_PATH.sub(lambda m: f":doc:`{m['label']} </{m['path']}>`", text)
    text = BARE_PATH.sub(lambda m: f"(:doc:`/{m['path']}`)", text)

    def bare(m: re.Match) -> str:
        doc = chapters.get(int(m["n"]))
        return f":doc:`{m[0]} </{doc}>`" if doc else m[0]

    # Link bare chapter numbers only outside the links made above.
    pieces, last = [], 0
    for role in ROLE.finditer(text):
        pieces += [BARE_CHAPTER.sub(bare, text[last:role.start()]), role[0]]
        last = role.end()
    pieces.append(BARE_CHAPTER.sub(bare, text[last:]))
    return "".join(pieces)


def process_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    chapters = chapter_docs(app.srcdir)  # a glob of a dozen names: cheap enough to redo per docstring
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith(TAUGHT_IN):
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
            indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
            joined = " ".join(line.strip() for line in lines[i:j])
            lines[i:j] = [indent + link_taught_in(joined, chapters)]
        i += 1


_ATTRIBUTE_KINDS = ("attribute", "data", "property")
_before_napoleon: dict[int, list[str]] = {}


def keep_attribute_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Before napoleon (priority 400 < its 500): remember an attribute's docstring as written."""
    if what in _ATTRIBUTE_KINDS:
        _before_napoleon[id(lines)] = list(lines)


def restore_attribute_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """After napoleon (priority 600): put the attribute's docstring back as it was written."""
    saved = _before_napoleon.pop(id(lines), None)
    if saved is not None:
        lines[:] = saved


def resolve_short_reference(app, env, node, contnode):
    """``missing-reference`` handler: a short or re-exported name of a documented lmlib object links to it."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip(".~")
    objects = env.get_domain("py").objects
    found = [name for name in objects if name.startswith("lmlib.") and name.endswith("." + target)]
    if not found and "." in target:  # `lmlib.rl.gae` for `lmlib.rl.gae.gae`: the same name under the package
        package, _, last = target.rpartition(".")
        found = [name for name in objects if name.startswith(package + ".") and name.endswith("." + last)]
    if len(found) != 1:
        return None
    entry = objects[found[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found[0])


def setup(app):
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", process_docstring, priority=700)  # after napoleon and the restore
    app.connect("autodoc-process-docstring", keep_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", restore_attribute_docstring, priority=600)
    app.connect("missing-reference", resolve_short_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension (loaded through `sphinx.local_extensions` in _config.yml): no script twice.

With Sphinx 7.4, a script that an extension adds after the HTML builder has started (for example
sphinx-thebe's inline `const THEBE_JS_URL = ...`, added when the sources are read) is put into
every page twice: once by the extension's own call and once when the builder copies the registry
in `prepare_writing` (the first copy has filename None, the second ''). For a `const` the second
copy throws "SyntaxError: Identifier 'THEBE_JS_URL' has already been declared" in every reader's
browser console. This extension drops repeated scripts from each page's `script_files`, keeping
the first. tests/test_browser.py fails on any such error.

The Jupyter widget manager's scripts (`nb_ipywidgets_js` in _config.yml: setup.js, RequireJS,
embed-amd.js) reach a page twice too, once from the page (with attributes) and once from the registry
(without, and sorted elsewhere): they are kept once each, by file name, in that order, at the place of
the first of them. embed-amd.js is an AMD module that needs RequireJS's `define` when it runs.
"""
from __future__ import annotations

from typing import Any


def _key(js: Any) -> tuple:
    filename = getattr(js, "filename", js) or ""
    attrs = getattr(js, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attrs.items() if k != "priority")))


#: The widget manager's scripts, in the order they must run.
WIDGET_SCRIPTS = ("widgets/setup.js", "widgets/require.js", "widgets/embed-amd.js")


def _widget_rank(js: Any) -> int | None:
    name = str(getattr(js, "filename", js) or "").split("?")[0]
    return next((i for i, w in enumerate(WIDGET_SCRIPTS) if name.endswith(w)), None)


def dedupe_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        rank = _widget_rank(js)
        key = ("widget", rank) if rank is not None else _key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    ranks = [_widget_rank(js) for js in unique]
    where = [i for i, r in enumerate(ranks) if r is not None]
    if where:
        widgets = sorted((js for js, r in zip(unique, ranks) if r is not None), key=_widget_rank)
        rest = [js for js, r in zip(unique, ranks) if r is None]
        unique = rest[: where[0]] + widgets + rest[where[0]:]
    scripts[:] = unique  # in place: the builder restores its own list after each page


def setup(app) -> dict:
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension (loaded through `sphinx.local_extensions` in _config.yml): no script twice.

With Sphinx 7.4, a script that an extension adds after the HTML builder has started (for example
sphinx-thebe's inline `const THEBE_JS_URL = ...`, added when the sources are read) is put into
every page twice: once by the extension's own call and once when the builder copies the registry
in `prepare_writing` (the first copy has filename None, the second ''). For a `const` the second
copy throws "SyntaxError: Identifier 'THEBE_JS_URL' has already been declared" in every reader's
browser console. This extension drops repeated scripts from each page's `script_files`, keeping
the first. tests/test_browser.py fails on any such error.

It also puts RequireJS before the Jupyter widget manager (`embed-amd.js`, an AMD module that needs
`define`): myst-nb adds the two in the order of `nb_ipywidgets_js`, but Sphinx's registry can hand
them to a page the other way round, and then no widget renders.
"""
from __future__ import annotations

from typing import Any


def _key(js: Any) -> tuple:
    filename = getattr(js, "filename", js) or ""
    attrs = getattr(js, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attrs.items() if k != "priority")))


def dedupe_scripts(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for js in scripts:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    names = [str(getattr(js, "filename", js) or "") for js in unique]
    req = next((i for i, n in enumerate(names) if n.split("?")[0].endswith("require.js")), None)
    amd = next((i for i, n in enumerate(names) if n.split("?")[0].endswith("embed-amd.js")), None)
    if req is not None and amd is not None and req > amd:
        unique.insert(amd, unique.pop(req))
    scripts[:] = unique  # in place: the builder restores its own list after each page


def setup(app) -> dict:
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

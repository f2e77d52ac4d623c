"""The files the book serves itself so that it works offline (_static/widgets) are the ones recorded in
_static/widgets/SOURCES.json (package, version, SHA-256), and _config.yml loads them instead of a CDN."""
from __future__ import annotations

import hashlib
import json

from conftest import ROOT, load_yaml

WIDGETS = ROOT / "_static/widgets"


def test_vendored_widget_manager_matches_its_record():
    record = json.loads((WIDGETS / "SOURCES.json").read_text(encoding="utf-8"))
    files = {p.name for p in WIDGETS.iterdir()} - {"SOURCES.json"}
    assert files == set(record["sha256"]), f"files in {WIDGETS} and SOURCES.json differ: {sorted(files ^ set(record['sha256']))}"
    for name, digest in record["sha256"].items():
        got = hashlib.sha256((WIDGETS / name).read_bytes()).hexdigest()
        assert got == digest, f"{WIDGETS / name}: sha256 {got} but SOURCES.json records {digest}; {record['remake']}"


def test_config_serves_mathjax_and_widgets_from_the_build():
    cfg = load_yaml(ROOT / "_config.yml")["sphinx"]
    assert "sphinx-mathjax-offline" in cfg["extra_extensions"]
    assert not cfg["config"]["mathjax_path"].startswith(("http:", "https:", "//"))
    scripts = cfg["config"]["nb_ipywidgets_js"]
    assert list(scripts) == ["widgets/setup.js", "widgets/require.js", "widgets/embed-amd.js"], scripts
    assert all((ROOT / "_static" / s).is_file() for s in scripts)

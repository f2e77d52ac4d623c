"""The chapters' .ipynb files are generated from their text sources and carry no outputs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402

SOURCES = notebooks.sources()


def test_there_are_chapters():
    assert SOURCES, "no chapters/NN_*.md found"


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_its_text_source(md):
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `make sync`"
    assert ipynb.read_text(encoding="utf-8") == notebooks.render(md), (
        f"{ipynb.name} differs from {md.name}: edit the .md and run `make sync`"
    )


@pytest.mark.parametrize("md", SOURCES, ids=lambda p: p.stem)
def test_notebook_has_no_outputs_and_a_colab_setup_cell(md):
    nb = json.loads(md.with_suffix(".ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    setup = [c for c in code if "colab-setup" in c["metadata"].get("tags", [])]
    assert len(setup) == 1
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    assert f'"lmlib @ git+{url}"' in "".join(setup[0]["source"])


def test_check_command_detects_drift(tmp_path, monkeypatch):
    md = SOURCES[0]
    monkeypatch.setattr(notebooks, "CHAPTERS", tmp_path)
    (tmp_path / md.name).write_text(md.read_text(encoding="utf-8"), encoding="utf-8")
    assert notebooks.main(["sync"]) == 0
    assert notebooks.main(["check"]) == 0
    ipynb = tmp_path / md.with_suffix(".ipynb").name
    ipynb.write_text(ipynb.read_text(encoding="utf-8").replace("language model", "LANGUAGE MODEL", 1), encoding="utf-8")
    assert notebooks.main(["check"]) == 1


def test_setup_cell_follows_the_configured_url():
    src = notebooks.colab_setup_source("https://example.org/fork")
    assert '%pip install -q "lmlib @ git+https://example.org/fork"' in src
    assert 'if "google.colab" in sys.modules' in src


def test_requirements_do_not_let_pip_pick_torch():
    """The Colab-facing package must not pin torch; local installs pin it before anything else."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    assert not [d for d in deps if d.replace(" ", "").startswith("torch==")]
    setup = (ROOT / "tools/setup.sh").read_text()
    assert setup.index('"torch==2.13.0"') < setup.index("-r requirements.txt")
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().split()

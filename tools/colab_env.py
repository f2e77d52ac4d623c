"""Build .venv-colab: a Colab-like Python environment for tests/test_colab_path.py (run by tools/setup.sh --browser).

Colab gives a reader a Python with many packages preinstalled (its own torch, numpy, matplotlib, ipywidgets 7.7.1,
...) but not lmlib; a chapter's first cell then installs lmlib from the repository's git URL. This script builds the
nearest thing that can be had offline, for a test that runs with the network cut:

* ``.venv-colab/`` is a fresh virtual environment (same interpreter as .venv) with its own pip and setuptools
  (new enough to build lmlib; Colab's pip would download them for an isolated build) and Colab's widget stack:
  ipywidgets 7.7.1 with widgetsnbextension 3.6.x and jupyterlab_widgets 1.x (and the classic ``notebook`` that
  widgetsnbextension 3.x requires). These shadow .venv's ipywidgets 8.
* ``.venv-colab/preinstalled/`` stands for Colab's other preinstalled packages: one symbolic link per entry of
  .venv's site-packages (torch 2.13.0 CPU, numpy, matplotlib, ipykernel, ...), EXCEPT lmlib (its editable
  install: the finder, the .pth and the dist-info) and the packages the Colab-like venv brings itself (the
  widgets, pip, setuptools). A ``.pth`` file puts that folder on sys.path AFTER .venv-colab's own site-packages.
  .pth files inside the folder are not processed (it is not a site directory), so .venv's editable-install
  finder cannot leak: ``import lmlib`` fails in .venv-colab until a chapter's first cell installs it.
  A different torch than the book's cannot be had offline (PyPI's default Linux torch is a multi-GB CUDA
  build), so the torch is .venv's.

The test installs lmlib into a throw-away environment layered on top of .venv-colab (``fresh_env``), so that
.venv-colab itself never holds lmlib. Idempotent and fast: nothing happens when .venv-colab/.installed matches the
pins, the exclusions, LAYOUT and .venv's stamp. Usage: ``.venv/bin/python tools/colab_env.py`` (from tools/setup.sh).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / ".venv"
VENV = ROOT / ".venv-colab"
STAMP = VENV / ".installed"
FARM = VENV / "preinstalled"
PTH = "zz_colab_preinstalled.pth"  # sorts after the venv's own .pth files
LAYOUT = 1  # bump when the way .venv-colab is built changes (the stamp covers the pins and .venv's own stamp)

# Colab's widget stack (Colab ships ipywidgets 7.7.1; it needs widgetsnbextension 3.6.x, which needs notebook).
COLAB_PACKAGES = [
    "ipywidgets==7.7.1",
    "widgetsnbextension==3.6.10",
    "jupyterlab_widgets==1.1.11",
    "ipython_genutils==0.2.0",
    "notebook>=6.5",
]
# Entries of .venv's site-packages NOT linked into the farm (lower-cased prefixes of file/folder names).
EXCLUDE_PREFIXES = (
    "lmlib", "__editable__", "_lmlib",                 # the package under test: the cell must install it
    "ipywidgets", "widgetsnbextension", "jupyterlab_widgets",  # Colab-like versions come from .venv-colab
    "ipython_genutils", "notebook-", "notebook",
    "pip", "setuptools", "_distutils_hack", "distutils-precedence", "pkg_resources",
    "__pycache__",
)


def site_packages(venv: Path) -> Path:
    v = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / v / "site-packages"


def wanted_stamp() -> str:
    main_stamp = (MAIN / ".installed").read_text() if (MAIN / ".installed").is_file() else ""
    h = hashlib.sha256()
    for part in (str(LAYOUT), str(ROOT), sys.version, main_stamp, "\n".join(COLAB_PACKAGES + list(EXCLUDE_PREFIXES))):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def excluded(name: str) -> bool:
    low = name.lower()
    if low.endswith(".pth"):
        return True
    if low.startswith("notebook_shim"):  # not the notebook package: the preinstalled Jupyter server needs it
        return False
    return any(low.startswith(p) for p in EXCLUDE_PREFIXES)


def build_farm() -> int:
    if FARM.exists():
        shutil.rmtree(FARM)
    FARM.mkdir(parents=True)
    n = 0
    for entry in sorted(site_packages(MAIN).iterdir()):
        if not excluded(entry.name):
            (FARM / entry.name).symlink_to(entry)
            n += 1
    return n


def fresh_env(dest: Path) -> Path:
    """A throw-away environment on top of .venv-colab, for one test run; returns its python.

    A chapter's first cell installs lmlib into the environment it runs in; in ``dest`` (a venv without pip of its
    own) it lands in ``dest``'s site-packages and .venv-colab stays as built, without lmlib. ``dest`` sees
    .venv-colab's packages (pip, setuptools, ipywidgets 7.7.1, ...) and then the preinstalled ones, in that order.
    """
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(dest)], check=True, timeout=120)
    (site_packages(dest) / PTH).write_text(f"{site_packages(VENV)}\n{FARM}\n")
    return dest / "bin/python"


def main() -> int:
    if sys.prefix != str(MAIN) and Path(sys.prefix).resolve() != MAIN.resolve():
        print(f"warning: run this with {MAIN}/bin/python (same interpreter as .venv); running anyway", file=sys.stderr)
    if not site_packages(MAIN).is_dir():
        print(f"error: {site_packages(MAIN)} is missing: run tools/setup.sh first", file=sys.stderr)
        return 1
    want = wanted_stamp()
    if STAMP.is_file() and STAMP.read_text().strip() == want:
        return 0
    print("==> setting up .venv-colab (a Colab-like environment for tests/test_colab_path.py; under a minute)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    n = build_farm()
    (site_packages(VENV) / PTH).write_text(f"{FARM}\n")
    py = str(VENV / "bin/python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["--upgrade", "pip", "setuptools>=77"], check=True)
    subprocess.run(pip + COLAB_PACKAGES, check=True)
    # The point of the environment: lmlib is NOT importable until a chapter's first cell installs it.
    probe = subprocess.run([py, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('lmlib') is not None)"],
                           cwd="/", capture_output=True)
    if probe.returncode != 0:
        print("error: lmlib leaks into .venv-colab before it is installed", file=sys.stderr)
        return 1
    STAMP.write_text(want + "\n")
    print(f"    .venv-colab ready ({n} packages of .venv linked as Colab's preinstalled ones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures: the book is built once per test session, in quick mode.

``built_book`` (the HTML folder) is what the book and browser tests use; ``book_build`` also gives
the build's exit status, output and duration. A failed build fails every test that needs it, with
the tail of the build's output and the paths of the execution reports of the chapters that failed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from hypothesis import settings as _hypothesis_settings

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering, before any test imports mujoco

# Property tests: no per-example deadline (a shared 2-core machine stalls at random), and in CI a
# fixed, derandomised set of examples so that a green run stays green; locally they explore freely.
_hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
_hypothesis_settings.register_profile("dev", deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build/html"
TAIL_CHARS = 6000
_REPORT: list[str] = []


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def toc_files(toc: dict) -> list[str]:
    """Every document named in a jb-book table of contents, in reading order."""
    out = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                out.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return out


def strip_suffix(doc: str) -> str:
    return re.sub(r"\.(ipynb|md)$", "", doc)


#: every page of the book, and the notebook chapters among them (docnames without suffix)
DOCS = [strip_suffix(d) for d in toc_files(load_yaml(ROOT / "book/_toc.yml"))]
CHAPTERS = [d for d in DOCS if (ROOT / f"{d}.ipynb").is_file()]  # the notebook chapters


def expected_colab_url(doc: str) -> str:
    """The Colab link sphinx-book-theme builds from _config.yml for the notebook ``doc``."""
    cfg = load_yaml(ROOT / "_config.yml")
    repo = cfg["repository"]
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repo["url"]).groups()
    prefix = repo.get("path_to_book", "").strip("/")
    path = f"{prefix}/{doc}.ipynb" if prefix else f"{doc}.ipynb"
    colab = cfg["launch_buttons"]["colab_url"].strip("/")
    return f"{colab}/github/{owner}/{name}/blob/{repo.get('branch', 'main')}/{path}"


def chapter_id(doc: str) -> str:
    """Test id for a chapter: its file name, e.g. 01_language_models."""
    return Path(doc).name


def report(line: str) -> None:
    """Add a line (a measured time, a size) to the "book" section of pytest's final summary."""
    _REPORT.append(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _REPORT:
        terminalreporter.section("book")
        for line in _REPORT:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class BookBuild:
    """One run of tools/build_book.py."""

    html: Path
    returncode: int
    output: str  # stdout and stderr together
    seconds: float
    command: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and (self.html / "index.html").is_file()

    def reports(self) -> list[Path]:
        """Execution reports the build left (one per chapter that failed to execute)."""
        return sorted((self.html / "reports").glob("**/*.log"))

    def failure_message(self) -> str:
        lines = [f"`{' '.join(self.command)}` failed (exit {self.returncode}) after {self.seconds:.0f} s."]
        reports = self.reports()
        if reports:
            lines.append("Execution reports of the chapters that failed:")
            lines += [f"  {p}" for p in reports]
        lines.append(f"Last {TAIL_CHARS} characters of the build output:")
        lines.append(self.output[-TAIL_CHARS:])
        return "\n".join(lines)


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """Run tools/build_book.py once (quick mode, warnings as errors) and return what happened."""
    env = dict(os.environ, LMBOOK_MODE="quick", PYTHONUNBUFFERED="1")
    cmd = (sys.executable, str(ROOT / "tools/build_book.py"))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.perf_counter() - t0
    report(f"tools/build_book.py: {took:.1f} s, exit {proc.returncode}")
    return BookBuild(HTML, proc.returncode, proc.stdout, took, cmd)


@pytest.fixture(scope="session")
def built_book(book_build: BookBuild) -> Path:
    """The folder of the built HTML book (_build/html); fails the test if the build failed."""
    if not book_build.ok:
        pytest.fail(book_build.failure_message(), pytrace=False)
    return book_build.html


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread (use: ``pytestmark = pytest.mark.usefixtures("one_thread")``).

    Their tensors are tiny: on a busy 2-core machine a second intra-op thread makes them up to ~10x slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""Build the book into _build/html, executing every chapter in the current mode (quick by default).

Usage: python tools/build_book.py [--no-warnings-as-errors]
Called by `make book`; the tests call it too (tests/test_book.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(warnings_as_errors: bool = True) -> int:
    env = dict(os.environ)
    env.setdefault("LMBOOK_MODE", "quick")
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("MUJOCO_GL", "egl")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--toc", str(ROOT / "book/_toc.yml"),
           "--config", str(ROOT / "_config.yml"), "--keep-going"]
    if warnings_as_errors:
        cmd.append("-W")
    t0 = time.time()
    print(f"==> building the book in {env['LMBOOK_MODE']} mode: jupyter-book {' '.join(cmd[1:])}", flush=True)
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    html = ROOT / "_build/html/index.html"
    took = time.time() - t0
    if rc == 0 and html.exists():
        print(f"==> book built in {took:.0f} s. Open it: file://{html}")
    else:
        reports = ROOT / "_build/html/reports"
        print(f"==> the build failed after {took:.0f} s (exit {rc}).", file=sys.stderr)
        if reports.exists():
            for log in sorted(reports.glob("**/*.log")):
                print(f"    execution report: {log}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(build(warnings_as_errors="--no-warnings-as-errors" not in sys.argv))

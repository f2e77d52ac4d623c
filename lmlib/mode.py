"""The quick/full switch that every chapter, test and book build shares.

One environment variable, ``LMBOOK_MODE``, selects how big each chapter's
experiments are:

* ``quick`` (the default): CPU, minutes. Used by the tests, CI and the book build.
* ``full``: the real experiment, for a reader with time or a GPU.

A chapter declares one config dataclass and two instances, and picks one::

    CFG = lmlib.pick(quick=Config(steps=200), full=Config(steps=20_000))

Taught in: "How to use this book" (book/how_to_use.md).
"""
from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["MODE_ENV", "MODES", "mode", "is_quick", "is_full", "pick"]

MODE_ENV = "LMBOOK_MODE"
MODES = ("quick", "full")

T = TypeVar("T")


def mode() -> str:
    """Return ``"quick"`` or ``"full"`` from ``$LMBOOK_MODE`` (default ``"quick"``)."""
    value = os.environ.get(MODE_ENV, "quick").strip().lower() or "quick"
    if value not in MODES:
        raise ValueError(
            f"{MODE_ENV}={os.environ.get(MODE_ENV)!r} is not a mode; use one of {MODES} "
            f"(for example: export {MODE_ENV}=full)"
        )
    return value


def is_quick() -> bool:
    """True in quick mode (tests, CI, the book build)."""
    return mode() == "quick"


def is_full() -> bool:
    """True in full mode (the real experiment)."""
    return mode() == "full"


def pick(quick: T, full: T) -> T:
    """Return ``quick`` or ``full`` according to the current mode."""
    return quick if is_quick() else full

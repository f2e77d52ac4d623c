"""Exercises that grade themselves: one registry, one ``check`` for the whole book.

Every code exercise in the book is registered here with a reference
implementation and a generator of test cases (random inputs plus edge cases).
In a chapter, right after the learner's function, a check cell runs::

    from lmlib.exercises import check
    check("ch01.count_bigrams", count_bigrams)

``check`` calls the learner's function and the reference on every case and
either prints a one-line success or raises :class:`ExerciseFailed` whose
message says, in plain words, which input went wrong and how.

When the environment variable ``LMBOOK_GRADE_REPORT`` names a file, every
check also appends one JSON line with its result there; the grader
(``python -m lmlib.exercises grade``) relies on this.

Taught in: "How to use this book" and the instructor guide (book/instructors.md).
"""
from __future__ import annotations

import json
import math
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Case", "Exercise", "ExerciseFailed", "CheckResult", "register", "get", "all_exercises", "check", "compare_values", "compare_close"]

GRADE_REPORT_ENV = "LMBOOK_GRADE_REPORT"


class ExerciseFailed(AssertionError):
    """Raised by :func:`check` when a learner's answer disagrees with the reference."""


@dataclass
class Case:
    """One input to an exercise: positional ``args``, ``kwargs`` and a human ``label``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    label: str = ""


@dataclass
class Exercise:
    """A registered exercise (see :func:`register`)."""

    id: str
    reference: Callable[..., Any]
    cases: Callable[[np.random.Generator], list[Case]]
    compare: Callable[[Any, Any], str | None]
    title: str = ""


@dataclass
class CheckResult:
    """What :func:`check` found: ``passed`` out of ``total`` cases, and the first problem."""

    id: str
    passed: int
    total: int
    message: str

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def _ipython_display_(self) -> None:
        # check() already printed its one-line verdict; show nothing more in a notebook.
        pass


_REGISTRY: dict[str, Exercise] = {}


def register(
    id: str,
    reference: Callable[..., Any],
    cases: Callable[[np.random.Generator], list[Case]],
    compare: Callable[[Any, Any], str | None] | None = None,
    title: str = "",
) -> Exercise:
    """Register an exercise under ``id`` (``"chNN.name"``) and return it."""
    if not isinstance(id, str) or "." not in id:
        raise ValueError(f"exercise ids look like 'ch01.count_bigrams', got {id!r}")
    ex = Exercise(id=id, reference=reference, cases=cases, compare=compare or compare_values, title=title or id)
    _REGISTRY[id] = ex
    return ex


def _load_chapter_modules(only: str | None = None) -> None:
    # Import the lmlib.exercises.chNN modules (or just `only`) so that their exercises are registered.
    import importlib
    import pkgutil

    from . import __path__ as pkg_path

    for info in pkgutil.iter_modules(pkg_path):
        if info.name.startswith("ch") and (only is None or info.name == only or info.name.startswith(only + "_")):
            importlib.import_module(f"lmlib.exercises.{info.name}")


def get(id: str) -> Exercise:
    """Return the registered exercise ``id``; raise ``KeyError`` listing the known ids otherwise."""
    if id not in _REGISTRY:  # "ch03.x" lives in lmlib/exercises/ch03.py: import just that one first
        _load_chapter_modules(only=id.split(".", 1)[0])
    if id not in _REGISTRY:
        _load_chapter_modules()
    if id not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"no exercise called {id!r}; known exercises: {known}")
    return _REGISTRY[id]


def all_exercises() -> dict[str, Exercise]:
    """All registered exercises, by id."""
    _load_chapter_modules()
    return dict(sorted(_REGISTRY.items()))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (so messages say 9.5, not np.float64(9.5))."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any, limit: int = 200) -> str:
    value = _plain(value)
    if isinstance(value, np.ndarray):
        text = f"array(shape={value.shape}, dtype={value.dtype}, values={np.array2string(value, threshold=8, edgeitems=2)})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_close(rtol: float, atol: float) -> Callable[[Any, Any], str | None]:
    """A ``compare`` for :func:`register`: :func:`compare_values` with these tolerances, after casting a tensor
    answer to the reference's dtype and detaching it (a float32 answer to a float64 reference passes).

    Taught in: the instructor guide (book/instructors.md).
    """
    def compare(got: Any, expected: Any) -> str | None:
        torch = sys.modules.get("torch")  # never import torch here (see compare_values)
        if torch is not None and isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor):
            got = got.detach().to(expected.dtype)
        return compare_values(got, expected, rtol=rtol, atol=atol)

    return compare


def compare_values(got: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-8) -> str | None:
    """Compare two results; return ``None`` when they agree, else a plain-words description.

    Handles numbers (with tolerance), numpy arrays and torch tensors (shape,
    then values), dicts (missing/extra/different keys), sequences and anything
    with ``==``.
    """
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported: never import it here
    if torch is not None and isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        got, expected = got.detach().cpu().numpy(), expected.detach().cpu().numpy()
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            try:
                got = np.asarray(got)
            except Exception:
                return f"expected an array, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"wrong shape: got {got.shape}, expected {expected.shape}"
        if expected.dtype.kind in "fc":
            if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
                # The first element that disagrees (equal infinities and NaNs agree; no inf - inf = nan).
                close = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
                idx = tuple(np.argwhere(~close)[0])
                return f"wrong values: at index {tuple(int(i) for i in idx)} got {_short(got[idx])}, expected {_short(expected[idx])}"
            return None
        if not np.array_equal(got, expected):
            idx = np.argwhere(got != expected)[0]
            return f"wrong values: at index {tuple(int(i) for i in idx)} got {_short(got[tuple(idx)])}, expected {_short(expected[tuple(idx)])}"
        return None
    if isinstance(expected, bool) or expected is None:
        return None if got == expected else f"got {_short(got)}, expected {_short(expected)}"
    if isinstance(expected, (int, float, np.integer, np.floating)):
        if getattr(got, "ndim", None) == 0 and hasattr(got, "item"):  # 0-d array or tensor: its number
            got = got.item()
        if not isinstance(got, (int, float, np.integer, np.floating)):
            return f"expected a number, got {type(got).__name__} {_short(got)}"
        if math.isnan(float(expected)):
            return None if math.isnan(float(got)) else f"got {_short(got)}, expected nan"
        if math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            return None
        return f"got {_short(got)}, expected {_short(expected)}"
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {type(got).__name__}"
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing:
            return f"missing keys {_short(missing[:5])} ({len(missing)} in all)"
        if extra:
            return f"unexpected keys {_short(extra[:5])} ({len(extra)} in all)"
        for k in expected:
            problem = compare_values(got[k], expected[k], rtol, atol)
            if problem:
                return f"for key {k!r}: {problem}"
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"expected a {type(expected).__name__}, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"wrong length: got {len(got)} items, expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare_values(g, e, rtol, atol)
            if problem:
                return f"at position {i}: {problem}"
        return None
    return None if got == expected else f"got {_short(got)}, expected {_short(expected)}"


def _report(result: CheckResult) -> None:
    path = os.environ.get(GRADE_REPORT_ENV)
    if not path:
        return
    line = json.dumps({"id": result.id, "passed": result.passed, "total": result.total, "message": result.message})
    with open(path, "a", encoding="utf-8") as f:  # one short line per check: append is atomic enough
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def check(id: str, fn: Callable[..., Any], seed: int = 0, quiet: bool = False, stop: bool = True) -> CheckResult:
    """Grade ``fn`` against exercise ``id``'s reference on random and edge-case inputs.

    Prints a one-line success, or raises :class:`ExerciseFailed` with a message
    that names the failing input and what was wrong. All cases are run, so the
    score (fraction of cases passed) is partial credit for the grader.

    ``stop=False`` (the student notebooks' check cells) prints the failure to
    stderr and returns the result instead of raising, so that "Run All" goes
    on with the rest of the notebook; the result is recorded for the grader
    either way.
    """
    __tracebackhide__ = True  # IPython: show the learner the message, not check's internals
    ex = get(id)
    if not callable(fn):
        raise TypeError(f"check({id!r}, ...) needs your function, got {type(fn).__name__}")
    cases = ex.cases(np.random.default_rng(seed))
    passed, first_problem = 0, ""
    for n, case in enumerate(cases, 1):
        label = case.label or f"case {n}"
        # Each side gets its own copy of the inputs, so neither can spoil them for the other.
        expected = ex.reference(*_copy(case.args), **_copy(case.kwargs))
        try:
            got = fn(*_copy(case.args), **_copy(case.kwargs))
        except NotImplementedError:
            first_problem = first_problem or "not implemented yet: replace `raise NotImplementedError` with your code"
            continue
        except Exception as exc:  # the learner's code crashed: say on which input and where, briefly
            first_problem = first_problem or (
                f"on {label}, input {_describe_args(case)}, your function raised "
                f"{type(exc).__name__}: {exc}{_where(exc)}"
            )
            continue
        problem = ex.compare(got, expected)
        if problem is None:
            passed += 1
        elif not first_problem:
            first_problem = f"on {label}, input {_describe_args(case)}: {problem}"
    result = CheckResult(id=id, passed=passed, total=len(cases), message=first_problem)
    _report(result)
    if not result.ok:
        message = f"{id}: {passed}/{len(cases)} checks passed. First problem: {first_problem}"
        if stop:
            raise ExerciseFailed(message)
        print(f"\u2718 {message}", file=sys.stderr)
        return result
    if not quiet:
        print(f"\u2714 {id}: all {len(cases)} checks passed.")
    return result


def _where(exc: BaseException) -> str:
    """`` (line N: code)`` for the deepest frame of the learner's own code in ``exc``'s traceback."""
    import sysconfig

    library_dirs = tuple(
        os.path.realpath(p) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                                      sysconfig.get_paths()["platlib"], os.path.dirname(os.path.dirname(__file__))}
    )
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not os.path.realpath(f.filename).startswith(library_dirs)]
    frame = (mine or frames or [None])[-1]
    if frame is None:
        return ""
    return f" (line {frame.lineno}: {frame.line})" if frame.line else f" (line {frame.lineno})"


def _copy(obj: Any) -> Any:
    import copy

    return copy.deepcopy(obj)


def _describe_args(case: Case) -> str:
    parts = [_short(a, 80) for a in case.args] + [f"{k}={_short(v, 80)}" for k, v in case.kwargs.items()]
    return "(" + ", ".join(parts) + ")"

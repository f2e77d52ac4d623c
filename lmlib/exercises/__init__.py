"""Self-grading exercises: ``check`` for learners, ``student`` and ``grade`` for instructors.

See :mod:`lmlib.exercises.core` and the instructor guide (book/instructors.md).
"""
from .core import (Case, CheckResult, Exercise, ExerciseFailed, all_exercises, check, compare_close, compare_values, get,
                   register)

__all__ = ["Case", "CheckResult", "Exercise", "ExerciseFailed", "all_exercises", "check", "compare_values", "compare_close", "get",
           "register"]

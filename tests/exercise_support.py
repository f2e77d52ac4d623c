"""Shared helpers of the tests/test_exercises_chNN.py files: run a chapter's solution cells, catch a failed check."""
from __future__ import annotations

from pathlib import Path

import jupytext
import pytest

from lmlib.exercises import check
from lmlib.exercises.core import ExerciseFailed


def run_solution_cells(chapter_md: Path, expected_cells: int) -> dict:
    """Run the chapter's cells tagged ``solution`` (imports + the learner's functions); return what they define."""
    nb = jupytext.read(chapter_md, fmt="md:myst")
    namespace: dict = {}
    cells = [c for c in nb.cells if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]
    assert len(cells) == expected_cells, f"{chapter_md.name}: {len(cells)} solution cells, expected {expected_cells}"
    for cell in cells:
        exec(compile(cell.source, str(chapter_md), "exec"), namespace)
    return namespace


def failure(id: str, fn) -> str:
    """The message of the check ``id`` failing on ``fn`` (the test fails if the check passes)."""
    with pytest.raises(ExerciseFailed) as err:
        check(id, fn, quiet=True)
    return str(err.value)

"""Shared helpers of the tests/test_exercises_chNN.py files: run a chapter's solution cells, catch a failed check."""
from __future__ import annotations

import re
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


def chapter_exercise_tests(chapter_md: Path, ids: list[str], min_checks: int, solution_cells: int | None = None):
    """The tests every chapter's exercises get, built once here instead of copied into each test file.

    Returns ``(chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell,
    test_the_chapters_solution_passes)``; a test module assigns them to those names and pytest collects the
    two tests. ``ids`` must be exactly the chapter's registered exercises, each with a check cell
    ``check("chNN.name", name)`` in the chapter; the chapter's own solution passes every check (at least
    ``min_checks`` of them) and prints the success line. ``solution_cells`` defaults to ``len(ids)``.
    """
    from lmlib.exercises import all_exercises  # noqa: PLC0415

    def chapter_solutions() -> dict:
        return run_solution_cells(chapter_md, len(ids) if solution_cells is None else solution_cells)

    def test_every_exercise_is_registered_and_has_a_check_cell():
        prefix = ids[0].split(".")[0] + "."
        assert {i for i in all_exercises() if i.startswith(prefix)} == set(ids)
        text = chapter_md.read_text(encoding="utf-8")
        for id in ids:
            assert f'check("{id}", {id.split(".")[1]})' in text
        starts = text.count("````{solution-start}")
        assert starts >= 1 and len(re.findall(r"````\{solution-start\} [\w-]+\n:class: dropdown", text)) == starts, \
            "every solution is folded (:class: dropdown right after solution-start)"

    @pytest.mark.parametrize("id", ids)
    def test_the_chapters_solution_passes(id, capsys):
        result = check(id, chapter_solutions()[id.split(".")[1]])
        assert result.ok and result.total >= min_checks
        assert f"\u2714 {id}: all {result.total} checks passed." in capsys.readouterr().out

    return chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes

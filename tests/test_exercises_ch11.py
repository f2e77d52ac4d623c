"""Chapter 11's exercises: the chapter's own solutions pass (typical mistakes are in tests/test_preferences.py)."""
from pathlib import Path

import pytest

from exercise_support import chapter_exercise_tests

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "11_preferences.md"
IDS = ["ch11.preference_probability", "ch11.preference_loss", "ch11.select_queries"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=3))

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

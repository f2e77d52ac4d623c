"""Chapter 6's exercises: the chapter's own solutions and lmlib's references pass; typical mistakes fail
with a message that helps."""
from pathlib import Path

import jupytext
import pytest
import torch

from lmlib.lm import decoding as dec
from lmlib.exercises import ExerciseFailed, all_exercises, check
from exercise_support import chapter_exercise_tests, failure

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "06_decoding.md"
IDS = ["ch06.apply_temperature", "ch06.top_k_filter", "ch06.top_p_filter", "ch06.repetition_penalty",
       "ch06.distinct_n"]
NEG_INF = float("-inf")
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=9))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


@pytest.mark.parametrize("id", IDS)
def test_the_reference_passes(id):
    assert check(id, getattr(dec, id.split(".")[1]), quiet=True).ok


# ----------------------------------------------------------------------------- wrong answers


def temperature_times(logits, T):
    return logits * T


def temperature_softmax(logits, T):
    return torch.softmax(logits / T, dim=-1)


def temperature_clamped(logits, T):  # "avoids" -inf: a removed token comes back
    return logits.clamp_min(-1e4) / T


def top_k_off_by_one(logits, k):  # the (k+1)-th largest as the threshold
    V = logits.shape[1]
    if k == V:
        return logits.clone()
    kth = torch.topk(logits, k + 1, dim=-1).values[:, [-1]]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_k_indices(logits, k):
    return torch.topk(logits, k, dim=-1).indices


def top_k_zero(logits, k):  # zeroes the removed logits instead of -inf
    kth = torch.topk(logits, k, dim=-1).values[:, [-1]]
    return logits.masked_fill(logits < kth, 0.0)


def top_p_unsorted(logits, p):  # cumulative mass in vocabulary order, not by probability
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(torch.cumsum(probs, dim=-1) - probs >= p, NEG_INF)


def top_p_on_logits(logits, p):  # the cumulative sum of logits instead of probabilities
    s, i = torch.sort(logits, dim=-1, descending=True)
    remove = (torch.cumsum(s, dim=-1) - s) >= p
    return logits.masked_fill(torch.zeros_like(remove).scatter(-1, i, remove), NEG_INF)


def penalty_everywhere(logits, previous_ids, penalty):  # ignores which tokens occurred
    return torch.where(logits > 0, logits / penalty, logits * penalty)


def penalty_subtract(logits, previous_ids, penalty):
    return logits.scatter(-1, previous_ids, logits.gather(-1, previous_ids) - penalty)


def distinct_count(sequences, n):  # the number of distinct n-grams, not the share
    return len({tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)})


def distinct_over_vocabulary(sequences, n):  # divides by the number of distinct tokens
    grams = {tuple(s[i:i + n]) for s in sequences for i in range(len(s) - n + 1)}
    return len(grams) / len({t for s in sequences for t in s})


@pytest.mark.parametrize("id, wrong, hints", [
    ("ch06.apply_temperature", temperature_times, ["T=0.5 (answer [4, 2, 0, -2])", "wrong values"]),
    ("ch06.apply_temperature", temperature_softmax, ["return logits, not probabilities"]),
    ("ch06.apply_temperature", temperature_clamped, ["a removed token (-inf) stays removed"]),
    ("ch06.top_k_filter", top_k_off_by_one, ["k=2 (keep tokens 0 and 1)", "expected to keep tokens [0, 1]"]),
    ("ch06.top_k_filter", top_k_indices, ["wrong shape", "the same shape as logits"]),
    ("ch06.top_k_filter", top_k_zero, ["keeps tokens [0, 1, 2, 3], expected to keep tokens [0, 1]"]),
    ("ch06.top_p_filter", top_p_unsorted, ["two rows, tokens not in sorted order", "expected to keep tokens"]),
    ("ch06.top_p_filter", top_p_on_logits, ["expected to keep tokens"]),
    ("ch06.repetition_penalty", penalty_everywhere, ["previous ids [0, 3, 3]", "wrong values"]),
    ("ch06.repetition_penalty", penalty_subtract, ["(answer [1, 1, 0, -2])", "wrong values"]),
    ("ch06.distinct_n", distinct_count, ["(answer 3/7)", "got 3, expected 0.428"]),
    ("ch06.distinct_n", distinct_over_vocabulary, ["got 1.0, expected 0.428"]),
])
def test_wrong_answers_fail_with_a_helpful_message(id, wrong, hints):
    msg = failure(id, wrong)
    for hint in hints:
        assert hint in msg, f"{hint!r} not in {msg!r}"


def test_not_implemented_and_crashes_are_reported():
    def todo(logits, k):
        raise NotImplementedError

    assert "not implemented yet" in failure("ch06.top_k_filter", todo)

    def crashes(sequences, n):
        return len(set(sequences)) / 0

    msg = failure("ch06.distinct_n", crashes)
    assert "your function raised TypeError: unhashable type: 'list'" in msg


def test_a_learner_may_modify_the_input_in_place():
    def in_place(logits, T):  # check() gives each side its own copy, so this is accepted
        return logits.div_(T)

    assert check("ch06.apply_temperature", in_place, quiet=True).ok

"""Chapter 4's exercises: the chapter's own solutions pass, typical mistakes fail with a helpful message."""
import math
from pathlib import Path

import jupytext
import pytest
import torch

from lmlib.exercises import ExerciseFailed, all_exercises, check
from lmlib.exercises import ch04
from exercise_support import chapter_exercise_tests, failure

torch.set_num_threads(1)

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "04_attention.md"
IDS = ["ch04.attention", "ch04.causal_mask", "ch04.padding_mask", "ch04.causal_attention", "ch04.split_heads",
       "ch04.merge_heads"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=5, solution_cells=5))


@pytest.mark.parametrize("id", IDS)
def test_the_reference_passes(id):
    assert check(id, getattr(ch04, "ref_" + id.split(".")[1]), quiet=True).ok


# ---------------------------------------------------------------- attention


def test_attention_mistakes_are_named():
    def unscaled(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v

    msg = failure("ch04.attention", unscaled)
    assert "wrong values" in msg and "1/sqrt(d) scaling" in msg

    def wrong_dim(q, k, v):  # softmax over the queries
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v

    assert "softmax runs over the keys (dim=-1)" in failure("ch04.attention", wrong_dim)

    def two_d_only(q, k, v):  # k.t() only works without batch dims
        return torch.softmax(q @ k.t() / math.sqrt(q.shape[-1]), dim=-1) @ v

    msg = failure("ch04.attention", two_d_only)
    assert "your function raised" in msg and "but self is 3D" in msg and "k.t()" in msg  # names the line


# ---------------------------------------------------------------- causal mask


def test_causal_mask_mistakes_are_named():
    assert "must be a bool tensor" in failure("ch04.causal_mask", lambda T: torch.ones(T, T).tril())
    msg = failure("ch04.causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool).triu())
    assert "above the diagonal lets query i see a later key" in msg
    msg = failure("ch04.causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1))
    assert "the diagonal must be True" in msg
    msg = failure("ch04.causal_mask", lambda T: torch.ones(T, T, dtype=torch.bool).triu(1))
    assert "you marked the positions to hide" in msg
    assert "wrong shape" in failure("ch04.causal_mask", lambda T: torch.ones(T, T + 1, dtype=torch.bool).tril())


# ---------------------------------------------------------------- padding mask


def test_padding_mask_mistakes_are_named():
    def solution(lengths, S):
        return torch.arange(S)[None, :] < torch.as_tensor(lengths)[:, None]

    msg = failure("ch04.padding_mask", lambda l, S: ~solution(l, S))
    assert "you marked the padding" in msg and "key_padding_mask" in msg
    msg = failure("ch04.padding_mask", lambda l, S: torch.arange(S)[None, :] <= torch.as_tensor(l)[:, None])
    assert "row 0 has 4 True entries, expected lengths[0] = 3 (is it < or <=?)" in msg
    msg = failure("ch04.padding_mask", lambda l, S: solution(l, S).flip(-1))  # padding on the left
    assert "True entries must come first" in msg
    assert "must be a bool tensor" in failure("ch04.padding_mask", lambda l, S: solution(l, S).float())
    assert "wrong shape" in failure("ch04.padding_mask", lambda l, S: solution(l, S)[:, None, None, :])


# ---------------------------------------------------------------- causal attention


def test_causal_attention_mistakes_are_named():
    def zeroed_after_softmax(q, k, v):
        T = q.shape[-2]
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        return (w * torch.ones(T, T).tril()) @ v

    msg = failure("ch04.causal_attention", zeroed_after_softmax)
    assert "position 0 may see only itself" in msg and "before* the softmax" in msg
    assert "position 0 may see only itself" in failure("ch04.causal_attention", ch04.ref_attention)  # no mask

    def unscaled(q, k, v):
        T = q.shape[-2]
        s = (q @ k.transpose(-2, -1)).masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    assert "the first position is right: check the 1/sqrt(hs) scaling" in failure("ch04.causal_attention", unscaled)


# ---------------------------------------------------------------- heads


def test_split_heads_mistakes_are_named():
    def no_transpose(x, n_head):
        B, T, C = x.shape
        return x.reshape(B, n_head, T, C // n_head)

    msg = failure("ch04.split_heads", no_transpose)
    assert "view as (B, T, nh, hs) first, then .transpose(1, 2)" in msg

    def strided(x, n_head):  # head h takes every nh-th feature
        B, T, C = x.shape
        return x.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)

    assert "consecutive features" in failure("ch04.split_heads", strided)
    assert "wrong shape" in failure("ch04.split_heads", lambda x, n: x.view(*x.shape[:2], n, -1))


def test_merge_heads_mistakes_are_named():
    def no_transpose(x):
        B, nh, T, hs = x.shape
        return x.reshape(B, T, nh * hs)

    assert ".transpose(1, 2) to (B, T, nh, hs) first" in failure("ch04.merge_heads", no_transpose)
    assert "wrong shape" in failure("ch04.merge_heads", lambda x: x.transpose(1, 2))

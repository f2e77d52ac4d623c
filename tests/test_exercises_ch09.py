"""Chapter 9's exercises: the chapter's own solutions pass, typical mistakes fail with a helpful message."""
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch

from lmlib.exercises import ExerciseFailed, all_exercises, check
from lmlib.rl import pong
from exercise_support import chapter_exercise_tests

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "09_policy_gradients.md"
IDS = ["ch09.reward_to_go", "ch09.policy_gradient_loss", "ch09.rally_returns", "ch09.prepro"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=8))


def pg_loss_log_of_softmax(logits, actions, adv):
    return -(torch.log(torch.softmax(logits, -1))[torch.arange(len(actions)), actions] * adv).mean()


def pg_loss_sum(logits, actions, adv):
    return -(torch.log_softmax(logits, -1)[torch.arange(len(actions)), actions] * adv).sum()


def pg_loss_number(logits, actions, adv):
    return float(-(torch.log_softmax(logits, -1)[torch.arange(len(actions)), actions] * adv).mean())


def pg_loss_wrong_sign(logits, actions, adv):
    return (torch.log_softmax(logits, -1)[torch.arange(len(actions)), actions] * adv).mean()


def rally_no_reset(rewards, gamma):
    out, run = torch.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        run = run * gamma + float(rewards[t])
        out[t] = run
    return out


def prepro_no_downsample_rows(frame):
    img = frame[35:195, ::2, 0][:80].copy()
    img[(img == 144) | (img == 109)] = 0
    img[img != 0] = 1
    return img.astype(np.float32).ravel()


def prepro_keeps_background(frame):
    img = frame[35:195:2, ::2, 0].copy()
    img[img == 144] = 0
    img[img != 0] = 1
    return img.astype(np.float32).ravel()


@pytest.mark.parametrize("id, fn, message", [
    ("ch09.policy_gradient_loss", pg_loss_log_of_softmax, "unlikely action"),
    ("ch09.policy_gradient_loss", pg_loss_sum, "wrong values|got"),
    ("ch09.policy_gradient_loss", pg_loss_number, "torch.Tensor"),
    ("ch09.policy_gradient_loss", pg_loss_wrong_sign, "got"),
    ("ch09.rally_returns", rally_no_reset, "lost rally|point"),
    ("ch09.prepro", prepro_no_downsample_rows, "wrong values"),
    ("ch09.prepro", prepro_keeps_background, "109"),
])
def test_typical_mistakes_fail_with_a_message(id, fn, message):
    with pytest.raises(ExerciseFailed, match=message):
        check(id, fn, quiet=True)


def test_reference_rally_returns_is_the_library_function():
    r = torch.tensor([0.0, 1.0, 0.0, -1.0])
    assert torch.equal(pong.rally_returns(r, 0.9), chapter_solutions()["rally_returns"](r, 0.9))

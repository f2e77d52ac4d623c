"""Chapter 15's exercises: solutions pass; typical mistakes fail with a message that helps."""
from pathlib import Path

import numpy as np
import pytest
import torch
from exercise_support import chapter_exercise_tests

from lmlib.exercises import ExerciseFailed, all_exercises, check

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "15_rlhf_ppo.md"
IDS = ["ch15.token_rewards", "ch15.kl_controller_update", "ch15.sequence_kl", "ch15.overoptimisation_fit"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread

if CHAPTER.exists():  # the chapter's own solution cells, once the chapter is written
    chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
        chapter_exercise_tests(CHAPTER, IDS, min_checks=5))


def test_the_chapters_exercises_are_registered():
    assert {i for i in all_exercises() if i.startswith("ch15.")} == set(IDS)


# ----------------------------------------------------------------------------- solutions, as a learner writes them


def token_rewards(scores, logprobs, ref_logprobs, mask, beta):
    rewards = torch.where(mask, -beta * (logprobs - ref_logprobs), torch.zeros(()))
    last = mask.long().sum(dim=1) - 1
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


def kl_controller_update(value, current_kl, target, n_steps, horizon):
    error = min(max(current_kl / target - 1, -0.2), 0.2)
    return value * (1 + error * n_steps / horizon)


def sequence_kl(logprobs, ref_logprobs, mask):
    return torch.where(mask, logprobs - ref_logprobs, torch.zeros(())).sum(dim=1)


def _design(d, form):
    if form == "bon":
        return np.stack([d, -d**2], axis=1)
    safe = np.where(d > 0, d, 1.0)
    return np.stack([d, -np.where(d > 0, d * np.log(safe), 0.0)], axis=1)


def overoptimisation_fit(d, gain, form):
    (alpha, beta), *_ = np.linalg.lstsq(_design(np.asarray(d, float), form), np.asarray(gain, float), rcond=None)
    return float(alpha), float(beta)


@pytest.mark.parametrize("id, fn", [
    ("ch15.token_rewards", token_rewards),
    ("ch15.kl_controller_update", kl_controller_update),
    ("ch15.sequence_kl", sequence_kl),
    ("ch15.overoptimisation_fit", overoptimisation_fit),
])
def test_a_solution_passes(id, fn, capsys):
    result = check(id, fn)
    assert result.ok and result.total >= 5
    assert f"\u2714 {id}: all {result.total} checks passed." in capsys.readouterr().out


def test_the_worked_examples():
    f = torch.tensor
    rewards = token_rewards(f([1.0]), f([[-1.0, -2.0, -3.0]]), f([[-1.5, -2.0, -2.0]]), torch.ones(1, 3, dtype=torch.bool),
                            0.1)
    assert torch.allclose(rewards, f([[-0.05, 0.0, 1.1]]))
    assert kl_controller_update(0.1, 9.0, 6.0, 256, 10000) == pytest.approx(0.1005120, abs=1e-9)
    assert overoptimisation_fit(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.0]), "bon") == pytest.approx((1.0, 0.5))


# ----------------------------------------------------------------------------- typical mistakes


def rewards_on_last_column(scores, logprobs, ref_logprobs, mask, beta):
    rewards = torch.where(mask, -beta * (logprobs - ref_logprobs), torch.zeros(()))
    rewards[:, -1] += scores
    return rewards


def rewards_padding_not_zeroed(scores, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs)
    rewards[torch.arange(len(scores)), mask.long().sum(dim=1) - 1] += scores
    return rewards


def rewards_kl_sign_flipped(scores, logprobs, ref_logprobs, mask, beta):
    return token_rewards(scores, ref_logprobs, logprobs, mask, beta)


def rewards_score_on_every_token(scores, logprobs, ref_logprobs, mask, beta):
    return torch.where(mask, -beta * (logprobs - ref_logprobs) + scores[:, None], torch.zeros(()))


def controller_no_clip(value, current_kl, target, n_steps, horizon):
    return value * (1 + (current_kl / target - 1) * n_steps / horizon)


def controller_clips_the_ratio(value, current_kl, target, n_steps, horizon):
    error = min(max(current_kl / target, -0.2), 0.2) - 1
    return value * (1 + error * n_steps / horizon)


def controller_sign_error(value, current_kl, target, n_steps, horizon):
    error = min(max(current_kl / target - 1, -0.2), 0.2)
    return value * (1 - error * n_steps / horizon)


def kl_mean_not_sum(logprobs, ref_logprobs, mask):
    return sequence_kl(logprobs, ref_logprobs, mask) / mask.sum(dim=1)


def kl_counts_padding(logprobs, ref_logprobs, mask):
    return (logprobs - ref_logprobs).sum(dim=1)


def fit_with_intercept(d, gain, form):
    X = np.concatenate([_design(np.asarray(d, float), form), np.ones((len(d), 1))], axis=1)
    (alpha, beta, _), *_ = np.linalg.lstsq(X, np.asarray(gain, float), rcond=None)
    return float(alpha), float(beta)


def fit_log_kl(d, gain, form):
    d = np.asarray(d, float)
    if form == "rl":  # log KL = 2 log d
        safe = np.where(d > 0, d, 1.0)
        X = np.stack([d, -np.where(d > 0, d * np.log(safe**2), 0.0)], axis=1)
        (alpha, beta), *_ = np.linalg.lstsq(X, np.asarray(gain, float), rcond=None)
        return float(alpha), float(beta)
    return overoptimisation_fit(d, gain, form)


def fit_nan_at_zero(d, gain, form):  # the normal equations by hand, with d log d = 0 * -inf = nan at d = 0
    d, y = np.asarray(d, float), np.asarray(gain, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = d**2 if form == "bon" else d * np.log(d)
    a, b, c = d @ d, -(d @ u), u @ u
    det = a * c - b * b
    return float((c * (d @ y) + b * (u @ y)) / det), float(-(b * (d @ y) + a * (u @ y)) / det)


@pytest.mark.parametrize("id, fn, message", [
    ("ch15.token_rewards", rewards_on_last_column, "last real token, not on the last column"),
    ("ch15.token_rewards", rewards_padding_not_zeroed, "rewards at padding must be 0"),
    ("ch15.token_rewards", rewards_kl_sign_flipped, r"-beta \* \(logprobs - ref_logprobs\)"),
    ("ch15.token_rewards", rewards_score_on_every_token, "not on every token"),
    ("ch15.kl_controller_update", controller_no_clip, "clipped to 0.2"),
    ("ch15.kl_controller_update", controller_clips_the_ratio, r"clip\(KL / target - 1"),
    ("ch15.kl_controller_update", controller_sign_error, "beta goes up"),
    ("ch15.sequence_kl", kl_mean_not_sum, "sum over its tokens, not the mean"),
    ("ch15.sequence_kl", kl_counts_padding, "count only the real tokens"),
    ("ch15.overoptimisation_fit", fit_with_intercept, "without an intercept"),
    ("ch15.overoptimisation_fit", fit_log_kl, "not log KL"),
    ("ch15.overoptimisation_fit", fit_nan_at_zero, "not nan"),
])
def test_typical_mistakes_fail_with_a_message(id, fn, message):
    with pytest.raises(ExerciseFailed, match=message):
        check(id, fn, quiet=True)

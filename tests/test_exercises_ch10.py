"""Chapter 10's exercises: the chapter's own solutions pass; typical mistakes fail with a message that helps."""
from pathlib import Path

import pytest
import torch

from lmlib.exercises import ExerciseFailed, all_exercises, check
from exercise_support import chapter_exercise_tests

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "10_ppo.md"
IDS = ["ch10.gae", "ch10.clipped_surrogate", "ch10.approx_kl", "ch10.gaussian_logprob"]
chapter_solutions, test_every_exercise_is_registered_and_has_a_check_cell, test_the_chapters_solution_passes = (
    chapter_exercise_tests(CHAPTER, IDS, min_checks=7))

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def gae_ignores_dones(rewards, values, dones, next_value, next_done, gamma, lam):
    adv, last = torch.zeros_like(rewards), torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        v_next = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        last = rewards[t] + gamma * v_next - values[t] + gamma * lam * last
        adv[t] = last
    return adv, adv + values


def gae_returns_without_values(rewards, values, dones, next_value, next_done, gamma, lam):
    adv = chapter_solutions()["gae"](rewards, values, dones, next_value, next_done, gamma, lam)[0]
    return adv, adv


def surrogate_max(new, old, adv, clip):
    r = torch.exp(new - old)
    return -torch.max(r * adv, torch.clamp(r, 1 - clip, 1 + clip) * adv).mean()


def surrogate_detached(new, old, adv, clip):
    r = torch.exp(new.detach() - old)
    return -torch.min(r * adv, torch.clamp(r, 1 - clip, 1 + clip) * adv).mean()


def surrogate_unclipped(new, old, adv, clip):
    return -(torch.exp(new - old) * adv).mean()


def kl_swapped(new, old):
    lr = new - old
    return ((lr.exp() - 1) - lr).mean(), (-lr).mean()


def kl_wrong_sign(new, old):
    lr = old - new
    return (-lr).mean(), ((lr.exp() - 1) - lr).mean()


def logprob_not_summed(mean, log_std, a):
    z = (a - mean) / log_std.exp()
    return -0.5 * z**2 - log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))


def logprob_std_as_variance(mean, log_std, a):
    z = (a - mean) / log_std.exp().sqrt()
    return (-0.5 * z**2 - log_std - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)


@pytest.mark.parametrize("id, fn, message", [
    ("ch10.gae", gae_ignores_dones, "episode end"),
    ("ch10.gae", gae_returns_without_values, "wrong values|got"),
    ("ch10.clipped_surrogate", surrogate_max, "clipped|got"),
    ("ch10.clipped_surrogate", surrogate_detached, "no gradient"),
    ("ch10.clipped_surrogate", surrogate_unclipped, "ratio 1.5"),
    ("ch10.approx_kl", kl_swapped, "old_approx_kl"),
    ("ch10.approx_kl", kl_wrong_sign, "ratio"),
    ("ch10.gaussian_logprob", logprob_not_summed, "summed over the action"),
    ("ch10.gaussian_logprob", logprob_std_as_variance, "small standard deviations|got"),
])
def test_typical_mistakes_fail_with_a_message(id, fn, message):
    with pytest.raises(ExerciseFailed, match=message):
        check(id, fn, quiet=True)


def test_the_worked_gae_example_of_the_chapter():
    fn = chapter_solutions()["gae"]
    adv, ret = fn(torch.tensor([[1.0], [0.0], [2.0]]), torch.tensor([[0.5], [0.4], [0.3]]), torch.zeros(3, 1),
                  torch.tensor([0.2]), torch.tensor([0.0]), 0.9, 0.8)
    assert torch.allclose(adv[:, 0], torch.tensor([1.740992, 1.2236, 1.88]), atol=1e-6)

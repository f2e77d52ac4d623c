"""Exercises of Chapter 9, "Reinforcement learning and policy gradients": the reward-to-go.

* ``ch09.reward_to_go``: ``reward_to_go(rewards, dones, gamma)`` for a rollout of
  shape ``(T, N)`` (T steps, N environments): ``G_t = r_t + gamma * G_{t+1}``
  inside an episode, with ``G_{T-1} = r_{T-1}`` (no bootstrapping).

  Done convention (CleanRL's): ``dones[t] = 1`` means ``obs[t]`` is the *first*
  observation of a new episode, so step ``t`` ended its episode exactly when
  ``dones[t + 1] = 1``; ``dones[0]`` says nothing about this rollout's returns.
  Return a float tensor of shape ``(T, N)``.

Checked against :func:`lmlib.rl.discounted_returns`.

Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..rl.gae import discounted_returns
from .core import Case, compare_values, register

# float32 inputs: a loop and a vectorised answer round differently in the last bits
_compare_rl = partial(compare_values, rtol=1e-5, atol=1e-5)


def _random_rollout(rng: np.random.Generator, T: int, N: int, p_done: float) -> tuple[Tensor, Tensor]:
    """Random ``(rewards, dones)``, float32, shape ``(T, N)``; each ``dones`` entry is 1 with probability ``p_done``."""
    rewards = torch.tensor(rng.normal(size=(T, N)), dtype=torch.float32)
    dones = torch.tensor(rng.random((T, N)) < p_done, dtype=torch.float32)
    return rewards, dones


def ref_reward_to_go(rewards: Tensor, dones: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go of a ``(T, N)`` rollout, cut at episode boundaries."""
    return discounted_returns(rewards, dones, gamma)


def _reward_to_go_cases(rng: np.random.Generator) -> list[Case]:
    ones = torch.ones(3, 1)
    cases = [
        Case((ones, torch.zeros(3, 1), 0.5), label="three rewards of 1, gamma=0.5 (answer 1.75, 1.5, 1)"),
        Case((torch.tensor([[0.0], [0.0], [1.0]]), torch.zeros(3, 1), 0.9), label="a single reward at the end"),
        Case((*_random_rollout(rng, 6, 1, 0.0), 0.0), label="gamma=0 (returns are the rewards)"),
        Case((*_random_rollout(rng, 6, 1, 0.0), 1.0), label="gamma=1 (undiscounted sums)"),
        Case((*_random_rollout(rng, 1, 3, 0.0), 0.99), label="T=1"),
        Case((*_random_rollout(rng, 7, 4, 0.0), 0.9), label="four environments, no episode ends"),
        Case((ones, torch.tensor([[0.0], [1.0], [0.0]]), 0.5),
             label="an episode ends after step 0 (dones[1] = 1): answer 1, 1.5, 1"),
        Case((ones, torch.tensor([[1.0], [0.0], [0.0]]), 0.5), label="dones[0] = 1 changes nothing"),
        Case((torch.ones(4, 2), torch.ones(4, 2), 0.9), label="every step is its own episode"),
    ]
    for k in range(5):
        T, N = int(rng.integers(2, 20)), int(rng.integers(1, 5))
        cases.append(Case((*_random_rollout(rng, T, N, 0.25), float(rng.uniform(0.5, 1.0))),
                          label=f"random rollout {k + 1} with episode ends (T={T}, N={N})"))
    return cases


register("ch09.reward_to_go", ref_reward_to_go, _reward_to_go_cases, compare=_compare_rl,
         title="Discounted reward-to-go with episode boundaries")

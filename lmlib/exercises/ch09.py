"""Exercises of Chapter 9, "Reinforcement learning and policy gradients".

* ``ch09.reward_to_go``: ``reward_to_go(rewards, dones, gamma)`` for a rollout of
  shape ``(T, N)`` (T steps, N environments): ``G_t = r_t + gamma * G_{t+1}``
  inside an episode, with ``G_{T-1} = r_{T-1}`` (no bootstrapping).

  Done convention (CleanRL's): ``dones[t] = 1`` means ``obs[t]`` is the *first*
  observation of a new episode, so step ``t`` ended its episode exactly when
  ``dones[t + 1] = 1``; ``dones[0]`` says nothing about this rollout's returns.
  Return a float tensor of shape ``(T, N)``.

Checked against :func:`lmlib.rl.discounted_returns`.

* ``ch09.policy_gradient_loss``: ``policy_gradient_loss(logits, actions, advantages)``, the
  REINFORCE loss ``-mean_b log softmax(logits_b)[actions_b] * advantages_b`` as a scalar tensor
  that carries the gradient of ``logits`` (checked against :func:`lmlib.rl.reinforce_loss`).
* ``ch09.rally_returns``: Karpathy's ``discount_rewards`` for Pong, checked against
  :func:`lmlib.rl.pong.rally_returns`.
* ``ch09.prepro``: Karpathy's Pong preprocessing, checked against :func:`lmlib.rl.pong.prepro`.

Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..rl.gae import discounted_returns
from ..rl.losses import reinforce_loss
from ..rl.pong import prepro, rally_returns
from .core import Case, compare_values, register

# float32 inputs: a loop and a vectorised answer round differently in the last bits
compare_rl = partial(compare_values, rtol=1e-5, atol=1e-5)
"""``compare_values`` with float32 tolerances (1e-5): the comparison of the RL exercises of Chapters 9 and 10."""


def random_rollout(rng: np.random.Generator, T: int, N: int, p_done: float) -> tuple[Tensor, Tensor]:
    """Random ``(rewards, dones)``, float32, shape ``(T, N)``; each ``dones`` entry is 1 with probability ``p_done``.

    The rollouts of the checks of Chapter 9 (reward-to-go) and Chapter 10 (GAE).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
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
        Case((*random_rollout(rng, 6, 1, 0.0), 0.0), label="gamma=0 (returns are the rewards)"),
        Case((*random_rollout(rng, 6, 1, 0.0), 1.0), label="gamma=1 (undiscounted sums)"),
        Case((*random_rollout(rng, 1, 3, 0.0), 0.99), label="T=1"),
        Case((*random_rollout(rng, 7, 4, 0.0), 0.9), label="four environments, no episode ends"),
        Case((ones, torch.tensor([[0.0], [1.0], [0.0]]), 0.5),
             label="an episode ends after step 0 (dones[1] = 1): answer 1, 1.5, 1"),
        Case((ones, torch.tensor([[1.0], [0.0], [0.0]]), 0.5), label="dones[0] = 1 changes nothing"),
        Case((torch.ones(4, 2), torch.ones(4, 2), 0.9), label="every step is its own episode"),
    ]
    for k in range(5):
        T, N = int(rng.integers(2, 20)), int(rng.integers(1, 5))
        cases.append(Case((*random_rollout(rng, T, N, 0.25), float(rng.uniform(0.5, 1.0))),
                          label=f"random rollout {k + 1} with episode ends (T={T}, N={N})"))
    return cases


register("ch09.reward_to_go", ref_reward_to_go, _reward_to_go_cases, compare=compare_rl,
         title="Discounted reward-to-go with episode boundaries")


# ----------------------------------------------------------------------------- the REINFORCE loss


def ref_policy_gradient_loss(logits: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
    """``-mean(log pi(a_b | s_b) * A_b)`` for logits ``(B, A)``, actions ``(B,)``, advantages ``(B,)``."""
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, actions.long().unsqueeze(1)).squeeze(1)
    return reinforce_loss(logprobs, advantages)


def _compare_pg_loss(got: Any, expected: Tensor) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"return a scalar torch.Tensor (the loss to call .backward() on), got {type(got).__name__}"
    if got.numel() != 1:
        return f"the loss must be a scalar (the mean over the batch), got shape {tuple(got.shape)}"
    if not got.requires_grad:
        return "the loss has no gradient: do not detach the logits or convert to numbers (.item())"
    return compare_rl(got.reshape(()), expected)


def _pg_loss_cases(rng: np.random.Generator) -> list[Case]:
    def case(logits, actions, adv, label: str) -> Case:
        return Case((torch.tensor(logits, dtype=torch.float32).requires_grad_(), torch.tensor(actions),
                     torch.tensor(adv, dtype=torch.float32)), label=label)

    cases = [
        case([[0.0, 0.0]], [1], [1.0], "two equally likely actions, A=1 (loss log 2)"),
        case([[0.0, 0.0]], [0], [-2.0], "A=-2 (loss -2 log 2)"),
        case([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]], [2, 0], [1.0, 0.0], "A=0 for the second sample"),
        case([[100.0, 0.0]], [1], [1.0], "a very unlikely action (log-softmax, not log(softmax))"),
    ]
    for k in range(4):
        B, A = int(rng.integers(2, 20)), int(rng.integers(2, 6))
        cases.append(case(rng.normal(size=(B, A)).tolist(), rng.integers(0, A, B).tolist(),
                          rng.normal(size=B).tolist(), f"random batch {k + 1} (B={B}, {A} actions)"))
    return cases


register("ch09.policy_gradient_loss", ref_policy_gradient_loss, _pg_loss_cases, compare=_compare_pg_loss,
         title="The REINFORCE loss from logits")


# ----------------------------------------------------------------------------- Pong: rally returns


def ref_rally_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Discounted return restarted at every nonzero reward (Karpathy's ``discount_rewards``), ``(T,)``."""
    return rally_returns(rewards, gamma)


def _rally_cases(rng: np.random.Generator) -> list[Case]:
    t = lambda xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731
    cases = [
        Case((t([0.0, 0.0, 1.0]), 0.5), label="one won rally of 3 steps, gamma=0.5 (answer 0.25, 0.5, 1)"),
        Case((t([0.0, -1.0, 0.0, 1.0]), 0.5), label="a lost rally then a won one (answer -0.5, -1, 0.5, 1)"),
        Case((t([0.0, 1.0, 0.0, 0.0]), 0.9), label="steps after the last point get 0"),
        Case((t([1.0, -1.0, 1.0]), 0.99), label="a point at every step"),
        Case((t([0.0, 0.0, -1.0]), 1.0), label="gamma=1"),
        Case((t([0.0]), 0.99), label="one step, no point"),
    ]
    for k in range(4):
        T = int(rng.integers(5, 60))
        r = rng.choice([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0], size=T)
        cases.append(Case((t(r.tolist()), float(rng.uniform(0.8, 1.0))), label=f"random episode {k + 1} (T={T})"))
    return cases


register("ch09.rally_returns", ref_rally_returns, _rally_cases, compare=compare_rl,
         title="Pong: every action labelled by its rally's outcome")


# ----------------------------------------------------------------------------- Pong: preprocessing


def ref_prepro(frame: np.ndarray) -> np.ndarray:
    """A ``(210, 160, 3)`` uint8 Pong frame -> ``(6400,)`` float of 0s and 1s."""
    return prepro(frame)


def _frame(rng: np.random.Generator, background: int, n_objects: int) -> np.ndarray:
    """A synthetic Pong-like frame: background colour, a scoreboard, random rectangles of other colours."""
    f = np.zeros((210, 160, 3), dtype=np.uint8)
    f[..., 0], f[..., 1], f[..., 2] = background, 72, 17
    f[:35] = rng.integers(0, 256, size=(35, 160, 3))  # scoreboard: must be cropped away
    f[195:] = 236  # bottom border: cropped too
    for _ in range(n_objects):
        y, x = int(rng.integers(35, 190)), int(rng.integers(0, 155))
        h, w = int(rng.integers(1, 16)), int(rng.integers(1, 5))
        f[y:y + h, x:x + w] = rng.choice([92, 213, 236, 53, 101])
    return f


def _prepro_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((_frame(rng, 144, 0),), label="an empty field (background 144): all zeros"),
             Case((_frame(rng, 109, 0),), label="an empty field (background 109): all zeros")]
    one = _frame(rng, 144, 0)
    one[36, 2] = 236  # row 36 is an odd row: dropped by the downsampling
    one[38, 4] = 236  # row 38 -> row 1 of 80, column 4 -> column 2: index 82
    cases.append(Case((one,), label="one bright pixel at (38, 4) (index 82 is 1) and one at an odd row"))
    for k in range(5):
        cases.append(Case((_frame(rng, int(rng.choice([144, 109])), int(rng.integers(1, 6))),),
                          label=f"random paddles and balls {k + 1}"))
    return cases


def _compare_prepro(got: Any, expected: np.ndarray) -> str | None:
    got = np.asarray(got)
    if got.shape != expected.shape:
        return f"wrong shape: got {got.shape}, expected {expected.shape} (80 x 80 = 6400 numbers, flattened)"
    return compare_values(got.astype(np.float64), expected.astype(np.float64))


register("ch09.prepro", ref_prepro, _prepro_cases, compare=_compare_prepro,
         title="Pong: preprocessing a frame to 6400 numbers")

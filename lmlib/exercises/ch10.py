"""Exercises of Chapter 10, "Proximal Policy Optimization": GAE, the clipped loss, the KL estimate, the Gaussian policy.

* ``ch10.gae``: ``gae(rewards, values, dones, next_value, next_done, gamma, lam)``
  on a ``(T, N)`` rollout (``next_value``, ``next_done``: ``(N,)``), returning
  ``(advantages, returns)`` with ``returns = advantages + values``. CleanRL's
  done convention: ``dones[t] = 1`` means ``obs[t]`` starts a new episode, so the
  step after ``t`` is "non-terminal" when ``dones[t+1] = 0`` (``next_done = 0``
  for the last step). Checked against :func:`lmlib.rl.gae`.
* ``ch10.clipped_surrogate``: ``clipped_surrogate_loss(new_logprobs, old_logprobs,
  advantages, clip_coef)`` returning the scalar ``pg_loss``: minus the mean of
  ``min(ratio * A, clip(ratio, 1 - clip_coef, 1 + clip_coef) * A)`` (Schulman et
  al. 2017, eq. 7). It must stay differentiable in ``new_logprobs``. Checked
  against :func:`lmlib.rl.clipped_surrogate_loss`.
* ``ch10.approx_kl``: ``approx_kl(new_logprobs, old_logprobs)`` returning the pair
  ``(old_approx_kl, approx_kl)``: the mean of ``-log r`` and the mean of
  ``(r - 1) - log r`` with ``r = exp(new - old)`` (the two estimators of
  KL(old || new) that CleanRL logs). Checked against the diagnostics of
  :func:`lmlib.rl.clipped_surrogate_loss`.
* ``ch10.gaussian_logprob``: ``gaussian_logprob(mean, log_std, actions)`` for
  ``(B, D)`` means and actions and a ``(D,)`` log standard deviation, returning the
  ``(B,)`` log-density of each action under the diagonal Gaussian (the sum over the
  ``D`` dimensions). Checked against ``torch.distributions.Normal``.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..rl.gae import gae
from ..rl.losses import clipped_surrogate_loss
from .ch09 import compare_rl, random_rollout
from .core import Case, register

# ----------------------------------------------------------------------------- gae


def ref_gae(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, next_done: Tensor,
            gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE advantages and lambda-returns of a ``(T, N)`` rollout."""
    return gae(rewards, values, dones, next_value, next_done, gamma, lam)


def _gae_cases(rng: np.random.Generator) -> list[Case]:
    def rollout(T: int, N: int, p_done: float, next_done: float | None = None) -> tuple:
        rewards, dones = random_rollout(rng, T, N, p_done)
        values = torch.tensor(rng.normal(size=(T, N)), dtype=torch.float32)
        next_value = torch.tensor(rng.normal(size=N), dtype=torch.float32)
        nd = torch.tensor(rng.random(N) < p_done if next_done is None else np.full(N, next_done), dtype=torch.float32)
        return rewards, values, dones, next_value, nd

    hand = (torch.tensor([[1.0], [0.0], [2.0]]), torch.tensor([[0.5], [0.4], [0.3]]), torch.zeros(3, 1),
            torch.tensor([0.2]), torch.tensor([0.0]))
    cases = [
        Case((*hand, 0.9, 0.8), label="the worked example of the chapter (answer 1.740992, 1.2236, 1.88)"),
        Case((*rollout(5, 1, 0.0, 0.0), 0.99, 0.95), label="one environment, no episode ends"),
        Case((*rollout(5, 1, 0.0, 1.0), 0.99, 0.95), label="the episode ends with the last step (next_done=1)"),
        Case((*rollout(6, 3, 0.3), 0.99, 0.0), label="lam=0 (one-step TD errors)"),
        Case((*rollout(6, 3, 0.3), 0.9, 1.0), label="lam=1 (returns minus values)"),
        Case((*rollout(1, 4, 0.5), 0.99, 0.95), label="T=1"),
        Case((*hand[:2], torch.tensor([[0.0], [0.0], [1.0]]), *hand[3:], 0.9, 0.8),
             label="the worked example with an episode end after step 1 (dones[2]=1)"),
    ]
    for k in range(5):
        T, N = int(rng.integers(2, 20)), int(rng.integers(1, 5))
        cases.append(Case((*rollout(T, N, 0.2), float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.5, 1.0))),
                          label=f"random rollout {k + 1} (T={T}, N={N})"))
    return cases


register("ch10.gae", ref_gae, _gae_cases, compare=compare_rl, title="Generalized Advantage Estimation")


# ----------------------------------------------------------------------------- clipped surrogate


def ref_clipped_surrogate(new_logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, clip_coef: float) -> Tensor:
    """PPO's clipped surrogate loss (a scalar tensor)."""
    return clipped_surrogate_loss(new_logprobs, old_logprobs, advantages, clip_coef)[0]


def _compare_loss(got: Any, expected: Tensor) -> str | None:
    if isinstance(got, tuple):
        return "return only pg_loss (a scalar tensor), not a tuple"
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        return f"pg_loss must be a scalar (the mean over the batch), got shape {tuple(got.shape)}"
    if isinstance(got, torch.Tensor) and expected.requires_grad and not got.requires_grad:
        return "the loss has no gradient: do not detach new_logprobs or convert to numbers (.item())"
    if isinstance(got, torch.Tensor):
        got = got.reshape(())
    return compare_rl(got, expected)


def _surrogate_cases(rng: np.random.Generator) -> list[Case]:
    def logs(ratios: list[float]) -> tuple[Tensor, Tensor]:
        old = torch.tensor(rng.normal(-1.0, 0.3, len(ratios)), dtype=torch.float32)
        new = (old + torch.log(torch.tensor(ratios))).requires_grad_()
        return new, old

    def case(ratios: list[float], adv: list[float], clip: float, label: str) -> Case:
        return Case((*logs(ratios), torch.tensor(adv), clip), label=label)

    cases = [
        case([1.0, 1.0], [1.0, -2.0], 0.2, "ratio 1 (new policy = old policy)"),
        case([1.5], [1.0], 0.2, "ratio 1.5, A=+1, clip 0.2 (objective 1.2, loss -1.2)"),
        case([0.5], [-1.0], 0.2, "ratio 0.5, A=-1, clip 0.2 (objective -0.8, loss 0.8)"),
        case([0.5], [1.0], 0.2, "ratio 0.5, A=+1, clip 0.2 (not clipped: loss -0.5)"),
        case([1.5], [-1.0], 0.2, "ratio 1.5, A=-1, clip 0.2 (not clipped: loss 1.5)"),
        case([1.1, 0.9, 1.05], [0.5, -0.3, 2.0], 0.2, "ratios inside the clip range"),
        case([1.5, 0.5, 1.5, 0.5], [1.0, 1.0, -1.0, -1.0], 0.1, "all four sign/side combinations, clip 0.1"),
    ]
    for k in range(5):
        n = int(rng.integers(2, 30))
        ratios = np.exp(rng.normal(0.0, 0.3, n)).tolist()
        cases.append(case(ratios, rng.normal(size=n).tolist(), float(rng.choice([0.1, 0.2, 0.3])),
                          f"random minibatch {k + 1} of {n}"))
    return cases


register("ch10.clipped_surrogate", ref_clipped_surrogate, _surrogate_cases, compare=_compare_loss,
         title="PPO's clipped surrogate loss")


# ----------------------------------------------------------------------------- approximate KL


def ref_approx_kl(new_logprobs: Tensor, old_logprobs: Tensor) -> tuple[Tensor, Tensor]:
    """``(old_approx_kl, approx_kl)``: the means of ``-log r`` and ``(r - 1) - log r``."""
    info = clipped_surrogate_loss(new_logprobs.detach(), old_logprobs, torch.zeros_like(old_logprobs), 0.2)[1]
    return info["old_approx_kl"], info["approx_kl"]


def _compare_kl(got: Any, expected: tuple[Tensor, Tensor]) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "return a pair (old_approx_kl, approx_kl)"
    for name, g, e in zip(("old_approx_kl", "approx_kl"), got, expected):
        g = torch.as_tensor(g, dtype=torch.float32).reshape(-1)
        if g.numel() != 1:
            return f"{name} must be one number (the mean over the batch), got {g.numel()} values"
        problem = compare_rl(g.reshape(()), e.reshape(()))
        if problem:
            return f"{name}: {problem}"
    return None


def _kl_cases(rng: np.random.Generator) -> list[Case]:
    def case(ratios: list[float], label: str) -> Case:
        old = torch.tensor(rng.normal(-1.0, 0.3, len(ratios)), dtype=torch.float32)
        return Case((old + torch.log(torch.tensor(ratios, dtype=torch.float32)), old), label=label)

    cases = [
        case([1.0, 1.0, 1.0], "ratio 1 everywhere: both estimates are 0"),
        case([2.0], "one ratio of 2: -log 2 = -0.693 and 1 - log 2 = 0.307"),
        case([0.5, 2.0], "ratios 0.5 and 2: the naive estimate cancels to 0, the k3 one does not"),
    ]
    for k in range(5):
        n = int(rng.integers(2, 50))
        cases.append(case(np.exp(rng.normal(0.0, 0.2 * (k + 1), n)).tolist(), f"random ratios {k + 1} (n={n})"))
    return cases


register("ch10.approx_kl", ref_approx_kl, _kl_cases, compare=_compare_kl, title="Two estimates of the KL divergence")


# ----------------------------------------------------------------------------- Gaussian log-density


def ref_gaussian_logprob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """``(B,)`` log-density of ``actions`` ``(B, D)`` under N(mean, diag(exp(log_std))^2), summed over D."""
    return torch.distributions.Normal(mean, log_std.exp().expand_as(mean)).log_prob(actions).sum(-1)


def _compare_logprob(got: Any, expected: Tensor) -> str | None:
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        return (f"expected shape {tuple(expected.shape)} (one log-density per action, summed over the action "
                f"dimensions), got {tuple(got.shape)}")
    return compare_rl(got, expected)


def _gaussian_cases(rng: np.random.Generator) -> list[Case]:
    def case(B: int, D: int, label: str, log_std: np.ndarray | None = None, at_mean: bool = False) -> Case:
        mean = torch.tensor(rng.normal(size=(B, D)), dtype=torch.float32)
        ls = torch.tensor(rng.normal(-0.5, 0.3, D) if log_std is None else log_std, dtype=torch.float32)
        actions = mean.clone() if at_mean else mean + ls.exp() * torch.tensor(rng.normal(size=(B, D)),
                                                                              dtype=torch.float32)
        return Case((mean, ls, actions), label=label)

    return [
        case(1, 1, "one action at the mean with std 1 (answer -0.918939 = -log sqrt(2 pi))", np.zeros(1), True),
        case(3, 1, "one dimension, std 1", np.zeros(1)),
        case(4, 3, "Hopper-sized: 3 action dimensions (sum over them)"),
        case(5, 6, "HalfCheetah-sized: 6 action dimensions"),
        case(2, 2, "small standard deviations (log_std -3)", np.full(2, -3.0)),
        case(8, 4, "random 1"),
        case(16, 2, "random 2"),
        case(1, 17, "Humanoid-sized: 17 action dimensions"),
    ]


register("ch10.gaussian_logprob", ref_gaussian_logprob, _gaussian_cases, compare=_compare_logprob,
         title="The log-density of a diagonal Gaussian policy")

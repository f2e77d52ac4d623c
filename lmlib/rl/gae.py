"""Returns and advantages: reward-to-go, GAE, and their masked (per-token) version.

Rollouts are laid out **time first**, ``(T, N)``: ``T`` steps of ``N`` parallel
environments, as in CleanRL. Everything here follows CleanRL's *done
convention*, which is worth learning once and precisely:

* ``obs[t]`` is the observation the agent acted on at step ``t``;
  ``rewards[t]`` is the reward that came back for that action.
* ``dones[t] == 1`` means that ``obs[t]`` is the **first observation of a new
  episode**: the episode that was running ended with the *previous* step
  ``t - 1`` (the environment auto-reset). It is the done flag that was
  returned *together with* ``obs[t]``.
* So step ``t`` ended its episode if and only if ``dones[t + 1] == 1``; for the
  last step ``t = T - 1`` that information is in ``next_done`` (shape ``(N,)``),
  the done flag returned with ``next_obs``, the observation after the rollout.
  ``next_value = V(next_obs)`` bootstraps the returns of episodes the rollout
  cut off; it is ignored where ``next_done == 1``.
* CleanRL counts both *terminated* and *truncated* as done (no bootstrapping
  through a time limit); we do the same.

If your environment loop gives the gymnasium-style flag ``ended[t]`` ("step
``t`` ended its episode"), convert with ``dones[1:] = ended[:-1]``,
``dones[0] = ended_before_rollout`` (zeros on the very first rollout), and
``next_done = ended[-1]``.

In words: "nextnonterminal" for step ``t`` is ``1 - dones[t + 1]`` (or
``1 - next_done`` at ``t = T - 1``), and every formula below multiplies the
future by it, so nothing leaks across an episode boundary.

For language models (one episode per sequence, tokens of a ``(B, T)`` batch,
right padding) use :func:`masked_gae`, which is batch first and takes a mask.

Taught in: Chapter 9, "Reinforcement learning and policy gradients"
(chapters/09_policy_gradients.ipynb) for returns; Chapter 10, "Proximal Policy
Optimization" (chapters/10_ppo.ipynb) for GAE.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..checks import as_mask

__all__ = ["discounted_cumsum", "discounted_returns", "gae", "gae_loop", "masked_gae"]

Number = float | int


def _as_float(x: Tensor | Sequence | Number) -> Tensor:
    """``x`` as a floating tensor (integer or bool rewards become the default float dtype)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def _check_coef(value: float, name: str) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _as_batch(x: Tensor | Number, batch_shape: torch.Size, name: str, like: Tensor) -> Tensor:
    """``x`` as a tensor of shape ``batch_shape``; size-1 dims such as (1, N) or (N, 1) are accepted."""
    t = torch.as_tensor(x, device=like.device).to(like.dtype)
    if t.shape == batch_shape:
        return t
    if t.ndim == 0:
        return t.expand(batch_shape).clone()
    squeeze = lambda s: [d for d in s if d != 1]  # noqa: E731
    if squeeze(t.shape) == squeeze(batch_shape):
        return t.reshape(batch_shape)
    raise ValueError(
        f"{name} has shape {tuple(t.shape)} but the rollout has batch shape {tuple(batch_shape)} "
        f"(rewards are (T, *batch) = (T, {', '.join(map(str, batch_shape))})); {name} needs one entry per environment"
    )


def _check_dones(dones: Tensor, name: str = "dones") -> Tensor:
    """``dones`` unchanged if it holds only 0 and 1 (or is bool); otherwise a ``ValueError`` naming a bad value.

    Every formula multiplies the future by ``1 - done``, so a flag of 2 would silently count the next
    step with weight -1 (and NaN would spread to every earlier step).
    """
    if dones.dtype != torch.bool:
        bad = (dones != 0) & (dones != 1)
        if bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0].tolist())
            raise ValueError(f"{name} must hold only 0 and 1 (or be bool), got {dones[where].item()} at index "
                             f"{where}; a done flag is 1 where a new episode starts (lmlib.rl.gae's docstring)")
    return dones


def _rollout(rewards, dones, values=None) -> tuple[Tensor, Tensor, Tensor | None]:
    rewards = _as_float(rewards)
    if rewards.ndim < 1 or rewards.shape[0] == 0:
        raise ValueError(f"rewards must have shape (T, N) with T >= 1, got {tuple(rewards.shape)}")
    dtype = rewards.dtype
    if values is not None:
        values = _as_float(values)
        dtype = torch.promote_types(dtype, values.dtype)
        if values.shape != rewards.shape:
            raise ValueError(f"values has shape {tuple(values.shape)} but rewards has shape {tuple(rewards.shape)}; "
                             f"both must be (T, N)")
        values = values.to(dtype)
    dones = torch.as_tensor(dones, device=rewards.device)
    if dones.shape != rewards.shape:
        raise ValueError(f"dones has shape {tuple(dones.shape)} but rewards has shape {tuple(rewards.shape)}; "
                         f"both must be (T, N)")
    return rewards.to(dtype), _check_dones(dones).to(dtype), values


def _next_nonterminal(dones: Tensor, next_done: Tensor) -> Tensor:
    """``nextnonterminal[t] = 1 - dones[t + 1]``, and ``1 - next_done`` for the last step. Shape (T, N)."""
    return 1.0 - torch.cat([dones[1:], next_done.unsqueeze(0)], dim=0)


def discounted_cumsum(x: Tensor, discounts: Tensor) -> Tensor:
    """Solve ``y[t] = x[t] + discounts[t] * y[t + 1]`` backwards in time, with ``y[T] = 0``.

    ``x`` and ``discounts`` have shape ``(T, *batch)``; so does the result.
    With ``discounts`` = gamma everywhere this is the discounted reward-to-go;
    zeros in ``discounts`` cut the sum at episode boundaries.

    Instead of a Python loop over ``T`` this uses a parallel (Hillis-Steele)
    scan: each of ``ceil(log2 T)`` rounds composes every step with the one
    ``s`` steps later (``y[t] = x'[t] + d'[t] * y[t + s]``) and doubles ``s``.
    It is exact (no division, so zeros in ``discounts`` are safe) and
    differentiable.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    if x.shape != discounts.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but discounts has shape {tuple(discounts.shape)}")
    T = x.shape[0]
    y, d = x, discounts
    s = 1
    while s < T:
        # y[t] += d[t] * y[t+s];  d[t] *= d[t+s]  (for t + s < T; y beyond the end is 0)
        y = torch.cat([y[: T - s] + d[: T - s] * y[s:], y[T - s:]], dim=0)
        d = torch.cat([d[: T - s] * d[s:], torch.zeros_like(d[T - s:])], dim=0)
        s *= 2
    return y


def discounted_returns(
    rewards: Tensor,
    dones: Tensor,
    gamma: float,
    next_value: Tensor | Number | None = None,
    next_done: Tensor | Number | None = None,
) -> Tensor:
    """Discounted reward-to-go ``G_t = r_t + gamma * r_{t+1} + gamma^2 * r_{t+2} + ...`` within each episode.

    Args:
        rewards: ``(T, N)`` rewards, ``rewards[t]`` for the action taken at ``obs[t]``.
        dones: ``(T, N)`` of 0 and 1 (or bool), CleanRL convention: ``dones[t] = 1`` if ``obs[t]``
            starts a new episode (see the module docstring). ``dones[0]`` is never used.
        gamma: discount factor in [0, 1].
        next_value: optional ``(N,)`` value ``V(next_obs)`` of the observation after
            the rollout, added as ``gamma^k * V`` to episodes the rollout cut off
            (an n-step return). Default: none (episodes cut off by the rollout end
            simply stop there, as in REINFORCE on complete episodes).
        next_done: optional ``(N,)`` done flag returned with ``next_obs``; where it
            is 1 the last step ended its episode and ``next_value`` is ignored.

    Returns:
        ``(T, N)`` returns: ``G_t = r_t + gamma * (1 - dones[t+1]) * G_{t+1}``, with
        ``G_{T-1} = r_{T-1} + gamma * (1 - next_done) * next_value``.
        Shapes ``(T,)`` (one environment) and ``(T, *batch)`` work too.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients"
    (chapters/09_policy_gradients.ipynb).
    """
    _check_coef(gamma, "gamma")
    rewards, dones, _ = _rollout(rewards, dones)
    batch = rewards.shape[1:]
    next_done_t = _check_dones(_as_batch(0.0 if next_done is None else next_done, batch, "next_done", rewards),
                               "next_done")
    nextnonterminal = _next_nonterminal(dones, next_done_t)
    x = rewards
    if next_value is not None:
        nv = _as_batch(next_value, batch, "next_value", rewards)
        x = torch.cat([rewards[:-1], (rewards[-1] + gamma * nextnonterminal[-1] * nv).unsqueeze(0)], dim=0)
    return discounted_cumsum(x, gamma * nextnonterminal)


def gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor | Number,
    next_done: Tensor | Number,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, eq. 16), vectorised over time.

    ``A_t = sum_l (gamma * lam)^l * delta_{t+l}`` with the TD errors
    ``delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)`` (the TD residual of the paper's Section 3), both cut
    at episode ends. As a backward recursion (what :func:`gae_loop` runs)::

        delta_t = r_t + gamma * nextvalues_t * nextnonterminal_t - values_t
        A_t     = delta_t + gamma * lam * nextnonterminal_t * A_{t+1}

    where ``nextnonterminal_t = 1 - dones[t+1]`` (``1 - next_done`` at ``t = T-1``)
    and ``nextvalues_t = values[t+1]`` (``next_value`` at ``t = T-1``). Here the
    recursion is solved by :func:`discounted_cumsum` in ``log2(T)`` tensor
    rounds instead of ``T`` Python steps.

    Special cases: ``lam = 0`` gives the one-step TD errors ``delta_t``;
    ``lam = 1`` gives ``discounted_returns(..., next_value, next_done) - values``.

    Args:
        rewards, values, dones: ``(T, N)``; ``values[t] = V(obs[t])`` from the
            rollout policy; ``dones`` of 0 and 1 (or bool) in the CleanRL convention
            (module docstring): any other flag is a ``ValueError``.
        next_value: ``(N,)`` ``V(next_obs)``; ``(1, N)`` and ``(N, 1)`` are accepted.
        next_done: ``(N,)`` done flag (0 or 1) returned with ``next_obs``.
        gamma: discount in [0, 1]. lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, both ``(T, N)``, with ``returns = advantages + values``
        (the lambda-return, the value-function target).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    _check_coef(gamma, "gamma")
    _check_coef(lam, "lam")
    rewards, dones, values = _rollout(rewards, dones, values)
    batch = rewards.shape[1:]
    next_value = _as_batch(next_value, batch, "next_value", values)
    next_done = _check_dones(_as_batch(next_done, batch, "next_done", values), "next_done")
    nextnonterminal = _next_nonterminal(dones, next_done)
    nextvalues = torch.cat([values[1:], next_value.unsqueeze(0)], dim=0)
    delta = rewards + gamma * nextvalues * nextnonterminal - values
    advantages = discounted_cumsum(delta, gamma * lam * nextnonterminal)
    return advantages, advantages + values


def gae_loop(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor | Number,
    next_done: Tensor | Number,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """GAE as a plain backward loop over time: CleanRL's ``ppo.py``, line for line.

    Same arguments, shapes and results as :func:`gae` (which it is tested
    against); read this one first.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    _check_coef(gamma, "gamma")
    _check_coef(lam, "lam")
    rewards, dones, values = _rollout(rewards, dones, values)
    next_value = _as_batch(next_value, rewards.shape[1:], "next_value", values)
    next_done = _check_dones(_as_batch(next_done, rewards.shape[1:], "next_done", values), "next_done")
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[0])
    for t in reversed(range(num_steps)):
        if t == num_steps - 1:
            nextnonterminal = 1.0 - next_done
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1]
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
    returns = advantages + values
    return advantages, returns


def masked_gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """GAE over the tokens of a ``(B, T)`` batch of sequences, one episode per sequence.

    This is the layout of RLHF (batch first; one "step" is one generated token;
    ``rewards`` is typically a per-token KL penalty plus the reward model's score
    on the last real token). ``mask[b, t] = 1`` marks real tokens, 0 padding.

    Conventions:

    * Each run of real tokens is one episode that ends (terminally, no bootstrap)
      at its last real token, so with right padding each row is one episode.
    * Padded positions are ignored: their rewards and values may hold anything
      (even NaN) and do not influence real positions; their advantages and
      returns are set to 0.

    Equivalent to ``gae(rewards[b, :L].T, values[b, :L].T, dones=0, next_value=0,
    next_done=1, gamma, lam)`` on each row's ``L`` real tokens (tested).
    TRL's PPO trainer computes the same thing with a loop.

    Args:
        rewards, values: ``(B, T)`` float. mask: ``(B, T)`` bool or 0/1.
        gamma: discount in [0, 1] (1.0 is usual for tokens). lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, zero at padded positions.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
    used again in the RLHF chapters.
    """
    _check_coef(gamma, "gamma")
    _check_coef(lam, "lam")
    rewards = _as_float(rewards)
    values = _as_float(values)
    if rewards.ndim != 2 or values.shape != rewards.shape:
        raise ValueError(f"rewards and values must both be (B, T); got {tuple(rewards.shape)} and {tuple(values.shape)}")
    m = as_mask(mask, rewards, "mask")
    dtype = torch.promote_types(rewards.dtype, values.dtype)
    r = torch.where(m, rewards, 0.0).to(dtype)
    v = torch.where(m, values, 0.0).to(dtype)
    # chain t -> t+1 continues only when both are real tokens
    cont = torch.zeros_like(r)
    cont[:, :-1] = (m[:, :-1] & m[:, 1:]).to(dtype)
    nextvalues = torch.zeros_like(v)
    nextvalues[:, :-1] = v[:, 1:]
    delta = r + gamma * nextvalues * cont - v
    advantages = discounted_cumsum(delta.T, (gamma * lam * cont).T).T
    advantages = torch.where(m, advantages, 0.0)
    returns = torch.where(m, advantages + v, 0.0)
    return advantages, returns

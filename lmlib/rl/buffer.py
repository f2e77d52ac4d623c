"""A rollout buffer: ``T`` steps of ``N`` environments in preallocated tensors, CleanRL style.

Usage (one PPO iteration)::

    buf = RolloutBuffer(num_steps=128, num_envs=8, obs_shape=(4,))
    for step in range(buf.num_steps):
        with torch.no_grad():
            action, logprob, _, value = agent.get_action_and_value(next_obs)
        obs_after, reward, terminated, truncated, _ = envs.step(action.cpu().numpy())
        buf.add(next_obs, action, logprob, reward, next_done, value)
        next_obs, next_done = torch.as_tensor(obs_after), torch.as_tensor(terminated | truncated)
    with torch.no_grad():
        buf.compute_returns_and_advantages(agent.get_value(next_obs), next_done, gamma=0.99, lam=0.95)
    b = buf.flatten()                       # b["obs"]: (T*N, *obs_shape), ...
    for epoch in range(4):
        for mb_inds in buf.minibatches(n_minibatches=4, generator=g):
            ... b["obs"][mb_inds] ...
    buf.reset()

``add`` takes the done flag that arrived *with* ``obs`` (CleanRL's convention,
explained in :mod:`lmlib.rl.gae`).

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor

from .gae import gae

__all__ = ["RolloutBuffer"]


class RolloutBuffer:
    """Preallocated storage for one rollout of ``num_steps`` x ``num_envs`` transitions.

    Tensors (``T = num_steps``, ``N = num_envs``):

    * ``obs``: ``(T, N, *obs_shape)`` (``obs_dtype``, e.g. ``torch.uint8`` for Atari frames)
    * ``actions``: ``(T, N, *action_shape)`` (``action_shape=()`` and ``torch.long``
      for discrete actions; ``(act_dim,)`` and float for continuous ones)
    * ``logprobs``, ``rewards``, ``dones``, ``values``: ``(T, N)`` float
    * ``advantages``, ``returns``: ``(T, N)``, filled by :meth:`compute_returns_and_advantages`

    Errors name the problem: a wrongly shaped input, a full buffer, non-finite
    rewards/values/log-probs (with the step and the environments).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: Sequence[int] | int,
        action_shape: Sequence[int] | int = (),
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if num_steps < 1 or num_envs < 1:
            raise ValueError(f"num_steps and num_envs must be >= 1, got {num_steps} and {num_envs}")
        self.num_steps, self.num_envs = int(num_steps), int(num_envs)
        self.obs_shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.action_shape = (action_shape,) if isinstance(action_shape, int) else tuple(action_shape)
        if action_dtype is None:
            action_dtype = torch.long if self.action_shape == () else torch.float32
        self.device = torch.device(device)
        T, N = self.num_steps, self.num_envs
        self.obs = torch.zeros((T, N, *self.obs_shape), dtype=obs_dtype, device=self.device)
        self.actions = torch.zeros((T, N, *self.action_shape), dtype=action_dtype, device=self.device)
        self.logprobs = torch.zeros((T, N), device=self.device)
        self.rewards = torch.zeros((T, N), device=self.device)
        self.dones = torch.zeros((T, N), device=self.device)
        self.values = torch.zeros((T, N), device=self.device)
        self.advantages = torch.zeros((T, N), device=self.device)
        self.returns = torch.zeros((T, N), device=self.device)
        self.step = 0
        self._computed = False

    @property
    def batch_size(self) -> int:
        """``T * N``, the number of transitions in a full buffer."""
        return self.num_steps * self.num_envs

    @property
    def full(self) -> bool:
        """True once ``num_steps`` steps have been added."""
        return self.step == self.num_steps

    def reset(self) -> None:
        """Start a new rollout (the storage is reused and overwritten)."""
        self.step = 0
        self._computed = False

    def _put(self, name: str, value, expected: tuple[int, ...], check_finite: bool) -> None:
        store: Tensor = getattr(self, name)
        t = torch.as_tensor(value, device=self.device)
        if tuple(t.shape) != expected:
            if name in ("logprobs", "rewards", "dones", "values") and t.numel() == self.num_envs and t.ndim == 2 \
                    and 1 in t.shape:
                t = t.reshape(expected)  # (N, 1) from a value head, or (1, N)
            else:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {expected} "
                                 f"(num_envs={self.num_envs}, then the per-env shape {tuple(store.shape[2:])})")
        if not store.is_floating_point() and t.is_floating_point():
            if name == "obs" or not torch.equal(t, t.round()):
                raise TypeError(f"{name} has dtype {t.dtype} but the buffer stores {store.dtype}; "
                                f"convert explicitly (for Atari frames keep uint8 pixels 0..255)")
        if check_finite:
            t = t.to(store.dtype)
            bad = ~torch.isfinite(t)
            if bad.any():
                envs = bad.nonzero().flatten().tolist()
                raise ValueError(f"non-finite {name} at step {self.step}, env(s) {envs}: "
                                 f"{t[bad].tolist()[:5]}")
        store[self.step] = t.to(store.dtype)

    def add(self, obs: Tensor, actions: Tensor, logprobs: Tensor, rewards: Tensor, dones: Tensor, values: Tensor) -> None:
        """Store one step for all ``N`` environments (numpy arrays are accepted too).

        Args:
            obs: ``(N, *obs_shape)`` the observations the agent acted on.
            actions: ``(N, *action_shape)``. logprobs: ``(N,)`` their log-probabilities.
            rewards: ``(N,)`` the rewards that came back. values: ``(N,)`` ``V(obs)``
                (a ``(N, 1)`` value head output is accepted).
            dones: ``(N,)`` the done flag that arrived *with* ``obs`` (1 = ``obs``
                starts a new episode), CleanRL's convention.
        """
        if self.full:
            raise RuntimeError(f"the buffer is full ({self.num_steps} steps of {self.num_envs} envs); "
                               f"call compute_returns_and_advantages(...), use it, then reset()")
        N = self.num_envs
        self._put("obs", obs, (N, *self.obs_shape), False)
        self._put("actions", actions, (N, *self.action_shape), False)
        self._put("logprobs", logprobs, (N,), True)
        self._put("rewards", rewards, (N,), True)
        self._put("dones", dones, (N,), False)
        self._put("values", values, (N,), True)
        self.step += 1
        self._computed = False

    def compute_returns_and_advantages(
        self, next_value: Tensor, next_done: Tensor, gamma: float = 0.99, lam: float = 0.95
    ) -> tuple[Tensor, Tensor]:
        """Fill ``advantages`` and ``returns`` with :func:`lmlib.rl.gae.gae`; needs a full buffer.

        ``next_value``: ``(N,)`` ``V(next_obs)`` for the observation after the last
        step; ``next_done``: ``(N,)`` the done flag that came with it.
        Returns ``(advantages, returns)``, both ``(T, N)``.
        """
        if not self.full:
            raise RuntimeError(f"the buffer holds {self.step} of {self.num_steps} steps; "
                               f"fill it before computing advantages")
        next_value = torch.as_tensor(next_value, device=self.device, dtype=self.values.dtype)
        if not torch.isfinite(next_value).all():
            raise ValueError(f"non-finite next_value at env(s) {(~torch.isfinite(next_value)).nonzero().flatten().tolist()}")
        adv, ret = gae(self.rewards, self.values, self.dones, next_value, torch.as_tensor(next_done, device=self.device),
                       gamma, lam)
        self.advantages.copy_(adv)
        self.returns.copy_(ret)
        self._computed = True
        return self.advantages, self.returns

    def flatten(self) -> dict[str, Tensor]:
        """The rollout as a flat batch of ``T * N`` transitions (CleanRL's ``b_`` tensors).

        Keys: ``obs`` ``(T*N, *obs_shape)``, ``actions`` ``(T*N, *action_shape)``,
        ``logprobs``, ``values``, ``advantages``, ``returns`` ``(T*N,)``.
        Index them with the batches from :meth:`minibatches`.
        """
        if not self._computed:
            raise RuntimeError("call compute_returns_and_advantages(...) before flatten()")
        B = self.batch_size
        return {
            "obs": self.obs.reshape(B, *self.obs_shape),
            "actions": self.actions.reshape(B, *self.action_shape),
            "logprobs": self.logprobs.reshape(B),
            "values": self.values.reshape(B),
            "advantages": self.advantages.reshape(B),
            "returns": self.returns.reshape(B),
        }

    def minibatches(
        self,
        minibatch_size: int | None = None,
        n_minibatches: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Tensor]:
        """Yield index tensors ``mb_inds`` into the flattened batch: one shuffled pass over all ``T * N``.

        Give exactly one of ``minibatch_size`` or ``n_minibatches``; it must divide
        ``T * N`` evenly (CleanRL: ``minibatch_size = batch_size // num_minibatches``).
        ``generator`` makes the shuffle reproducible. Call once per epoch.
        """
        B = self.batch_size
        if (minibatch_size is None) == (n_minibatches is None):
            raise ValueError("give exactly one of minibatch_size or n_minibatches")
        if n_minibatches is not None:
            if n_minibatches < 1 or B % n_minibatches:
                raise ValueError(f"n_minibatches={n_minibatches} does not divide the batch of "
                                 f"{self.num_steps} x {self.num_envs} = {B} transitions evenly")
            minibatch_size = B // n_minibatches
        if minibatch_size < 1 or B % minibatch_size:
            raise ValueError(f"minibatch_size={minibatch_size} does not divide the batch of "
                             f"{self.num_steps} x {self.num_envs} = {B} transitions evenly")
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, minibatch_size):
            yield perm[start:start + minibatch_size].to(self.device)

"""Environment-side helpers for PPO: running normalisers, the Atari wrappers, and a pluggable reward source.

* :class:`RunningMeanStd`, :class:`ObsNormalizer`, :class:`RewardNormalizer`:
  the observation and reward normalisation of PPO on MuJoCo (OpenAI baselines'
  ``VecNormalize``, gymnasium's ``NormalizeObservation``/``NormalizeReward``),
  applied to the whole ``(N, ...)`` batch of a vector environment at once, in
  numpy, with statistics that go into a checkpoint (:meth:`state_dict`).
* :class:`EpisodicLifeEnv`, :class:`FireResetEnv`, :class:`ClipRewardEnv`: the
  Atari wrappers of CleanRL's ``ppo_atari.py`` that gymnasium does not ship
  (it ships ``AtariPreprocessing`` and ``FrameStackObservation``).
* :class:`RewardModelWrapper`: replaces the environment's reward by a model's
  prediction ``reward_fn(obs, action, next_obs)``, keeping the true reward in
  ``info["true_reward"]``. Chapter 11 plugs a reward model learned from human
  preferences in here, and PPO trains on it unchanged.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
:class:`RewardModelWrapper` in Chapter 11 (learning rewards from preferences).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

__all__ = [
    "RunningMeanStd", "ObsNormalizer", "RewardNormalizer",
    "EpisodicLifeEnv", "FireResetEnv", "ClipRewardEnv", "RewardModelWrapper",
]


class RunningMeanStd:
    """Running mean and variance of a stream of ``(B, *shape)`` batches (Chan et al.'s parallel update).

    The same arithmetic as OpenAI baselines and gymnasium: float64 statistics,
    initial ``count = epsilon`` so the first batch dominates.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, shape: Sequence[int] = (), epsilon: float = 1e-4) -> None:
        self.shape = tuple(shape)
        self.mean = np.zeros(self.shape, np.float64)
        self.var = np.ones(self.shape, np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        """Fold a batch ``x`` of shape ``(B, *shape)`` into the statistics."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.shape:
            raise ValueError(f"RunningMeanStd of shape {self.shape} got a batch of shape {x.shape}; "
                             f"expected (B, {', '.join(map(str, self.shape))})")
        batch_mean, batch_var, batch_count = x.mean(0), x.var(0), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict[str, Any]:
        """``{"mean", "var", "count"}`` as plain lists/floats (JSON-able, exact for float64)."""
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; the shape must match."""
        mean, var = np.asarray(state["mean"], np.float64), np.asarray(state["var"], np.float64)
        if mean.shape != self.shape or var.shape != self.shape:
            raise ValueError(f"normalisation statistics of shape {mean.shape} do not fit shape {self.shape}")
        self.mean, self.var, self.count = mean, var, float(state["count"])


class ObsNormalizer:
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with running statistics, for ``(N, *shape)`` batches.

    Call it on every batch of observations the agent sees; ``update=False``
    (evaluation, a final observation) normalises without changing the statistics.
    Returns float32, shape as the input.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, shape: Sequence[int], clip: float = 10.0, eps: float = 1e-8) -> None:
        self.rms, self.clip, self.eps = RunningMeanStd(shape), float(clip), float(eps)

    def __call__(self, obs: np.ndarray, update: bool = True) -> np.ndarray:
        if update:
            self.rms.update(obs)
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)


class RewardNormalizer:
    """Scale rewards by the running std of the discounted return (baselines' ``VecNormalize``).

    For ``N`` environments: ``G <- gamma * G * (1 - done_prev) + r``, the
    statistics of ``G`` are updated, and ``clip(r / sqrt(var(G) + eps), -clip, clip)``
    is returned (shape ``(N,)``, float32). ``G`` restarts after an episode ends
    (``dones`` of the step that produced ``rewards``). Only the scale changes,
    never the sign or the optimum.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.rms, self.gamma, self.clip, self.eps = RunningMeanStd(()), float(gamma), float(clip), float(eps)
        self.returns = np.zeros(num_envs, np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray, update: bool = True) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        if update:
            self.rms.update(self.returns)
        self.returns[np.asarray(dones, bool)] = 0.0
        return np.clip(rewards / np.sqrt(self.rms.var + self.eps), -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {**self.rms.state_dict(), "returns": self.returns.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
        self.returns = np.asarray(state["returns"], np.float64)


# ----------------------------------------------------------------------------- Atari


class EpisodicLifeEnv(gym.Wrapper):
    """Atari: losing a life ends the *training* episode, but the game only resets at game over.

    The value function then sees a life loss as terminal (Mnih et al. 2015).
    Returns are still recorded per game by a ``RecordEpisodeStatistics`` below it.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # no-op step to continue the same game after a lost life
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireResetEnv(gym.Wrapper):
    """Atari: press FIRE (then action 2) after a reset, for games that wait for it (Breakout).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireResetEnv needs a game whose action 1 is FIRE, got actions {meanings}")

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                self.env.reset(**kwargs)
        return obs, info


class ClipRewardEnv(gym.RewardWrapper):
    """Atari: reward -> its sign (-1, 0, +1), so one learning rate fits every game.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))


# ----------------------------------------------------------------------------- pluggable reward


class RewardModelWrapper(gym.Wrapper):
    """Replace the environment's reward by ``reward_fn(obs, action, next_obs)``; keep the true one in ``info``.

    ``reward_fn`` receives one transition (``obs`` and ``next_obs`` in the
    environment's observation shape, ``action`` as the environment takes it)
    and returns a number: a Python/numpy float, or an array/tensor with exactly
    one element (a reward model's ``(1,)`` or ``(1, 1)`` output for a batch of
    one). ``next_obs`` is the observation the step returned (the final one when
    the episode ends).

    ``info["true_reward"]`` holds the environment's reward on every step; when
    an episode ends, ``info["true_episode_return"]`` and
    ``info["model_episode_return"]`` hold the two undiscounted returns, so
    learning curves can show the *true* return of an agent trained on the model.

    Errors: a ``reward_fn`` result that is not a single number (its shape is
    named), or that is NaN/inf (the step and the observation are named).

    Taught in: Chapter 11 (learning rewards from human preferences); used with
    :func:`lmlib.rl.ppo.ppo` from Chapter 10.
    """

    def __init__(self, env: gym.Env, reward_fn: Callable[[Any, Any, Any], Any]) -> None:
        super().__init__(env)
        if not callable(reward_fn):
            raise TypeError(f"reward_fn must be callable as reward_fn(obs, action, next_obs), "
                            f"got {type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        self._obs: Any = None
        self._true_return = self._model_return = 0.0
        self._t = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs, self._true_return, self._model_return, self._t = obs, 0.0, 0.0, 0
        return obs, info

    def step(self, action):
        if self._obs is None:
            raise RuntimeError("call reset() before step() on a RewardModelWrapper")
        next_obs, true_reward, terminated, truncated, info = self.env.step(action)
        reward = self._as_reward(self.reward_fn(self._obs, action, next_obs))
        self._obs = next_obs
        self._t += 1
        self._true_return += float(true_reward)
        self._model_return += reward
        info = dict(info)
        info["true_reward"] = float(true_reward)
        if terminated or truncated:
            info["true_episode_return"] = self._true_return
            info["model_episode_return"] = self._model_return
        return next_obs, reward, terminated, truncated, info

    def _as_reward(self, r: Any) -> float:
        if hasattr(r, "detach"):  # a torch tensor, without importing torch here
            r = r.detach().cpu().numpy()
        arr = np.asarray(r)
        if arr.size != 1 or arr.dtype.kind not in "fiub":
            raise ValueError(f"reward_fn must return one number per transition (a float, or an array/tensor with "
                             f"a single element), got {type(r).__name__} of shape {arr.shape} and dtype {arr.dtype}")
        value = float(arr.reshape(()))
        if not math.isfinite(value):
            raise ValueError(f"reward_fn returned a non-finite reward {value} at step {self._t} of the episode "
                             f"(obs {np.asarray(self._obs).ravel()[:8]}...); check the reward model's inputs "
                             f"and weights")
        return value

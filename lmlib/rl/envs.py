"""Environments for Chapter 9: five probe environments with known answers, vector envs, evaluation.

A reinforcement learning agent has many moving parts (returns, advantages,
a value function, a policy, the environment loop) and a bug in any of them
usually shows up only as "it does not learn". Andy Jones' advice
("Debugging RL, Without the Agonizing Pain", 2021) is to test the agent first on
tiny **probe environments** whose right answer is known, each adding one
difficulty:

=====  ==========================================  =======  ============================================
probe  what happens (every episode)                actions  the answer the agent must find
=====  ==========================================  =======  ============================================
1      obs 0, reward +1, episode ends              1        V(0) = 1 (the value net learns a constant)
2      obs +1 or -1 at random, reward = obs, ends  1        V(o) = o (the value depends on obs)
3      obs 0, reward 0; then obs 1, reward +1      1        V(0) = gamma, V(1) = 1 (discounting works)
4      obs 0, reward +1 for action 1, -1 for 0     2        pi(1) -> 1, V(0) -> 1 (the policy learns)
5      obs +1 or -1, reward +1 if the action       2        pi(a = 1 | +1) -> 1, pi(a = 0 | -1) -> 1
       "points the same way" (1 for +1, 0 for -1)
=====  ==========================================  =======  ============================================

Every observation is a float32 vector of shape ``(1,)``. The probes are
registered with gymnasium as ``"lmlib/Probe1-v0"`` ... ``"lmlib/Probe5-v0"``
when this module is imported, so :func:`make_vec_env` and :func:`evaluate`
take them like ``"CartPole-v1"``.

This module (like :mod:`lmlib.rl.reinforce` and :mod:`lmlib.rl.pong`) needs
gymnasium; the core of :mod:`lmlib.rl` does not.

Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

__all__ = [
    "ConstantRewardEnv", "ObsDependentRewardEnv", "TwoStepDiscountEnv", "ActionDependentRewardEnv",
    "ActionObsDependentRewardEnv", "PROBES", "make_vec_env", "evaluate",
]


class _ProbeEnv(gym.Env):
    """Shared machinery: a ``(1,)`` float observation in [-1, 1] and ``n_actions`` discrete actions."""

    n_actions = 1
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_actions)
        self._obs = 0.0
        self._t = 0

    def _o(self) -> np.ndarray:
        return np.array([self._obs], dtype=np.float32)

    def _check_action(self, action: Any) -> int:
        a = int(np.asarray(action).item())
        if not 0 <= a < self.n_actions:
            raise ValueError(f"{type(self).__name__} has {self.n_actions} action(s) (0..{self.n_actions - 1}), "
                             f"got action {action!r}")
        return a

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._obs = self._first_obs()
        return self._o(), {}

    def _first_obs(self) -> float:
        return 0.0

    def _random_sign(self) -> float:
        return float(self.np_random.choice([-1.0, 1.0]))


class ConstantRewardEnv(_ProbeEnv):
    """Probe 1: one action, observation 0, reward +1, one step. The value of obs 0 is 1.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._check_action(action)
        return self._o(), 1.0, True, False, {}


class ObsDependentRewardEnv(_ProbeEnv):
    """Probe 2: one action, observation +1 or -1 at random, reward = observation, one step. V(o) = o.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    def _first_obs(self) -> float:
        return self._random_sign()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._check_action(action)
        return self._o(), float(self._obs), True, False, {}


class TwoStepDiscountEnv(_ProbeEnv):
    """Probe 3: one action, two steps: obs 0 and reward 0, then obs 1 and reward +1. V(0) = gamma, V(1) = 1.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._check_action(action)
        if self._t == 0:
            self._t, self._obs = 1, 1.0
            return self._o(), 0.0, False, False, {}
        return self._o(), 1.0, True, False, {}


class ActionDependentRewardEnv(_ProbeEnv):
    """Probe 4: two actions, observation 0, one step; reward +1 for action 1 and -1 for action 0.

    The optimal policy always takes action 1; its value is 1.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    n_actions = 2

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = self._check_action(action)
        return self._o(), 1.0 if a == 1 else -1.0, True, False, {}


class ActionObsDependentRewardEnv(_ProbeEnv):
    """Probe 5: two actions, observation +1 or -1 at random, one step; reward +1 if the action matches, else -1.

    "Matches" means action 1 for observation +1 and action 0 for observation -1.
    The optimal policy is ``a = (obs > 0)``; its value is 1 for both observations.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    n_actions = 2

    def _first_obs(self) -> float:
        return self._random_sign()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = self._check_action(action)
        right = 1 if self._obs > 0 else 0
        return self._o(), 1.0 if a == right else -1.0, True, False, {}


PROBES: dict[str, type[_ProbeEnv]] = {
    "lmlib/Probe1-v0": ConstantRewardEnv,
    "lmlib/Probe2-v0": ObsDependentRewardEnv,
    "lmlib/Probe3-v0": TwoStepDiscountEnv,
    "lmlib/Probe4-v0": ActionDependentRewardEnv,
    "lmlib/Probe5-v0": ActionObsDependentRewardEnv,
}
"""The probe environments by gymnasium id."""

for _id, _cls in PROBES.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_cls, max_episode_steps=10)


def make_vec_env(env_id: str, n: int, seed: int, **kwargs: Any) -> SyncVectorEnv:
    """``n`` copies of ``env_id`` in a :class:`gymnasium.vector.SyncVectorEnv`, reset with ``seed``.

    Each copy is wrapped in :class:`gymnasium.wrappers.RecordEpisodeStatistics`.
    The vector env auto-resets in **same-step** mode: when copy ``i`` ends an
    episode, the observation returned for it is already the first observation of
    the next episode (CleanRL's done convention, see :mod:`lmlib.rl.gae`), and
    the finished episode's statistics are in
    ``infos["final_info"]["episode"]`` (``"r"`` return, ``"l"`` length) where
    ``infos["final_info"]["_episode"]`` is True.

    The environments are reset once here with seeds ``seed, seed + 1, ...``
    (and their action spaces seeded), so the first call of the caller may be
    ``envs.step(...)``; the first observations are in ``envs.first_obs``.
    ``kwargs`` go to :func:`gymnasium.make` (e.g. ``max_episode_steps``).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if n < 1:
        raise ValueError(f"need at least one environment, got n={n}")
    if env_id not in gym.registry:
        raise ValueError(f"unknown environment id {env_id!r}; probes: {list(PROBES)}, "
                         f"or a gymnasium id such as 'CartPole-v1' (Atari ids need "
                         f"`import ale_py; gymnasium.register_envs(ale_py)`)")

    def thunk() -> gym.Env:
        return gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, **kwargs))

    envs = SyncVectorEnv([thunk for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)
    envs.first_obs, _ = envs.reset(seed=int(seed))
    envs.action_space.seed(int(seed))
    return envs


def evaluate(
    policy_fn: Callable[[np.ndarray], Any] | None,
    env_id: str | Callable[[], gym.Env],
    episodes: int,
    seed: int,
    *,
    max_steps: int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Undiscounted return of ``episodes`` episodes of ``policy_fn`` on ``env_id``: shape ``(episodes,)``.

    ``policy_fn(obs) -> action`` maps one observation (the env's own shape) to
    one action; ``None`` is the **random agent**, which samples the action
    space. Episode ``k`` is reset with seed ``seed + k``, so two calls with the
    same seed see the same starts. ``env_id`` is a gymnasium id (``kwargs`` go to
    :func:`gymnasium.make`) or a function returning a new environment, which is
    closed at the end. An episode is cut after ``max_steps`` steps if given.

    This is the book's one episode loop: :func:`lmlib.rl.ppo.evaluate` plays a trained
    PPO agent with it.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (or None for no limit), got {max_steps}")
    if isinstance(env_id, str):
        env = gym.make(env_id, **kwargs)
    elif callable(env_id):
        if kwargs:
            raise ValueError(f"keyword arguments {sorted(kwargs)} go to gymnasium.make and need an environment id, "
                             f"not a function that makes the environment")
        env = env_id()
    else:
        raise TypeError(f"env_id must be a gymnasium id or a function returning an environment, "
                        f"got {type(env_id).__name__}")
    returns = np.zeros(episodes)
    try:
        env.action_space.seed(int(seed))
        for k in range(episodes):
            obs, _ = env.reset(seed=int(seed) + k)
            done, total, t = False, 0.0, 0
            while not done:
                action = env.action_space.sample() if policy_fn is None else policy_fn(obs)
                obs, reward, terminated, truncated, _ = env.step(action)
                total, t = total + float(reward), t + 1
                done = terminated or truncated or (max_steps is not None and t >= max_steps)
            returns[k] = total
    finally:
        env.close()
    return returns

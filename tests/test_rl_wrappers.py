"""Tests of lmlib.rl.wrappers: running statistics, normalisers, Atari wrappers, and the pluggable reward source."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from lmlib.rl.ppo import PPOConfig, ppo
from lmlib.rl.wrappers import (ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, ObsNormalizer, RewardModelWrapper,
                               RewardNormalizer, RunningMeanStd)


class Counter(gym.Env):
    """obs = step count (shape (2,)); reward = 10 * action; episodes of 3 steps."""

    def __init__(self):
        self.observation_space = spaces.Box(-100, 100, (2,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t, np.float32), 10.0 * int(action), self.t == 3, False, {"t": self.t}


def test_running_mean_std_matches_numpy_over_all_batches():
    rng = np.random.default_rng(0)
    rms = RunningMeanStd((3,), epsilon=0.0)
    batches = [rng.normal(2.0, 3.0, size=(n, 3)) for n in (1, 5, 17, 2)]
    for b in batches:
        rms.update(b)
    allx = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, allx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, allx.var(0), rtol=1e-12)
    assert rms.count == len(allx)
    other = RunningMeanStd((3,))
    other.load_state_dict(rms.state_dict())
    np.testing.assert_array_equal(other.mean, rms.mean)
    with pytest.raises(ValueError, match="shape"):
        rms.update(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="do not fit"):
        RunningMeanStd((2,)).load_state_dict(rms.state_dict())


def test_obs_normalizer_standardises_clips_and_can_freeze():
    norm = ObsNormalizer((2,), clip=3.0)
    x = np.random.default_rng(1).normal([5.0, -2.0], [2.0, 0.5], size=(5000, 2))
    out = norm(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-2)
    before = norm.state_dict()
    far = norm(np.array([[1e6, -1e6]]), update=False)
    np.testing.assert_array_equal(far, [[3.0, -3.0]])
    assert norm.state_dict() == before


def test_reward_normalizer_discounted_return_restarts_after_done():
    norm = RewardNormalizer(num_envs=1, gamma=0.9)
    seen = []
    for done in (False, False, True, False):
        norm(np.array([1.0]), np.array([done]))
        seen.append(float(norm.returns[0]))
    assert seen == pytest.approx([1.0, 1.9, 0.0, 1.0])  # 1, 1 + 0.9, (2.71 folded in, then reset), 1
    # only the scale changes: the output is r / std(G), same sign, clipped
    r = np.array([0.5])
    out = norm(r, np.array([False]), update=False)
    assert out[0] == pytest.approx(0.5 / np.sqrt(norm.rms.var + 1e-8), rel=1e-6)


def test_reward_model_wrapper_replaces_reward_and_keeps_the_true_one():
    calls = []

    def reward_fn(obs, action, next_obs):
        calls.append((obs.copy(), action, next_obs.copy()))
        return torch.tensor([[float(next_obs[0]) * 100]])  # a (1, 1) model output is accepted

    env = RewardModelWrapper(Counter(), reward_fn)
    env.reset(seed=0)
    rewards, infos = [], []
    for a in (1, 0, 1):
        _, r, term, trunc, info = env.step(a)
        rewards.append(r)
        infos.append(info)
    assert rewards == [100.0, 200.0, 300.0] and term
    assert [i["true_reward"] for i in infos] == [10.0, 0.0, 10.0]
    assert "true_episode_return" not in infos[0]
    assert infos[-1]["true_episode_return"] == 20.0 and infos[-1]["model_episode_return"] == 600.0
    np.testing.assert_array_equal(calls[1][0], [1, 1])  # obs before the step, action, obs after
    assert calls[1][1] == 0
    np.testing.assert_array_equal(calls[1][2], [2, 2])


def test_reward_model_wrapper_errors():
    with pytest.raises(TypeError, match="callable"):
        RewardModelWrapper(Counter(), 3.0)
    env = RewardModelWrapper(Counter(), lambda o, a, n: float("nan"))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset()
    with pytest.raises(ValueError, match="non-finite reward nan at step 0"):
        env.step(0)
    env = RewardModelWrapper(Counter(), lambda o, a, n: np.ones(2))
    env.reset()
    with pytest.raises(ValueError, match=r"one number per transition.*shape \(2,\)"):
        env.step(0)
    env = RewardModelWrapper(Counter(), lambda o, a, n: "1.0")
    env.reset()
    with pytest.raises(ValueError, match="one number"):
        env.step(0)


def test_ppo_trains_on_the_model_reward_and_logs_the_true_return():
    """The model rewards the opposite of the true reward: PPO must follow the model, and the logs must show it."""
    from test_ppo import PROBE, small

    def inverted(obs, action, next_obs):
        return 1.0 if (int(action) == 1) != (obs[0] > 0) else -1.0

    policy, hist = ppo(PROBE, small(), reward_fn=inverted)
    assert np.mean(hist["model_episode_return"][-50:]) > 0.9
    assert np.mean(hist["true_episode_return"][-50:]) < -0.9
    assert hist["episode_return"][-50:] == hist["true_episode_return"][-50:]  # statistics sit below the model


class FakeALE:
    def __init__(self):
        self.n = 3

    def lives(self):
        return self.n


class FakeAtari(gym.Env):
    """Lives go 3 -> 2 -> 1 -> 0 on action 1; the game ends at 0 lives. Counts real resets."""

    def __init__(self, meanings=("NOOP", "FIRE", "RIGHT", "LEFT")):
        self.observation_space = spaces.Box(0, 255, (2,), np.uint8)
        self.action_space = spaces.Discrete(len(meanings))
        self.ale, self.meanings, self.resets, self.actions = FakeALE(), list(meanings), 0, []

    def get_action_meanings(self):
        return self.meanings

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ale.n, self.resets = 3, self.resets + 1
        return np.zeros(2, np.uint8), {}

    def step(self, action):
        self.actions.append(int(action))
        if int(action) == 1 and len(self.actions) > 2:  # not the FIRE of a reset
            self.ale.n -= 1
        return np.zeros(2, np.uint8), 5.0, self.ale.n == 0, False, {}


def test_atari_wrappers():
    inner = FakeAtari()
    env = EpisodicLifeEnv(inner)
    env.reset()
    _, _, term, _, _ = env.step(0)
    assert not term
    inner.actions = [0, 0, 0]
    _, _, term, _, _ = env.step(1)  # a life lost: the training episode ends...
    assert term and inner.ale.n == 2
    env.reset()  # ...but the game goes on (a no-op step, no real reset)
    assert inner.resets == 1 and inner.actions[-1] == 0
    env.step(1), env.step(1)  # game over
    env.reset()
    assert inner.resets == 2
    assert ClipRewardEnv(FakeAtari()).reward(5.0) == 1.0 and ClipRewardEnv(FakeAtari()).reward(-0.2) == -1.0
    fire = FakeAtari()
    FireResetEnv(fire).reset()
    assert fire.actions == [1, 2]
    with pytest.raises(ValueError, match="FIRE"):
        FireResetEnv(FakeAtari(("NOOP", "RIGHT", "LEFT")))


def test_ppo_config_presets_check():
    PPOConfig.cartpole().check()
    PPOConfig.mujoco().check()
    PPOConfig.atari().check()
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5).check()
    with pytest.raises(ValueError, match="env_kind"):
        PPOConfig(env_kind="robot").check()

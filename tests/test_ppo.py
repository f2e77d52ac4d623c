"""Tests of lmlib.rl.ppo: PPO solves probe environments, the Gaussian and Atari paths run, checkpoints
resume exactly, evaluation and video recording work, and bad input gives clear errors. Seconds each."""
from __future__ import annotations

import math
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from lmlib.checkpoint import CheckpointError
from lmlib.rl import CategoricalPolicy, GaussianPolicy
from lmlib.rl.envs import evaluate as play_episodes
from lmlib.rl.ppo import (PPOConfig, act, as_policy_fn, evaluate, is_atari, load_ppo, make_env, make_policy,
                          obs_for_policy, ppo, record_video)


class PointTheSameWay(gym.Env):
    """obs +1 or -1 at random; reward +1 for action 1 on +1 and action 0 on -1, else -1; one step per episode."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._o = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self._o], np.float32), {}

    def step(self, action):
        good = (int(action) == 1) == (self._o > 0)
        return np.array([self._o], np.float32), 1.0 if good else -1.0, True, False, {}

    def render(self):
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[:, :8 if self._o < 0 else 16] = 255
        return frame


class ConstantObsBandit(gym.Env):
    """obs 0 always; reward +1 for action 1, -1 for action 0; one step per episode (no state carries over)."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0 if int(action) == 1 else -1.0, True, False, {}


class ContinuousTarget(gym.Env):
    """obs x in [-1, 1]; action a in Box(-1, 1); reward -(a - x/2)^2; one step. Asserts actions were clipped."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = float(self.np_random.uniform(-1, 1))
        return np.array([self._x], np.float32), {}

    def step(self, action):
        assert np.all(np.abs(action) <= 1.0), f"action {action} was not clipped to the action space"
        return np.array([self._x], np.float32), -float((action[0] - self._x / 2) ** 2), True, False, {}


for _name, _cls in (("PointTheSameWay", PointTheSameWay), ("ContinuousTarget", ContinuousTarget)):
    if f"lmlib_test/{_name}-v0" not in gym.registry:
        gym.register(id=f"lmlib_test/{_name}-v0", entry_point=_cls, max_episode_steps=10)

PROBE = "lmlib_test/PointTheSameWay-v0"


def small(**kw) -> PPOConfig:
    base = PPOConfig(env_id=PROBE, total_timesteps=512, num_envs=4, num_steps=16, num_minibatches=2,
                     update_epochs=4, learning_rate=1e-2, ent_coef=0.0, env_kind="classic", seed=3)
    return replace(base, **kw)


def test_ppo_solves_the_obs_dependent_probe():
    policy, hist = ppo(PROBE, small())
    obs = torch.tensor([[-1.0], [1.0]])
    with torch.no_grad():
        probs = torch.softmax(policy.actor(obs), -1)
        values = policy.get_value(obs)
    assert probs[0, 0] > 0.95 and probs[1, 1] > 0.95, probs  # action 0 on -1, action 1 on +1
    assert torch.allclose(values, torch.ones(2), atol=0.2), values
    assert np.mean(hist["episode_return"][-50:]) > 0.9
    np.testing.assert_array_equal(evaluate(policy, PROBE, episodes=6, seed=0), np.ones(6))
    # history: one entry per iteration, finite diagnostics
    n_iter = small().num_iterations
    for k in ("global_step", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac", "sps"):
        assert len(hist[k]) == n_iter and np.all(np.isfinite(hist[k])), k
    assert len(hist["explained_variance"]) == n_iter  # nan once all returns are equal (solved), as in CleanRL
    assert hist["global_step"][-1] == n_iter * 64
    assert hist["entropy"][-1] < hist["entropy"][0]


def test_ppo_from_env_fn_and_deterministic_act():
    policy, _ = ppo(lambda: ConstantObsBandit(), small(total_timesteps=256))
    assert int(act(policy, torch.zeros(3, 1), deterministic=True)[0]) == 1


def test_gaussian_path_learns_and_clips_actions():
    cfg = small(env_id="lmlib_test/ContinuousTarget-v0", total_timesteps=1024, learning_rate=3e-3,
                normalize_obs=True, normalize_reward=True, env_kind="mujoco")
    policy, hist = ppo(cfg.env_id, cfg)  # the env asserts that every action it gets was clipped to [-1, 1]
    assert isinstance(policy, GaussianPolicy) and policy.obs_normalizer is not None
    assert all(math.isfinite(v) for k in ("pg_loss", "v_loss", "entropy", "approx_kl") for v in hist[k])
    x = np.array([[-0.8], [0.0], [0.8]], np.float32)
    with torch.no_grad():
        mean = act(policy, torch.from_numpy(policy.obs_normalizer(x, update=False)), deterministic=True)
    assert mean.shape == (3, 1)
    assert mean[2, 0] - mean[0, 0] > 0.3  # the mean action follows the observation (the best one is x / 2)
    assert np.all(np.abs(evaluate(policy, cfg.env_id, episodes=4, seed=0)) < 1.0)


def test_pendulum_mujoco_settings_run_with_truncation_bootstrap():
    cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=2 * 256, num_steps=256, num_minibatches=4, update_epochs=2)
    policy, hist = ppo("Pendulum-v1", cfg)  # Pendulum is cut by its 200-step limit: bootstrapped
    assert len(hist["pg_loss"]) == 2 and all(math.isfinite(v) for v in hist["v_loss"])
    assert hist["episode_length"] == [200, 200]
    assert policy.obs_normalizer.rms.count > 500  # every observation folded in once (+ epsilon)


def test_mujoco_preset_is_the_standard_setting():
    c = PPOConfig.mujoco()
    assert (c.env_id, c.num_envs, c.num_steps, c.update_epochs, c.num_minibatches, c.minibatch_size) == \
        ("Hopper-v5", 1, 2048, 10, 32, 64)
    assert (c.learning_rate, c.anneal_lr, c.gamma, c.gae_lambda, c.clip_coef) == (3e-4, True, 0.99, 0.95, 0.2)
    assert c.normalize_obs and c.normalize_reward and c.total_timesteps == 1_000_000
    a = PPOConfig.atari()
    assert (a.num_envs, a.num_steps, a.clip_coef, a.ent_coef) == (8, 128, 0.1, 0.01)


def test_atari_pipeline_runs_one_update():
    env = make_env("BreakoutNoFrameskip-v4")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    env.close()
    cfg = PPOConfig.atari(total_timesteps=32, num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1)
    policy, hist = ppo("BreakoutNoFrameskip-v4", cfg)
    assert type(policy).__name__ == "ConvPolicy" and len(hist["pg_loss"]) == 1


def test_checkpoint_resume_continues_identically(tmp_path):
    cfg = small(total_timesteps=8 * 64)
    env_fn = lambda: ConstantObsBandit()  # noqa: E731  (no state carries across a save)
    straight, h_straight = ppo(env_fn, cfg)

    path = tmp_path / "ppo.safetensors"
    ppo(env_fn, cfg, checkpoint_path=path, callback=lambda it, h: it == 4)  # "interrupted" after 4 iterations
    assert load_ppo(path).state_dict().keys() == straight.state_dict().keys()
    resumed, h_resumed = ppo(env_fn, cfg, checkpoint_path=path, resume=True)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    for k in ("global_step", "pg_loss", "v_loss", "approx_kl", "episode_return"):
        assert h_resumed[k] == h_straight[k], k
    # the saved file is the final state, with checksum; corrupting it is detected
    assert load_ppo(path).config == cfg
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        ppo(env_fn, cfg, checkpoint_path=path, resume=True)


def test_checkpoint_keeps_observation_statistics(tmp_path):
    cfg = small(env_id="lmlib_test/ContinuousTarget-v0", total_timesteps=128, normalize_obs=True, env_kind="mujoco")
    policy, _ = ppo(cfg.env_id, cfg, checkpoint_path=tmp_path / "c.safetensors")
    loaded = load_ppo(tmp_path / "c.safetensors")
    assert loaded.obs_normalizer.rms.count == policy.obs_normalizer.rms.count
    np.testing.assert_array_equal(loaded.obs_normalizer.rms.mean, policy.obs_normalizer.rms.mean)
    np.testing.assert_array_equal(evaluate(loaded, cfg.env_id, 4, seed=1), evaluate(policy, cfg.env_id, 4, seed=1))
    with pytest.raises(ValueError, match="num_envs"):
        ppo(cfg.env_id, replace(cfg, num_envs=2), checkpoint_path=tmp_path / "c.safetensors", resume=True)


def test_record_video_writes_a_readable_mp4(tmp_path):
    import imageio.v3 as iio

    policy = CategoricalPolicy(1, 2)
    out = record_video(policy, PROBE, tmp_path / "v.mp4", seed=0, max_steps=5)
    frames = iio.imread(tmp_path / "v.mp4")
    assert out["frames"] == 2 and out["steps"] == 1  # first observation + one step (one-step episodes)
    assert frames.shape[0] == out["frames"] and frames.shape[1:3] == (16, 16)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    with pytest.raises(ValueError, match="mp4"):
        record_video(policy, PROBE, tmp_path / "v.gif")


def test_clear_errors():
    with pytest.raises(ValueError, match="Discrete"):
        ppo("Pendulum-v1", small(env_id="Pendulum-v1"), policy=CategoricalPolicy(3, 2))
    with pytest.raises(ValueError, match="Box action space"):
        ppo(PROBE, small(), policy=GaussianPolicy(1, 1))
    with pytest.raises(ValueError, match="no policy for action space"):
        make_policy(spaces.Box(-1, 1, (3,)), spaces.MultiDiscrete([2, 2]))
    with pytest.raises(ValueError, match="num_minibatches"):
        ppo(PROBE, small(num_minibatches=3))
    with pytest.raises(ValueError, match="unknown environment id"):
        ppo("NoSuchEnv-v0", small(env_id="NoSuchEnv-v0"))
    with pytest.raises(ValueError, match="resume"):
        ppo(PROBE, small(), resume=True)
    for clip in (1.0, 0.0):
        with pytest.raises(ValueError, match=r"clip_coef must be in \(0, 1\)"):
            ppo(PROBE, small(clip_coef=clip))

    class NaNReward(ConstantObsBandit):
        def step(self, action):
            return np.zeros(1, np.float32), float("nan"), True, False, {}

    with pytest.raises(ValueError, match="non-finite reward"):
        ppo(lambda: NaNReward(), small(total_timesteps=64))


def test_trainer_restores_global_torch_settings():
    threads = torch.get_num_threads()
    validate = torch.distributions.Distribution._validate_args
    ppo(lambda: ConstantObsBandit(), small(total_timesteps=64))
    assert torch.get_num_threads() == threads and torch.distributions.Distribution._validate_args == validate


def test_fast_paths_equal_the_reference_functions():
    """The trainer's lean rollout sampler, advantage normalisation and gradient clipping compute what the
    reference functions compute (same random draws, same numbers)."""
    from lmlib.rl import ConvPolicy, normalize_advantages
    from lmlib.rl.ppo import _clip_grad_norm, _normalize, _sample

    for policy, obs in ((CategoricalPolicy(4, 3), torch.randn(7, 4)), (GaussianPolicy(5, 2), torch.randn(7, 5)),
                        (ConvPolicy(4), torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8))):
        torch.manual_seed(0)
        a1, l1, _, v1 = policy.get_action_and_value(obs)
        torch.manual_seed(0)
        a2, l2, v2 = _sample(policy, obs)
        torch.testing.assert_close(a2, a1, rtol=0, atol=0)
        torch.testing.assert_close(l2, l1)
        torch.testing.assert_close(v2, v1, rtol=0, atol=0)
    adv = torch.randn(33)
    torch.testing.assert_close(_normalize(adv), normalize_advantages(adv))
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    for ps in (a, b):
        sum((p**3).sum() for p in ps).backward()
    torch.nn.utils.clip_grad_norm_(a, 0.5)
    _clip_grad_norm(b, 0.5)
    for p, q in zip(a, b):
        torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=0)


def test_evaluate_is_the_envs_episode_loop_with_the_policys_actions():
    """lmlib.rl.ppo.evaluate = lmlib.rl.envs.evaluate playing as_policy_fn(policy): one episode loop, two callers."""
    cfg = small(env_id="lmlib_test/ContinuousTarget-v0", total_timesteps=256, normalize_obs=True, env_kind="mujoco")
    policy, _ = ppo(cfg.env_id, cfg)
    space = gym.make(cfg.env_id).action_space
    for det in (True, False):
        torch.manual_seed(0)
        got = evaluate(policy, cfg.env_id, episodes=5, seed=3, deterministic=det)
        torch.manual_seed(0)
        assert np.array_equal(got, play_episodes(as_policy_fn(policy, space, det), cfg.env_id, 5, seed=3))
    x = np.array([[0.5]], np.float64)
    torch.testing.assert_close(obs_for_policy(policy, x), torch.from_numpy(policy.obs_normalizer(x, update=False)))
    assert is_atari("BreakoutNoFrameskip-v4") and is_atari("ALE/Pong-v5") and not is_atari("CartPole-v1")

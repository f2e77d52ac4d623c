"""lmlib.rl.reinforce: REINFORCE solves the probes it should, learns CartPole, measures gradient variance."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from lmlib.rl import envs  # noqa: F401  (registers the probes)
from lmlib.rl.reinforce import (Batch, ReinforceConfig, advantages, gradient_variance, interpolate_curve,
                                train_reinforce)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest.one_thread


def probe(env_id, **kw):
    cfg = ReinforceConfig(env_id=env_id, total_steps=kw.pop("total_steps", 2000), num_envs=16, lr=3e-2,
                          gamma=0.9, baseline="value", hidden=16, **kw)
    return train_reinforce(cfg)


def value(policy, o):
    with torch.no_grad():
        return float(policy.get_value(torch.tensor([[o]])))


def prob(policy, o, a):
    with torch.no_grad():
        return float(torch.softmax(policy.actor(torch.tensor([[o]])), -1)[0, a])


def test_value_learning_probes():
    p1, _ = probe("lmlib/Probe1-v0")
    assert value(p1, 0.0) == pytest.approx(1.0, abs=0.05)
    p2, _ = probe("lmlib/Probe2-v0")
    assert value(p2, 1.0) == pytest.approx(1.0, abs=0.1) and value(p2, -1.0) == pytest.approx(-1.0, abs=0.1)
    p3, _ = probe("lmlib/Probe3-v0")  # discounting: V(0) = gamma = 0.9
    assert value(p3, 0.0) == pytest.approx(0.9, abs=0.1) and value(p3, 1.0) == pytest.approx(1.0, abs=0.1)


def test_policy_learning_probes():
    p4, h4 = probe("lmlib/Probe4-v0")
    assert prob(p4, 0.0, 1) > 0.95 and h4["episode_return"][-1] > 0.8
    assert value(p4, 0.0) > 0.7
    p5, h5 = probe("lmlib/Probe5-v0", total_steps=3000)
    assert prob(p5, 1.0, 1) > 0.9 and prob(p5, -1.0, 0) > 0.9


def test_reinforce_learns_cartpole_quickly_and_the_history_is_consistent():
    cfg = ReinforceConfig(total_steps=15_000, baseline="value", normalize_advantages=True, lr=1e-2, seed=0)
    _, h = train_reinforce(cfg)
    n = len(h["env_steps"])
    assert all(len(h[k]) == n for k in ("episode_return", "entropy", "pg_loss", "v_loss"))
    assert h["env_steps"][-1] >= 15_000 and np.all(np.diff(h["env_steps"]) > 0)
    assert np.mean(h["episode_return"][-5:]) > 2 * np.mean(h["episode_return"][:5])  # random play: ~22
    assert h["config"]["baseline"] == "value"


def test_advantages_by_hand():
    # one episode of 3 steps (rewards 1, 1, 1) and one of 1 step (reward 1), gamma = 0.5
    rewards = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    b = Batch(torch.zeros(3, 2, 1), torch.zeros(3, 2, dtype=torch.long), rewards, mask)
    adv, ret = advantages(b, 0.5, reward_to_go=True, baseline=None, normalize=False)
    assert adv[:, 0].tolist() == [1.75, 1.5, 1.0] and adv[:, 1].tolist() == [1.0, 0.0, 0.0]
    adv, _ = advantages(b, 0.5, reward_to_go=False, baseline=None, normalize=False)
    assert adv[:, 0].tolist() == [1.75, 1.75, 1.75]
    adv, _ = advantages(b, 0.5, reward_to_go=True, baseline="mean", normalize=False)
    assert adv[:, 0].tolist() == pytest.approx([0.4375, 0.1875, -0.3125]) and adv[1:, 1].tolist() == [0, 0]
    adv, _ = advantages(b, 0.5, reward_to_go=True, baseline=None, normalize=True)
    assert float((adv * mask).sum()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="values"):
        advantages(b, 0.5, True, "value", False)
    with pytest.raises(ValueError, match="baseline"):
        advantages(b, 0.5, True, "median", False)


def test_gradient_variance_same_batches():
    from lmlib.rl.policies import CategoricalPolicy
    torch.manual_seed(0)
    pol = CategoricalPolicy(1, 2, hidden=8)
    variants = {"total": dict(reward_to_go=False), "rtg": dict(reward_to_go=True)}
    out = gradient_variance(pol, variants, env_id="lmlib/Probe5-v0", batches=10, episodes_per_batch=8)
    # one-step episodes: the reward-to-go is the whole return, so the two estimators are identical
    assert out["total"]["trace_var"] == pytest.approx(out["rtg"]["trace_var"])
    with pytest.raises(ValueError, match="2 batches"):
        gradient_variance(pol, variants, env_id="lmlib/Probe5-v0", batches=1)
    assert set(out["rtg"]) == {"trace_var", "mean_norm2", "noise_to_signal", "mean_cosine"}
    assert -1 <= out["rtg"]["mean_cosine"] <= 1


def test_baseline_reduces_variance_on_cartpole():
    from lmlib.rl.policies import CategoricalPolicy
    torch.manual_seed(0)
    pol = CategoricalPolicy(4, 2, hidden=16)
    variants = {"total": dict(reward_to_go=False), "rtg": dict(), "rtg+mean": dict(baseline="mean")}
    out = gradient_variance(pol, variants, batches=12, episodes_per_batch=4, seed=1)
    assert out["rtg"]["trace_var"] < out["total"]["trace_var"]
    assert out["rtg+mean"]["trace_var"] < out["rtg"]["trace_var"]
    assert out["rtg+mean"]["mean_cosine"] > out["total"]["mean_cosine"]


def test_grad_var_in_history():
    _, h = train_reinforce(ReinforceConfig(env_id="lmlib/Probe4-v0", total_steps=64, num_envs=8, grad_var=True))
    assert len(h["grad_var"]) == len(h["env_steps"]) and all(v >= 0 for v in h["grad_var"])


def test_interpolate_curve():
    h = {"env_steps": [10, 20, 40], "episode_return": [1.0, 2.0, 4.0]}
    assert interpolate_curve(h, np.array([10, 15, 30, 50])).tolist() == [1.0, 1.5, 3.0, 4.0]
    with pytest.raises(ValueError, match="empty"):
        interpolate_curve({"env_steps": [], "episode_return": []}, np.array([1]))


def test_continuous_action_space_is_a_clear_error():
    with pytest.raises(ValueError, match="Discrete action space.*Pendulum"):
        train_reinforce(ReinforceConfig(env_id="Pendulum-v1", total_steps=10))


class NaNRewardEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float("nan"), True, False, {}


def test_non_finite_reward_is_a_clear_error():
    if "test/NaNReward-v0" not in gym.registry:
        gym.register("test/NaNReward-v0", entry_point=NaNRewardEnv)
    with pytest.raises(ValueError, match="non-finite reward"):
        train_reinforce(ReinforceConfig(env_id="test/NaNReward-v0", total_steps=10, num_envs=2))


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="baseline"):
        train_reinforce(ReinforceConfig(baseline="max", total_steps=10))
    with pytest.raises(ValueError, match="num_envs"):
        train_reinforce(ReinforceConfig(num_envs=1, normalize_advantages=True, total_steps=10))

"""lmlib.preferences.agent on Atari: the featurizer, Breakout clips, the ensemble's reward on them, a tiny loop, the recipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from lmlib.preferences import RewardEnsemble, SyntheticRater
from lmlib.rl.ppo import PPOConfig, make_env
from lmlib.preferences.agent import (EnsembleReward, PreferenceRLConfig, SegmentRecorder, atari_features,
                           ppo_from_preferences)

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]
BREAKOUT = "BreakoutNoFrameskip-v4"


def test_atari_features_pool_the_last_frame_by_hand():
    stack = np.zeros((4, 84, 84), np.uint8)
    stack[:3] = 255  # older frames must not matter
    stack[-1, 0:4, 0:4] = 255  # one full block
    stack[-1, 4:8, 0:4] = [[0, 51, 0, 0]] * 4  # the block below it: four pixels of 51 among 16
    f = atari_features(stack)
    assert f.shape == (441,) and f.dtype == np.float32
    assert f[0] == pytest.approx(1.0) and f[21] == pytest.approx(4 * 51 / 16 / 255) and f[1] == 0.0
    assert np.array_equal(atari_features(stack[-1]), f)  # one frame = the last frame of a stack
    assert atari_features(stack, pool=7).shape == (144,)


def test_atari_features_range_on_random_frames_and_errors():
    frames = np.random.default_rng(0).integers(0, 256, (4, 84, 84), dtype=np.uint8)
    f = atari_features(frames)
    assert 0.0 <= f.min() and f.max() <= 1.0
    ref = frames[-1].astype(np.float64).reshape(21, 4, 21, 4).mean((1, 3)).reshape(-1) / 255
    assert np.allclose(f, ref, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        atari_features(frames.astype(np.float32) / 255)  # already scaled: would be silently wrong
    with pytest.raises(ValueError, match="pool"):
        atari_features(frames, pool=5)
    with pytest.raises(ValueError, match="shape"):
        atari_features(np.zeros((2, 4, 84, 84), np.uint8))


def test_segment_recorder_featurizes_breakout_and_one_hots_actions():
    sink: list = []
    env = SegmentRecorder(make_env(BREAKOUT, "atari", train=False), sink, length=5, featurize=atari_features)
    obs, _ = env.reset(seed=0)
    first = atari_features(obs)
    actions = [1, 3, 2, 0, 3, 1, 2]
    for a in actions:
        env.step(a)
    env.close()
    assert len(sink) == 1 and len(sink[0]) == 5
    seg = sink[0]
    assert seg.obs.shape == (5, 441) and seg.obs.dtype == np.float32 and np.array_equal(seg.obs[0], first)
    assert np.array_equal(seg.actions, np.eye(4, dtype=np.float32)[actions[:5]])
    assert seg.features.shape == (5, 445) and seg.rewards.shape == (5,)
    assert seg.meta["env_id"] == BREAKOUT
    with pytest.raises(ValueError, match="featurize"):  # images without a featurizer: the old error, with a hint
        SegmentRecorder(make_env(BREAKOUT, "atari", train=False), [], 5)
    with pytest.raises(TypeError, match="featurize"):
        SegmentRecorder(gym.make("CartPole-v1"), [], 5, featurize="last frame")


def test_ensemble_reward_fast_path_equals_the_torch_ensemble_on_atari_features():
    ens = RewardEnsemble.of_mlps(3, seed=0, in_dim=445, hidden=16)
    rng = np.random.default_rng(1)
    with torch.no_grad():  # a non-trivial output normalisation, as after training
        ens.norm_mean.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
        ens.norm_var.copy_(torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64))
    fn = EnsembleReward(ens, atari_features, n_actions=4)
    assert fn._fast
    for _ in range(3):
        obs = rng.integers(0, 256, (4, 84, 84), dtype=np.uint8)
        a = int(rng.integers(4))
        x = np.concatenate([atari_features(obs), np.eye(4, dtype=np.float32)[a]])
        expected = ens(torch.from_numpy(x).view(1, 1, -1))[0, 0].item()
        assert fn(obs, a, None) == pytest.approx(expected, abs=1e-5)
    with torch.no_grad():  # a refit (in-place update) is seen at once
        ens.members[0].net[0].weight.add_(0.5)
    expected = ens(torch.from_numpy(x).view(1, 1, -1))[0, 0].item()
    assert fn(obs, a, None) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        fn(obs, 4, None)
    with pytest.raises(ValueError, match="445 features"):
        EnsembleReward(ens, atari_features, n_actions=6)(obs, 0, None)


def test_the_loop_runs_on_breakout_and_curves_count_the_game_score():
    ppo_cfg = PPOConfig.atari(BREAKOUT, total_timesteps=256, num_envs=2, num_steps=128, num_minibatches=2,
                              update_epochs=1, normalize_reward=True)
    cfg = PreferenceRLConfig(total_labels=8, segment_length=10, ensemble_size=2, hidden=16, reward_epochs=2,
                             label_every=4)
    policy, ens, h = ppo_from_preferences(BREAKOUT, ppo_cfg, SyntheticRater(), cfg, agreement_pairs=20,
                                          featurize=atari_features)
    assert type(policy).__name__ == "ConvPolicy" and policy.n_actions == 4
    assert h["labels"][-1] == 8 and len(h["dataset"]) + len(h["dataset"].skipped) == 8  # all asked by the end
    assert ens.members[0].in_dim == 445
    seg = h["dataset"].segments()[0]
    assert seg.obs.shape[1] == 441 and seg.actions.shape[1] == 4
    assert h["global_step"] == [256]


def test_no_episode_end_signal_and_clear_errors():
    from lmlib.preferences.agent import _NoEpisodeEnd
    env = _NoEpisodeEnd(make_env(BREAKOUT, "atari", train=False))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(3000):  # a random agent loses its 5 lives within a few hundred steps
        _, _, term, trunc, info = env.step(int(rng.integers(4)))
        if term or trunc:
            break
    assert not term and trunc and "episode" in info  # reported as a cut, the game score recorded below
    env.close()
    with pytest.raises(ValueError, match="featurize"):
        ppo_from_preferences(BREAKOUT, PPOConfig.atari(), SyntheticRater())
    with pytest.raises(ValueError, match="env_kwargs"):
        ppo_from_preferences(BREAKOUT, PPOConfig.atari(), SyntheticRater(), featurize=atari_features,
                             env_kwargs={"frameskip": 1})
    with pytest.raises(ValueError, match="label_every"):
        PreferenceRLConfig(label_every=0).check()


def test_preference_atari_recipe_smoke(tmp_path):
    """recipes/preference_atari.py end to end on one PPO update: results JSON, policy and video in the manifest."""
    from lmlib._io import sha256_file
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "preference_atari.py"), "--labels", "8",
                        "--steps", "512", "--assets", str(tmp_path), "--eval-episodes", "1", "--segment", "10",
                        "--num-envs", "2", "--eval-max-steps", "200", "--video", "--video-steps", "20"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "rlhp_breakout_8_seg10_s1.json").read_text())
    assert res["steps"] == 512 and res["labels"]["labels"][-1] == 8
    assert {"curve", "eval", "labels", "agreement", "rlhp_config", "command", "times", "machine", "train_seconds",
            "steps"} <= set(res)
    assert len(res["curve"]["episode_step"]) == len(res["curve"]["true_return"]) == len(res["curve"]["model_return"])
    for who in ("agent", "random"):
        ev = res["eval"][who]
        assert len(ev["returns"]) == 1 and ev["mean"] == pytest.approx(np.mean(ev["returns"]))
    assert res["eval"]["max_steps"] == 200 and res["eval"]["deterministic"] is False
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    for name in ("rlhp_breakout_8_seg10_s1.safetensors", "rlhp_breakout_8_seg10_s1.mp4"):
        assert manifest[name]["sha256"] == sha256_file(tmp_path / name)
    from lmlib.rl.ppo import load_ppo
    policy = load_ppo(tmp_path / "rlhp_breakout_8_seg10_s1.safetensors")
    assert policy.config.env_id == BREAKOUT and policy.config.env_kind == "atari"

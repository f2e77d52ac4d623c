"""lmlib.preferences.agent: clips from experience, the ensemble as PPO's reward, and the whole preference loop (tiny runs)."""
from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from lmlib.preferences import PreferencePair, RewardEnsemble, Segment, SyntheticRater
from lmlib.rl.ppo import PPOConfig
from lmlib.preferences.agent import (EnsembleReward, PreferenceRLConfig, SegmentRecorder, add_frames, clip_frames,
                           collect_clips, ppo_from_preferences, reward_agreement)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_segment_recorder_cuts_clips_with_true_rewards():
    sink: list = []
    env = SegmentRecorder(gym.make("Pendulum-v1"), sink, length=30)  # 200-step episodes, no early end
    env.reset(seed=0)
    total = 0.0
    for _ in range(200):
        _, r, term, trunc, _ = env.step(env.action_space.sample())
        total += r
    assert trunc and len(sink) == 7  # 6 clips of 30 steps, then the last 20 (>= 15) at the time limit
    assert [len(s) for s in sink] == [30] * 6 + [20]
    assert sink[0].obs.shape == (30, 3) and sink[0].actions.shape == (30, 1)
    assert np.isclose(sum(s.true_return for s in sink), total)


def test_segment_recorder_keeps_mujoco_states():
    sink: list = []
    env = SegmentRecorder(gym.make("Hopper-v5"), sink, length=5)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample() * 0)
    assert sink[0].meta["qpos"].shape == (5, 6) and sink[0].meta["qvel"].shape == (5, 6)
    assert sink[0].meta["env_id"] == "Hopper-v5"


def test_standard_return_is_what_the_terminating_task_pays():
    """Without termination, SegmentRecorder's standard return equals the standard Hopper's return on the same actions."""
    actions = np.random.default_rng(0).uniform(-1, 1, (1000, 3))
    env = gym.make("Hopper-v5")
    env.reset(seed=3)
    standard, steps = 0.0, 0
    for a in actions:
        _, r, term, trunc, _ = env.step(a)
        standard, steps = standard + r, steps + 1
        if term or trunc:
            break
    assert term and steps < 1000  # random actions fall
    rec = SegmentRecorder(gym.make("Hopper-v5", terminate_when_unhealthy=False), [], 50)
    rec.reset(seed=3)
    total = 0.0
    for t, a in enumerate(actions):
        _, r, term, trunc, info = rec.step(a)
        total += r
        assert "standard_episode_return" not in info or term or trunc
    assert trunc and not term and t == 999
    assert info["standard_episode_return"] == pytest.approx(standard, abs=1e-9)
    assert total != pytest.approx(standard)  # the steps on the floor are paid differently


def test_collect_clips_from_a_policy_or_at_random():
    clips = collect_clips(None, "Hopper-v5", episodes=1, segment_length=50, seed=1,
                          env_kwargs={"terminate_when_unhealthy": False}, source="random")
    assert len(clips) == 20 and all(len(c) == 50 and c.meta["source"] == "random" for c in clips)
    again = collect_clips(None, "Hopper-v5", episodes=1, segment_length=50, seed=1,
                          env_kwargs={"terminate_when_unhealthy": False})
    assert np.array_equal(clips[3].actions, again[3].actions)  # seeded
    with pytest.raises(ValueError, match="episodes"):
        collect_clips(None, episodes=0)
    with pytest.raises(ValueError, match="continuous"):
        collect_clips(None, "CartPole-v1")


def test_ensemble_reward_matches_the_ensemble():
    ens = RewardEnsemble.of_mlps(2, seed=0, in_dim=4, hidden=8)
    fn = EnsembleReward(ens)
    obs, act = np.arange(3, dtype=np.float32), np.array([0.5], np.float32)
    expected = ens(torch.tensor([[[0.0, 1.0, 2.0, 0.5]]]))[0, 0].item()
    assert fn(obs, act, None) == pytest.approx(expected, abs=1e-6)


def test_reward_agreement_is_one_for_the_true_reward_and_needs_untied_pairs():
    class TrueReward(torch.nn.Module):  # reward = first feature; the clips' true rewards are the same
        def forward(self, x):
            return x[..., 0]

    ens = RewardEnsemble([TrueReward()])
    rng = np.random.default_rng(0)
    segs = []
    for _ in range(6):
        r = rng.normal(size=4)
        segs.append(Segment(np.stack([r, np.zeros(4)], 1), rewards=r))
    pairs = [PreferencePair(segs[i], segs[i + 1]) for i in range(5)]
    assert reward_agreement(ens, pairs) == 1.0
    tie = Segment(np.zeros((2, 2)), rewards=np.zeros(2))
    with pytest.raises(ValueError, match="differ"):
        reward_agreement(ens, [PreferencePair(tie, Segment(np.ones((2, 2)) * 0, rewards=np.zeros(2)))])


def test_the_loop_asks_on_schedule_and_trains_the_ensemble():
    ppo_cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=1100, num_steps=256, num_minibatches=4, update_epochs=2)
    # 4 whole iterations (1024 steps) fit in 1100: every label must still be asked by the last one
    cfg = PreferenceRLConfig(total_labels=12, segment_length=20, ensemble_size=2, reward_epochs=3)
    policy, ens, h = ppo_from_preferences("Pendulum-v1", ppo_cfg, SyntheticRater(), cfg, agreement_pairs=50)
    assert h["labels"][-1] == 12 and len(h["dataset"]) + len(h["dataset"].skipped) == 12
    assert h["labels"] == sorted(h["labels"]) and h["labels"][0] >= 3  # 25% up front
    assert all(0.0 <= a <= 1.0 for a in h["agreement"])
    assert len(h["true_episode_return"]) == len(h["model_episode_return"]) > 0
    assert isinstance(ens, RewardEnsemble) and len(ens) == 2


def test_labels_stop_after_the_labelling_fraction():
    ppo_cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=1024, num_steps=256, num_minibatches=4, update_epochs=1)
    cfg = PreferenceRLConfig(total_labels=10, segment_length=20, ensemble_size=2, reward_epochs=2,
                             labelling_fraction=0.5)
    _, _, h = ppo_from_preferences("Pendulum-v1", ppo_cfg, SyntheticRater(), cfg, agreement_pairs=0)
    assert h["labels"][-1] == 10 and max(h["label_step"]) <= 512  # all asked in the first half, then frozen
    with pytest.raises(ValueError, match="labelling_fraction"):
        PreferenceRLConfig(labelling_fraction=0.0).check()


def test_reward_floor_makes_the_learned_reward_nonnegative_on_the_labelled_clips():
    from lmlib.preferences import collate_segments
    ppo_cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=1024, num_steps=256, num_minibatches=4, update_epochs=1)
    cfg = PreferenceRLConfig(total_labels=10, segment_length=20, ensemble_size=2, reward_epochs=2, reward_floor=True)
    _, ens, h = ppo_from_preferences("Pendulum-v1", ppo_cfg, SyntheticRater(), cfg, agreement_pairs=0)
    assert len(h["reward_offset"]) == len(h["label_step"])  # one shift per refit
    with torch.no_grad():
        x, mask = collate_segments(h["dataset"].segments())
        r = ens(x)[mask]
    assert h["reward_offset"][-1] == pytest.approx(float(r.min()), abs=1e-5)
    shifted = EnsembleReward(ens)
    shifted.offset = h["reward_offset"][-1]
    step = h["dataset"].segments()[0]
    assert shifted(step.obs[0], step.actions[0], None) >= -1e-5  # labelled steps are never below zero
    _, _, plain = ppo_from_preferences("Pendulum-v1", ppo_cfg, SyntheticRater(), replace(cfg, reward_floor=False),
                                       agreement_pairs=0)
    assert "reward_offset" not in plain


def test_clear_errors():
    with pytest.raises(ValueError, match="query_method"):
        PreferenceRLConfig(query_method="best").check()
    with pytest.raises(TypeError, match="rater"):
        ppo_from_preferences("Pendulum-v1", PPOConfig.mujoco("Pendulum-v1"), "left")
    with pytest.raises(ValueError, match="continuous"):
        ppo_from_preferences("CartPole-v1", PPOConfig.cartpole(), SyntheticRater())
    with pytest.raises(ValueError, match="vector observations"):
        SegmentRecorder(_ImageEnv(), [], 5)


class _ImageEnv(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)


def test_mujoco_clips_render_for_the_rater():
    from lmlib.ui.labeling import default_render
    sink: list = []
    env = SegmentRecorder(gym.make("Hopper-v5"), sink, length=4)
    env.reset(seed=0)
    for _ in range(4):
        env.step(env.action_space.sample())
    frames = clip_frames(sink[0], width=48, height=32, every=2)
    assert frames.shape == (2, 32, 48, 3) and frames.dtype == np.uint8 and frames.std() > 0
    pair = PreferencePair(sink[0], sink[0])
    add_frames([pair], width=48, height=32, every=1)
    assert pair.left.meta["frames"].shape[0] == 4 and pair.left.meta["fps"] > 0
    assert default_render(pair.left)[4:8] == b"ftyp"  # an mp4 the widget can show
    with pytest.raises(ValueError, match="MuJoCo states"):
        clip_frames(Segment(np.zeros((3, 2))))


def test_backflip_reward_by_hand_and_flip_count():
    from lmlib.preferences.agent import backflip_reward, count_backflips
    ob = np.zeros(11)
    ob[7], ob[0], ob[5], ob[8:11] = -2.0, 1.0, -1.0, [1.0, 2.0, 3.0]
    a = np.array([1.0, 0.5, -1.0])
    # backroll 2, height 1, vel_act 1 + 1 - 3 = -1, backslide 1: 2 * (1 + 0.3 - 0.1 + 0.05) = 2.5
    assert backflip_reward(ob, a) == pytest.approx([2.5])
    assert backflip_reward(np.stack([ob, ob]), np.stack([a, a])).shape == (2,)
    with pytest.raises(ValueError, match="Hopper observations"):
        backflip_reward(np.zeros((2, 10)), np.zeros((2, 3)))
    angles = -np.linspace(0, 2.2 * 2 * np.pi, 50)  # 2.2 backward turns
    assert count_backflips(angles) == 2 and count_backflips(-angles) == 0 and count_backflips([0.0]) == 0


def test_preference_recipe_smoke(tmp_path):
    """recipes/preference_agents.py end to end on one PPO update: results JSON and a checksummed policy."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lmlib._io import sha256_file
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "recipes" / "preference_agents.py"), "hopper", "--labels", "12",
                        "--steps", "2048", "--assets", str(tmp_path), "--eval-episodes", "1", "--segment", "20",
                        "--video", "--video-steps", "10"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, MUJOCO_GL="egl"))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "rlhp_hopper_12_seg20_s1.json").read_text())
    assert res["labels"]["labels"][-1] == 12 and res["steps"] == 2048
    assert len(res["curve"]["true_return"]) == len(res["curve"]["model_return"]) > 0
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    for name in ("rlhp_hopper_12_seg20_s1.safetensors", "rlhp_hopper_12_seg20_s1.mp4"):
        assert manifest[name]["sha256"] == sha256_file(tmp_path / name)
    # trained without termination, reported as the standard task would pay, evaluated on the standard task
    assert res["env_kwargs"] == {"terminate_when_unhealthy": False} and res["eval_env_kwargs"] == {}
    assert len(res["curve"]["true_return"]) == len(res["curve"]["return_without_termination"]) == 2  # 2 x 1000 steps


def test_shipped_preference_results_are_complete():
    """Every rlhp_<tag>.json that ships has what chapter 11 reads, and its policy/video match the manifest."""
    from lmlib.assets import ASSETS, manifest_sha256, preference_results, preference_video
    from lmlib._io import sha256_file
    results = preference_results("")
    assert "hopper-term_700_s1" in results
    for tag, r in results.items():
        assert {"curve", "eval", "command", "train_seconds", "steps"} <= set(r), tag
        assert "rlhp_config" not in r or "labels" in r, tag  # runs from preferences say when they asked
        assert len(r["curve"]["episode_step"]) == len(r["curve"]["true_return"]) > 0, tag
        policy = ASSETS / f"rlhp_{tag}.safetensors"
        if policy.exists():
            assert sha256_file(policy) == manifest_sha256(policy.name), tag
        video = preference_video(tag)
        assert video is None or video.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="preference_agents.py"):
        preference_results("no-such-experiment")


def test_shipped_results_meet_chapter_11s_goals():
    """The figures chapter 11 reports, checked from the shipped files (not re-run): Hopper from <= 700 labels
    within 80% of PPO on the true reward at equal steps, both backflip agents flip, Breakout beats random."""
    from lmlib.assets import agent_results, preference_results
    ppo = agent_results("hopper")
    ppo_last5 = np.mean([np.mean(np.asarray(r["curve"]["episode_return"])[np.asarray(r["curve"]["episode_step"])
                                                                           > 950_000]) for r in ppo])
    hopper = [r for r in preference_results("hopper").values() if "rlhp_config" in r and r["steps"] > 900_000
              and r["rlhp_config"]["total_labels"] <= 700]
    assert max(r["final_true_return"] for r in hopper) >= 0.8 * ppo_last5
    flips = preference_results("backflip")
    assert flips["backflip_900_s1"]["eval"]["mean_backflips"] >= 1
    assert flips["backflip_900_s1"]["answers"]["trained_on"] <= 900
    assert flips["backflip-direct_s1"]["eval"]["mean_backflips"] >= 1
    atari = preference_results("breakout")["breakout_700_s1"]
    assert atari["eval"]["agent"]["mean"] > atari["eval"]["random"]["mean"]

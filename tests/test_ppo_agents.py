"""The PPO agents that ship with the book (Chapter 10): export/load, learning curves, the recipe, the shipped
files (checksums, goals of the issue), and clear errors. The shipped-agent tests evaluate real checkpoints."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lmlib.assets as pre
from lmlib._io import sha256_file
from lmlib.checkpoint import CheckpointError
from lmlib.rl.ppo import PPOConfig, episode_curve, evaluate, export_policy, load_ppo, ppo

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_episode_curve_by_hand():
    got = episode_curve([10, 20, 30, 40], [1.0, 2.0, 3.0, 4.0], [5, 10, 25, 40, 100], window=15)
    assert np.isnan(got[0]) and np.isnan(got[-1])
    assert np.allclose(got[1:4], [1.0, 2.0, 3.5])


def test_episode_curve_errors():
    with pytest.raises(ValueError, match="same length"):
        episode_curve([1, 2], [1.0], [1], 5)
    with pytest.raises(ValueError, match="window"):
        episode_curve([1], [1.0], [1], 0)
    with pytest.raises(ValueError, match="non-decreasing"):
        episode_curve([2, 1], [1.0, 1.0], [1], 5)


def test_export_and_load_round_trip(tmp_path):
    cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=256, num_steps=128, num_minibatches=4, update_epochs=1)
    policy, _ = ppo(None, cfg)
    digest = export_policy(policy, tmp_path / "p.safetensors", extra={"note": "test"})
    assert digest == sha256_file(tmp_path / "p.safetensors")
    loaded = load_ppo(tmp_path / "p.safetensors", expected_sha256=digest)
    assert loaded.config == policy.config
    np.testing.assert_allclose(loaded.obs_normalizer.rms.mean, policy.obs_normalizer.rms.mean)
    for a, b in zip(loaded.state_dict().values(), policy.state_dict().values()):
        assert torch.equal(a, b)
    np.testing.assert_allclose(evaluate(loaded, "Pendulum-v1", 1, seed=3), evaluate(policy, "Pendulum-v1", 1, seed=3))
    with pytest.raises(CheckpointError):
        load_ppo(tmp_path / "p.safetensors", expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="no .config"):
        export_policy(torch.nn.Linear(2, 2), tmp_path / "q.safetensors")


def test_evaluate_cuts_episodes_at_max_steps():
    cfg = PPOConfig.mujoco("Pendulum-v1", total_timesteps=128, num_steps=128, num_minibatches=4, update_epochs=1)
    policy, _ = ppo(None, cfg)
    full = evaluate(policy, "Pendulum-v1", 1, seed=0)  # 200 steps
    cut = evaluate(policy, "Pendulum-v1", 1, seed=0, max_steps=10)
    assert cut[0] > full[0]  # Pendulum's rewards are all negative: fewer steps, a higher return


def test_recipe_trains_ships_and_records(tmp_path):
    """recipes/ppo_agents.py end to end on one Hopper update: results JSON, shipped agent, video, manifest."""
    env = dict(os.environ, MUJOCO_GL="egl")
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "ppo_agents.py"), "hopper", "--steps", "2048",
                        "--work", str(tmp_path / "w"), "--assets", str(tmp_path / "a"), "--eval-episodes", "1"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "a" / "ppo_hopper_s1.json").read_text())
    assert res["steps"] == 2048 and res["config"]["num_steps"] == 2048 and len(res["eval"]["returns"]) == 1
    assert len(res["curve"]["episode_step"]) == len(res["curve"]["episode_return"]) > 0
    manifest = json.loads((tmp_path / "a" / "MANIFEST.json").read_text())
    for name in ("ppo_hopper.safetensors", "ppo_hopper.mp4"):
        assert manifest[name]["sha256"] == sha256_file(tmp_path / "a" / name)
    agent = load_ppo(tmp_path / "a" / "ppo_hopper.safetensors", manifest["ppo_hopper.safetensors"]["sha256"])
    assert agent.config.env_id == "Hopper-v5" and agent.obs_normalizer is not None
    assert (tmp_path / "w" / "hopper_s1.safetensors").exists()  # the resumable training checkpoint


def test_load_agent_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(pre, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="recipes/ppo_agents.py hopper"):
        pre.load_agent("hopper")
    with pytest.raises(FileNotFoundError, match="recipes/ppo_agents.py hopper"):
        pre.agent_results("hopper")
    with pytest.raises(FileNotFoundError, match="--video-only"):
        pre.agent_video("hopper")
    (tmp_path / "ppo_hopper_s1.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        pre.agent_results("hopper")


# ----------------------------------------------------------------------------- the shipped files

SHIPPED = [name for name in pre.AGENTS if (pre.ASSETS / f"ppo_{name}.safetensors").exists()]


def test_the_book_ships_its_mujoco_and_atari_agents():
    assert {"hopper", "halfcheetah", "breakout"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_match_the_manifest(name):
    manifest = json.loads(pre.MANIFEST.read_text())
    for suffix in (".safetensors", ".mp4"):
        f = pre.ASSETS / f"ppo_{name}{suffix}"
        assert manifest[f.name]["sha256"] == sha256_file(f)
        assert manifest[f.name]["recipe"].startswith("python recipes/ppo_agents.py")
    assert pre.agent_video(name).stat().st_size > 10_000


def test_a_tampered_agent_is_refused(tmp_path, monkeypatch):
    for f in ("ppo_hopper.safetensors", "MANIFEST.json"):
        shutil.copy(pre.ASSETS / f, tmp_path / f)
    data = bytearray((tmp_path / "ppo_hopper.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "ppo_hopper.safetensors").write_bytes(bytes(data))
    (tmp_path / "ppo_hopper.safetensors.sha256").write_text(
        f"{sha256_file(tmp_path / 'ppo_hopper.safetensors')}  ppo_hopper.safetensors\n")  # a consistent sidecar
    monkeypatch.setattr(pre, "ASSETS", tmp_path)
    monkeypatch.setattr(pre, "MANIFEST", tmp_path / "MANIFEST.json")
    with pytest.raises(CheckpointError):
        pre.load_agent("hopper")


def test_shipped_hopper_hops():
    """The shipped Hopper agent, evaluated now: one deterministic episode scores well above a fresh policy's ~20-200."""
    agent = pre.load_agent("hopper")
    assert evaluate(agent, "Hopper-v5", episodes=1, seed=123)[0] > 1000


def test_shipped_results_meet_the_goals():
    hopper = pre.agent_results("hopper")
    one_million = (1_000_000 // 2048) * 2048  # whole rollouts of 2048 steps, as in CleanRL
    assert [r["seed"] for r in hopper] == [1, 2, 3] and all(r["steps"] == one_million for r in hopper)
    assert np.mean([r["final_train_return"] for r in hopper]) >= 2000
    breakout = pre.agent_results("breakout")[0]
    assert breakout["train_seconds"] <= 3600 and breakout["eval"]["mean"] > 5  # a random agent scores ~1.5
    cheetah = pre.agent_results("halfcheetah")[0]
    assert cheetah["steps"] == one_million

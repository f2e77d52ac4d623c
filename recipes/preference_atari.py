"""Train a Breakout agent from synthetic preferences about its own clips (Chapter 11, experiment 3).

    .venv/bin/python recipes/preference_atari.py --labels 700 --steps 409600 --seed 1   # ~1 h on one core
    .venv/bin/python recipes/preference_atari.py --labels 700 --query random            # ablation: random queries
    .venv/bin/python recipes/preference_atari.py --labels 8 --steps 512 --num-envs 2 --eval-episodes 1 \\
        --eval-max-steps 200 --assets /tmp/a                                           # a smoke test

The agent is Chapter 10's Atari PPO (``PPOConfig.atari()``: Nature CNN on 4 stacked 84x84 frames,
8 envs x 128 steps) with the game score replaced by the ensemble's reward, and observation
normalisation off but *reward* normalisation on (the ensemble's per-step reward has unit std, far
larger than Breakout's clipped score). A :class:`~lmlib.preferences.SyntheticRater` answers by the
game score of the two clips (``--segment`` 25 agent steps = 100 frames, 1.7 s of play, as in the
paper). The reward model is an ensemble of MLPs over :func:`lmlib.preferences.agent.atari_features` (the last
frame, pooled to 21x21) plus the one-hot action; the paper used a CNN on the frame stack. As in the
paper, the agent is not told about lost lives nor about game over (see
:func:`lmlib.preferences.agent.ppo_from_preferences`).

The recipe writes ``lmlib/assets/rlhp_<tag>.json`` (tag ``breakout_<labels>[_variant]_s<seed>``):
the game score of every training episode (``curve``), the labels asked over time with the reward
model's agreement with the game score on ``--agreement-pairs`` fresh random pairs of recent clips
(``labels``), the final
reward model's agreement on clips of the evaluation episodes (``agreement``), the evaluation
(``eval``: mean game score of ``--eval-episodes`` episodes with sampled actions, as Chapter 10
evaluates Breakout, each cut at ``--eval-max-steps`` = 27,000 steps = 108,000 frames, and a uniformly
random agent measured the same way), times, machine and this command; and the final policy
``lmlib/assets/rlhp_<tag>.safetensors`` (checksum in ``MANIFEST.json``; ``--video`` adds an mp4).

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lmlib._io import atomic_write_text
from lmlib.assets import manifest_add
from lmlib.preferences import RewardEnsemble, Segment, SyntheticRater, sample_pairs
from lmlib.preferences.agent import (
    PreferenceRLConfig,
    SegmentRecorder,
    atari_features,
    ppo_from_preferences,
    reward_agreement,
)
from lmlib.rl.ppo import PPOConfig, act, export_policy, make_env

ROOT = Path(__file__).resolve().parents[1]

ENV_ID = "BreakoutNoFrameskip-v4"


def play(policy: torch.nn.Module | None, episodes: int, seed: int, max_steps: int, segment: int,
         clips: list[Segment]) -> dict:
    """Game scores of ``episodes`` episodes of ``policy`` (sampled actions; ``None``: uniformly random actions),
    on the evaluation env of Chapter 10 (no life-loss ends, no reward clipping), episode ``k`` reset with
    seed ``seed + k`` and cut after ``max_steps`` agent steps. The clips of the episodes go to ``clips``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if episodes < 1 or max_steps < 1:
        raise ValueError(f"need episodes >= 1 and max_steps >= 1, got {episodes} and {max_steps}")
    env = SegmentRecorder(make_env(ENV_ID, "atari", train=False), clips, segment, atari_features)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    returns, lengths, t0 = [], [], time.perf_counter()
    try:
        with torch.inference_mode():
            for k in range(episodes):
                o, _ = env.reset(seed=seed + k)
                total, t, done = 0.0, 0, False
                while not done:
                    if policy is None:
                        a = int(rng.integers(env.action_space.n))
                    else:
                        a = int(act(policy, torch.from_numpy(np.asarray(o)[None]), deterministic=False)[0])
                    o, r, terminated, truncated, _ = env.step(a)
                    total, t = total + float(r), t + 1
                    done = terminated or truncated or t >= max_steps
                returns.append(total)
                lengths.append(t)
    finally:
        env.close()
    return {"returns": returns, "lengths": lengths, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "seconds": time.perf_counter() - t0}


def agreement(ensemble: RewardEnsemble, clips: list[Segment], pairs: int, seed: int) -> dict:
    """:func:`~lmlib.preferences.agent.reward_agreement` on ``pairs`` random pairs of ``clips`` (ties left out; ``None``
    when there are fewer than two clips or every pair ties), with the number of untied pairs it counted."""
    if len(clips) < 2:
        return {"agreement": None, "pairs": 0, "clips": len(clips)}
    sampled = sample_pairs(clips, pairs, np.random.default_rng(seed))
    untied = sum(p.left.true_return != p.right.true_return for p in sampled)
    value = reward_agreement(ensemble, sampled) if untied else None
    return {"agreement": value, "pairs": int(untied), "clips": len(clips)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=int, default=700)
    ap.add_argument("--steps", type=int, default=409_600, help="environment steps (agent steps, 4 frames each)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--segment", type=int, default=25, help="clip length in agent steps")
    ap.add_argument("--query", choices=["disagreement", "random"], default="disagreement")
    ap.add_argument("--noise", type=float, default=0.0, help="probability that the rater answers at random")
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--label-every", type=int, default=4, help="PPO iterations between labelling rounds")
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--assets", default=str(ROOT / "lmlib" / "assets"))
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--eval-max-steps", type=int, default=27_000)
    ap.add_argument("--agreement-pairs", type=int, default=1000,
                    help="random clip pairs (ties left out) to measure the agreement with the game score on")
    ap.add_argument("--video", action="store_true", help="also record the agent (rlhp_<tag>.mp4)")
    ap.add_argument("--video-steps", type=int, default=2000)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)

    variant = "" if args.query == "disagreement" else f"_{args.query}"
    variant += f"_noise{args.noise:g}" if args.noise else ""
    variant += f"_k{args.ensemble}" if args.ensemble != 3 else ""
    variant += f"_seg{args.segment}" if args.segment != 25 else ""
    tag = f"breakout_{args.labels}{variant}_s{args.seed}"
    command = "python recipes/preference_atari.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    ppo_cfg = PPOConfig.atari(ENV_ID, total_timesteps=args.steps, num_envs=args.num_envs, seed=args.seed,
                              normalize_reward=True)
    cfg = PreferenceRLConfig(total_labels=args.labels, segment_length=args.segment, ensemble_size=args.ensemble,
                             query_method=args.query, label_every=args.label_every, seed=args.seed)
    rater = SyntheticRater(noise=args.noise, rng=args.seed)  # the game score of each clip

    t0 = time.perf_counter()
    policy, ensemble, hist = ppo_from_preferences(ENV_ID, ppo_cfg, rater, cfg, log_every=args.log_every,
                                                  agreement_pairs=args.agreement_pairs, featurize=atari_features)
    wall = time.perf_counter() - t0
    ds = hist.pop("dataset")

    agent_clips: list[Segment] = []
    random_clips: list[Segment] = []
    ev_agent = play(policy, args.eval_episodes, 10_000, args.eval_max_steps, args.segment, agent_clips)
    ev_random = play(None, args.eval_episodes, 10_000, args.eval_max_steps, args.segment, random_clips)
    t_agree = time.perf_counter()
    agree = {"agent_clips": agreement(ensemble, agent_clips, args.agreement_pairs, args.seed),
             "random_clips": agreement(ensemble, random_clips, args.agreement_pairs, args.seed),
             "all_clips": agreement(ensemble, agent_clips + random_clips, args.agreement_pairs, args.seed)}
    agree_seconds = time.perf_counter() - t_agree

    steps = hist["global_step"][-1]
    late = [r for s, r in zip(hist["episode_step"], hist["episode_return"]) if s > steps - steps // 20]
    result = {
        "experiment": "breakout", "tag": tag, "env_id": ENV_ID, "seed": args.seed, "steps": steps,
        "train_seconds": wall, "ppo_config": asdict(ppo_cfg), "features": "atari_features: last frame, 4x4 "
        "average-pooled to 21x21, in [0, 1], + one-hot action (445 inputs)",
        "curve": {"episode_step": hist["episode_step"], "true_return": hist["episode_return"],
                  "model_return": hist["model_episode_return"], "episode_length": hist["episode_length"]},
        "final_true_return": float(np.mean(late)) if late else None,
        "labels": {k: hist[k] for k in ("label_step", "labels", "rm_accuracy", "agreement", "label_seconds")},
        "rlhp_config": hist.pop("rlhp_config"),
        "answers": {"trained_on": len(ds), "cant_tell": len(ds.skipped), "mu": ds.mu},
        "agreement": agree,
        "eval": {"agent": ev_agent, "random": ev_random, "episodes": args.eval_episodes, "first_seed": 10_000,
                 "max_steps": args.eval_max_steps, "deterministic": False},
        "times": {"train_seconds": wall, "mean_sps": steps / wall, "label_seconds": float(sum(hist["label_seconds"])),
                  "eval_agent_seconds": ev_agent["seconds"], "eval_random_seconds": ev_random["seconds"],
                  "agreement_seconds": agree_seconds},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU core(s), torch {torch.__version__}, 1 thread",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    assets = Path(args.assets)
    assets.mkdir(parents=True, exist_ok=True)
    out = assets / f"rlhp_{tag}.safetensors"
    export_policy(policy, out, extra={"tag": tag, "recipe": "preference_atari"})
    manifest_add(out, command)
    if args.video:
        from lmlib.rl.ppo import record_video  # noqa: PLC0415
        video = out.with_suffix(".mp4")
        result["video"] = record_video(policy, ENV_ID, video, seed=0, max_steps=args.video_steps, deterministic=False)
        manifest_add(video, command)
    atomic_write_text(assets / f"rlhp_{tag}.json", json.dumps(result, indent=1) + "\n")
    a = agree["all_clips"]["agreement"]
    print(f"[{tag}] {steps:,} steps in {wall / 60:.1f} min; game score, last 5%: {result['final_true_return']}; "
          f"eval {ev_agent['mean']:.1f} vs random {ev_random['mean']:.1f}; reward model agreement on eval clips "
          f"{'n/a' if a is None else f'{a:.3f}'}", flush=True)
    return result


if __name__ == "__main__":
    main()

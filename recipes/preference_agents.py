"""Train agents from synthetic preferences (Chapter 11): one command per experiment, label budget and seed.

    F="--keep-termination --reward-floor"     # the Hopper set-up that works (chapter 11, "the zero of a learned reward")
    .venv/bin/python recipes/preference_agents.py hopper --labels 175 --seed 1 $F    # experiment 1
    .venv/bin/python recipes/preference_agents.py hopper --labels 700 --seed 1 --keep-termination  # mean-zero reward
    .venv/bin/python recipes/preference_agents.py hopper --labels 175 --seed 1       # no termination (the paper's)
    .venv/bin/python recipes/preference_agents.py hopper --labels 700 $F --query random  # ablation: random queries
    .venv/bin/python recipes/preference_agents.py hopper --labels 700 $F --noise 0.1     # ablation: a noisy rater
    .venv/bin/python recipes/preference_agents.py hopper --labels 700 $F --ensemble 1    # ablation: no ensemble
    .venv/bin/python recipes/preference_agents.py hopper --labels 175 $F --label-until 0.1 --steps 300000  # labels stop
    .venv/bin/python recipes/preference_agents.py hopper --labels 175 $F --blind --steps 300000  # a blind rater
    .venv/bin/python recipes/preference_agents.py backflip --labels 900 --video --video-steps 1000  # experiment 2
    .venv/bin/python recipes/preference_agents.py backflip-direct --video --video-steps 1000  # on the hand-written reward
    .venv/bin/python recipes/preference_agents.py hopper --labels 40 --steps 8192 --assets /tmp/a   # a smoke test

``hopper`` learns Hopper-v5 from a :class:`~lmlib.preferences.SyntheticRater` that prefers the clip
with the higher true return (the PPO baseline on the true reward is Chapter 10's
``recipes/ppo_agents.py hopper``, same settings and steps). By default the Hopper does not end its
episode at a fall, as in Christiano et al.; ``--keep-termination`` keeps the standard task, and
``--reward-floor`` shifts the learned reward to be non-negative so that falling never pays. The
curves report the standard return (up to the first fall) either way. ``backflip`` uses a rater whose
"true" reward is the hand-written backflip function (:func:`lmlib.preferences.agent.backflip_reward`), on a
Hopper that does not end its episode when it falls over; ``backflip-direct`` trains PPO on that
function itself. The recipe writes ``lmlib/assets/rlhp_<tag>.json`` (true and learned returns per
episode, the labels asked over time, the reward model's agreement with the true reward, an
evaluation, times, machine, this command), the final policy ``lmlib/assets/rlhp_<tag>.safetensors``
and with ``--video`` its video (checksums in ``MANIFEST.json``).

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
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "egl")

from lmlib._io import atomic_write_text  # noqa: E402 (after MUJOCO_GL)
from lmlib.assets import manifest_add  # noqa: E402 (after MUJOCO_GL)
from lmlib.preferences import SyntheticRater  # noqa: E402 (after MUJOCO_GL)
from lmlib.preferences.agent import (  # noqa: E402 (after MUJOCO_GL)
    PreferenceRLConfig,
    backflip_reward,
    count_backflips,
    ppo_from_preferences,
)
from lmlib.rl.ppo import PPOConfig, act, export_policy, obs_for_policy, ppo  # noqa: E402 (after MUJOCO_GL)

NO_TERMINATION = {"terminate_when_unhealthy": False}


def _evaluate(policy, env_kwargs: dict, episodes: int, seed: int = 10_000) -> dict:
    """True return, backflip reward and backflips of ``episodes`` deterministic Hopper episodes."""
    env = gym.make("Hopper-v5", **env_kwargs)
    out = {"true_return": [], "backflip_return": [], "backflips": [], "steps": []}
    with torch.inference_mode():
        for k in range(episodes):
            o, _ = env.reset(seed=seed + k)
            angles, total, flip, done, t = [o[1]], 0.0, 0.0, False, 0
            while not done:
                a = act(policy, obs_for_policy(policy, np.asarray(o)[None]), True)[0].numpy()
                a = np.clip(a, env.action_space.low, env.action_space.high)
                flip += float(backflip_reward(o, a)[0])
                o, r, term, trunc, _ = env.step(a)
                total, t, done = total + float(r), t + 1, term or trunc
                angles.append(o[1])
            for key, v in zip(out, (total, flip, count_backflips(angles), t)):
                out[key].append(v)
    env.close()
    return {k: v for k, v in out.items()} | {"mean_true_return": float(np.mean(out["true_return"])),
                                             "mean_backflips": float(np.mean(out["backflips"]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=["hopper", "backflip", "backflip-direct"])
    ap.add_argument("--labels", type=int, default=700)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--query", choices=["disagreement", "random"], default="disagreement")
    ap.add_argument("--noise", type=float, default=0.0, help="probability that the rater answers at random")
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--segment", type=int, default=50, help="clip length in steps")
    ap.add_argument("--keep-termination", action="store_true",
                    help="hopper: keep the standard termination at a fall (the failure the chapter shows)")
    ap.add_argument("--blind", action="store_true",
                    help="hopper: the rater sees only forward speed (blind to falls and effort): a rater's blind spot")
    ap.add_argument("--reward-floor", action="store_true",
                    help="shift the learned reward to be >= 0 on the labelled clips (with --keep-termination)")
    ap.add_argument("--label-until", type=float, default=1.0,
                    help="ask every label within this fraction of the run, then freeze the reward model")
    ap.add_argument("--assets", default=str(ROOT / "lmlib" / "assets"))
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--video", action="store_true", help="also record the agent (rlhp_<tag>.mp4)")
    ap.add_argument("--video-steps", type=int, default=400)
    ap.add_argument("--log-every", type=int, default=10)
    args = ap.parse_args(argv)

    # A learned reward has no zero: with termination at a fall and a mean-zero reward, falling pays where the
    # reward is negative. Christiano et al. removed the termination (the default here); --keep-termination
    # with --reward-floor (a never-negative reward) is what made our Hopper hop (chapter 11).
    env_kwargs = {} if args.keep_termination else NO_TERMINATION
    eval_kwargs = NO_TERMINATION if args.experiment.startswith("backflip") else {}  # hopper: the standard task
    ppo_cfg = PPOConfig.mujoco("Hopper-v5", total_timesteps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    if args.experiment == "backflip-direct":
        tag = f"backflip-direct_s{args.seed}"
        policy, hist = ppo(lambda: gym.make("Hopper-v5", **env_kwargs), ppo_cfg,
                           reward_fn=lambda o, a, o2: float(backflip_reward(o, a)[0]), log_every=args.log_every)
        extra: dict = {}
    else:
        variant = "" if args.query == "disagreement" else f"_{args.query}"
        variant += f"_noise{args.noise:g}" if args.noise else ""
        variant += f"_k{args.ensemble}" if args.ensemble != 3 else ""
        variant += f"_until{args.label_until:g}" if args.label_until < 1 else ""
        variant += f"_seg{args.segment}" if args.segment != 50 else ""
        variant += "_floor" if args.reward_floor else ""
        variant += "_blind" if args.blind else ""
        name = args.experiment + ("-term" if args.keep_termination else "")
        tag = f"{name}_{args.labels}{variant}_s{args.seed}"
        if args.experiment == "backflip":
            rater = SyntheticRater(reward_fn=lambda seg: backflip_reward(seg.obs, seg.actions), noise=args.noise,
                                   rng=args.seed)
        elif args.blind:  # Hopper's observation 5 is the torso's forward speed (what reward_forward pays)
            rater = SyntheticRater(reward_fn=lambda seg: seg.obs[:, 5], noise=args.noise, rng=args.seed)
        else:
            rater = SyntheticRater(noise=args.noise, rng=args.seed)
        cfg = PreferenceRLConfig(total_labels=args.labels, segment_length=args.segment, ensemble_size=args.ensemble,
                                 query_method=args.query, labelling_fraction=args.label_until,
                                 reward_floor=args.reward_floor, seed=args.seed)
        policy, ensemble, hist = ppo_from_preferences("Hopper-v5", ppo_cfg, rater, cfg, log_every=args.log_every,
                                                      env_kwargs=env_kwargs)
        ds = hist.pop("dataset")
        extra = {"labels": {k: hist[k] for k in ("label_step", "labels", "rm_accuracy", "agreement", "label_seconds",
                                                 "reward_offset") if k in hist},
                 "rlhp_config": hist.pop("rlhp_config"), "answers": {"trained_on": len(ds), "cant_tell": len(ds.skipped),
                                                                      "mu": ds.mu}}
    wall = time.perf_counter() - t0
    ev = _evaluate(policy, eval_kwargs, args.eval_episodes)
    steps = hist["global_step"][-1]
    # the true return as the standard Hopper-v5 counts it (up to the first fall), comparable with Chapter 10's agents
    true = hist["episode_return"] if args.experiment.startswith("backflip") else hist["standard_episode_return"]
    late = [r for s, r in zip(hist["episode_step"], true) if s > steps - steps // 20]
    result = {
        "experiment": args.experiment, "tag": tag, "seed": args.seed, "steps": steps, "train_seconds": wall,
        "ppo_config": asdict(replace(ppo_cfg)), "env_kwargs": env_kwargs, "eval_env_kwargs": eval_kwargs,
        "curve": {"episode_step": hist["episode_step"], "true_return": true,
                  "return_without_termination": hist["episode_return"], "model_return": hist["model_episode_return"]},
        "final_true_return": float(np.mean(late)) if late else None, "eval": ev, **extra,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU core(s), torch {torch.__version__}, 1 thread",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python recipes/preference_agents.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    assets = Path(args.assets)
    assets.mkdir(parents=True, exist_ok=True)
    atomic_write_text(assets / f"rlhp_{tag}.json", json.dumps(result, indent=1) + "\n")
    out = assets / f"rlhp_{tag}.safetensors"
    export_policy(policy, out, extra={"tag": tag, "env_kwargs": env_kwargs})
    manifest_add(out, result["command"])
    if args.video:  # the agent at work, on the task it trained on (the backflip Hopper never stops early)
        video = out.with_suffix(".mp4")
        from lmlib.rl.ppo import record_video  # noqa: PLC0415
        record_video(policy, "Hopper-v5", video, seed=0, max_steps=args.video_steps, render_every=2,
                     env_kwargs=env_kwargs)
        manifest_add(video, result["command"])
    print(f"[{tag}] {steps:,} steps in {wall / 60:.1f} min; true return, last 5%: {result['final_true_return']}; "
          f"eval true return {ev['mean_true_return']:.0f}, backflips {ev['mean_backflips']:.1f}", flush=True)
    return result


if __name__ == "__main__":
    main()

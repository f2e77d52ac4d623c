"""Train the PPO agents that ship with the book (Chapter 10), one command per agent and seed.

    .venv/bin/python recipes/ppo_agents.py hopper --seed 1            # 1M steps, ~25 min on one core
    .venv/bin/python recipes/ppo_agents.py hopper --seed 2 --no-ship  # another seed: results only
    .venv/bin/python recipes/ppo_agents.py halfcheetah                # 1M steps
    .venv/bin/python recipes/ppo_agents.py breakout                   # 400k steps (1.6M frames), ~1 h on 2 cores
    .venv/bin/python recipes/ppo_agents.py cartpole                   # 100k steps, ~1 min (no video)
    .venv/bin/python recipes/ppo_agents.py hopper-vpg                 # vanilla policy gradient, same steps
    .venv/bin/python recipes/ppo_agents.py hopper --steps 20480 --work /tmp/w --assets /tmp/a   # a smoke test

Each agent is a preset of :class:`lmlib.rl.ppo.PPOConfig` (see :data:`AGENTS`). Training
checkpoints every few iterations to ``runs/ppo/<agent>_s<seed>.safetensors`` and resumes
from there after an interruption (``--fresh`` starts over). At the end the recipe

* evaluates the final policy (10 episodes; deterministic for MuJoCo and CartPole, sampled for
  Atari, where the greedy policy can wait forever instead of pressing FIRE),
* writes ``lmlib/assets/ppo_<agent>_s<seed>.json``: the learning curve (every finished episode's
  true return and the step it ended at), per-iteration diagnostics, the evaluation, wall time,
  steps per second, machine, load and this command,
* and, unless ``--no-ship``, exports the policy (weights, config, observation normaliser; no
  optimizer) to ``lmlib/assets/ppo_<agent>.safetensors``, records one episode of it as
  ``lmlib/assets/ppo_<agent>.mp4`` (seed 0; MuJoCo needs ``MUJOCO_GL=egl``, which the recipe
  sets), and records both SHA-256 digests in ``lmlib/assets/MANIFEST.json``, which
  :func:`lmlib.assets.load_agent` and the chapter check. ``--video-only`` re-records the
  video of the shipped agent without training.

``hopper-vpg`` is the comparison of Chapter 10: the same trainer and settings, but one gradient
step on the whole batch per iteration (1 epoch, 1 minibatch), which makes the clipped objective
the plain policy-gradient objective: the ratio is exactly 1 where the gradient is taken.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering, before mujoco is imported

from lmlib._io import atomic_write_text  # noqa: E402 (after MUJOCO_GL)
from lmlib.assets import manifest_add  # noqa: E402 (after MUJOCO_GL)
from lmlib.rl.ppo import PPOConfig, evaluate, export_policy, load_ppo, ppo, record_video  # noqa: E402 (after MUJOCO_GL)

#: agent -> (max_steps, render_every) of its video
VIDEO = {"hopper": (1000, 2), "halfcheetah": (1000, 2), "hopper-vpg": (1000, 2),
         "breakout": (2000, 1)}

#: name -> (config, deterministic evaluation?)
AGENTS: dict[str, tuple[PPOConfig, bool]] = {
    "cartpole": (PPOConfig.cartpole(), True),
    "hopper": (PPOConfig.mujoco("Hopper-v5"), True),
    "halfcheetah": (PPOConfig.mujoco("HalfCheetah-v5"), True),
    "hopper-vpg": (PPOConfig.mujoco("Hopper-v5", update_epochs=1, num_minibatches=1), True),
    "breakout": (PPOConfig.atari("BreakoutNoFrameskip-v4", total_timesteps=400_000), False),
}

ITER_KEYS = ("global_step", "lr", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac",
             "explained_variance", "epochs", "sps")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("agent", choices=sorted(AGENTS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="total environment steps (default: the preset's)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "ppo"), help="folder of the resumable checkpoints")
    ap.add_argument("--assets", default=str(ROOT / "lmlib" / "assets"), help="where results and agents go")
    ap.add_argument("--no-ship", action="store_true", help="write the results JSON only, not the agent")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--video-only", action="store_true", help="only re-record the shipped agent's video")
    args = ap.parse_args(argv)
    if args.video_only:
        return _ship_video(args.agent, Path(args.assets), AGENTS[args.agent][1])

    cfg, deterministic = AGENTS[args.agent]
    cfg = replace(cfg, seed=args.seed, torch_threads=args.threads)
    if args.steps is not None:
        cfg = replace(cfg, total_timesteps=args.steps)
    name = f"{args.agent}_s{args.seed}"
    work, assets = Path(args.work), Path(args.assets)
    ckpt = work / f"{name}.safetensors"
    if args.fresh:
        ckpt.unlink(missing_ok=True)
    print(f"[{name}] {cfg.env_id}, {cfg.total_timesteps:,} steps, checkpoint {ckpt}", flush=True)

    t0 = time.perf_counter()
    policy, hist = ppo(None, cfg, checkpoint_path=ckpt, save_every=10, resume=True, log_every=args.log_every)
    train_wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    returns = evaluate(policy, cfg.env_id, episodes=args.eval_episodes, seed=10_000, deterministic=deterministic)
    eval_seconds = time.perf_counter() - t1
    steps = hist["global_step"][-1]
    ep_steps, ep_returns = hist["episode_step"], hist["episode_return"]
    last = [r for s, r in zip(ep_steps, ep_returns) if s > steps - max(cfg.batch_size, steps // 20)]
    result = {
        "agent": args.agent, "seed": args.seed, "env_id": cfg.env_id, "config": asdict(cfg),
        "steps": steps, "train_seconds": hist["seconds"], "this_run_wall_seconds": train_wall,
        "mean_sps": steps / hist["seconds"],
        "curve": {"episode_step": ep_steps, "episode_return": ep_returns},
        "iterations": {k: hist[k] for k in ITER_KEYS},
        "final_train_return": float(np.mean(last)) if last else None,
        "eval": {"returns": returns.tolist(), "mean": float(returns.mean()), "std": float(returns.std()),
                 "deterministic": deterministic, "seconds": eval_seconds, "first_seed": 10_000},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU core(s), torch {torch.__version__}, "
                   f"{cfg.torch_threads} thread(s)",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python recipes/ppo_agents.py " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    assets.mkdir(parents=True, exist_ok=True)
    atomic_write_text(assets / f"ppo_{name}.json", json.dumps(result, indent=1) + "\n")
    print(f"[{name}] {steps:,} steps in {hist['seconds']:.0f} s ({result['mean_sps']:.0f} steps/s); "
          f"last-5% train return {result['final_train_return']}; eval {returns.mean():.1f} +/- {returns.std():.1f}",
          flush=True)
    if not args.no_ship:
        out = assets / f"ppo_{args.agent}.safetensors"
        digest = export_policy(policy, out, extra={"seed": args.seed, "steps": steps, "eval_mean": result["eval"]["mean"],
                                                   "results": f"ppo_{name}.json"})
        manifest_add(out, f"python recipes/ppo_agents.py {args.agent} --seed {args.seed}")
        print(f"[{name}] shipped {out} ({out.stat().st_size:,} bytes, sha256 {digest[:12]}...)", flush=True)
        if args.agent in VIDEO:  # CartPole renders with pygame, which the book does not install
            _ship_video(args.agent, assets, deterministic)
    return result


def _ship_video(agent: str, assets: Path, deterministic: bool) -> dict:
    """Record one episode (seed 0) of the shipped agent as ``ppo_<agent>.mp4`` and list it in the manifest."""
    policy = load_ppo(assets / f"ppo_{agent}.safetensors")
    max_steps, every = VIDEO[agent]
    t0 = time.perf_counter()
    info = record_video(policy, policy.config.env_id, assets / f"ppo_{agent}.mp4", seed=0, max_steps=max_steps,
                        render_every=every, deterministic=deterministic)
    manifest_add(assets / f"ppo_{agent}.mp4", f"python recipes/ppo_agents.py {agent} --video-only")
    print(f"[{agent}] video {info['path']}: {info['steps']} steps, return {info['return']:.1f}, "
          f"{info['frames']} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    return info


if __name__ == "__main__":
    main()

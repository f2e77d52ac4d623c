"""How fast does the book's PPO (lmlib.rl.ppo) train on a CPU, against references run in the same process?

(1) **CartPole-v1, 100k environment steps**: :func:`lmlib.rl.ppo.ppo` with
    ``PPOConfig.cartpole()`` against Stable-Baselines3's PPO with rl-zoo's tuned
    CartPole-v1 hyperparameters (n_envs 8, n_steps 32, batch 256, gae_lambda 0.8,
    gamma 0.98, n_epochs 20, ent_coef 0, learning rate linear from 1e-3, clip range
    linear from 0.2; the MlpPolicy's 64-64 tanh actor and critic), which
    ``PPOConfig.cartpole()`` copies, so both run the same algorithm on the same budget.
    Reported: wall time (environment creation to the end of training), the mean return
    of the last 20 training episodes, and a deterministic evaluation (10 episodes).
    SB3 runs on device "cpu" with ``--ref-threads`` torch threads (default 1: with PyTorch's
    default of 2 threads on this shared 2-core machine, OpenMP stalls made SB3 10x slower,
    which would flatter us; ``--ref-threads 0`` keeps PyTorch's default).
    Goal: mean return >= 475 and our time <= 0.7x SB3's.

(2) **Hopper-v5 throughput** with the standard MuJoCo settings (1 env, 2048 steps per
    rollout, 10 epochs of 32 minibatches, observation and reward normalisation, clipped
    actions): ``PPOConfig.mujoco()`` against a baseline equivalent to CleanRL's
    ``ppo_continuous_action.py`` (written for this benchmark, not copied): the same
    computation, done the way CleanRL does it: gymnasium's per-environment wrappers
    (ClipAction, NormalizeObservation, a clipping TransformObservation, NormalizeReward,
    a clipping TransformReward), ``torch.no_grad`` rollouts, ``torch.distributions.Normal``
    with argument validation, a Python GAE loop, ``.item()`` per minibatch for the clip
    fraction and the default (per-tensor) Adam; torch threads as for SB3 (``--ref-threads``).
    Reported: environment steps per second over the whole run (creation included).
    Goal: at least the baseline's throughput.

Runs are interleaved (ours, reference, ours, reference... with ``--repeats``) so that
both see the same background load of a shared machine; medians are reported.

Usage::

    .venv/bin/python benchmarks/ppo_speed.py                        # CartPole 100k + Hopper 50k
    .venv/bin/python benchmarks/ppo_speed.py --hopper-steps 100000 --repeats 2
    .venv/bin/python benchmarks/ppo_speed.py --quick                # a smoke run (seconds)
"""
from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn
from torch.distributions import Normal

from lmlib.rl.ppo import PPOConfig, evaluate, ppo

# ----------------------------------------------------------------------------- (1) CartPole


def run_ours_cartpole(steps: int, seed: int) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    policy, hist = ppo("CartPole-v1", PPOConfig.cartpole(total_timesteps=steps, seed=seed))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "last20": float(np.mean(hist["episode_return"][-20:])),
            "eval": float(evaluate(policy, "CartPole-v1", episodes=10, seed=1000).mean())}


def run_sb3_cartpole(steps: int, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    def linear(v: float):
        return lambda progress_remaining: progress_remaining * v

    t0, c0 = time.perf_counter(), time.process_time()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), device="cpu", seed=seed, verbose=0)
    model.learn(total_timesteps=steps)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    last20 = [ep["r"] for ep in list(model.ep_info_buffer)[-20:]]
    eval_env = gym.make("CartPole-v1")
    eval_env.reset(seed=1000)
    mean_eval, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    env.close()
    return {"seconds": seconds, "cpu": cpu, "last20": float(np.mean(last20)), "eval": float(mean_eval)}


# ----------------------------------------------------------------------------- (2) Hopper baseline


class CleanRLAgent(nn.Module):
    """CleanRL's continuous-action Agent: separate 64-64 tanh critic and actor mean, state-independent log std."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()

        def layer(i: int, o: int, std: float = np.sqrt(2)) -> nn.Linear:
            lin = nn.Linear(i, o)
            nn.init.orthogonal_(lin.weight, std)
            nn.init.constant_(lin.bias, 0.0)
            return lin

        self.critic = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(), layer(64, 1, 1.0))
        self.actor_mean = nn.Sequential(layer(obs_dim, 64), nn.Tanh(), layer(64, 64), nn.Tanh(),
                                        layer(64, act_dim, 0.01))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        mean = self.actor_mean(x)
        probs = Normal(mean, torch.exp(self.actor_logstd.expand_as(mean)))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)


def run_cleanrl_style_hopper(steps: int, seed: int, env_id: str = "Hopper-v5") -> dict:
    """CleanRL ppo_continuous_action.py's computation and habits (see the module docstring)."""
    num_envs, num_steps, num_minibatches, update_epochs = 1, 2048, 32, 10
    lr, gamma, lam, clip_coef, ent_coef, vf_coef, max_grad_norm = 3e-4, 0.99, 0.95, 0.2, 0.0, 0.5, 0.5
    batch_size = num_envs * num_steps
    minibatch_size = batch_size // num_minibatches
    num_iterations = steps // batch_size
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    np.random.seed(seed)

    def thunk():
        env = gym.make(env_id)
        env = gym.wrappers.FlattenObservation(env)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.ClipAction(env)
        env = gym.wrappers.NormalizeObservation(env)
        env = gym.wrappers.TransformObservation(env, lambda o: np.clip(o, -10, 10), env.observation_space)
        env = gym.wrappers.NormalizeReward(env, gamma=gamma)
        env = gym.wrappers.TransformReward(env, lambda r: np.clip(r, -10, 10))
        return env

    envs = SyncVectorEnv([thunk for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP)
    obs_dim, act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    agent = CleanRLAgent(obs_dim, act_dim)
    optimizer = torch.optim.Adam(agent.parameters(), lr=lr, eps=1e-5)
    obs = torch.zeros((num_steps, num_envs, obs_dim))
    actions = torch.zeros((num_steps, num_envs, act_dim))
    logprobs, rewards, dones, values = (torch.zeros((num_steps, num_envs)) for _ in range(4))
    global_step, returns_seen = 0, []
    next_obs, _ = envs.reset(seed=seed)
    next_obs, next_done = torch.Tensor(next_obs), torch.zeros(num_envs)
    for iteration in range(1, num_iterations + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * lr
        for step in range(num_steps):
            global_step += num_envs
            obs[step], dones[step] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step], logprobs[step] = action, logprob
            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(next_done)
            if "final_info" in infos and "episode" in infos["final_info"]:
                fi = infos["final_info"]
                returns_seen.extend(fi["episode"]["r"][fi["_episode"]].tolist())
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(num_steps)):
                if t == num_steps - 1:
                    nextnonterminal, nextvalues = 1.0 - next_done, next_value
                else:
                    nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
            returns = advantages + values
        b_obs, b_logprobs, b_actions = obs.reshape(-1, obs_dim), logprobs.reshape(-1), actions.reshape(-1, act_dim)
        b_advantages, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        b_inds, clipfracs = np.arange(batch_size), []
        for epoch in range(update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start:start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > clip_coef).float().mean().item()]
                mb_adv = b_advantages[mb_inds]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
                newvalue = newvalue.view(-1)
                v_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -clip_coef, clip_coef)
                v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb_inds]) ** 2).mean()
                loss = pg_loss - ent_coef * entropy.mean() + v_loss * vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()
        y_pred, y_true = b_values.numpy(), b_returns.numpy()
        _ = approx_kl.item(), np.nan if np.var(y_true) == 0 else 1 - np.var(y_true - y_pred) / np.var(y_true)
    envs.close()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "steps": global_step, "sps": global_step / seconds,
            "last10": float(np.mean(returns_seen[-10:])) if returns_seen else float("nan")}


def run_ours_hopper(steps: int, seed: int, env_id: str = "Hopper-v5") -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    _, hist = ppo(env_id, PPOConfig.mujoco(env_id, total_timesteps=steps, seed=seed))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = hist["global_step"][-1]
    return {"seconds": seconds, "cpu": cpu, "steps": n, "sps": n / seconds,
            "last10": float(np.mean(hist["episode_return"][-10:])) if hist["episode_return"] else float("nan")}


# ----------------------------------------------------------------------------- main


def _with_threads(n: int, fn):
    """Run ``fn()`` with ``n`` torch threads (0: PyTorch's default), then restore the setting."""
    def run():
        old = torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(old)
    return run


def _interleaved(name: str, ours, ref, repeats: int) -> tuple[list[dict], list[dict]]:
    a, b = [], []
    for r in range(repeats):
        for label, fn, out in (("ours", ours, a), (name, ref, b)) if r % 2 == 0 else \
                ((name, ref, b), ("ours", ours, a)):
            res = fn()
            out.append(res)
            print(f"  run {r + 1} {label:>8}: " + ", ".join(f"{k} {v:.4g}" for k, v in res.items()), flush=True)
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cartpole-steps", type=int, default=100_000)
    ap.add_argument("--hopper-steps", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ref-threads", type=int, default=1, help="torch threads of SB3 and the CleanRL baseline "
                    "(0: PyTorch's default); ours always uses 1 (PPOConfig.torch_threads)")
    ap.add_argument("--skip", choices=["cartpole", "hopper"], action="append", default=[])
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4096 CartPole and 4096 Hopper steps")
    args = ap.parse_args()
    if args.quick:
        args.cartpole_steps, args.hopper_steps, args.repeats = 4096, 4096, 1
    import warnings
    warnings.filterwarnings("ignore", message=".*Monitor.*")  # SB3's evaluate_policy on a plain env
    print(f"torch {torch.__version__}, default threads {torch.get_num_threads()}, reference threads "
          f"{args.ref_threads or torch.get_num_threads()}, gymnasium {gym.__version__}")

    if "cartpole" not in args.skip:
        print(f"(1) CartPole-v1, {args.cartpole_steps} steps (rl-zoo hyperparameters)", flush=True)
        a, b = _interleaved("SB3", lambda: run_ours_cartpole(args.cartpole_steps, args.seed),
                            _with_threads(args.ref_threads, lambda: run_sb3_cartpole(args.cartpole_steps, args.seed)),
                            args.repeats)
        ta, tb = statistics.median(r["seconds"] for r in a), statistics.median(r["seconds"] for r in b)
        print(f"  ours: {ta:.1f} s, last-20 return {statistics.median(r['last20'] for r in a):.1f}, "
              f"eval {statistics.median(r['eval'] for r in a):.1f} | SB3: {tb:.1f} s, last-20 return "
              f"{statistics.median(r['last20'] for r in b):.1f}, eval {statistics.median(r['eval'] for r in b):.1f} "
              f"| time ratio ours/SB3 = {ta / tb:.2f} (goal <= 0.70)", flush=True)

    if "hopper" not in args.skip:
        print(f"(2) Hopper-v5 throughput, {args.hopper_steps} steps (MuJoCo settings)", flush=True)
        a, b = _interleaved("CleanRL", lambda: run_ours_hopper(args.hopper_steps, args.seed),
                            _with_threads(args.ref_threads,
                                          lambda: run_cleanrl_style_hopper(args.hopper_steps, args.seed)),
                            args.repeats)
        sa, sb = statistics.median(r["sps"] for r in a), statistics.median(r["sps"] for r in b)
        print(f"  ours: {sa:.0f} steps/s | CleanRL-style baseline: {sb:.0f} steps/s | ratio {sa / sb:.2f} "
              f"(goal >= 1.00)", flush=True)


if __name__ == "__main__":
    main()

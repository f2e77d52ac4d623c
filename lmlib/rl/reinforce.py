"""REINFORCE (Williams 1992) on a gymnasium environment with discrete actions, CleanRL style.

One update:

1. run ``num_envs`` environments until each has finished **one complete
   episode** (steps after an environment's episode ends are masked out);
2. weight each step's ``log pi(a_t | s_t)`` by

   * the episode's discounted return ``G_0`` (vanilla REINFORCE), or
   * the reward-to-go ``G_t = r_t + gamma r_{t+1} + ...`` (``reward_to_go=True``),
   * minus a baseline: the batch mean (``baseline="mean"``) or a learned value
     ``V(s_t)`` (``baseline="value"``, the critic of :class:`~lmlib.rl.policies.CategoricalPolicy`
     fitted to ``G_t`` by least squares),
   * optionally standardised over the batch (``normalize_advantages=True``);

3. one Adam step on :func:`~lmlib.rl.losses.reinforce_loss` (+ the value loss).

:func:`train_reinforce` returns the policy and a history (mean episode return
per update against environment steps, entropy, and optionally an estimate of
the gradient's variance); :func:`gradient_variance` measures the variance of
several estimators on the **same** policy and the **same** batches.

Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from .envs import make_vec_env
from .gae import discounted_returns
from .losses import masked_mean, normalize_advantages, reinforce_loss
from .policies import CategoricalPolicy

__all__ = ["ReinforceConfig", "Batch", "collect_episodes", "advantages", "train_reinforce",
           "gradient_variance", "interpolate_curve"]

BASELINES = (None, "mean", "value")


@dataclass
class ReinforceConfig:
    """Settings of :func:`train_reinforce`.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    env_id: str = "CartPole-v1"
    total_steps: int = 50_000
    """Stop once this many environment steps (inside complete episodes) have been used."""
    num_envs: int = 8
    """Episodes per update (one per environment copy)."""
    lr: float = 1e-2
    """Adam learning rate (policy and value network)."""
    gamma: float = 0.99
    reward_to_go: bool = True
    baseline: str | None = None
    """None, "mean" (batch mean of the weights) or "value" (a learned V(s))."""
    normalize_advantages: bool = False
    hidden: int = 32
    """Width of the two tanh layers of actor and critic."""
    grad_var: bool = False
    """Estimate the policy gradient's variance at every update (costs num_envs extra backward passes)."""
    seed: int = 0


@dataclass
class Batch:
    """Complete episodes in a ``(T, N)`` layout: column ``n`` is episode ``n``, padded with ``mask = 0``.

    ``obs`` ``(T, N, *obs_shape)``, ``actions`` ``(T, N)`` long, ``rewards`` and
    ``mask`` ``(T, N)`` float (``rewards`` are 0 where ``mask`` is 0).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor

    @property
    def steps(self) -> int:
        """Environment steps inside the episodes."""
        return int(self.mask.sum())

    @property
    def episode_returns(self) -> Tensor:
        """``(N,)`` undiscounted return of each episode."""
        return self.rewards.sum(0)


def _check_env(envs: gym.vector.VectorEnv, env_id: str) -> None:
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise ValueError(f"REINFORCE here uses a CategoricalPolicy, which needs a Discrete action space; "
                         f"{env_id} has {space} (for continuous actions use a GaussianPolicy, chapter 10)")
    if not isinstance(envs.single_observation_space, gym.spaces.Box):
        raise ValueError(f"{env_id} has observation space {envs.single_observation_space}; "
                         f"the MLP policy needs a Box of numbers")


@torch.no_grad()
def collect_episodes(envs: gym.vector.VectorEnv, policy: CategoricalPolicy, generator: torch.Generator) -> Batch:
    """Reset ``envs`` and run ``policy`` until every environment has finished one episode.

    Actions are sampled with ``generator``. Raises ``ValueError`` on a non-finite reward.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    N = envs.num_envs
    obs, _ = envs.reset()
    alive = np.ones(N, dtype=bool)
    obs_l, act_l, rew_l, mask_l = [], [], [], []
    while alive.any():
        o = torch.as_tensor(obs, dtype=torch.float32)
        probs = torch.softmax(policy.actor(o.flatten(1)), dim=-1)
        action = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        obs, reward, terminated, truncated, _ = envs.step(action.numpy())
        reward = np.asarray(reward, dtype=np.float64)
        if not np.isfinite(reward).all():
            bad = np.flatnonzero(~np.isfinite(reward)).tolist()
            raise ValueError(f"non-finite reward {reward[bad].tolist()} from env(s) {bad} at step {len(rew_l)}")
        obs_l.append(o)
        act_l.append(action)
        rew_l.append(torch.as_tensor(np.where(alive, reward, 0.0), dtype=torch.float32))
        mask_l.append(torch.as_tensor(alive, dtype=torch.float32))
        alive &= ~(np.asarray(terminated) | np.asarray(truncated))
    return Batch(torch.stack(obs_l), torch.stack(act_l), torch.stack(rew_l), torch.stack(mask_l))


def advantages(
    batch: Batch,
    gamma: float,
    reward_to_go: bool,
    baseline: str | None,
    normalize: bool,
    values: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The weights of ``log pi(a_t | s_t)`` in the REINFORCE loss: ``(advantages, returns)``, both ``(T, N)``.

    ``returns`` is the reward-to-go ``G_t`` (the value target); ``advantages`` is
    ``G_t`` or the episode's ``G_0``, minus the baseline, optionally standardised
    over the masked batch. ``values`` ``(T, N)``: ``V(s_t)``, needed for
    ``baseline="value"``. Padded entries are 0.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    mask = batch.mask
    returns = discounted_returns(batch.rewards, torch.zeros_like(mask), gamma)  # padding has reward 0
    weights = returns if reward_to_go else returns[0].expand_as(returns) * mask
    if baseline == "mean":
        weights = weights - masked_mean(weights, mask)
    elif baseline == "value":
        if values is None:
            raise ValueError('baseline="value" needs values=V(s_t) of shape (T, N)')
        weights = weights - values.detach()
    if normalize:
        weights = normalize_advantages(weights, mask)
    return weights * mask, returns


def _losses(policy: CategoricalPolicy, batch: Batch, cfg: ReinforceConfig) -> dict[str, Tensor]:
    _, logprob, entropy, value = policy.get_action_and_value(batch.obs, batch.actions)
    adv, ret = advantages(batch, cfg.gamma, cfg.reward_to_go, cfg.baseline, cfg.normalize_advantages, value)
    out = {"pg_loss": reinforce_loss(logprob, adv, batch.mask), "entropy": masked_mean(entropy, batch.mask),
           "logprob": logprob, "adv": adv}
    out["v_loss"] = masked_mean((value - ret) ** 2, batch.mask) if cfg.baseline == "value" else torch.zeros(())
    return out


def _per_episode_grad_var(policy: CategoricalPolicy, batch: Batch, logprob: Tensor, adv: Tensor) -> float:
    """Estimated variance (trace of the covariance) of the batch policy gradient, from its N episodes."""
    params = list(policy.actor.parameters())
    N, S = batch.mask.shape[1], batch.mask.sum()
    grads = []
    for n in range(N):
        loss_n = -(logprob[:, n] * adv[:, n].detach() * batch.mask[:, n]).sum() * N / S
        g = torch.autograd.grad(loss_n, params, retain_graph=True)
        grads.append(torch.cat([x.flatten() for x in g]))
    G = torch.stack(grads)  # (N, P): the batch gradient is G.mean(0)
    return float(G.var(dim=0).sum() / N)


def train_reinforce(cfg: ReinforceConfig, policy: CategoricalPolicy | None = None) -> tuple[CategoricalPolicy, dict[str, Any]]:
    """Train a :class:`CategoricalPolicy` with REINFORCE; return ``(policy, history)``.

    ``history`` has one entry per update in ``"env_steps"`` (cumulative environment steps used),
    ``"episode_return"`` (mean undiscounted return of the update's episodes), ``"entropy"``,
    ``"pg_loss"``, ``"v_loss"`` and, with ``cfg.grad_var``, ``"grad_var"`` (estimated trace of the
    covariance of the batch gradient of the actor's parameters); plus ``"config"`` and ``"seconds"``.
    Pass ``policy`` to continue training an existing one.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if cfg.baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {cfg.baseline!r}")
    if cfg.num_envs < 2 and (cfg.normalize_advantages or cfg.grad_var):
        raise ValueError("normalize_advantages and grad_var need num_envs >= 2 episodes per update")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    envs = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed)
    try:
        _check_env(envs, cfg.env_id)
        obs_shape = envs.single_observation_space.shape
        if policy is None:
            policy = CategoricalPolicy(obs_shape, int(envs.single_action_space.n), hidden=cfg.hidden)
        opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        hist: dict[str, Any] = {k: [] for k in ("env_steps", "episode_return", "entropy", "pg_loss", "v_loss",
                                                "grad_var")}
        steps, t0 = 0, time.perf_counter()
        while steps < cfg.total_steps:
            batch = collect_episodes(envs, policy, g)
            steps += batch.steps
            out = _losses(policy, batch, cfg)
            if cfg.grad_var:
                hist["grad_var"].append(_per_episode_grad_var(policy, batch, out["logprob"], out["adv"]))
            opt.zero_grad()
            (out["pg_loss"] + out["v_loss"]).backward()
            opt.step()
            hist["env_steps"].append(steps)
            hist["episode_return"].append(float(batch.episode_returns.mean()))
            for k in ("entropy", "pg_loss", "v_loss"):
                hist[k].append(float(out[k].detach()))
        hist["seconds"] = time.perf_counter() - t0
        hist["config"] = asdict(cfg)
    finally:
        envs.close()
    return policy, hist


def gradient_variance(
    policy: CategoricalPolicy,
    variants: dict[str, dict[str, Any]],
    env_id: str = "CartPole-v1",
    batches: int = 20,
    episodes_per_batch: int = 8,
    gamma: float = 0.99,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Measure the variance of several policy-gradient estimators on one fixed policy.

    ``batches`` independent batches of ``episodes_per_batch`` episodes are drawn
    once; every variant (``{"name": {"reward_to_go": ..., "baseline": ...,
    "normalize_advantages": ...}}``) computes its batch gradient of the actor's
    parameters on the **same** batches (the value baseline uses ``policy``'s critic).
    For each variant it returns ``"trace_var"`` (sum over parameters of the variance across
    batches), ``"mean_norm2"`` (squared norm of the mean gradient), ``"noise_to_signal"`` =
    trace_var / mean_norm2 (noisy itself when the batches are few: the mean gradient of a few
    noisy batches is mostly noise), and ``"mean_cosine"``, the average cosine similarity between
    the gradients of two different batches: how much two batches agree on the direction to go.
    Both ratios ignore the gradient's scale (normalising the advantages rescales each batch's
    gradient by a positive number, which the cosine does not see).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if batches < 2:
        raise ValueError(f"need at least 2 batches to estimate a variance, got {batches}")
    g = torch.Generator().manual_seed(seed)
    envs = make_vec_env(env_id, episodes_per_batch, seed)
    try:
        _check_env(envs, env_id)
        data = [collect_episodes(envs, policy, g) for _ in range(batches)]
    finally:
        envs.close()
    params = list(policy.actor.parameters())
    result = {}
    for name, opts in variants.items():
        cfg = replace(ReinforceConfig(), gamma=gamma, **opts)
        grads = []
        for batch in data:
            loss = _losses(policy, batch, cfg)["pg_loss"]
            grads.append(torch.cat([x.flatten() for x in torch.autograd.grad(loss, params)]))
        G = torch.stack(grads)  # (batches, P)
        trace_var, mean_norm2 = float(G.var(dim=0).sum()), float(G.mean(0).pow(2).sum())
        unit = G / G.norm(dim=1, keepdim=True).clamp_min(1e-30)
        cos = unit @ unit.T  # (batches, batches)
        mean_cosine = float((cos.sum() - cos.diagonal().sum()) / (batches * (batches - 1)))
        result[name] = {"trace_var": trace_var, "mean_norm2": mean_norm2,
                        "noise_to_signal": trace_var / max(mean_norm2, 1e-30), "mean_cosine": mean_cosine}
    return result


def interpolate_curve(history: dict[str, Any], grid: np.ndarray, key: str = "episode_return") -> np.ndarray:
    """``history[key]`` linearly interpolated at the environment steps ``grid``: shape ``(len(grid),)``.

    Lets curves of several seeds (whose updates fall at different step counts) be averaged.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    x, y = np.asarray(history["env_steps"], float), np.asarray(history[key], float)
    if len(x) == 0:
        raise ValueError("the history is empty (no update was made)")
    return np.interp(np.asarray(grid, float), x, y)

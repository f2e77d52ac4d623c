"""Karpathy's "Pong from pixels" (2016) in PyTorch, on the real Atari Pong of the Arcade Learning Environment.

* :func:`prepro`: a 210x160x3 RGB frame -> 6400 numbers in {0, 1}: crop the
  scoreboard and borders, keep every second pixel of the red channel (80x80),
  erase the two background colours, set paddles and ball to 1.
* :func:`difference_frame`: the policy sees ``prepro(now) - prepro(before)``,
  so a single input shows where the ball is *and* where it is going.
* :class:`PongPolicy`: 6400 -> 200 ReLU -> 1 sigmoid, the probability of UP.
* :func:`rally_returns`: every action of a rally gets that rally's final
  reward (+1 won, -1 lost), discounted by how long before the point it was taken;
  :func:`episode_loss` standardises them within the episode and forms the
  REINFORCE loss (summed over steps, as Karpathy does).
* :func:`train_pong`: play episodes, accumulate the gradient, one RMSProp step
  every ``batch_size`` episodes, atomic checkpoints to stop and resume.

Actions: 2 (UP, ALE's "RIGHT") and 3 (DOWN, "LEFT"), as in Karpathy's code.

Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import load_checkpoint, load_into, save_checkpoint
from .gae import discounted_returns
from .losses import reinforce_loss

__all__ = ["UP", "DOWN", "D", "prepro", "difference_frame", "PongPolicy", "rally_returns", "episode_loss",
           "make_pong_env", "play_episode", "PongConfig", "train_pong"]

UP, DOWN = 2, 3
"""ALE action ids: 2 moves the agent's (right-hand, green) paddle up, 3 moves it down."""
D = 80 * 80
"""Input size of the policy: one 80x80 frame, flattened."""
BACKGROUND = (144, 109)
"""Red-channel values of Pong's two background colours (erased by :func:`prepro`)."""


def prepro(frame: np.ndarray) -> np.ndarray:
    """A Pong frame ``(210, 160, 3)`` uint8 -> ``(6400,)`` float32 of 0s and 1s (Karpathy's ``prepro``).

    Rows 35..194 (the playing field, without the score) are kept, every second
    row and column of the red channel (80x80), the background colours
    (red 144 and 109) become 0 and everything else (paddles, ball) 1.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    frame = np.asarray(frame)
    if frame.shape != (210, 160, 3):
        raise ValueError(f"prepro expects one RGB Atari frame of shape (210, 160, 3), got {frame.shape}")
    if frame.dtype != np.uint8:
        raise TypeError(f"prepro expects uint8 pixels 0..255, got dtype {frame.dtype}")
    img = frame[35:195:2, ::2, 0]  # (80, 80) crop, downsample by 2, red channel
    return np.isin(img, BACKGROUND, invert=True).astype(np.float32).ravel()


def difference_frame(cur: np.ndarray, prev: np.ndarray | None) -> np.ndarray:
    """``cur - prev`` for two :func:`prepro` outputs ``(6400,)``; zeros when ``prev`` is None (first step).

    Values are in {-1, 0, 1}: +1 where something arrived, -1 where it left.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    cur = np.asarray(cur, dtype=np.float32)
    if cur.shape != (D,):
        raise ValueError(f"difference_frame expects preprocessed frames of shape ({D},), got {cur.shape}")
    if prev is None:
        return np.zeros(D, dtype=np.float32)
    prev = np.asarray(prev, dtype=np.float32)
    if prev.shape != (D,):
        raise ValueError(f"difference_frame expects preprocessed frames of shape ({D},), got prev {prev.shape}")
    return cur - prev


class PongPolicy(nn.Module):
    """Karpathy's policy network: ``p(UP | x) = sigmoid(W2 relu(W1 x))``, no biases.

    ``x``: ``(B, 6400)`` difference frames -> :meth:`logit` ``(B,)``, :meth:`forward` ``(B,)``
    probabilities of UP. Weights start at Gaussian noise scaled by ``1/sqrt(fan_in)``
    ("Xavier" initialisation, as in ``pg-pong.py``).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    def __init__(self, hidden: int = 200, d_in: int = D) -> None:
        super().__init__()
        self.d_in = d_in
        self.W1 = nn.Linear(d_in, hidden, bias=False)
        self.W2 = nn.Linear(hidden, 1, bias=False)
        with torch.no_grad():
            self.W1.weight.normal_(0.0, 1.0 / math.sqrt(d_in))
            self.W2.weight.normal_(0.0, 1.0 / math.sqrt(hidden))

    def logit(self, x: Tensor) -> Tensor:
        """``(B, 6400) -> (B,)`` the log-odds of UP."""
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"PongPolicy expects inputs of shape (batch, {self.d_in}), got {tuple(x.shape)}")
        return self.W2(F.relu(self.W1(x.float()))).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 6400) -> (B,)`` the probability of UP."""
        return torch.sigmoid(self.logit(x))


def rally_returns(rewards: Tensor | np.ndarray, gamma: float = 0.99) -> Tensor:
    """Karpathy's ``discount_rewards``: ``G_t = r_t + gamma G_{t+1}``, restarted at every point scored.

    ``rewards`` ``(T,)``: 0 while a rally goes on, +1 or -1 at the step that ends it.
    Each step gets its rally's outcome discounted by the number of steps to the
    point: ``gamma^k * (+-1)``. Steps after the last point get 0. Returns ``(T,)`` float.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    r = torch.as_tensor(np.asarray(rewards) if not isinstance(rewards, Tensor) else rewards).float()
    if r.ndim != 1:
        raise ValueError(f"rewards must be one episode of shape (T,), got {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise ValueError(f"non-finite reward at step(s) {(~torch.isfinite(r)).nonzero().flatten().tolist()[:5]}")
    ended = (r != 0).float()  # step t ended a rally -> step t + 1 starts a new "episode"
    dones = torch.cat([torch.zeros(1), ended[:-1]])
    return discounted_returns(r, dones, gamma)


def episode_loss(policy: PongPolicy, xs: Tensor, ups: Tensor, rewards: Tensor, gamma: float = 0.99) -> Tensor:
    """The episode-labelled REINFORCE loss of one episode (to minimise), summed over its steps.

    ``xs`` ``(T, 6400)`` the difference frames the policy saw, ``ups`` ``(T,)`` 1 where it
    pressed UP and 0 for DOWN, ``rewards`` ``(T,)``. Each step's ``log pi(a_t | x_t)`` is
    weighted by its standardised :func:`rally_returns`: a won rally makes its actions more
    probable, a lost one less.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    T = xs.shape[0]
    if ups.shape != (T,) or torch.as_tensor(rewards).shape != (T,):
        raise ValueError(f"xs {tuple(xs.shape)}, ups {tuple(ups.shape)} and rewards "
                         f"{tuple(torch.as_tensor(rewards).shape)} must describe the same T steps")
    adv = rally_returns(rewards, gamma)
    adv = adv - adv.mean()
    if T > 1 and adv.std() > 0:
        adv = adv / adv.std()
    logp = -F.binary_cross_entropy_with_logits(policy.logit(xs), ups.float(), reduction="none")  # log pi(a_t|x_t)
    return reinforce_loss(logp, adv) * T  # Karpathy sums over steps


def make_pong_env(env_id: str = "ALE/Pong-v5", **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` after registering the Atari environments of ``ale_py``.

    ALE/Pong-v5 repeats each action for 4 frames and, with probability 0.25, repeats
    the previous action instead ("sticky actions"), so play is not deterministic.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    import ale_py

    gym.register_envs(ale_py)
    return gym.make(env_id, **kwargs)


@torch.no_grad()
def play_episode(env: gym.Env, policy: PongPolicy, rng: np.random.Generator, seed: int | None = None
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Play one episode with ``policy``; return ``(xs (T, 6400) int8, ups (T,) long, rewards (T,) float)``.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    frame, _ = env.reset(seed=seed)
    prev, xs, ups, rewards = None, [], [], []
    done = False
    while not done:
        cur = prepro(frame)
        x = difference_frame(cur, prev)
        prev = cur
        p_up = float(policy(torch.from_numpy(x).unsqueeze(0)))
        up = rng.random() < p_up
        frame, reward, terminated, truncated, _ = env.step(UP if up else DOWN)
        if not math.isfinite(reward):
            raise ValueError(f"non-finite reward {reward} at step {len(rewards)}")
        xs.append(x.astype(np.int8))
        ups.append(int(up))
        rewards.append(float(reward))
        done = terminated or truncated
    return torch.from_numpy(np.stack(xs)), torch.tensor(ups), torch.tensor(rewards)


@dataclass
class PongConfig:
    """Settings of :func:`train_pong` (Karpathy's values by default).

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """

    hidden: int = 200
    batch_size: int = 10
    """Episodes per RMSProp step."""
    lr: float = 1e-4
    decay_rate: float = 0.99
    """RMSProp's moving-average factor of the squared gradient."""
    gamma: float = 0.99
    max_episode_steps: int | None = None
    """Cut episodes after this many agent steps (None: play to 21 points)."""
    env_id: str = "ALE/Pong-v5"


def train_pong(
    episodes: int | None = None,
    env_steps: int | None = None,
    seed: int = 0,
    cfg: PongConfig | None = None,
    ckpt_path: str | os.PathLike | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> tuple[PongPolicy, dict[str, Any]]:
    """Train :class:`PongPolicy` on Pong until ``episodes`` episodes or ``env_steps`` agent steps in total.

    Give ``episodes`` or ``env_steps`` (or both: whichever comes first); the totals count the
    episodes and steps of a resumed checkpoint too. Episodes after the last update (an incomplete
    batch) are played but not learned from. With
    ``ckpt_path``, a checkpoint (weights, RMSProp state, history) is written atomically after every
    update, and if the file exists training **resumes** from it, counting towards the same totals.
    Episode ``k`` is played with env seed ``seed * 1_000_003 + k`` and its own action RNG, so a
    resumed run plays the same episodes as an uninterrupted one. ``callback(history)`` runs after
    each update; returning True stops training (a checkpoint is already saved).

    ``history``: per episode ``"episode"``, ``"env_steps"`` (cumulative), ``"episode_return"``
    (points won minus points lost, -21..21), ``"running_reward"`` (Karpathy's 0.99 moving
    average); ``"seconds"`` and ``"steps_per_second"`` of this call; ``"config"``.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients" (chapters/09_policy_gradients.ipynb).
    """
    if episodes is None and env_steps is None:
        raise ValueError("give episodes=... or env_steps=... (how long to train)")
    cfg = cfg or PongConfig()
    torch.manual_seed(seed)
    policy = PongPolicy(cfg.hidden)
    opt = torch.optim.RMSprop(policy.parameters(), lr=cfg.lr, alpha=cfg.decay_rate, eps=1e-5)
    hist: dict[str, Any] = {"episode": [], "env_steps": [], "episode_return": [], "running_reward": []}
    if ckpt_path is not None and Path(ckpt_path).exists():
        ck = load_checkpoint(ckpt_path)
        if ck.meta["config"] != asdict(cfg) or ck.meta["seed"] != seed:
            raise ValueError(f"checkpoint {ckpt_path} was written with seed {ck.meta['seed']} and config "
                             f"{ck.meta['config']}, not seed {seed} and {asdict(cfg)}; delete it or pass those")
        load_into(policy, ck)
        opt.load_state_dict(ck.optimizer)
        hist = {k: list(ck.meta["history"][k]) for k in hist}
    env = make_pong_env(cfg.env_id, **({} if cfg.max_episode_steps is None
                                       else {"max_episode_steps": cfg.max_episode_steps}))
    t0, steps0 = time.perf_counter(), (hist["env_steps"][-1] if hist["env_steps"] else 0)
    opt.zero_grad()

    def done() -> bool:
        ep, st = len(hist["episode"]), (hist["env_steps"][-1] if hist["env_steps"] else 0)
        return (episodes is not None and ep >= episodes) or (env_steps is not None and st >= env_steps)

    try:
        while not done():
            k = len(hist["episode"])
            xs, ups, rewards = play_episode(env, policy, np.random.default_rng([seed, k]), seed * 1_000_003 + k)
            episode_loss(policy, xs, ups, rewards, cfg.gamma).backward()  # gradients add up over the batch
            ret = float(rewards.sum())
            prev_running = hist["running_reward"][-1] if hist["running_reward"] else ret
            hist["episode"].append(k)
            hist["env_steps"].append((hist["env_steps"][-1] if hist["env_steps"] else 0) + len(rewards))
            hist["episode_return"].append(ret)
            hist["running_reward"].append(0.99 * prev_running + 0.01 * ret)
            if (k + 1) % cfg.batch_size == 0:
                opt.step()
                opt.zero_grad()
                if ckpt_path is not None:
                    save_checkpoint(ckpt_path, policy, optimizer_state=opt.state_dict(),
                                    meta={"history": hist, "config": asdict(cfg), "seed": seed})
                if callback is not None and callback(hist):
                    break
    finally:
        env.close()
    seconds = time.perf_counter() - t0
    steps = (hist["env_steps"][-1] if hist["env_steps"] else 0) - steps0
    return policy, {**hist, "seconds": seconds, "steps_per_second": steps / max(seconds, 1e-9),
                    "config": asdict(cfg)}

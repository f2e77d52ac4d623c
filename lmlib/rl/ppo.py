"""Proximal Policy Optimization (Schulman et al. 2017) for gymnasium environments, in one readable loop.

The trainer follows CleanRL's ``ppo.py``, ``ppo_continuous_action.py`` and
``ppo_atari.py`` (Huang et al., "The 37 Implementation Details of PPO", 2022)
and reuses the book's tested pieces: :func:`lmlib.rl.gae.gae` for advantages,
:func:`lmlib.rl.losses.clipped_surrogate_loss`, :func:`~lmlib.rl.losses.value_loss`
and :func:`~lmlib.rl.losses.entropy_bonus` for the loss, and the actor-critics
of :mod:`lmlib.rl.policies`. One iteration::

    rollout:  num_steps x num_envs transitions with the current policy (no gradients)
    GAE:      advantages and lambda-returns, bootstrapped with V(next_obs)
    update:   update_epochs passes over the batch in num_minibatches shuffled minibatches,
              loss = pg_loss - ent_coef * entropy + vf_coef * v_loss, gradients clipped to max_grad_norm

Three settings, each a preset of :class:`PPOConfig`:

* ``PPOConfig.cartpole()``: discrete actions, :class:`~lmlib.rl.policies.CategoricalPolicy`
  (rl-zoo's tuned CartPole settings, so it solves CartPole-v1 in 100k steps);
* ``PPOConfig.mujoco()``: continuous actions (Hopper, HalfCheetah),
  :class:`~lmlib.rl.policies.GaussianPolicy`, observation and reward normalisation,
  actions clipped to the action space (the policy's unclipped sample is what is trained on);
* ``PPOConfig.atari()``: :class:`~lmlib.rl.policies.ConvPolicy` on 4 stacked 84x84
  grey frames with the standard Atari wrappers (no-op reset, frame skip 4 with max
  pooling, episodic life, fire reset, reward clipping).

Speed on a small CPU (the MLP agents are overhead-bound, not compute-bound):
one torch thread, ``torch.inference_mode`` for the rollout, numpy for everything
on the environment side (normalisation is done once for the whole ``(N, ...)``
batch instead of by a chain of per-environment wrappers), rollout storage
preallocated once, minibatch indices from one permutation per epoch, diagnostics
kept as tensors and read once per iteration, and the distributions' argument
validation switched off inside the trainer. ``benchmarks/ppo_speed.py`` measures it.

Done convention (see :mod:`lmlib.rl.gae`): the vector env auto-resets in
*same-step* mode, so ``dones[t] = 1`` means ``obs[t]`` starts a new episode.
Episodes cut by a time limit (``truncated``) are bootstrapped as in
Stable-Baselines3: ``r += gamma * V(final_obs)`` (``cfg.bootstrap_truncated``;
CleanRL treats them as terminal).

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
the same losses train a language model in Part III.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from .envs import evaluate as play_episodes
from .gae import gae
from .losses import clipped_surrogate_loss, entropy_bonus, explained_variance, value_loss
from .policies import CategoricalPolicy, ConvPolicy, GaussianPolicy
from .wrappers import (ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, ObsNormalizer, RewardModelWrapper,
                       RewardNormalizer)

__all__ = ["PPOConfig", "ppo", "make_env", "is_atari", "make_policy", "act", "obs_for_policy", "as_policy_fn",
           "evaluate", "record_video", "load_ppo", "export_policy", "episode_curve", "fast_mujoco_rendering"]

EnvSpec = str | Callable[[], gym.Env]


@dataclass
class PPOConfig:
    """Hyperparameters of :func:`ppo`; names as in CleanRL. Use a preset and ``replace``/keywords to change it.

    ``total_timesteps`` counts environment steps over all ``num_envs``; one
    iteration collects ``batch_size = num_envs * num_steps`` of them and makes
    ``update_epochs * num_minibatches`` gradient steps. ``anneal_lr`` (and
    ``anneal_clip``) decay linearly to 0 over the run. ``clip_vloss`` clips the
    value update to ``clip_coef`` (OpenAI baselines). ``target_kl`` stops the
    epochs of an iteration early once the approximate KL of a minibatch exceeds it.
    ``env_kind``: ``"atari"`` adds the Atari wrappers (``"auto"`` does so for ALE
    ids); ``"classic"`` and ``"mujoco"`` name the presets (the policy always
    follows the spaces: :func:`make_policy`).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    env_id: str = "CartPole-v1"
    total_timesteps: int = 100_000
    num_envs: int = 4
    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    learning_rate: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    anneal_clip: bool = False
    clip_vloss: bool = True
    norm_adv: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    bootstrap_truncated: bool = True
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    hidden: int = 64
    env_kind: str = "auto"
    seed: int = 1
    torch_threads: int | None = 1

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_iterations(self) -> int:
        return self.total_timesteps // self.batch_size

    @classmethod
    def cartpole(cls, **overrides: Any) -> "PPOConfig":
        """rl-zoo's CartPole-v1 settings (the ones Stable-Baselines3 is benchmarked with): 8 envs x 32 steps,
        20 epochs of one 256-transition minibatch, gamma 0.98, lambda 0.8, lr 1e-3 and clip 0.2 both annealed,
        no entropy bonus, no value clipping."""
        base = cls(env_id="CartPole-v1", total_timesteps=100_000, num_envs=8, num_steps=32, num_minibatches=1,
                   update_epochs=20, learning_rate=1e-3, anneal_lr=True, gamma=0.98, gae_lambda=0.8,
                   clip_coef=0.2, anneal_clip=True, clip_vloss=False, ent_coef=0.0, env_kind="classic")
        return replace(base, **overrides)

    @classmethod
    def mujoco(cls, env_id: str = "Hopper-v5", **overrides: Any) -> "PPOConfig":
        """The standard MuJoCo settings (PPO paper, CleanRL ``ppo_continuous_action.py``): 1 env x 2048 steps,
        10 epochs of 32 minibatches, lr 3e-4 annealed, gamma 0.99, lambda 0.95, clip 0.2, no entropy bonus,
        observation and reward normalisation, 1M steps."""
        base = cls(env_id=env_id, total_timesteps=1_000_000, num_envs=1, num_steps=2048, num_minibatches=32,
                   update_epochs=10, learning_rate=3e-4, gamma=0.99, gae_lambda=0.95, clip_coef=0.2,
                   ent_coef=0.0, normalize_obs=True, normalize_reward=True, env_kind="mujoco")
        return replace(base, **overrides)

    @classmethod
    def atari(cls, env_id: str = "BreakoutNoFrameskip-v4", **overrides: Any) -> "PPOConfig":
        """CleanRL ``ppo_atari.py``: 8 envs x 128 steps, 4 epochs of 4 minibatches, lr 2.5e-4 annealed,
        clip 0.1, entropy 0.01, 10M steps, Nature-CNN on 4 stacked 84x84 frames."""
        base = cls(env_id=env_id, total_timesteps=10_000_000, num_envs=8, num_steps=128, num_minibatches=4,
                   update_epochs=4, learning_rate=2.5e-4, clip_coef=0.1, ent_coef=0.01, env_kind="atari")
        return replace(base, **overrides)

    def check(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        if self.num_envs < 1 or self.num_steps < 1:
            raise ValueError(f"num_envs and num_steps must be >= 1, got {self.num_envs} and {self.num_steps}")
        if self.num_minibatches < 1 or self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches} must divide batch_size = num_envs * num_steps "
                             f"= {self.batch_size}")
        if self.norm_adv and self.minibatch_size < 2:
            raise ValueError("norm_adv needs minibatches of at least 2 transitions")
        if self.num_iterations < 1:
            raise ValueError(f"total_timesteps={self.total_timesteps} is less than one batch of {self.batch_size}")
        if self.env_kind not in ("auto", "classic", "mujoco", "atari"):
            raise ValueError(f"env_kind must be 'auto', 'classic', 'mujoco' or 'atari', got {self.env_kind!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.clip_coef < 1.0:
            raise ValueError(f"clip_coef must be in (0, 1), got {self.clip_coef}: the ratio is clipped to "
                             f"[1 - clip_coef, 1 + clip_coef]")


# ----------------------------------------------------------------------------- environments


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` is an Atari game of the Arcade Learning Environment (``ALE/...`` or ``...NoFrameskip-v4``),
    which :func:`make_env` wraps with the Atari preprocessing and :func:`evaluate` cuts at 27,000 steps.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        return True
    spec = gym.registry.get(env_id)
    return spec is not None and "ale_py" in str(spec.entry_point)


def _register_atari() -> None:
    import ale_py  # noqa: PLC0415  (only Atari needs the emulator)

    gym.register_envs(ale_py)


def make_env(env_id: str, kind: str = "auto", train: bool = True, render_mode: str | None = None,
             env_kwargs: dict | None = None) -> gym.Env:
    """One environment ``env_id`` with the wrappers of its kind, ``RecordEpisodeStatistics`` innermost.

    Atari (``kind="atari"``, or an ALE id with ``"auto"``): ``AtariPreprocessing``
    (30 no-op starts, frame skip 4 with max pooling, 84x84 grey), then, when
    ``train``, :class:`~lmlib.rl.wrappers.EpisodicLifeEnv` and
    :class:`~lmlib.rl.wrappers.ClipRewardEnv`; :class:`~lmlib.rl.wrappers.FireResetEnv`
    for games with FIRE; ``FrameStackObservation(4)``: observations ``(4, 84, 84)`` uint8.
    The episode statistics sit below all of this, so they count the real game score.
    Other kinds: the environment itself (normalisation and action clipping are done by
    :func:`ppo` on the whole vector batch), made with ``env_kwargs`` (e.g.
    ``{"terminate_when_unhealthy": False}``).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    atari = kind == "atari" or (kind == "auto" and is_atari(env_id))
    if atari:
        _register_atari()
        # NoFrameskip-v4 already has frameskip=1 and no sticky actions; v5 ids need them set
        kwargs = {} if "NoFrameskip" in env_id else {"frameskip": 1, "repeat_action_probability": 0.0}
        env = gym.make(env_id, render_mode=render_mode, disable_env_checker=True, **kwargs)  # ALE takes None
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
        if train:
            env = EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireResetEnv(env)
        if train:
            env = ClipRewardEnv(env)
        return gym.wrappers.FrameStackObservation(env, 4)
    if env_id not in gym.registry:
        raise ValueError(f"unknown environment id {env_id!r}; use a gymnasium id such as 'CartPole-v1', "
                         f"'Hopper-v5' or 'BreakoutNoFrameskip-v4', or pass a function that makes the env")
    kwargs = dict(env_kwargs or {}) | ({} if render_mode is None else {"render_mode": render_mode})
    if "mujoco" in str(gym.registry[env_id].entry_point):
        _route_mujoco_warnings()
    return gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, disable_env_checker=True, **kwargs))


def _route_mujoco_warnings() -> None:
    """MuJoCo prints its warnings from C, past Python; send them through ``warnings`` instead (once per
    message), except the known-harmless deprecation of ``settotalmass`` in gymnasium's HalfCheetah model."""
    import warnings  # noqa: PLC0415

    import mujoco  # noqa: PLC0415

    if mujoco.get_mju_user_warning() is not None:  # someone installed a handler already: keep it
        return

    def handler(msg: str) -> None:
        if "settotalmass" not in msg:
            warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)


def make_policy(observation_space: gym.Space, action_space: gym.Space, hidden: int = 64) -> nn.Module:
    """The actor-critic for these spaces: image observations ``(C, H, W)`` -> :class:`ConvPolicy`;
    ``Discrete`` actions -> :class:`CategoricalPolicy`; 1-D ``Box`` actions -> :class:`GaussianPolicy`.

    Raises ``ValueError`` naming the space when no policy fits (e.g. ``MultiDiscrete``
    actions, or a ``Box`` of actions with more than one dimension).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    obs_shape = observation_space.shape
    if obs_shape is None or not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"PPO here needs Box observations (vectors or images), got {observation_space}; "
                         f"flatten dict/tuple observations with gymnasium.wrappers.FlattenObservation")
    if isinstance(action_space, gym.spaces.Discrete):
        if len(obs_shape) == 3:
            return ConvPolicy(int(action_space.n), obs_shape)
        return CategoricalPolicy(obs_shape, int(action_space.n), hidden=hidden)
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1:
            raise ValueError(f"GaussianPolicy needs a 1-D Box action space, got shape {action_space.shape}")
        if len(obs_shape) == 3:
            raise ValueError("continuous actions from image observations are not supported (no conv Gaussian policy)")
        return GaussianPolicy(obs_shape, action_space.shape[0], hidden=hidden)
    raise ValueError(f"no policy for action space {action_space}: use Discrete (CategoricalPolicy, ConvPolicy) "
                     f"or a 1-D Box (GaussianPolicy)")


def _check_policy(policy: nn.Module, action_space: gym.Space) -> None:
    """Clear error when the policy's action type does not fit the environment's action space."""
    if isinstance(policy, GaussianPolicy):
        if not isinstance(action_space, gym.spaces.Box) or action_space.shape != (policy.act_dim,):
            raise ValueError(f"GaussianPolicy with act_dim={policy.act_dim} needs a Box action space of shape "
                             f"({policy.act_dim},), but the environment's action space is {action_space}")
    elif isinstance(policy, (CategoricalPolicy, ConvPolicy)):
        if not isinstance(action_space, gym.spaces.Discrete) or int(action_space.n) != policy.n_actions:
            raise ValueError(f"{type(policy).__name__} with n_actions={policy.n_actions} needs a Discrete("
                             f"{policy.n_actions}) action space, but the environment's action space is {action_space}")


@contextlib.contextmanager
def _fast_torch(threads: int | None) -> Iterator[None]:
    """One torch thread and no distribution argument checks inside the trainer; restored afterwards."""
    old_threads, old_validate = torch.get_num_threads(), torch.distributions.Distribution._validate_args
    try:
        if threads:
            torch.set_num_threads(threads)
        torch.distributions.Distribution.set_default_validate_args(False)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.distributions.Distribution.set_default_validate_args(old_validate)


def _normalize(adv: torch.Tensor) -> torch.Tensor:
    """``losses.normalize_advantages(adv)`` (CleanRL's per-minibatch normalisation), inlined: 10x less overhead."""
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def _clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_(params, max_norm)`` for CPU float parameters: the same arithmetic (scale all
    gradients by ``min(1, max_norm / (total_norm + 1e-6))``) without its per-call grouping overhead."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _final_info(infos: dict, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values, mask)`` of ``key`` in the infos of episodes that ended this step (same-step autoreset)."""
    fi = infos.get("final_info")
    if fi is None or key not in fi:
        return None
    return fi[key], fi[f"_{key}"]


# ----------------------------------------------------------------------------- acting


def act(policy: nn.Module, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """Actions for a batch ``obs`` ``(B, *obs_shape)``: sampled, or the mode (argmax / Gaussian mean).

    Returns ``(B,)`` long for discrete policies, ``(B, act_dim)`` float for Gaussian ones
    (unclipped; clip to the action space before stepping the environment).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    if not deterministic:
        return policy.get_action_and_value(obs)[0]
    x, batch = policy._check_obs(obs)
    if isinstance(policy, GaussianPolicy):
        return policy.actor_mean(x.flatten(1).float()).reshape(*batch, policy.act_dim)
    if isinstance(policy, ConvPolicy):
        return policy.actor(policy._hidden(x)).argmax(-1).reshape(batch)
    if isinstance(policy, CategoricalPolicy):
        return policy.actor(x.flatten(1).float()).argmax(-1).reshape(batch)
    raise TypeError(f"act() knows CategoricalPolicy, GaussianPolicy and ConvPolicy, got {type(policy).__name__}")


_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def _sample(policy: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(action, logprob, value)`` as ``policy.get_action_and_value(obs)`` returns them (the same random draws),
    without the entropy and the ``torch.distributions`` objects the rollout does not need (tested equal for the
    book's three policies); other policy classes go through ``get_action_and_value``."""
    if type(policy) is GaussianPolicy:
        x = obs.flatten(1).float()
        mean = policy.actor_mean(x)
        logstd = policy.actor_logstd.expand_as(mean)
        std = logstd.exp()
        action = torch.normal(mean, std)  # what Normal(mean, std).sample() draws
        logprob = (-((action - mean) ** 2) / (2 * std**2) - logstd - _LOG_SQRT_2PI).sum(-1)
        return action, logprob, policy.critic(x).squeeze(-1)
    if type(policy) is CategoricalPolicy:
        x = obs.flatten(1).float()
        logits, value = policy.actor(x), policy.critic(x).squeeze(-1)
    elif type(policy) is ConvPolicy:
        hidden = policy._hidden(obs)
        logits, value = policy.actor(hidden), policy.critic(hidden).squeeze(-1)
    else:
        action, logprob, _, value = policy.get_action_and_value(obs)
        return action, logprob, value
    logp = torch.log_softmax(logits, -1)
    action = torch.multinomial(logp.exp(), 1, True).squeeze(-1)  # what Categorical(logits).sample() draws
    return action, logp.gather(-1, action[:, None]).squeeze(-1), value


def obs_for_policy(policy: nn.Module, obs: np.ndarray) -> torch.Tensor:
    """A numpy batch of raw observations ``(B, *obs_shape)`` as the tensor ``policy`` reads: normalised with its
    ``obs_normalizer`` (from :func:`ppo` or :func:`load_ppo`; not updated), else float64 made float32.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    norm = getattr(policy, "obs_normalizer", None)
    if norm is not None:
        obs = norm(obs, update=False)
    elif obs.dtype == np.float64:
        obs = obs.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(obs))


def _env_action(action: torch.Tensor, space: gym.Space) -> np.ndarray | list[int]:
    """Continuous actions clipped to the action space (numpy); discrete ones as a list of Python ints, which
    gymnasium's ``Discrete.contains`` checks 2.5x faster than numpy integers."""
    if isinstance(space, gym.spaces.Box):
        return np.clip(action.numpy(), space.low, space.high)
    return action.tolist()


def as_policy_fn(policy: nn.Module, action_space: gym.Space, deterministic: bool = True) -> Callable[[Any], Any]:
    """``policy_fn(obs) -> action`` for one raw observation of an environment with ``action_space``: the
    observation normalised as in training (:func:`obs_for_policy`), the action from :func:`act`, clipped to
    the action space if continuous. What :func:`lmlib.rl.envs.evaluate` and :func:`record_video` play.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def policy_fn(obs: Any) -> Any:
        with torch.inference_mode():
            a = act(policy, obs_for_policy(policy, np.asarray(obs)[None]), deterministic)
        return _env_action(a, action_space)[0]

    return policy_fn


# ----------------------------------------------------------------------------- training


def _policy_spec(policy: nn.Module) -> dict:
    """What :func:`_policy_from_spec` needs to rebuild ``policy``: its class, observation shape and action count."""
    n = policy.act_dim if isinstance(policy, GaussianPolicy) else policy.n_actions
    return {"class": type(policy).__name__, "obs_shape": list(policy.obs_shape), "n": n}


def _checkpoint_meta(cfg: PPOConfig, policy: nn.Module, iteration: int, global_step: int, history: dict,
                     obs_norm: ObsNormalizer | None, rew_norm: RewardNormalizer | None) -> dict:
    return {
        "config": asdict(cfg), "policy": _policy_spec(policy), "iteration": iteration, "global_step": global_step,
        "history": history, "torch_rng": torch.get_rng_state(),
        "obs_norm": None if obs_norm is None else obs_norm.state_dict(),
        "rew_norm": None if rew_norm is None else rew_norm.state_dict(),
    }


def _policy_from_spec(spec: dict, hidden: int) -> nn.Module:
    if spec["class"] == "GaussianPolicy":
        return GaussianPolicy(spec["obs_shape"], spec["n"], hidden=hidden)
    if spec["class"] == "ConvPolicy":
        return ConvPolicy(spec["n"], spec["obs_shape"])
    if spec["class"] == "CategoricalPolicy":
        return CategoricalPolicy(spec["obs_shape"], spec["n"], hidden=hidden)
    raise ValueError(f"unknown policy class {spec['class']!r} in checkpoint")


def export_policy(policy: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> str:
    """Save just what acting needs (weights, config, observation normaliser; no optimizer,
    no history) as a checksummed safetensors file that :func:`load_ppo` reads; return its SHA-256.

    ``policy`` is one returned by :func:`ppo` or :func:`load_ppo` (it carries ``.config``).
    ``extra`` (JSON-able) is stored in the metadata too. The recipes use this to ship agents.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    cfg = getattr(policy, "config", None)
    if not isinstance(cfg, PPOConfig):
        raise ValueError("export_policy needs a policy returned by ppo() or load_ppo() (it has no .config)")
    norm = getattr(policy, "obs_normalizer", None)
    meta = {"config": asdict(cfg), "policy": _policy_spec(policy), "obs_norm": None if norm is None else norm.state_dict(),
            "extra": extra or {}}
    return save_checkpoint(path, policy, meta=meta)


def load_ppo(path: str | os.PathLike, expected_sha256: str | None = None) -> nn.Module:
    """The policy saved by :func:`ppo` (``checkpoint_path``) or :func:`export_policy`, in eval mode,
    its observation normaliser attached as ``policy.obs_normalizer`` (``None`` if none),
    ``policy.config`` the :class:`PPOConfig`. The checksum is verified against the sidecar
    (and ``expected_sha256`` if given) by :func:`lmlib.checkpoint.load_checkpoint`.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    ck = load_checkpoint(path, expected_sha256=expected_sha256)
    cfg = PPOConfig(**{f.name: ck.meta["config"][f.name] for f in fields(PPOConfig) if f.name in ck.meta["config"]})
    policy = _policy_from_spec(ck.meta["policy"], cfg.hidden)
    policy.load_state_dict(ck.model)
    policy.obs_normalizer = None
    if ck.meta.get("obs_norm") is not None:
        policy.obs_normalizer = ObsNormalizer(policy.obs_shape, clip=cfg.clip_obs)
        policy.obs_normalizer.load_state_dict(ck.meta["obs_norm"])
    policy.config = cfg
    return policy.eval()


def ppo(
    env: EnvSpec | None = None,
    cfg: PPOConfig | None = None,
    *,
    reward_fn: Callable[[Any, Any, Any], Any] | None = None,
    policy: nn.Module | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    save_every: int = 0,
    resume: bool = False,
    log_every: int = 0,
    callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a policy with PPO; return ``(policy, history)``.

    Args:
        env: a gymnasium id (default ``cfg.env_id``) or a function returning a new
            ``gymnasium.Env`` (then ``RecordEpisodeStatistics`` is added around it, unless the
            env has one already, as :func:`make_env`'s do).
        cfg: the hyperparameters (default ``PPOConfig.cartpole()``).
        reward_fn: optional ``reward_fn(obs, action, next_obs) -> float``; each env is
            wrapped in :class:`~lmlib.rl.wrappers.RewardModelWrapper`, so PPO trains on
            the model's reward while ``history["episode_return"]`` stays the true return.
        policy: an actor-critic to continue training (default: :func:`make_policy`); its
            ``obs_normalizer`` (from an earlier :func:`ppo` or :func:`load_ppo`) is kept.
        checkpoint_path: where to save (atomic, checksummed: :mod:`lmlib.checkpoint`)
            every ``save_every`` iterations and at the end: weights, optimizer, config,
            counters, history, torch RNG state and the normalisation statistics.
        resume: continue from ``checkpoint_path`` if it exists. Everything is restored
            except the environments' in-flight episodes: they restart (seeded by the
            step count), so with episodes that do not carry over (or never straddle a
            save) the run continues exactly as if uninterrupted.
        log_every: print a line every ``log_every`` iterations (0: silent).
        callback: ``callback(iteration, history)`` after every iteration (a live plot,
            say); returning True stops training there (after saving a checkpoint).

    Returns:
        ``policy`` (eval mode; ``policy.obs_normalizer`` holds the observation
        normaliser or ``None``) and ``history``: per iteration ``"global_step"``,
        ``"lr"``, ``"clip_coef"``, ``"pg_loss"``, ``"v_loss"``, ``"entropy"``,
        ``"approx_kl"``, ``"old_approx_kl"``, ``"clipfrac"``, ``"vf_clipfrac"``
        (minibatch means), ``"explained_variance"``, ``"epochs"`` (fewer than
        ``update_epochs`` after a ``target_kl`` stop), ``"sps"``; per finished episode
        ``"episode_step"``, ``"episode_return"``, ``"episode_length"`` (true game
        returns for Atari), and ``"true_episode_return"``/``"model_episode_return"``
        when a :class:`RewardModelWrapper` is used; plus ``"config"`` and ``"seconds"``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    cfg = PPOConfig.cartpole() if cfg is None else cfg
    env = cfg.env_id if env is None else env
    if isinstance(env, str) and env != cfg.env_id:
        cfg = replace(cfg, env_id=env)
    cfg.check()
    if resume and checkpoint_path is None:
        raise ValueError("resume=True needs a checkpoint_path")
    with _fast_torch(cfg.torch_threads):
        return _train(env, cfg, reward_fn, policy, checkpoint_path, save_every, resume, log_every, callback)


def _records_episodes(env: gym.Env) -> bool:
    """Whether a ``RecordEpisodeStatistics`` is somewhere in ``env``'s chain of wrappers."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.RecordEpisodeStatistics):
            return True
        env = env.env
    return False


def _train(env_spec: EnvSpec, cfg: PPOConfig, reward_fn, policy, checkpoint_path, save_every: int, resume: bool,
           log_every: int, callback) -> tuple[nn.Module, dict[str, Any]]:
    """The PPO loop, top to bottom: set up (or resume), then per iteration anneal -> rollout -> GAE -> update ->
    log -> save. Each step is a function below."""
    torch.manual_seed(cfg.seed)  # the policy's initial weights and all sampling (rollout actions, minibatch order)
    envs = _make_vector_env(env_spec, cfg, reward_fn)
    try:
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        if policy is None:
            policy = make_policy(obs_space, act_space, cfg.hidden)
        _check_policy(policy, act_space)
        # fused Adam: one kernel for all parameters, ~4x less optimizer time than the default per-tensor loop on CPU
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=1e-5, fused=True)
        obs_norm = None
        if cfg.normalize_obs:  # a policy trained before keeps its statistics
            obs_norm = getattr(policy, "obs_normalizer", None) or ObsNormalizer(obs_space.shape, clip=cfg.clip_obs)
        rew_norm = RewardNormalizer(cfg.num_envs, cfg.gamma, clip=cfg.clip_reward) if cfg.normalize_reward else None
        history = _new_history()
        start_iteration, global_step = 1, 0
        if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
            start_iteration, global_step = _resume(checkpoint_path, cfg, policy, optimizer, obs_norm, rew_norm, history)
        buf = _RolloutStorage(cfg, obs_space, act_space, obs_norm is None)
        reset_seed = cfg.seed + global_step  # a resumed run restarts its environments from new seeds
        raw, _ = envs.reset(seed=reset_seed)
        envs.action_space.seed(reset_seed)
        next_obs = _prepare_obs(raw, obs_norm, update=start_iteration == 1)  # a resumed run has seen its obs already
        next_done = np.zeros(cfg.num_envs, dtype=np.float32)
        with torch.inference_mode():
            policy.get_value(torch.from_numpy(next_obs))  # checks the observation shape once, with a clear error
        t_start = time.perf_counter()

        for iteration in range(start_iteration, cfg.num_iterations + 1):
            t_iter, step0 = time.perf_counter(), global_step
            frac = 1.0 - (iteration - 1.0) / cfg.num_iterations
            lr = frac * cfg.learning_rate if cfg.anneal_lr else cfg.learning_rate
            clip_coef = frac * cfg.clip_coef if cfg.anneal_clip else cfg.clip_coef
            for group in optimizer.param_groups:
                group["lr"] = lr

            # ---- rollout: T steps of N envs with the current policy; then GAE
            next_obs, next_done, next_value, global_step = _collect_rollout(
                envs, policy, buf, next_obs, next_done, cfg, obs_norm, rew_norm, history, global_step)
            _check_rewards(buf.rewards_np, iteration)
            advantages, returns = gae(buf.rewards, buf.values, buf.dones, next_value, torch.from_numpy(next_done),
                                      cfg.gamma, cfg.gae_lambda)

            # ---- update: epochs of shuffled minibatches over the flattened batch
            stats, epochs_done = _update(policy, optimizer, params, buf, advantages, returns, cfg, clip_coef)

            # ---- diagnostics, callback, checkpoint
            _record_iteration(history, stats, global_step=global_step, lr=lr, clip_coef=clip_coef,
                              explained_var=explained_variance(buf.values.reshape(-1), returns.reshape(-1)),
                              epochs=epochs_done, sps=(global_step - step0) / (time.perf_counter() - t_iter))
            if log_every and iteration % log_every == 0:
                _print_iteration(history, iteration, cfg.num_iterations)
            stop = bool(callback(iteration, history)) if callback is not None else False
            if checkpoint_path is not None and ((save_every and iteration % save_every == 0)
                                                or iteration == cfg.num_iterations or stop):
                save_checkpoint(checkpoint_path, policy, optimizer_state=optimizer.state_dict(),
                                meta=_checkpoint_meta(cfg, policy, iteration, global_step, history, obs_norm,
                                                      rew_norm))
            if stop:
                break
        history["seconds"] = history.get("seconds", 0.0) + time.perf_counter() - t_start
        history["config"] = asdict(cfg)
    finally:
        envs.close()
    policy.obs_normalizer = obs_norm
    policy.config = cfg
    return policy.eval(), history


# ----------------------------------------------------------------------------- training: the steps of the loop


def _make_vector_env(env_spec: EnvSpec, cfg: PPOConfig, reward_fn) -> SyncVectorEnv:
    """``cfg.num_envs`` copies of the environment (same-step autoreset), each recording its episodes and, with a
    ``reward_fn``, paying the model's reward (:class:`RewardModelWrapper`)."""

    def thunk() -> gym.Env:
        if isinstance(env_spec, str):
            e = make_env(env_spec, cfg.env_kind)
        else:
            e = env_spec()
            if not _records_episodes(e):  # make_env's envs record the game score below their Atari wrappers
                e = gym.wrappers.RecordEpisodeStatistics(e)
        return e if reward_fn is None else RewardModelWrapper(e, reward_fn)

    return SyncVectorEnv([thunk for _ in range(cfg.num_envs)], autoreset_mode=AutoresetMode.SAME_STEP, copy=False)


_HISTORY_KEYS = ("global_step", "lr", "clip_coef", "pg_loss", "v_loss", "entropy", "approx_kl", "old_approx_kl",
                 "clipfrac", "vf_clipfrac", "explained_variance", "epochs", "sps",
                 "episode_step", "episode_return", "episode_length", "true_episode_return", "model_episode_return")
#: The per-minibatch diagnostics of :func:`_update`, in the order of its stacked rows.
_UPDATE_STATS = ("pg_loss", "v_loss", "entropy", "approx_kl", "old_approx_kl", "clipfrac", "vf_clipfrac")


def _new_history() -> dict[str, Any]:
    return {k: [] for k in _HISTORY_KEYS}


def _resume(checkpoint_path: str | os.PathLike, cfg: PPOConfig, policy: nn.Module, optimizer: torch.optim.Optimizer,
            obs_norm: ObsNormalizer | None, rew_norm: RewardNormalizer | None, history: dict) -> tuple[int, int]:
    """Load a checkpoint of :func:`ppo` into the policy, optimizer, normalisers, ``history`` and torch's RNG;
    return ``(first iteration to run, global_step)``. A config that changes the rollout's shape is an error."""
    ck = load_checkpoint(checkpoint_path)
    old = ck.meta["config"]
    for name in ("env_id", "num_envs", "num_steps", "hidden", "normalize_obs", "normalize_reward"):
        if old[name] != getattr(cfg, name):
            raise ValueError(f"cannot resume {checkpoint_path}: it was trained with {name}={old[name]!r}, "
                             f"this config has {getattr(cfg, name)!r}")
    policy.load_state_dict(ck.model)
    optimizer.load_state_dict(ck.optimizer)
    torch.set_rng_state(ck.meta["torch_rng"])
    if obs_norm is not None:
        obs_norm.load_state_dict(ck.meta["obs_norm"])
    if rew_norm is not None:
        rew_norm.load_state_dict(ck.meta["rew_norm"])
    history.update({k: list(v) for k, v in ck.meta["history"].items()})
    return ck.meta["iteration"] + 1, ck.meta["global_step"]


class _RolloutStorage:
    """One rollout, time first ``(T, N, ...)``: CleanRL's layout and done convention (:mod:`lmlib.rl.gae`),
    allocated once per run. ``rewards_np`` shares memory with ``rewards``: the env side writes numpy, the
    update reads torch. Observations stay uint8 (Atari frames) unless they are normalised."""

    def __init__(self, cfg: PPOConfig, obs_space: gym.Space, act_space: gym.Space, raw_obs: bool) -> None:
        T, N = cfg.num_steps, cfg.num_envs
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 and raw_obs else torch.float32
        continuous = isinstance(act_space, gym.spaces.Box)
        self.obs = torch.zeros((T, N, *obs_space.shape), dtype=obs_dtype)
        self.actions = torch.zeros((T, N, *act_space.shape), dtype=torch.float32 if continuous else torch.long)
        self.logprobs, self.rewards, self.dones, self.values = (torch.zeros((T, N)) for _ in range(4))
        self.rewards_np = self.rewards.numpy()


def _prepare_obs(o: np.ndarray, obs_norm: ObsNormalizer | None, update: bool = True) -> np.ndarray:
    """Observations as the policy reads them: normalised (updating the statistics if ``update``), else float32
    (uint8 frames stay uint8; the conv net scales them)."""
    if obs_norm is not None:
        return obs_norm(o, update)
    return o if o.dtype == np.uint8 else o.astype(np.float32, copy=False)


def _collect_rollout(envs: SyncVectorEnv, policy: nn.Module, buf: _RolloutStorage, next_obs: np.ndarray,
                     next_done: np.ndarray, cfg: PPOConfig, obs_norm: ObsNormalizer | None,
                     rew_norm: RewardNormalizer | None, history: dict, global_step: int,
                     ) -> tuple[np.ndarray, np.ndarray, torch.Tensor, int]:
    """``cfg.num_steps`` steps of all environments with the current policy (no gradients), written into ``buf``;
    finished episodes go to ``history``. Returns ``(next_obs, next_done, next_value, global_step)``."""
    obs, actions, logprobs, values, dones, rewards_np = (buf.obs, buf.actions, buf.logprobs, buf.values, buf.dones,
                                                         buf.rewards_np)
    act_space, N = envs.single_action_space, cfg.num_envs
    policy.eval()
    with torch.inference_mode():
        for step in range(cfg.num_steps):
            global_step += N
            obs_t = torch.from_numpy(next_obs)
            obs[step] = obs_t
            dones[step] = torch.from_numpy(next_done)
            action, logprob, value = _sample(policy, obs_t)  # = policy.get_action_and_value, leaner
            actions[step], logprobs[step], values[step] = action, logprob, value
            raw, reward, terminated, truncated, infos = envs.step(_env_action(action, act_space))
            done = terminated | truncated
            r = rew_norm(reward, done) if rew_norm is not None else reward
            if cfg.bootstrap_truncated and (truncated & ~terminated).any():
                # a time limit is not a real end: add gamma * V(final obs) (normalised scale)
                idx = np.nonzero(truncated & ~terminated)[0]
                final = _prepare_obs(np.stack(infos["final_obs"][idx]), obs_norm, update=False)
                r = r + 0.0  # own copy
                r[idx] += cfg.gamma * policy.get_value(torch.from_numpy(final)).numpy()
            rewards_np[step] = r
            next_obs, next_done = _prepare_obs(raw, obs_norm), done.astype(np.float32)
            if done.any():
                _record_episodes(history, infos, global_step)
        next_value = policy.get_value(torch.from_numpy(next_obs))
    return next_obs, next_done, next_value, global_step


def _check_rewards(rewards_np: np.ndarray, iteration: int) -> None:
    """A clear error for a NaN or infinite reward, naming the step and the environment."""
    if not np.isfinite(rewards_np).all():
        t_bad, n_bad = np.argwhere(~np.isfinite(rewards_np))[0]
        raise ValueError(f"non-finite reward {rewards_np[t_bad, n_bad]} at step {t_bad} of env {n_bad} in "
                         f"iteration {iteration}; check the environment or the reward function")


def _update(policy: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], buf: _RolloutStorage,
            advantages: torch.Tensor, returns: torch.Tensor, cfg: PPOConfig, clip_coef: float,
            ) -> tuple[list[torch.Tensor], int]:
    """``cfg.update_epochs`` passes over the flattened batch in shuffled minibatches (stopping early past
    ``cfg.target_kl``). Returns the per-minibatch diagnostics (rows of :data:`_UPDATE_STATS`, detached tensors,
    read once by the caller) and the number of epochs done."""
    policy.train()
    B, M = cfg.batch_size, cfg.minibatch_size
    b_obs, b_actions = buf.obs.reshape(B, *buf.obs.shape[2:]), buf.actions.reshape(B, *buf.actions.shape[2:])
    b_logprobs, b_adv = buf.logprobs.reshape(B), advantages.reshape(B)
    b_returns, b_values = returns.reshape(B), buf.values.reshape(B)
    stats, epochs_done = [], 0
    if M == B:  # the full-batch normalised advantages are the same in every epoch
        b_adv_full = _normalize(b_adv) if cfg.norm_adv else b_adv
    for epoch in range(cfg.update_epochs):
        # one minibatch = the whole batch (rl-zoo's CartPole): the order does not matter, skip the shuffle
        perm = torch.randperm(B) if M < B else None
        for start in range(0, B, M):
            if perm is None:
                mb, mb_adv = slice(None), b_adv_full
            else:
                mb = perm[start:start + M]
                mb_adv = _normalize(b_adv[mb]) if cfg.norm_adv else b_adv[mb]
            _, newlogprob, entropy, newvalue = policy.get_action_and_value(b_obs[mb], b_actions[mb])
            pg_loss, pg_info = clipped_surrogate_loss(newlogprob, b_logprobs[mb], mb_adv, clip_coef)
            v_loss, v_info = value_loss(newvalue, b_values[mb], b_returns[mb], clip_coef if cfg.clip_vloss else None)
            ent = entropy_bonus(entropy)
            loss = pg_loss + cfg.vf_coef * v_loss
            if cfg.ent_coef:  # with ent_coef = 0 the entropy stays out of the backward pass
                loss = loss - cfg.ent_coef * ent
            for p in params:  # = optimizer.zero_grad(set_to_none=True), without its profiler hook
                p.grad = None
            loss.backward()
            _clip_grad_norm(params, cfg.max_grad_norm)
            optimizer.step()
            stats.append(torch.stack([pg_loss.detach(), v_loss.detach(), ent.detach(), pg_info["approx_kl"],
                                      pg_info["old_approx_kl"], pg_info["clipfrac"], v_info["vf_clipfrac"]]))
        epochs_done += 1
        if cfg.target_kl is not None and float(pg_info["approx_kl"]) > cfg.target_kl:
            break
    return stats, epochs_done


def _record_iteration(history: dict, stats: list[torch.Tensor], *, global_step: int, lr: float, clip_coef: float,
                      explained_var: float, epochs: int, sps: float) -> None:
    """Append one iteration's diagnostics to ``history`` (one read of all minibatch statistics)."""
    for k, v in zip(_UPDATE_STATS, torch.stack(stats).mean(0).tolist()):
        history[k].append(v)
    history["global_step"].append(global_step)
    history["lr"].append(lr)
    history["clip_coef"].append(clip_coef)
    history["explained_variance"].append(explained_var)
    history["epochs"].append(epochs)
    history["sps"].append(sps)


def _print_iteration(history: dict, iteration: int, num_iterations: int) -> None:
    recent = history["episode_return"][-20:]
    print(f"iter {iteration}/{num_iterations} step {history['global_step'][-1]} "
          f"return {np.mean(recent) if recent else float('nan'):.1f} "
          f"kl {history['approx_kl'][-1]:.4f} clipfrac {history['clipfrac'][-1]:.3f} "
          f"ev {history['explained_variance'][-1]:.2f} sps {history['sps'][-1]:.0f}", flush=True)


def episode_curve(episode_step: Any, episode_return: Any, grid: Any, window: int) -> np.ndarray:
    """The learning curve on a common step grid: at each ``grid`` step ``g``, the mean return of the
    episodes that ended in ``(g - window, g]``; NaN where none did. Shape ``(len(grid),)``.

    ``episode_step``/``episode_return`` are :func:`ppo`'s ``history`` entries (or a shipped
    result's ``curve``). Curves of several seeds on the same grid can then be averaged.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    steps, rets = np.asarray(episode_step, float), np.asarray(episode_return, float)
    if steps.shape != rets.shape or steps.ndim != 1:
        raise ValueError(f"episode_step and episode_return must be 1-D of the same length, got shapes "
                         f"{steps.shape} and {rets.shape}")
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if steps.size and np.any(np.diff(steps) < 0):
        raise ValueError("episode_step must be non-decreasing (the order in which episodes ended)")
    grid = np.asarray(grid, float)
    csum = np.concatenate([[0.0], np.cumsum(rets)])
    hi = np.searchsorted(steps, grid, side="right")
    lo = np.searchsorted(steps, grid - window, side="right")
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[hi] - csum[lo]) / np.maximum(n, 1), np.nan)


def _record_episodes(history: dict, infos: dict, global_step: int) -> None:
    ep = _final_info(infos, "episode")
    if ep is not None:
        stats, mask = ep
        for i in np.nonzero(mask)[0]:
            history["episode_step"].append(global_step)
            history["episode_return"].append(float(stats["r"][i]))
            history["episode_length"].append(int(stats["l"][i]))
    fi = infos.get("final_info") or {}
    for key in [k for k in fi if k.endswith("_episode_return") and not k.startswith("_")]:
        got = _final_info(infos, key)  # true/model returns (RewardModelWrapper), and any wrapper's own
        history.setdefault(key, []).extend(float(v) for v in got[0][got[1]])


# ----------------------------------------------------------------------------- evaluation and video


def _make_eval_env(env_id: str, policy: nn.Module, render_mode: str | None = None,
                   env_kwargs: dict | None = None) -> gym.Env:
    cfg = getattr(policy, "config", None)
    kind = cfg.env_kind if cfg is not None and cfg.env_id == env_id else "auto"
    env = make_env(env_id, kind, train=False, render_mode=render_mode, env_kwargs=env_kwargs)
    _check_policy(policy, env.action_space)
    return env


def evaluate(policy: nn.Module, env_id: str, episodes: int = 10, seed: int = 0,
             deterministic: bool = True, max_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes of ``policy`` on ``env_id``: shape ``(episodes,)``.

    The episodes are played by :func:`lmlib.rl.envs.evaluate` (episode ``k`` reset with seed
    ``seed + k``) with :func:`as_policy_fn`'s actions: ``deterministic`` takes the most
    likely action (the Gaussian mean); the policy's ``obs_normalizer`` (from
    :func:`ppo`) is applied without updating it; continuous actions are clipped.
    Atari is scored on the real game (no life loss ends, no reward clipping), and
    an episode is cut after ``max_steps`` agent steps (default for Atari: 27,000,
    i.e. 108,000 frames, the usual limit; ``NoFrameskip-v4`` games have none, and a
    greedy Breakout agent that never presses FIRE would otherwise play forever).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = _make_eval_env(env_id, policy)
    if max_steps is None and is_atari(env_id):
        max_steps = 27_000
    with _fast_torch(None):
        return play_episodes(as_policy_fn(policy, env.action_space, deterministic), lambda: env, episodes, seed,
                             max_steps=max_steps)


def fast_mujoco_rendering(env: gym.Env) -> None:
    """For a MuJoCo ``env`` (no-op otherwise), before its first ``render()``: no multisampling and 1024-pixel
    shadow maps, about 3x faster per frame with software OpenGL on a CPU.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    model = getattr(env.unwrapped, "model", None)
    if model is not None and hasattr(model, "vis"):
        model.vis.quality.offsamples, model.vis.quality.shadowsize = 0, 1024


def record_video(policy: nn.Module, env_id: str, path: str | os.PathLike, seed: int = 0, max_steps: int = 1000,
                 fps: int | None = None, deterministic: bool = True, render_every: int = 1,
                 fast_render: bool = True, env_kwargs: dict | None = None) -> dict[str, Any]:
    """Play one episode (at most ``max_steps`` steps) and write it as an mp4 with imageio; return a summary.

    The file is written to a temporary name and renamed, so ``path`` is never a
    half-written video. The video has one frame for the first observation and
    one every ``render_every`` steps, played at ``fps`` (default: the environment's
    render rate divided by ``render_every``, so the video runs in real time).
    MuJoCo renders headless when ``MUJOCO_GL=egl`` is set before ``mujoco`` is
    first imported; on a CPU (software OpenGL) ``fast_render`` turns off
    multisampling and uses 1024-pixel shadow maps, about 3x faster per frame.
    ``env_kwargs`` go to ``gym.make`` (a Hopper that does not end its episode when it falls).
    Returns ``{"path", "frames", "return", "steps"}``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    import imageio.v2 as imageio  # noqa: PLC0415

    if max_steps < 1 or render_every < 1:
        raise ValueError(f"max_steps and render_every must be >= 1, got {max_steps} and {render_every}")
    path = Path(path)
    if path.suffix != ".mp4":
        raise ValueError(f"record_video writes mp4 files, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    env = _make_eval_env(env_id, policy, render_mode="rgb_array", env_kwargs=env_kwargs)
    fps = fps or max(1, round((env.metadata.get("render_fps") or 30) / render_every))
    if fast_render:
        fast_mujoco_rendering(env)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    frames, total, steps = 0, 0.0, 0
    try:
        writer = imageio.get_writer(tmp, fps=fps, macro_block_size=1)
        try:
            o, _ = env.reset(seed=int(seed))
            writer.append_data(env.render())
            frames += 1
            policy_fn = as_policy_fn(policy, env.action_space, deterministic)
            with _fast_torch(None):
                for steps in range(1, max_steps + 1):
                    o, r, terminated, truncated, _ = env.step(policy_fn(o))
                    total += float(r)
                    if steps % render_every == 0 or terminated or truncated:
                        writer.append_data(env.render())
                        frames += 1
                    if terminated or truncated:
                        break
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        env.close()
        tmp.unlink(missing_ok=True)
    return {"path": str(path), "frames": frames, "return": total, "steps": steps}

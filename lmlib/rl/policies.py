"""Actor-critic networks as in CleanRL: MLPs for vector observations, the Nature-DQN torso for Atari.

Each policy has ``get_value(obs) -> value`` and
``get_action_and_value(obs, action=None) -> (action, logprob, entropy, value)``.
Observations have shape ``(*batch, *obs_shape)`` (usually ``(B, *obs_shape)``);
``logprob``, ``entropy`` and ``value`` come back as ``(*batch,)``: the value head's
trailing 1 is squeezed away, so it cannot broadcast against ``(B,)`` returns.
With ``action=None`` an action is sampled; otherwise the given actions are
scored (the PPO update re-evaluates the rollout's actions this way).

Initialisation follows CleanRL (``layer_init``): orthogonal weights with gain
``sqrt(2)`` in hidden layers, ``0.01`` for the policy head (so the first policy
is near uniform / near zero mean) and ``1`` for the value head; biases zero.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Normal

__all__ = ["layer_init", "CategoricalPolicy", "GaussianPolicy", "ConvPolicy"]


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    """Orthogonal weight init with gain ``std`` and constant bias, in place; returns ``layer``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def _shape(obs_shape: Sequence[int] | int) -> tuple[int, ...]:
    return (int(obs_shape),) if isinstance(obs_shape, int) else tuple(int(d) for d in obs_shape)


def _mlp(in_dim: int, hidden: int, out_dim: int, out_std: float) -> nn.Sequential:
    return nn.Sequential(
        layer_init(nn.Linear(in_dim, hidden)), nn.Tanh(),
        layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
        layer_init(nn.Linear(hidden, out_dim), std=out_std),
    )


class _ActorCritic(nn.Module):
    obs_shape: tuple[int, ...]

    def _check_obs(self, obs: Tensor) -> tuple[Tensor, torch.Size]:
        """Return ``obs`` flattened to ``(B, *obs_shape)`` and the batch shape; raise on a wrong shape."""
        if not isinstance(obs, Tensor):
            raise TypeError(f"obs must be a torch.Tensor, got {type(obs).__name__} (use torch.as_tensor)")
        k = len(self.obs_shape)
        if obs.ndim < k or tuple(obs.shape[obs.ndim - k:]) != self.obs_shape:
            raise ValueError(f"{type(self).__name__} expects observations of shape (batch, "
                             f"{', '.join(map(str, self.obs_shape))}), got {tuple(obs.shape)}")
        batch = obs.shape[: obs.ndim - k]
        return obs.reshape(-1, *self.obs_shape), batch

    def _check_action(self, action: Tensor, expected: tuple[int, ...]) -> None:
        if tuple(action.shape) != expected:
            raise ValueError(f"action has shape {tuple(action.shape)}, expected {expected} for these observations")


class CategoricalPolicy(_ActorCritic):
    """MLP actor-critic for discrete actions (CleanRL ``ppo.py``): two tanh layers each for actor and critic.

    Args:
        obs_shape: shape of one observation, e.g. ``(4,)`` for CartPole (flattened).
        n_actions: number of discrete actions. hidden: width of the hidden layers.

    ``get_action_and_value(obs (B, *obs_shape), action (B,) long or None)``
    returns ``action (B,) long, logprob (B,), entropy (B,), value (B,)``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, obs_shape: Sequence[int] | int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_shape, self.n_actions = _shape(obs_shape), int(n_actions)
        in_dim = math.prod(self.obs_shape)
        self.critic = _mlp(in_dim, hidden, 1, out_std=1.0)
        self.actor = _mlp(in_dim, hidden, self.n_actions, out_std=0.01)

    def get_value(self, obs: Tensor) -> Tensor:
        """``V(obs)``: ``(*batch, *obs_shape) -> (*batch,)``."""
        x, batch = self._check_obs(obs)
        return self.critic(x.flatten(1).float()).reshape(batch)

    def get_action_and_value(self, obs: Tensor, action: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (or score) actions: returns ``(action, logprob, entropy, value)``, each ``(*batch,)``."""
        x, batch = self._check_obs(obs)
        x = x.flatten(1).float()
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        else:
            self._check_action(action, tuple(batch))
            action = action.reshape(-1).long()  # CleanRL stores actions as floats
        return (action.reshape(batch), probs.log_prob(action).reshape(batch),
                probs.entropy().reshape(batch), self.critic(x).reshape(batch))


class GaussianPolicy(_ActorCritic):
    """MLP actor-critic for continuous actions (CleanRL ``ppo_continuous_action.py``).

    The action distribution is ``Normal(mean(obs), exp(log_std))`` per dimension
    with a learned, state-independent ``actor_logstd`` (initialised to 0);
    log-probs and entropies are summed over action dimensions.

    Args:
        obs_shape: shape of one observation, e.g. ``(17,)`` for HalfCheetah.
        act_dim: number of action dimensions. hidden: width of the hidden layers.

    ``get_action_and_value(obs (B, *obs_shape), action (B, act_dim) or None)``
    returns ``action (B, act_dim), logprob (B,), entropy (B,), value (B,)``.
    Actions are not squashed or clipped; clip them to the action space in the
    environment wrapper, as CleanRL does.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, obs_shape: Sequence[int] | int, act_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.obs_shape, self.act_dim = _shape(obs_shape), int(act_dim)
        in_dim = math.prod(self.obs_shape)
        self.critic = _mlp(in_dim, hidden, 1, out_std=1.0)
        self.actor_mean = _mlp(in_dim, hidden, self.act_dim, out_std=0.01)
        self.actor_logstd = nn.Parameter(torch.zeros(1, self.act_dim))

    def get_value(self, obs: Tensor) -> Tensor:
        """``V(obs)``: ``(*batch, *obs_shape) -> (*batch,)``."""
        x, batch = self._check_obs(obs)
        return self.critic(x.flatten(1).float()).reshape(batch)

    def get_action_and_value(self, obs: Tensor, action: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (or score) actions: ``action (*batch, act_dim)``, then ``logprob, entropy, value`` ``(*batch,)``."""
        x, batch = self._check_obs(obs)
        x = x.flatten(1).float()
        mean = self.actor_mean(x)
        probs = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = probs.sample()
        else:
            self._check_action(action, (*batch, self.act_dim))
            action = action.reshape(-1, self.act_dim).to(mean.dtype)
        return (action.reshape(*batch, self.act_dim), probs.log_prob(action).sum(-1).reshape(batch),
                probs.entropy().sum(-1).reshape(batch), self.critic(x).reshape(batch))


class ConvPolicy(_ActorCritic):
    """Actor-critic on the Nature-DQN conv torso (Mnih et al. 2015), CleanRL ``ppo_atari.py``.

    Input: stacked frames ``(*batch, 4, 84, 84)``, channels first, ``uint8``
    pixels 0..255 (a float tensor holding 0..255 works too); they are scaled
    by 1/255. Torso: conv 32x8x8/4, conv 64x4x4/2, conv 64x3x3/1 (ReLU each),
    linear 3136 -> 512 (ReLU), shared by a linear policy head (``n_actions``)
    and value head (1).

    ``get_action_and_value`` returns ``action (B,) long, logprob, entropy, value (B,)``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """

    def __init__(self, n_actions: int, obs_shape: Sequence[int] = (4, 84, 84)) -> None:
        super().__init__()
        self.obs_shape, self.n_actions = _shape(obs_shape), int(n_actions)
        if len(self.obs_shape) != 3:
            raise ValueError(f"obs_shape must be (channels, height, width), got {self.obs_shape}")
        c = self.obs_shape[0]
        convs = nn.Sequential(
            layer_init(nn.Conv2d(c, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = convs(torch.zeros(1, *self.obs_shape)).shape[1]  # 64 * 7 * 7 = 3136 for 84x84
        self.network = nn.Sequential(convs, layer_init(nn.Linear(n_flat, 512)), nn.ReLU())
        self.actor = layer_init(nn.Linear(512, self.n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)

    def _check_obs(self, obs: Tensor) -> tuple[Tensor, torch.Size]:
        c, h, w = self.obs_shape
        if isinstance(obs, Tensor) and obs.ndim >= 3 and tuple(obs.shape[-3:]) == (h, w, c) and (h, w, c) != (c, h, w):
            raise ValueError(f"ConvPolicy expects channels first (batch, {c}, {h}, {w}), got channels last "
                             f"{tuple(obs.shape)}; use obs.permute(0, 3, 1, 2)")
        return super()._check_obs(obs)

    def _hidden(self, x: Tensor) -> Tensor:
        return self.network(x.float() / 255.0)

    def get_value(self, obs: Tensor) -> Tensor:
        """``V(obs)``: ``(*batch, C, H, W) -> (*batch,)``."""
        x, batch = self._check_obs(obs)
        return self.critic(self._hidden(x)).reshape(batch)

    def get_action_and_value(self, obs: Tensor, action: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (or score) actions: returns ``(action, logprob, entropy, value)``, each ``(*batch,)``."""
        x, batch = self._check_obs(obs)
        hidden = self._hidden(x)
        probs = Categorical(logits=self.actor(hidden))
        if action is None:
            action = probs.sample()
        else:
            self._check_action(action, tuple(batch))
            action = action.reshape(-1).long()
        return (action.reshape(batch), probs.log_prob(action).reshape(batch),
                probs.entropy().reshape(batch), self.critic(hidden).reshape(batch))

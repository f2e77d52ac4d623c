"""The environment-free core of the book's reinforcement learning: returns, GAE, PPO losses, buffer, policies.

``import lmlib.rl`` loads only this core (buffer, gae, losses, policies), which imports no
gymnasium, widgets or environment: the same functions train CartPole, MuJoCo and Atari agents
in Chapters 9-10 and a language model in the RLHF chapters. The environment side lives in
submodules imported explicitly: :mod:`lmlib.rl.envs` (probe environments, vector envs,
evaluation), :mod:`lmlib.rl.reinforce`, :mod:`lmlib.rl.pong`, :mod:`lmlib.rl.ppo` and
:mod:`lmlib.rl.wrappers` (normalisation, the pluggable reward source). Tensors follow CleanRL's names
(``obs, actions, logprobs, rewards, dones, values, advantages, returns``) and
its done convention, documented in :mod:`lmlib.rl.gae`.

Taught in: Chapter 9, "Reinforcement learning and policy gradients"
(chapters/09_policy_gradients.ipynb) and Chapter 10, "Proximal Policy
Optimization" (chapters/10_ppo.ipynb).
"""
from .buffer import RolloutBuffer
from .gae import discounted_cumsum, discounted_returns, gae, gae_loop, masked_gae
from .losses import (
    clipped_surrogate_loss,
    entropy_bonus,
    explained_variance,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    normalize_advantages,
    reinforce_loss,
    value_loss,
)
from .policies import CategoricalPolicy, ConvPolicy, GaussianPolicy, layer_init

__all__ = [
    "discounted_cumsum", "discounted_returns", "gae", "gae_loop", "masked_gae",
    "clipped_surrogate_loss", "value_loss", "entropy_bonus", "explained_variance", "kl_penalty",
    "masked_mean", "masked_var", "masked_whiten", "normalize_advantages", "reinforce_loss",
    "RolloutBuffer", "CategoricalPolicy", "GaussianPolicy", "ConvPolicy", "layer_init",
]

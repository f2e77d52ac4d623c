"""A reward model's score of a batch of segments: a sum of per-step rewards, or one score per sequence.

Two kinds of reward model meet the same Bradley-Terry loss:

* a **per-step** model (Chapter 11: ``model(x) -> (B, L)``) predicts a reward for every step, and a
  segment's score is the sum over its real steps, R̂ = Σ_t r̂(s_t). On text this sum grows with the
  number of tokens, so it tends to prefer longer answers;
* a **sequence** model (Part III, InstructGPT's reward model) declares ``scores_sequences = True``,
  takes the mask too, ``model(x, mask) -> (B,)``, and reads the whole sequence at once - for a
  causal language model, the hidden state of its last real token (:class:`SequenceRewardModel`).

:func:`sequence_scores` is the one place that knows both protocols; the training loop, the evaluation
and the ensemble call it, so the same code trains either kind.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb); the
sequence models in Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..checks import as_mask
from .bradley_terry import masked_sum

__all__ = ["per_step_rewards", "is_sequence_model", "sequence_scores", "last_token_index", "SequenceRewardModel"]


def per_step_rewards(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a reward model on ``x`` (``(B, L, D)`` features or ``(B, L)`` tokens) and check it returns ``(B, L)``.

    Any ``nn.Module`` mapping per-step inputs to per-step rewards is a reward model; a trailing
    dimension of size 1, ``(B, L, 1)``, is squeezed.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"a reward model must return a tensor, got {type(out).__name__}")
    if out.dim() == 3 and out.shape[-1] == 1:
        out = out.squeeze(-1)
    if tuple(out.shape) != tuple(x.shape[:2]):
        hint = ("; a model that scores whole sequences must say so with the attribute scores_sequences = True "
                "and take (x, mask)") if tuple(out.shape) == tuple(x.shape[:1]) else ""
        raise ValueError(
            f"a reward model must map inputs {tuple(x.shape)} to per-step rewards {tuple(x.shape[:2])}, "
            f"got {tuple(out.shape)}{hint}"
        )
    return out


def is_sequence_model(model: object) -> bool:
    """True if ``model`` scores whole sequences (``model(x, mask) -> (B,)``), False for per-step rewards.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    return bool(getattr(model, "scores_sequences", False))


def sequence_scores(model: Callable[..., torch.Tensor], x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """A reward model's score of each segment in a padded batch, ``(B,)``: the one home for this.

    Args:
        model: a per-step reward model, ``model(x) -> (B, L)`` (or ``(B, L, 1)``), whose rewards are
            summed over the real steps (Chapter 11); or a sequence reward model with the attribute
            ``scores_sequences = True``, called as ``model(x, mask) -> (B,)`` (or ``(B, 1)``).
        x: inputs ``(B, L, D)`` (features) or ``(B, L)`` (token ids).
        mask: ``(B, L)``, True on real steps, False on padding (bool or 0/1); ``None``: all real.

    Returns:
        ``(B,)`` scores R̂; the Bradley-Terry model compares them, P[a ≻ b] = σ(R̂_a - R̂_b).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb); the
    sequence protocol in Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be (B, L) token ids or (B, L, D) features, got {shape}")
    steps = x if x.dim() == 2 else x[..., 0]  # (B, L): what the mask must match
    mask = torch.ones(steps.shape, dtype=torch.bool, device=x.device) if mask is None else as_mask(mask, steps)
    if not is_sequence_model(model):
        return masked_sum(per_step_rewards(model, x), mask)
    out = model(x, mask)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"a sequence reward model must return a tensor, got {type(out).__name__}")
    if out.dim() == 2 and out.shape[-1] == 1:
        out = out.squeeze(-1)
    if tuple(out.shape) != (x.shape[0],):
        raise ValueError(f"a sequence reward model (scores_sequences = True) must map inputs {tuple(x.shape)} to one "
                         f"score per sequence ({x.shape[0]},), got {tuple(out.shape)}")
    return out


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real position in a right-padded mask ``(B, L)`` -> ``(B,)`` long.

    Raises ``ValueError`` if a row has no real position, or is not right-padded (a False before a True):
    a causal model's last real token must not have attended to padding.
    Example: ``[[1, 1, 0], [1, 1, 1]]`` -> ``[1, 2]``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a (B, L) tensor, got {shape}")
    mask = as_mask(mask, mask)
    lengths = mask.sum(dim=1)  # (B,)
    empty = (lengths == 0).nonzero().flatten()
    if empty.numel():
        raise ValueError(f"row(s) {empty[:5].tolist()} of the mask have no real token: nothing to score")
    gaps = (mask[:, 1:] & ~mask[:, :-1]).any(dim=1).nonzero().flatten()  # a True after a False
    if gaps.numel():
        raise ValueError(f"row(s) {gaps[:5].tolist()} of the mask are not right-padded (padding before a real "
                         "token); put the padding at the end of each row")
    return lengths - 1


class SequenceRewardModel(nn.Module):
    """A reward model that scores a whole sequence: a scalar head on a trunk's last real token.

    ``forward(ids (B, L), mask (B, L)) -> (B,)``: the trunk's final hidden states
    ``trunk.hidden_states(ids) -> (B, L, C)`` are read at each row's last real token
    (:func:`last_token_index`; rows are right-padded) and a linear head maps that ``(B, C)``
    state to one score. With a causal trunk (a GPT) that state has seen the whole prompt and
    answer, and nothing of the padding after it. This is InstructGPT's reward model; unlike a
    sum of per-token rewards it does not favour longer answers by construction.

    It declares ``scores_sequences = True``, so :func:`sequence_scores`, :func:`train_reward_model`
    and :class:`RewardEnsemble` pass it the mask.

    Args:
        trunk: any module with a ``hidden_states(ids) -> (B, L, C)`` method (e.g. the book's GPT).
        hidden_size: ``C``, the width of those hidden states.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    scores_sequences = True

    def __init__(self, trunk: nn.Module, hidden_size: int) -> None:
        super().__init__()
        if not callable(getattr(trunk, "hidden_states", None)):
            raise TypeError(f"the trunk must have a hidden_states(ids) -> (B, L, C) method; "
                            f"{type(trunk).__name__} has none")
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        self.trunk = trunk
        self.hidden_size = hidden_size
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)`` and their mask ``(B, L)`` (True on real tokens) -> scores ``(B,)``."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
            shape = (tuple(ids.shape), ids.dtype) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"SequenceRewardModel reads token ids (B, L) of integer dtype, got {shape}")
        last = last_token_index(as_mask(mask, ids))  # (B,)
        h = self.trunk.hidden_states(ids)  # (B, L, C)
        B, L = ids.shape
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != (B, L, self.hidden_size):
            got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"trunk.hidden_states must return (B, L, hidden_size) = {(B, L, self.hidden_size)}, "
                             f"got {got}")
        h_last = h[torch.arange(B, device=h.device), last.to(h.device)]  # (B, C)
        return self.head(h_last).squeeze(-1)  # (B,)

"""K-wise rankings: a labeller orders K answers to one prompt; every ordered pair trains the reward model.

InstructGPT (Ouyang et al., 2022, eq. 1) shows a labeller K = 4..9 answers to the same prompt and
asks for a ranking; the C(K, 2) pairs it implies are kept together as ONE batch element, so a
prompt with many answers does not count many times (and does not overfit):

    loss(θ) = -1/C(K,2) · E_(x, y_w, y_l) [ log σ(r_θ(x, y_w) - r_θ(x, y_l)) ],

with y_w the better ("chosen") and y_l the worse ("rejected") answer of each pair. This is the
Bradley-Terry loss of Chapter 11 with ε = 0, averaged per prompt.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checks import as_mask, check_finite

__all__ = ["ranking_to_pairs", "ranking_loss"]


def ranking_to_pairs(items: Sequence[Any], ranks: Sequence[float]) -> list[tuple[Any, Any]]:
    """Every pair ``(chosen, rejected)`` implied by ranking ``items``: higher rank = better, ties give no pair.

    ``items``: the K answers of one prompt (anything: texts, :class:`Segment`, ids); ``ranks``: K numbers.
    Pairs come in the order of the items, ``(items[i], items[j])`` for ``i < j`` before ``i`` grows.
    Example: items ``"abc"`` with ranks ``[0, 2, 1]`` give ``[("b", "a"), ("c", "a"), ("b", "c")]``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    items = list(items)
    ranks = [float(r) for r in ranks]
    if len(items) != len(ranks):
        raise ValueError(f"got {len(items)} items but {len(ranks)} ranks: one rank per item")
    if len(items) < 2:
        raise ValueError(f"a ranking needs at least 2 answers to make a pair, got {len(items)}")
    bad = [r for r in ranks if r != r or r in (float("inf"), float("-inf"))]
    if bad:
        raise ValueError(f"ranks must be finite numbers, got {bad[0]}")
    pairs = []
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if ranks[i] > ranks[j]:
                pairs.append((items[i], items[j]))
            elif ranks[j] > ranks[i]:
                pairs.append((items[j], items[i]))
    return pairs


def ranking_loss(
    scores: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """InstructGPT's reward-model loss over K ranked answers per prompt, one batch element per prompt.

    loss = mean_b [ -1/n_b · Σ_{(w, l): rank_w > rank_l} log σ(s_bw - s_bl) ],

    where n_b is the number of ordered pairs of prompt b (C(K, 2) without ties or padding).

    Args:
        scores: ``(B, K)`` reward-model scores of the K answers to each of B prompts.
        ranks: ``(B, K)`` numbers, higher = better; equal ranks (ties) make no pair.
        mask: optional ``(B, K)``, True on real answers, so prompts may have fewer than K answers
            (padded scores and ranks are ignored, NaN included).

    Returns:
        ``(loss, diagnostics)``: a scalar tensor (differentiable) and a dict of floats:
        ``accuracy`` (fraction of all ordered pairs whose better answer gets the strictly higher
        score), ``margin`` (mean over pairs of s_better - s_worse) and ``pairs`` (their number).
        Example: scores ``[[2., 1., 0.]]`` and ranks ``[[2, 1, 0]]`` give loss 0.251150, accuracy 1.

    Raises ``ValueError`` for shapes other than ``(B, K)``, NaN or infinite scores or ranks on real
    answers, a prompt with fewer than 2 real answers, or one whose answers are all tied.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or not scores.is_floating_point():
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a float tensor (B, K): K answers to each of B prompts, got {shape}")
    ranks = torch.as_tensor(ranks, device=scores.device)
    if ranks.shape != scores.shape:
        raise ValueError(f"ranks have shape {tuple(ranks.shape)} but scores have shape {tuple(scores.shape)}")
    ranks = ranks.to(torch.float64)
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else as_mask(mask, scores)
    check_finite(scores, "scores", mask)
    check_finite(ranks, "ranks", mask)
    n_real = mask.sum(dim=1)  # (B,)
    few = (n_real < 2).nonzero().flatten()
    if few.numel():
        raise ValueError(f"prompt(s) {few[:5].tolist()} have fewer than 2 ranked answers: no pair to learn from")
    # better[b, i, j]: answer i of prompt b is ranked above answer j, both real.
    better = (ranks[:, :, None] > ranks[:, None, :]) & mask[:, :, None] & mask[:, None, :]  # (B, K, K)
    n_pairs = better.sum(dim=(1, 2))  # (B,)
    tied = (n_pairs == 0).nonzero().flatten()
    if tied.numel():
        raise ValueError(f"prompt(s) {tied[:5].tolist()} have all their answers tied: no ordered pair")
    safe = torch.where(mask, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))  # NaN padding out
    diff = safe[:, :, None] - safe[:, None, :]  # (B, K, K): s_i - s_j
    pair_loss = torch.where(better, -F.logsigmoid(diff), torch.zeros((), dtype=scores.dtype, device=scores.device))
    loss = (pair_loss.sum(dim=(1, 2)) / n_pairs.to(scores.dtype)).mean()
    with torch.no_grad():
        margins = diff[better]
        accuracy, margin = float((margins > 0).float().mean()), float(margins.mean())
    return loss, {"accuracy": accuracy, "margin": margin, "pairs": float(margins.numel())}

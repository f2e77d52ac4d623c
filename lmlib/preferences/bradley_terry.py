"""The Bradley-Terry model of a rater's choice and its cross-entropy loss (Christiano et al., 2017).

    P[left ≻ right] = (1 - ε) · σ(R̂_left - R̂_right) + ε / 2,    R̂ = Σ_t r̂(s_t),

where ε = 0.1 says the rater answers at random one time in ten.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import as_mask


# --------------------------------------------------------------------------- the Bradley-Terry model


def check_epsilon(epsilon: float) -> float:
    """``epsilon`` as a float in [0, 1] (the probability that the rater answers at random), or a ``ValueError``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    epsilon = float(epsilon)
    if not (0.0 <= epsilon <= 1.0):
        raise ValueError(f"epsilon (probability that the rater answers at random) must be in [0, 1], got {epsilon}")
    return epsilon


def preference_probability(r1_sum: Any, r2_sum: Any, epsilon: float = 0.1) -> Any:
    """P[segment 1 ≻ segment 2] = (1 - ε)·σ(R1 - R2) + ε/2 from summed predicted rewards.

    ``r1_sum`` and ``r2_sum`` are returns (sums of per-step rewards): floats, numpy arrays or
    torch tensors of broadcastable shapes; the result has the same kind (a float for floats).
    ``epsilon`` is the chance that the rater answers uniformly at random (0.1 in the paper).
    Example: a return difference of 2 gives 0.880797 with ε = 0 and 0.842717 with ε = 0.1.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    epsilon = check_epsilon(epsilon)
    if isinstance(r1_sum, torch.Tensor) or isinstance(r2_sum, torch.Tensor):
        r1 = torch.as_tensor(r1_sum)
        r2 = torch.as_tensor(r2_sum)
        if not r1.is_floating_point():
            r1 = r1.float()
        return (1.0 - epsilon) * torch.sigmoid(r1 - r2) + 0.5 * epsilon
    d = np.asarray(r1_sum, dtype=np.float64) - np.asarray(r2_sum, dtype=np.float64)
    p = (1.0 - epsilon) * 0.5 * (1.0 + np.tanh(0.5 * d)) + 0.5 * epsilon  # σ(d), stable for any d
    return float(p) if p.ndim == 0 else p


def masked_sum(rewards: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum per-step rewards ``(B, L)`` over the steps where ``mask`` ``(B, L)`` is true -> ``(B,)``.

    Padded steps are replaced by 0 (not multiplied by 0), so NaN or inf in padding is harmless.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise ValueError(f"per-step rewards must be a (B, L) tensor, got {shape}; for one reward per sequence use r.unsqueeze(1)")
    if mask is None:
        return rewards.sum(dim=1)
    mask = as_mask(mask, rewards)
    return torch.where(mask, rewards, torch.zeros((), dtype=rewards.dtype, device=rewards.device)).sum(dim=1)


def _log_probs(diff: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """log P[left ≻ right] and log P[right ≻ left] under the ε-Bradley-Terry model, computed stably."""
    if epsilon == 0.0:
        return F.logsigmoid(diff), F.logsigmoid(-diff)
    log_keep = math.log1p(-epsilon) if epsilon < 1.0 else -math.inf
    log_rand = torch.full_like(diff, math.log(0.5) + math.log(epsilon))  # 0.5 * ε underflows for subnormal ε
    return (
        torch.logaddexp(F.logsigmoid(diff) + log_keep, log_rand),
        torch.logaddexp(F.logsigmoid(-diff) + log_keep, log_rand),
    )


def preference_loss(
    pred_rewards_left: torch.Tensor,
    pred_rewards_right: torch.Tensor,
    mu: torch.Tensor,
    epsilon: float = 0.1,
    mask_left: torch.Tensor | None = None,
    mask_right: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy between the rater's labels and the Bradley-Terry preference probabilities.

    loss = -mean_b [ μ_b log P_b + (1 - μ_b) log(1 - P_b) ],  P_b = (1-ε)σ(R̂_left - R̂_right) + ε/2,
    with R̂ = sum of per-step predicted rewards over the unmasked steps.

    Args:
        pred_rewards_left, pred_rewards_right: per-step predicted rewards ``(B, L_left)`` and
            ``(B, L_right)`` (the two lengths may differ).
        mu: labels ``(B,)`` in [0, 1]: 1 left better, 0 right better, 0.5 tie (the loss is then
            smallest when both returns are equal).
        epsilon: probability that the rater answered at random (0.1 in the paper; TRL's reward
            trainer is ε = 0).
        mask_left, mask_right: optional bool ``(B, L)``, True on real steps, False on padding
            (variable-length token sequences).

    Returns:
        ``(loss, diagnostics)``: a scalar tensor (differentiable) and a dict of floats:
        ``accuracy`` (fraction of non-tie pairs whose preferred segment gets the strictly higher
        predicted return; NaN if all are ties) and ``margin`` (mean over non-tie pairs of
        R̂_preferred - R̂_other; NaN if all are ties).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    epsilon = check_epsilon(epsilon)
    for name, r in (("pred_rewards_left", pred_rewards_left), ("pred_rewards_right", pred_rewards_right)):
        if not isinstance(r, torch.Tensor) or r.dim() != 2 or not r.is_floating_point():
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"{name} must be a float tensor (B, L) of per-step rewards, got {shape}")
    B = pred_rewards_left.shape[0]
    if pred_rewards_right.shape[0] != B:
        raise ValueError(f"left and right batches differ in size: {B} vs {pred_rewards_right.shape[0]}")
    mu = torch.as_tensor(mu, dtype=pred_rewards_left.dtype, device=pred_rewards_left.device)
    if mu.shape != (B,):
        raise ValueError(f"mu must have shape ({B},) (one label per pair), got {tuple(mu.shape)}")
    if not bool(((mu >= 0) & (mu <= 1)).all()):
        raise ValueError("mu must lie in [0, 1]: 1 = left better, 0 = right better, 0.5 = equal")
    if mask_left is not None:
        mask_left = as_mask(mask_left, pred_rewards_left, "mask_left")
    if mask_right is not None:
        mask_right = as_mask(mask_right, pred_rewards_right, "mask_right")
    r_left = masked_sum(pred_rewards_left, mask_left)
    r_right = masked_sum(pred_rewards_right, mask_right)
    diff = r_left - r_right
    log_p_left, log_p_right = _log_probs(diff, epsilon)
    loss = -(mu * log_p_left + (1.0 - mu) * log_p_right).mean()
    with torch.no_grad():
        decisive = mu != 0.5
        sign = torch.sign(mu - 0.5)
        if bool(decisive.any()):
            signed = (sign * diff)[decisive]
            accuracy, margin = float((signed > 0).float().mean()), float(signed.mean())
        else:
            accuracy = margin = float("nan")
    return loss, {"accuracy": accuracy, "margin": margin}



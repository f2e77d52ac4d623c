"""Policy-gradient and PPO losses as small pure functions, plus masked statistics for tokens.

Each loss takes tensors of one shape (a flat minibatch ``(B,)``, or ``(B, T)``
tokens with a ``mask``) and returns a scalar tensor to minimise; the PPO
losses also return a dict of detached diagnostics named as in CleanRL
(``approx_kl``, ``clipfrac``, ...). Shapes must match exactly: a ``(B, 1)``
value head against ``(B,)`` returns would otherwise broadcast to ``(B, B)``
and train on nonsense, so that is an error here.

Nothing here knows about environments; the same functions train Atari agents
and, in the RLHF chapters, a language model.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
:func:`reinforce_loss` in Chapter 9, "Reinforcement learning and policy
gradients" (chapters/09_policy_gradients.ipynb).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import as_mask, check_finite

__all__ = [
    "masked_mean", "masked_var", "masked_whiten", "normalize_advantages", "reinforce_loss",
    "clipped_surrogate_loss", "value_loss", "entropy_bonus", "explained_variance", "kl_penalty",
]


def _same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"shapes must match exactly (no broadcasting), got {listing}; "
                         f"a value head of shape (B, 1) needs .squeeze(-1) or .view(-1)")


def _require_finite(outputs: tuple[Tensor, ...], mask: Tensor | None, **inputs: Tensor) -> None:
    """Raise :func:`lmlib.checks.check_finite`'s ``ValueError`` for the first of ``inputs`` that holds a NaN
    or infinity at a real position (where ``mask`` is 1; padding may hold anything).

    The PPO losses run this on every minibatch, so the usual case costs one ``.item()`` per scalar in
    ``outputs``: each caller passes scalars that a non-finite real input always makes non-finite (the
    loss, and for the clipped surrogate the k3 KL, which catches an infinite log-prob that the clipped
    loss would hide). Only when one of them is not finite are the inputs checked by name; if none is
    at fault (finite values that overflowed), there is no error.
    """
    if all(math.isfinite(o.item()) for o in outputs):
        return
    for name, t in inputs.items():
        check_finite(t, name, mask)


def masked_mean(values: Tensor, mask: Tensor | None = None, dim: int | None = None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (all positions if ``mask`` is None).

    ``values`` and ``mask`` have the same shape, e.g. ``(B, T)`` tokens with
    0 on padding. Padded positions may hold anything, even NaN. With ``dim``,
    the mean is taken along that dimension only (e.g. ``dim=1``: one mean per
    sequence). An empty selection is an error rather than a silent NaN.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    if mask is None:
        if values.numel() == 0:
            raise ValueError("masked_mean of an empty tensor")
        return values.mean() if dim is None else values.mean(dim)
    m = as_mask(mask, values)
    count = m.sum() if dim is None else m.sum(dim)
    if (count == 0).any():
        raise ValueError("mask selects no elements" + ("" if dim is None else f" in some slice along dim {dim}"))
    total = torch.where(m, values, 0.0)
    total = total.sum() if dim is None else total.sum(dim)
    return total / count


def masked_var(values: Tensor, mask: Tensor | None = None, unbiased: bool = True) -> Tensor:
    """Variance of the selected entries of ``values`` (Bessel-corrected if ``unbiased``), a scalar.

    Needs at least two selected entries when ``unbiased``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    m = torch.ones_like(values, dtype=torch.bool) if mask is None else as_mask(mask, values)
    n = int(m.sum())
    if n < (2 if unbiased else 1):
        raise ValueError(f"need at least {2 if unbiased else 1} selected values for a variance, got {n}")
    mean = masked_mean(values, m)
    var = masked_mean((torch.where(m, values, 0.0) - mean) ** 2, m)
    return var * n / (n - 1) if unbiased else var


def masked_whiten(values: Tensor, mask: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Whiten ``values`` with the mean and variance of the selected entries only (as in TRL).

    Returns ``(values - mean) / sqrt(var + eps)`` (or, if not ``shift_mean``,
    the mean is added back: only the scale changes). Shape as ``values``,
    e.g. ``(B, T)``; padded positions do not influence the statistics and are
    set to 0 in the result.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
    used for per-token advantages in the RLHF chapters.
    """
    m = torch.ones_like(values, dtype=torch.bool) if mask is None else as_mask(mask, values)
    mean, var = masked_mean(values, m), masked_var(values, m)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, 0.0)


def normalize_advantages(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Per-minibatch advantage normalisation, CleanRL's ``(adv - adv.mean()) / (adv.std() + 1e-8)``.

    ``advantages``: any shape, e.g. ``(B,)``; with a ``mask`` only the selected
    entries count and padded entries become 0. Needs at least two entries (the
    standard deviation of one number is undefined, and CleanRL would silently
    produce NaN).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    m = torch.ones_like(advantages, dtype=torch.bool) if mask is None else as_mask(mask, advantages)
    if int(m.sum()) < 2:
        raise ValueError(f"cannot normalise fewer than 2 advantages (got {int(m.sum())}); use larger minibatches "
                         f"or norm_adv=False")
    std = masked_var(advantages, m).sqrt()
    return torch.where(m, (advantages - masked_mean(advantages, m)) / (std + eps), 0.0)


def reinforce_loss(logprobs: Tensor, advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    """Vanilla policy-gradient (REINFORCE, Williams 1992) loss ``-mean(log pi(a|s) * A)``.

    Its gradient is the policy-gradient estimate ``-mean(grad log pi(a|s) * A)``
    where ``A`` is the reward-to-go (optionally minus a baseline). ``logprobs``
    carries gradients; ``advantages`` is treated as a constant (detached).
    Shapes: equal, e.g. ``(B,)``, or ``(B, T)`` tokens with ``mask``.

    Taught in: Chapter 9, "Reinforcement learning and policy gradients"
    (chapters/09_policy_gradients.ipynb).
    """
    _same_shape(logprobs=logprobs, advantages=advantages)
    loss = -masked_mean(logprobs * advantages.detach(), mask)
    _require_finite((loss,), mask, logprobs=logprobs, advantages=advantages)
    return loss


def clipped_surrogate_loss(
    new_logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    clip_coef: float = 0.2,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate objective (Schulman et al. 2017, eq. 7), negated into a loss.

    ``L^CLIP = E_t[ min( r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t ) ]`` with the
    probability ratio ``r_t = pi_new(a_t|s_t) / pi_old(a_t|s_t) = exp(new_logprobs - old_logprobs)``.
    We return ``pg_loss = -L^CLIP`` (CleanRL: ``max(-A r, -A clip(r))``), whose
    gradient is zero wherever the clipped term is the smaller one, i.e. where
    the ratio has already moved past ``1 +- eps`` in the direction ``A`` favours.

    Args:
        new_logprobs: ``(B,)`` log-probs of the taken actions under the current policy (with grad).
        old_logprobs: ``(B,)`` the same under the rollout policy (constants).
        advantages: ``(B,)`` (normalise beforehand if you want; constants).
        clip_coef: eps in (0, 1), e.g. 0.2. mask: optional ``(B, T)``-style mask for tokens.

    Raises ``ValueError`` for mismatched shapes, a ``clip_coef`` outside (0, 1), or a NaN or
    infinity in an input (at a real position: masked-out ones may hold anything), naming the
    argument; a NaN would otherwise give a NaN loss and a clip fraction of 0 without a word.

    Returns:
        ``(pg_loss, info)``: a scalar, and detached scalars ``approx_kl``
        (``((r - 1) - log r).mean()``, the k3 estimator of KL(old || new), as in
        CleanRL), ``old_approx_kl`` (``(-log r).mean()``), ``clipfrac`` (fraction
        with ``|r - 1| > eps``) and ``ratio_mean``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    _same_shape(new_logprobs=new_logprobs, old_logprobs=old_logprobs, advantages=advantages)
    if not 0.0 < clip_coef < 1.0:
        raise ValueError(f"clip_coef must be in (0, 1), got {clip_coef}: the ratio is clipped to "
                         f"[1 - clip_coef, 1 + clip_coef], and a lower end <= 0 never clips a falling probability")
    advantages = advantages.detach()
    logratio = new_logprobs - old_logprobs.detach()
    ratio = logratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)
    with torch.no_grad():
        info = {
            "approx_kl": masked_mean((ratio - 1) - logratio, mask),
            "old_approx_kl": masked_mean(-logratio, mask),
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_coef).to(ratio.dtype), mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    _require_finite((pg_loss, info["approx_kl"]), mask,
                    new_logprobs=new_logprobs, old_logprobs=old_logprobs, advantages=advantages)
    return pg_loss, info


def value_loss(
    new_values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    clip_coef: float | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Value-function loss ``0.5 * mean((V - returns)^2)``, optionally clipped as in PPO2/CleanRL.

    With ``clip_coef``, the new value may move at most ``clip_coef`` from
    ``old_values`` before the loss stops rewarding it:
    ``0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))``.
    (Not in the PPO paper; an implementation detail of OpenAI baselines.)

    Args:
        new_values: ``(B,)`` current value predictions (with grad).
        old_values: ``(B,)`` values recorded during the rollout.
        returns: ``(B,)`` targets (GAE returns). mask: optional, for tokens.

    Returns:
        ``(v_loss, info)`` with detached ``vf_clipfrac`` (0 without clipping).

    Raises ``ValueError`` naming the argument that holds a NaN or infinity (at a real position).

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    _same_shape(new_values=new_values, old_values=old_values, returns=returns)
    if clip_coef is not None and clip_coef <= 0:
        raise ValueError(f"clip_coef must be positive or None, got {clip_coef}")
    returns, old_values = returns.detach(), old_values.detach()
    v_loss_unclipped = (new_values - returns) ** 2
    if clip_coef is None:
        v_loss = 0.5 * masked_mean(v_loss_unclipped, mask)
        # old_values does not enter the unclipped loss: its sum stands in for it in the check
        _require_finite((v_loss, old_values.sum()), mask, new_values=new_values, old_values=old_values, returns=returns)
        return v_loss, {"vf_clipfrac": torch.zeros((), device=new_values.device)}
    v_clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    v_loss_clipped = (v_clipped - returns) ** 2
    v_loss = 0.5 * masked_mean(torch.max(v_loss_unclipped, v_loss_clipped), mask)
    _require_finite((v_loss,), mask, new_values=new_values, old_values=old_values, returns=returns)
    with torch.no_grad():
        vf_clipfrac = masked_mean((v_loss_clipped > v_loss_unclipped).to(new_values.dtype), mask)
    return v_loss, {"vf_clipfrac": vf_clipfrac}


def entropy_bonus(entropy: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean policy entropy, the ``S[pi](s_t)`` term of Schulman et al. 2017, eq. 9.

    ``entropy``: ``(B,)`` (or ``(B, T)`` with ``mask``). PPO *subtracts*
    ``ent_coef * entropy_bonus`` from its loss to keep exploring.

    A NaN or infinite entropy (at a real position) is a ``ValueError``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    bonus = masked_mean(entropy, mask)
    _require_finite((bonus,), mask, entropy=entropy)
    return bonus


def explained_variance(y_pred: Tensor, y_true: Tensor, mask: Tensor | None = None) -> float:
    """``1 - Var[y_true - y_pred] / Var[y_true]``: 1 is a perfect value function, 0 no better than a constant.

    Negative means worse than predicting the mean. Returns ``nan`` when
    ``y_true`` is constant (as CleanRL does). Shapes equal, e.g. ``(T*N,)``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    _same_shape(y_pred=y_pred, y_true=y_true)
    with torch.no_grad():
        var_y = float(masked_var(y_true, mask, unbiased=False))
        if var_y == 0:
            return float("nan")
        return 1.0 - float(masked_var(y_true - y_pred, mask, unbiased=False)) / var_y


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k1", mask: Tensor | None = None) -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of ``pi``, for the RLHF reward.

    With ``log r = ref_logprobs - logprobs`` (Schulman, "Approximating KL
    Divergence", 2020):

    * ``"k1"``: ``-log r = logprobs - ref_logprobs`` (unbiased, can be negative);
    * ``"k2"``: ``0.5 * (log r)^2`` (biased, low variance, always >= 0);
    * ``"k3"``: ``(r - 1) - log r`` (unbiased, always >= 0).

    ``logprobs`` and ``ref_logprobs``: same shape, e.g. ``(B, T)``; the result has
    that shape (no reduction; sum it over the real tokens yourself). A NaN or
    infinity in either is a ``ValueError`` naming it; with a ``mask`` (same shape,
    0 on padding) padded positions may hold anything and are 0 in the result.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb);
    used in the RLHF chapters.
    """
    _same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    if kind not in ("k1", "k2", "k3"):
        raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")
    log_r = ref_logprobs - logprobs
    if kind == "k1":
        kl = -log_r
    elif kind == "k2":
        kl = 0.5 * log_r**2
    else:
        kl = (log_r.exp() - 1) - log_r
    if mask is not None:
        kl = torch.where(as_mask(mask, kl), kl, 0.0)
    _require_finite((kl.sum(),), mask, logprobs=logprobs, ref_logprobs=ref_logprobs)
    return kl

"""Input checks shared by every layer of lmlib: masks and finite values.

A wrong input to lmlib gets an error that names the problem (the argument, its shape, an offending
value), never a silent wrong answer; these helpers are the one place where the common checks live.

Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb), where masks over padded
(B, T) tensors first appear; used by the preference and RLHF code.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_mask", "check_finite"]


def as_mask(mask: Tensor, like: Tensor, name: str = "mask") -> Tensor:
    """``mask`` as a bool tensor of ``like``'s shape (True = a real position); 0/1 numbers are accepted.

    Raises ``ValueError`` naming ``name`` if the shapes differ or the mask holds values other than 0 and 1.
    """
    if not isinstance(like, Tensor):
        raise TypeError(f"as_mask needs the values as a tensor, got {type(like).__name__}")
    mask = torch.as_tensor(mask, device=like.device)
    if mask.shape != like.shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but the values have shape {tuple(like.shape)}")
    if mask.dtype != torch.bool:
        bad = (mask != 0) & (mask != 1)
        if bool(bad.any()):
            raise ValueError(f"{name} must hold only 0 and 1 (or be bool), got values such as "
                             f"{mask[bad].flatten()[:3].tolist()}")
        mask = mask.bool()
    return mask


def check_finite(x: Tensor, name: str, mask: Tensor | None = None) -> Tensor:
    """Raise ``ValueError`` naming ``name`` if ``x`` holds NaN or infinity (only where ``mask`` is true, if given).

    Returns ``x`` unchanged, so it can wrap an argument: ``logprobs = check_finite(logprobs, "logprobs")``.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        return x
    bad = ~torch.isfinite(x)
    if mask is not None:
        bad = bad & as_mask(mask, x)
    if bool(bad.any()):
        n = int(bad.sum())
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise ValueError(f"{name} holds {n} non-finite value(s) (NaN or inf), the first at index {first}: "
                         f"{x[first].item()}")
    return x

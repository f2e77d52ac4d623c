"""Exercises of Chapter 4, "Attention": attention from scratch, one piece at a time.

* ``ch04.attention``: ``attention(q, k, v)`` = ``softmax(q k^T / sqrt(hs)) v`` for
  q (..., T, hs), k (..., S, hs), v (..., S, hv); no mask. Returns (..., T, hv).
* ``ch04.causal_mask``: ``causal_mask(T)``: a (T, T) **bool** tensor, True where query i
  may attend to key j, i.e. ``j <= i`` (lower triangle, diagonal included).
* ``ch04.padding_mask``: ``padding_mask(lengths, S)``: a (B, S) **bool** tensor, True on the
  first ``lengths[b]`` positions of row b (the real tokens), False on the padding.
* ``ch04.causal_attention``: ``causal_attention(q, k, v)`` for q, k, v (B, nh, T, hs):
  attention in which position i only sees positions ``j <= i``.
* ``ch04.split_heads``: ``split_heads(x, n_head)``: (B, T, C) -> (B, nh, T, hs), head h
  holding features ``h*hs .. (h+1)*hs - 1`` (hs = C / nh).
* ``ch04.merge_heads``: ``merge_heads(x)``: (B, nh, T, hs) -> (B, T, nh*hs), the inverse.

Checked against :mod:`lmlib.lm.attention`.

Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..lm.attention import causal_mask, padding_mask, scaled_dot_product_attention
from .core import Case, compare_values, register

# float32 inputs: two correct answers may round differently in the last bits
_compare = partial(compare_values, rtol=1e-4, atol=1e-5)


def _randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.tensor(rng.normal(size=shape) * scale, dtype=torch.float32)


# ----------------------------------------------------------------------------- attention


def ref_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(hs)) v``: q (..., T, hs), k (..., S, hs), v (..., S, hv) -> (..., T, hv)."""
    return scaled_dot_product_attention(q, k, v)


def _attention_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_randn(rng, 1, 4), _randn(rng, 1, 4), _randn(rng, 1, 4)), label="one query, one key (the output is v)"),
        Case((_randn(rng, 3, 2), _randn(rng, 3, 2), _randn(rng, 3, 2)), label="T=S=3, hs=2, no batch dims"),
        Case((_randn(rng, 2, 8), _randn(rng, 5, 8), _randn(rng, 5, 3)), label="2 queries over 5 keys, values of size 3"),
        Case((_randn(rng, 2, 4, 16, scale=4.0), _randn(rng, 2, 4, 16, scale=4.0), _randn(rng, 2, 4, 3)),
             label="large scores (softmax must not overflow; did you divide by sqrt(hs)?)"),
    ]
    for n in range(4):
        B, nh, T, hs = (int(i) for i in rng.integers(1, 5, size=4))
        S = int(rng.integers(1, 7))
        cases.append(Case((_randn(rng, B, nh, T, hs), _randn(rng, B, nh, S, hs), _randn(rng, B, nh, S, hs)),
                          label=f"random (B, nh, T, hs)=({B}, {nh}, {T}, {hs}), S={S}"))
    return cases


def _compare_attention(got: Any, expected: Tensor) -> str | None:
    problem = _compare(got, expected)
    if problem and problem.startswith("wrong values"):
        problem += ("; check the 1/sqrt(d) scaling (d = q.shape[-1]) and that the softmax runs over the keys "
                    "(dim=-1), so that each query's weights sum to 1")
    return problem


register("ch04.attention", ref_attention, _attention_cases, compare=_compare_attention,
         title="Scaled dot-product attention")


# ----------------------------------------------------------------------------- causal mask


def ref_causal_mask(T: int) -> Tensor:
    """(T, T) bool: True where key j <= query i."""
    return causal_mask(T)


def _compare_mask(got: Any, expected: Tensor) -> str | None:
    if isinstance(got, Tensor) and got.dtype != torch.bool:
        return f"the mask must be a bool tensor (True = may attend), got dtype {got.dtype}; try `== 1` or `.bool()`"
    problem = compare_values(got, expected)
    if problem is None or not isinstance(got, Tensor) or got.shape != expected.shape:
        return problem
    T = expected.shape[-1]
    if T > 1 and torch.equal(got, ~expected):
        return (f"{problem}: you marked the positions to hide (True = masked, PyTorch's attn_mask convention "
                "of nn.MultiheadAttention); here True means 'may attend'")
    if bool((got & ~expected).any()):
        return (f"{problem}: True above the diagonal lets query i see a later key j > i (the future); "
                "the mask must be the lower triangle (torch.tril)")
    if T > 0 and not bool(got.diagonal().all()):
        return f"{problem}: the diagonal must be True, a token may attend to itself (query 0 sees only key 0)"
    return problem


register("ch04.causal_mask", ref_causal_mask, lambda rng: [Case((T,), label=f"T={T}") for T in (3, 1, 2, 5, 8, 16)],
         compare=_compare_mask, title="The causal mask")


# ----------------------------------------------------------------------------- padding mask


def ref_padding_mask(lengths: list[int], S: int) -> Tensor:
    """(B, S) bool: True on the first lengths[b] positions of row b (real tokens), False on the padding."""
    return padding_mask(lengths, S)[:, 0, 0, :]


def _compare_padding(got: Any, expected: Tensor) -> str | None:
    if isinstance(got, Tensor) and got.dtype != torch.bool:
        return f"the mask must be a bool tensor (True = a real token), got dtype {got.dtype}; try `.bool()`"
    problem = compare_values(got, expected)
    if problem is None or not isinstance(got, Tensor) or got.shape != expected.shape:
        return problem
    if torch.equal(got, ~expected):
        return (f"{problem}: you marked the padding (True = ignore, the convention of PyTorch's "
                "key_padding_mask); here True means a real token that may be attended to")
    for b, (g, e) in enumerate(zip(got.sum(-1).tolist(), expected.sum(-1).tolist())):
        if g != e:
            return f"{problem}: row {b} has {g} True entries, expected lengths[{b}] = {e} (is it < or <=?)"
    return f"{problem}: the True entries must come first (padding is on the right)"


def _padding_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case(([3, 1, 2], 4), label="lengths [3, 1, 2] padded to S=4"),
             Case(([5], 5), label="one sequence without padding"),
             Case(([0, 2], 3), label="an empty sequence (all padding)"),
             Case(([2, 2], 6), label="equal lengths, lots of padding")]
    for n in range(4):
        B, S = int(rng.integers(1, 6)), int(rng.integers(1, 10))
        lengths = [int(x) for x in rng.integers(0, S + 1, size=B)]
        cases.append(Case((lengths, S), label=f"random lengths {lengths}, S={S}"))
    return cases


register("ch04.padding_mask", ref_padding_mask, _padding_cases, compare=_compare_padding, title="A padding mask")


# ----------------------------------------------------------------------------- causal attention


def ref_causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention in which position i sees positions j <= i: (B, nh, T, hs) each -> (B, nh, T, hs)."""
    return scaled_dot_product_attention(q, k, v, is_causal=True)


def _causal_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_randn(rng, 1, 1, 1, 4), _randn(rng, 1, 1, 1, 4), _randn(rng, 1, 1, 1, 4)), label="T=1 (the output is v)"),
        Case((_randn(rng, 1, 1, 3, 2), _randn(rng, 1, 1, 3, 2), _randn(rng, 1, 1, 3, 2)),
             label="T=3: the first output must equal v[0]"),
        Case((_randn(rng, 2, 2, 6, 4, scale=5.0), _randn(rng, 2, 2, 6, 4, scale=5.0), _randn(rng, 2, 2, 6, 4)),
             label="large scores"),
    ]
    for n in range(4):
        B, nh, T, hs = (int(i) for i in rng.integers(1, 6, size=4))
        cases.append(Case(tuple(_randn(rng, B, nh, T, hs) for _ in range(3)),
                          label=f"random (B, nh, T, hs)=({B}, {nh}, {T}, {hs})"))
    return cases


def _compare_causal(got: Any, expected: Tensor) -> str | None:
    problem = _compare(got, expected)
    if not problem or not problem.startswith("wrong values") or not isinstance(got, Tensor):
        return problem
    if _compare(got[..., :1, :], expected[..., :1, :]) is not None:
        return (f"{problem}; position 0 may see only itself, so its output must be exactly v[..., 0, :]: fill "
                "the future scores (j > i) with -inf *before* the softmax (zeroing weights after it leaves "
                "rows that do not sum to 1)")
    return problem + "; the first position is right: check the 1/sqrt(hs) scaling and the softmax over dim=-1"


register("ch04.causal_attention", ref_causal_attention, _causal_cases, compare=_compare_causal,
         title="Causal (masked) self-attention")


# ----------------------------------------------------------------------------- heads


def ref_split_heads(x: Tensor, n_head: int) -> Tensor:
    """(B, T, C) -> (B, nh, T, C // nh)."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def ref_merge_heads(x: Tensor) -> Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs)."""
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def _split_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((torch.arange(8.0).view(1, 1, 8), 2), label="x = 0..7 as (1, 1, 8), 2 heads: [[0..3], [4..7]]"),
             Case((torch.arange(12.0).view(1, 2, 6), 3), label="x = 0..11 as (1, 2, 6), 3 heads")]
    for n in range(4):
        B, T, nh, hs = (int(i) for i in rng.integers(1, 5, size=4))
        cases.append(Case((_randn(rng, B, T, nh * hs), nh), label=f"random (B, T, C)=({B}, {T}, {nh * hs}), nh={nh}"))
    return cases


def _merge_cases(rng: np.random.Generator) -> list[Case]:
    cases = [Case((torch.arange(8.0).view(1, 2, 1, 4),), label="x = 0..7 as (1, 2, 1, 4): one token, 2 heads")]
    for n in range(4):
        B, nh, T, hs = (int(i) for i in rng.integers(1, 5, size=4))
        cases.append(Case((_randn(rng, B, nh, T, hs),), label=f"random (B, nh, T, hs)=({B}, {nh}, {T}, {hs})"))
    return cases


def _compare_split(got: Any, expected: Tensor) -> str | None:
    problem = compare_values(got, expected)
    if problem is None or not isinstance(got, Tensor) or got.shape != expected.shape:
        return problem
    B, nh, T, hs = expected.shape
    x = ref_merge_heads(expected)  # the input, rebuilt: (B, T, C)
    if torch.equal(got, x.reshape(B, nh, T, hs)):
        return (f"{problem}: reshaping (B, T, C) straight to (B, nh, T, hs) puts features of different tokens "
                "into one row; view as (B, T, nh, hs) first, then .transpose(1, 2)")
    if torch.equal(got, x.view(B, T, hs, nh).permute(0, 3, 1, 2)):
        return f"{problem}: head h must hold the consecutive features h*hs .. (h+1)*hs - 1, not every nh-th one"
    return problem


def _compare_merge(got: Any, expected: Tensor) -> str | None:
    problem = compare_values(got, expected)
    if problem is None or not isinstance(got, Tensor) or got.shape != expected.shape:
        return problem
    B, T, C = expected.shape
    for nh in range(2, C + 1):  # which head count was it? try each divisor of C
        if C % nh == 0:
            x = expected.view(B, T, nh, C // nh).transpose(1, 2)  # the input, rebuilt: (B, nh, T, hs)
            if torch.equal(got, x.reshape(B, T, C)):
                return (f"{problem}: reshaping (B, nh, T, hs) straight to (B, T, C) mixes tokens; "
                        ".transpose(1, 2) to (B, T, nh, hs) first, then reshape")
    return problem


register("ch04.split_heads", ref_split_heads, _split_cases, compare=_compare_split, title="Split into heads")
register("ch04.merge_heads", ref_merge_heads, _merge_cases, compare=_compare_merge, title="Merge the heads")

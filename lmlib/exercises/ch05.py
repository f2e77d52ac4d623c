"""Exercises of Chapter 5, "Transformers": positions, parameter counts and sampling.

* ``ch05.sinusoidal``: ``sinusoidal(T, d)``: (T, d) float tensor with
  ``PE[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
* ``ch05.rope``: ``rope(x, base=10000.0)`` for x (..., T, d): rotate each pair
  ``(x[..., t, 2k], x[..., t, 2k+1])`` by the angle ``t * base^(-2k/d)``:
  ``(a, b) -> (a cos - b sin, a sin + b cos)``; positions t = 0 .. T-1.
* ``ch05.alibi_slopes``: ``alibi_slopes(n_head)``: the list of ALiBi slopes for a power of
  two ``n_head``: ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``.
* ``ch05.count_params``: ``count_params(vocab_size, block_size, n_layer, n_embd, bias=True,
  tie_weights=True, pos_encoding="learned")``: the number of parameters of
  :class:`lmlib.gpt.GPT` with that config (a tied matrix counts once; only
  ``"learned"`` has a position table).
* ``ch05.top_k_logits``: ``top_k_logits(logits, k)`` for logits (B, V): keep the k largest
  entries of each row (and any tied with the k-th), set the rest to ``-inf``.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..positional import alibi_slopes, apply_rope, rope_angles, sinusoidal_encoding
from .core import Case, compare_values, register

_compare = partial(compare_values, rtol=1e-4, atol=1e-5)


def _randn(rng: np.random.Generator, *shape: int) -> Tensor:
    return torch.tensor(rng.normal(size=shape), dtype=torch.float32)


# ----------------------------------------------------------------------------- sinusoidal


def ref_sinusoidal(T: int, d: int) -> Tensor:
    """(T, d): sin on even features, cos on odd ones, wavelengths 2*pi .. 10000*2*pi."""
    return sinusoidal_encoding(T, d)


register("ch05.sinusoidal", ref_sinusoidal,
         lambda rng: [Case((1, 2), label="T=1, d=2: [[0, 1]]"), Case((3, 4), label="T=3, d=4"),
                      Case((50, 16), label="T=50, d=16"), Case((7, 128), label="T=7, d=128")],
         compare=_compare, title="Sinusoidal position encodings")


# ----------------------------------------------------------------------------- RoPE


def ref_rope(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate feature pairs (2k, 2k+1) of x (..., T, d) by t * base^(-2k/d), t = 0..T-1."""
    T, d = x.shape[-2:]
    return apply_rope(x, *rope_angles(T, d, base))


def _rope_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),),
             label="(1, 0) at positions 0, 1, 2 becomes (cos t, sin t)"),
        Case((_randn(rng, 1, 4),), label="a single position (t = 0: nothing turns)"),
        Case((_randn(rng, 5, 8), 100.0), label="T=5, d=8, base=100"),
    ]
    for n in range(3):
        B, nh, T = (int(i) for i in rng.integers(1, 4, size=3))
        d = 2 * int(rng.integers(1, 9))
        cases.append(Case((_randn(rng, B, nh, T, d),), label=f"random (B, nh, T, d)=({B}, {nh}, {T}, {d})"))
    return cases


register("ch05.rope", ref_rope, _rope_cases, compare=_compare, title="Rotary position embedding")


# ----------------------------------------------------------------------------- ALiBi


def ref_alibi_slopes(n_head: int) -> list[float]:
    """ALiBi slopes for ``n_head`` heads (a power of two): 2^(-8h/n), h = 1..n."""
    return alibi_slopes(n_head).tolist()


register("ch05.alibi_slopes", ref_alibi_slopes,
         lambda rng: [Case((n,), label=f"{n} heads") for n in (1, 2, 4, 8, 16)],
         compare=_compare, title="ALiBi slopes")


# ----------------------------------------------------------------------------- parameter count


def ref_count_params(
    vocab_size: int,
    block_size: int,
    n_layer: int,
    n_embd: int,
    bias: bool = True,
    tie_weights: bool = True,
    pos_encoding: str = "learned",
) -> int:
    """Parameters of lmlib.gpt.GPT, worked out by hand (C = n_embd, V = vocab_size).

    Per block: ln_1, ln_2 (C weights each, + C biases), c_attn (3C*C + 3C), attn.c_proj (C*C + C),
    mlp.c_fc (4C*C + 4C), mlp.c_proj (4C*C + C): 12 C^2 + 2C (+ 11C with biases).
    Plus ln_f (C, + C), wte (V*C), wpe (block_size*C, "learned" only), lm_head (V*C unless tied).
    """
    C = n_embd
    per_block = 12 * C * C + 2 * C + (11 * C if bias else 0)
    n = n_layer * per_block + C + (C if bias else 0) + vocab_size * C
    if pos_encoding == "learned":
        n += block_size * C
    if not tie_weights:
        n += vocab_size * C
    return n


def _count_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((65, 256, 6, 384), label="nanoGPT's shakespeare_char (V=65, T=256, 6 layers, C=384)"),
        Case((64, 64, 4, 128), kwargs={"bias": False}, label="the book's small model without biases"),
        Case((50257, 1024, 12, 768), label="GPT-2 small (124M)"),
        Case((10, 8, 2, 8), kwargs={"tie_weights": False}, label="tiny, untied"),
        Case((10, 8, 2, 8), kwargs={"pos_encoding": "rope"}, label="tiny, RoPE (no position table)"),
        Case((10, 8, 1, 8), kwargs={"bias": False, "pos_encoding": "none"}, label="one block, no biases, no positions"),
    ]
    for n in range(3):
        V, T, L = int(rng.integers(2, 100)), int(rng.integers(1, 64)), int(rng.integers(1, 5))
        C = 8 * int(rng.integers(1, 9))
        kw = {"bias": bool(rng.integers(2)), "tie_weights": bool(rng.integers(2)),
              "pos_encoding": ["none", "learned", "sinusoidal", "alibi", "rope"][int(rng.integers(5))]}
        cases.append(Case((V, T, L, C), kwargs=kw, label=f"random config V={V}, T={T}, L={L}, C={C}"))
    return cases


register("ch05.count_params", ref_count_params, _count_cases, title="Count a GPT's parameters")


# ----------------------------------------------------------------------------- top-k


def ref_top_k_logits(logits: Tensor, k: int) -> Tensor:
    """(B, V) -> (B, V): entries below the k-th largest of their row become -inf."""
    if k >= logits.size(-1):
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., [-1]]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_k_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((torch.tensor([[1.0, 3.0, 2.0, 0.0]]), 2), label="[1, 3, 2, 0], k=2 -> [-inf, 3, 2, -inf]"),
        Case((torch.tensor([[1.0, 3.0, 2.0]]), 1), label="k=1 keeps only the maximum"),
        Case((torch.tensor([[1.0, 3.0, 2.0]]), 3), label="k = V keeps everything"),
        Case((torch.tensor([[0.5, 2.0, 2.0, 1.0]]), 1), label="a tie at the top: both stay"),
    ]
    for n in range(3):
        B, V = int(rng.integers(1, 4)), int(rng.integers(2, 20))
        cases.append(Case((_randn(rng, B, V), int(rng.integers(1, V + 1))), label=f"random (B, V)=({B}, {V})"))
    return cases


register("ch05.top_k_logits", ref_top_k_logits, _top_k_cases, title="Top-k filtering of logits")

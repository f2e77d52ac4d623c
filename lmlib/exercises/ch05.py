"""Exercises of Chapter 5, "Transformers": layer norm, parameter counts and positions.

* ``ch05.layer_norm``: ``layer_norm(x, weight, bias, eps=1e-5)`` for x (..., C): normalise each
  vector of C features to mean 0 and variance 1 (the biased variance, dividing by C, with
  ``eps`` inside the square root), then multiply by ``weight`` (C,) and add ``bias`` (C,).
* ``ch05.count_params``: ``count_params(vocab_size, block_size, n_layer, n_embd, bias=True,
  tie_weights=True, pos_encoding="learned")``: the number of parameters of
  :class:`lmlib.lm.gpt.GPT` with that config (a tied matrix counts once; only
  ``"learned"`` has a position table).
* ``ch05.sinusoidal``: ``sinusoidal(T, d)``: (T, d) float tensor with
  ``PE[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``PE[pos, 2i+1] = cos(pos / 10000^(2i/d))``.
* ``ch05.alibi_slopes``: ``alibi_slopes(n_head)``: the list of ALiBi slopes for a power of
  two ``n_head``: ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``.
* ``ch05.rope``: ``rope(x, base=10000.0)`` for x (..., T, d): rotate each pair
  ``(x[..., t, 2k], x[..., t, 2k+1])`` by the angle ``t * base^(-2k/d)``:
  ``(a, b) -> (a cos - b sin, a sin + b cos)``; positions t = 0 .. T-1.

Each is graded against :mod:`lmlib.lm.positional` / :mod:`torch` on edge cases whose labels
name the usual mistake, and on random inputs.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..lm.positional import alibi_slopes, apply_rope, rope_angles, sinusoidal_encoding
from .core import Case, compare_values, register

_compare = partial(compare_values, rtol=1e-4, atol=1e-5)


def _randn(rng: np.random.Generator, *shape: int) -> Tensor:
    return torch.tensor(rng.normal(size=shape), dtype=torch.float32)


def _as_tensor(got: Any) -> Any:
    """A list or array answer as a float tensor (so a learner may return any of the three)."""
    if isinstance(got, (list, tuple, np.ndarray)):
        try:
            return torch.as_tensor(np.asarray(got, dtype=np.float64), dtype=torch.float32)
        except (TypeError, ValueError):
            return got
    return got


# ----------------------------------------------------------------------------- layer norm


def ref_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """(..., C) -> (..., C): ``(x - mean) / sqrt(var + eps) * weight + bias`` over the last dim."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def _layer_norm_cases(rng: np.random.Generator) -> list[Case]:
    ones, zeros = torch.ones(4), torch.zeros(4)
    cases = [
        Case((torch.tensor([[1.0, 2.0, 3.0, 4.0]]), ones, zeros),
             label="one row [1, 2, 3, 4], weight 1, bias 0 (the variance divides by C = 4, not C - 1)"),
        Case((torch.tensor([[5.0, 5.0, 5.0, 5.0]]), ones, zeros),
             label="a constant row (variance 0: eps keeps the division finite, the answer is 0)"),
        Case((torch.tensor([[0.0, 1e-3, 0.0, 1e-3]]), ones, zeros),
             label="a row with a tiny variance (eps goes inside the square root: sqrt(var + eps))"),
        Case((torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([1.0, 2.0, 0.5, -1.0]), torch.tensor([0.0, 1.0, 0.0, 3.0])),
             label="weight [1, 2, 0.5, -1] and bias [0, 1, 0, 3] (scale, then shift, each feature its own)"),
        Case((torch.tensor([[[1.0, 2.0, 3.0, 4.0], [10.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 8.0], [4.0, 3.0, 2.0, 1.0]]]),
              ones, zeros),
             label="a (B, T, C) = (2, 2, 4) batch (normalise each token's C features, over the last dim only)"),
    ]
    for n in range(4):
        shape = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        C = int(rng.integers(2, 17))
        x = _randn(rng, *shape, C) * float(rng.choice([0.1, 1.0, 10.0])) + float(rng.normal() * 3)
        cases.append(Case((x, 1 + 0.5 * _randn(rng, C), _randn(rng, C)), label=f"random x of shape {(*shape, C)}"))
    cases.append(Case((_randn(rng, 3, 5), torch.ones(5), torch.zeros(5)), {"eps": 0.5}, label="eps=0.5 (use the eps argument)"))
    return cases


def _compare_layer_norm(got: Any, expected: Any) -> str | None:
    problem = _compare(got, expected)
    if problem and isinstance(got, Tensor) and got.shape == expected.shape and torch.isnan(got).any():
        problem += " (NaN: 0 / 0 on a constant row; add eps to the variance before the square root)"
    return problem


register("ch05.layer_norm", ref_layer_norm, _layer_norm_cases, compare=_compare_layer_norm, title="Layer normalisation")


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
    """Parameters of lmlib.lm.gpt.GPT, worked out by hand (C = n_embd, V = vocab_size).

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
        Case((10, 8, 1, 8), kwargs={"bias": False, "pos_encoding": "none"},
             label="V=10, one block of C=8, no biases, no positions, tied (the default: wte and lm_head are one "
                   "matrix, counted once); per block 12 C^2 + 2C, plus ln_f and wte"),
        Case((10, 8, 1, 8), kwargs={"bias": False},
             label="the same with learned positions (pos_encoding='learned' adds wpe: block_size * C)"),
        Case((10, 8, 1, 8), kwargs={"bias": False, "pos_encoding": "rope"},
             label="the same with RoPE (no position table: RoPE has no parameters)"),
        Case((10, 8, 1, 8), kwargs={"pos_encoding": "none"},
             label="with biases (bias=True: every Linear has one, and every LayerNorm a bias of C)"),
        Case((10, 8, 2, 8), kwargs={"tie_weights": False}, label="two blocks, untied (lm_head is a second V x C matrix)"),
        Case((65, 256, 6, 384), label="nanoGPT's shakespeare_char (V=65, T=256, 6 layers, C=384)"),
        Case((64, 64, 4, 128), kwargs={"bias": False}, label="the book's small model without biases"),
        Case((50257, 1024, 12, 768), label="GPT-2 small (124M)"),
    ]
    for n in range(3):
        V, T, L = int(rng.integers(2, 100)), int(rng.integers(1, 64)), int(rng.integers(1, 5))
        C = 8 * int(rng.integers(1, 9))
        kw = {"bias": bool(rng.integers(2)), "tie_weights": bool(rng.integers(2)),
              "pos_encoding": ["none", "learned", "sinusoidal", "alibi", "rope"][int(rng.integers(5))]}
        cases.append(Case((V, T, L, C), kwargs=kw, label=f"random config V={V}, T={T}, L={L}, C={C}"))
    return cases


def _compare_count(got: Any, expected: Any) -> str | None:
    if isinstance(got, float) and got.is_integer():
        got = int(got)
    if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
        return f"expected an int (a number of parameters), got {type(got).__name__} {got!r}"
    if got == expected:
        return None
    return f"got {int(got):,}, expected {expected:,} ({'too many' if got > expected else 'too few'} by {abs(int(got) - expected):,})"


register("ch05.count_params", ref_count_params, _count_cases, compare=_compare_count, title="Count a GPT's parameters")


# ----------------------------------------------------------------------------- sinusoidal


def ref_sinusoidal(T: int, d: int) -> Tensor:
    """(T, d): sin on even features, cos on odd ones, wavelengths 2*pi .. 10000*2*pi."""
    return sinusoidal_encoding(T, d)


def _compare_sinusoidal(got: Any, expected: Tensor) -> str | None:
    got = _as_tensor(got)
    problem = _compare(got, expected)
    if problem is None or not isinstance(got, Tensor) or got.shape != expected.shape:
        return problem
    T, d = expected.shape
    got = got.float()
    swapped = expected[:, [i ^ 1 for i in range(d)]]
    halves = torch.cat([expected[:, 0::2], expected[:, 1::2]], dim=1)
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    slow = torch.stack([(pos / 10000 ** (torch.arange(d // 2) / d)).sin(),
                        (pos / 10000 ** (torch.arange(d // 2) / d)).cos()], -1).reshape(T, d).float()
    if torch.allclose(got, swapped, atol=1e-5):
        return problem + " (sin and cos are swapped: PE[pos, 2i] is the sine, so position 0 is [0, 1, 0, 1, ...])"
    if torch.allclose(got, halves, atol=1e-5):
        return problem + (" (all sines first, then all cosines: interleave them instead, sine in feature 2i and "
                          "cosine in feature 2i + 1)")
    if torch.allclose(got, slow, atol=1e-5):
        return problem + " (the exponent is 2i / d with i the pair's index: pair i has frequency 1 / 10000^(2i/d))"
    return problem


register("ch05.sinusoidal", ref_sinusoidal,
         lambda rng: [Case((1, 2), label="T=1, d=2: [[0, 1]]"), Case((3, 4), label="T=3, d=4"),
                      Case((2, 2), label="T=2, d=2: one sin/cos pair"), Case((10, 6), label="T=10, d=6"),
                      Case((50, 16), label="T=50, d=16"), Case((7, 128), label="T=7, d=128"),
                      Case((1, 64), label="T=1, d=64: position 0 alone"), Case((100, 32), label="T=100, d=32")],
         compare=_compare_sinusoidal, title="Sinusoidal position encodings")


# ----------------------------------------------------------------------------- ALiBi


def ref_alibi_slopes(n_head: int) -> list[float]:
    """ALiBi slopes for ``n_head`` heads (a power of two): 2^(-8h/n), h = 1..n."""
    return alibi_slopes(n_head).tolist()


def _compare_slopes(got: Any, expected: list[float]) -> str | None:
    if isinstance(got, (Tensor, np.ndarray)):
        got = got.tolist()
    problem = _compare(got, expected)
    if problem is None or not isinstance(got, (list, tuple)) or len(got) != len(expected):
        return problem
    if np.allclose(got[::-1], expected, rtol=1e-4):
        return problem + " (reversed: the first head has the largest slope, 2^(-8/n), and the last 2^(-8))"
    return problem + (" (the slopes are a geometric sequence: start at 2^(-8/n) and multiply by 2^(-8/n) for each "
                      "further head)")


register("ch05.alibi_slopes", ref_alibi_slopes,
         lambda rng: [Case((n,), label=f"{n} heads") for n in (1, 2, 4, 8, 16, 32)],
         compare=_compare_slopes, title="ALiBi slopes")


# ----------------------------------------------------------------------------- RoPE


def ref_rope(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate feature pairs (2k, 2k+1) of x (..., T, d) by t * base^(-2k/d), t = 0..T-1."""
    T, d = x.shape[-2:]
    return apply_rope(x, *rope_angles(T, d, base))


def _rope_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),),
             label="(1, 0) at positions 0, 1, 2 becomes (cos t, sin t): t = 0 first, counter-clockwise"),
        Case((_randn(rng, 1, 4),), label="a single position (t = 0: nothing turns)"),
        Case((torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 2),),
             label="d=4, (1, 0, 1, 0) at positions 0, 1: pairs are adjacent features (0, 1) and (2, 3); "
                   "at t = 1 pair 0 turns by 1 rad, pair 1 by 10000^(-2/4) = 0.01 rad"),
        Case((_randn(rng, 5, 8), 100.0), label="T=5, d=8, base=100 (use the base argument)"),
    ]
    for n in range(3):
        B, nh, T = (int(i) for i in rng.integers(1, 4, size=3))
        d = 2 * int(rng.integers(1, 9))
        cases.append(Case((_randn(rng, B, nh, T, d),), label=f"random (B, nh, T, d)=({B}, {nh}, {T}, {d})"))
    return cases


register("ch05.rope", ref_rope, _rope_cases, compare=_compare, title="Rotary position embedding")

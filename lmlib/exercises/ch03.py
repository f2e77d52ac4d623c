"""Exercises of Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).

* ``ch03.cross_entropy``: the mean cross-entropy of next-token logits, computed stably
  (log-sum-exp with the maximum subtracted).
* ``ch03.mlp_forward``: the forward pass of the MLP language model with plain tensors.
* ``ch03.bits_per_char``: a loss in nats per token as bits per character.
* ``ch03.nearest_neighbours``: the k nearest rows of an embedding table by cosine similarity.

Each is graded against :mod:`torch` / :mod:`lmlib.lm.neural` on random inputs and on edge
cases (huge logits, a single class, one context token, a character-level tokenizer,
vectors of very different lengths, ...).

Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..lm.neural import bits_per_char, cosine_neighbours, mlp_forward
from .core import Case, compare_values, register


def _gen(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**31 - 1)))


# ----------------------------------------------------------------------------
# ch03.cross_entropy
# ----------------------------------------------------------------------------


def ref_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over rows of ``-log softmax(logits[i])[targets[i]]``, as a float."""
    return F.cross_entropy(logits.double(), targets.long()).item()


def _cross_entropy_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.tensor([2])), label="uniform logits over 4 tokens (answer: log 4)"),
        Case((torch.tensor([[2.0, 1.0, 0.1]]), torch.tensor([0])), label="one row"),
        Case((torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 990.0]]), torch.tensor([0, 2])),
             label="huge logits (exp overflows: subtract the maximum first)"),
        Case((torch.tensor([[-1000.0, -1001.0], [-1000.0, -1000.0]]), torch.tensor([1, 0])),
             label="very negative logits (exp underflows to 0)"),
        Case((torch.tensor([[3.0], [-2.0]]), torch.tensor([0, 0])), label="a single class (the loss is 0)"),
        Case((torch.tensor([[5.0, -5.0]] * 3), torch.tensor([0, 1, 0])), label="repeated rows, confident and wrong"),
    ]
    for i in range(5):
        n, V = int(rng.integers(1, 12)), int(rng.integers(2, 30))
        g = _gen(rng)
        logits = torch.randn(n, V, generator=g) * float(rng.choice([0.5, 3.0, 20.0]))
        targets = torch.randint(V, (n,), generator=g)
        cases.append(Case((logits, targets), label=f"random logits {i + 1}, shape ({n}, {V})"))
    return cases


def _compare_cross_entropy(got: Any, expected: Any) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        return (f"expected one number (the mean over the rows), got a tensor of shape {tuple(got.shape)}; "
                "did you forget to average?")
    if isinstance(got, torch.Tensor):
        got = got.item()
    if isinstance(got, (int, float)) and not math.isfinite(got):
        return f"got {got}, expected {expected}: exp() overflowed or log(0) appeared; subtract each row's maximum first"
    problem = compare_values(got, expected, rtol=1e-5, atol=1e-6)
    if problem and isinstance(got, (int, float)) and got < 0:
        return problem + " (a cross-entropy is never negative: it is minus a log-probability)"
    return problem


register("ch03.cross_entropy", ref_cross_entropy, _cross_entropy_cases, compare=_compare_cross_entropy,
         title="Cross-entropy from logits")


# ----------------------------------------------------------------------------
# ch03.mlp_forward
# ----------------------------------------------------------------------------


def _mlp_params(g: torch.Generator, V: int, C: int, n: int, H: int) -> tuple:
    wte = torch.randn(V, C, generator=g)
    W1 = torch.randn(n * C, H, generator=g) / math.sqrt(n * C)
    b1 = torch.randn(H, generator=g) * 0.1
    W2 = torch.randn(H, V, generator=g) / math.sqrt(H)
    b2 = torch.randn(V, generator=g) * 0.1
    return wte, W1, b1, W2, b2


def _mlp_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, (B, n, V, C, H) in [
        ("a small batch: B=2 windows of n=3 tokens, V=5, C=2, H=4", (2, 3, 5, 2, 4)),
        ("one window (B=1)", (1, 4, 7, 3, 5)),
        ("one context token (n=1: a bigram model)", (3, 1, 6, 4, 3)),
        ("C=1: every embedding is a single number", (4, 3, 5, 1, 6)),
        ("B, n, C and H all different (catches mixed-up axes)", (5, 2, 11, 3, 7)),
    ]:
        g = _gen(rng)
        idx = torch.randint(V, (B, n), generator=g)
        cases.append(Case((idx, *_mlp_params(g, V, C, n, H)), label=label))
    for i in range(4):
        B, n, V, C, H = (int(rng.integers(1, 9)), int(rng.integers(1, 6)), int(rng.integers(2, 20)),
                         int(rng.integers(1, 6)), int(rng.integers(1, 10)))
        g = _gen(rng)
        idx = torch.randint(V, (B, n), generator=g)
        cases.append(Case((idx, *_mlp_params(g, V, C, n, H)), label=f"random sizes {i + 1}: B={B}, n={n}, V={V}, C={C}, H={H}"))
    return cases


def _compare_logits(got: Any, expected: Any) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor of logits with shape {tuple(expected.shape)}, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"wrong shape: got {tuple(got.shape)}, expected (B, V) = {tuple(expected.shape)}"
    problem = compare_values(got.double(), expected.double(), rtol=1e-4, atol=1e-5)
    if problem:
        return problem + " (check the order of the concatenation: token 0 of the window first, and the tanh)"
    return None


register("ch03.mlp_forward", mlp_forward, _mlp_cases, compare=_compare_logits, title="The MLP's forward pass")


# ----------------------------------------------------------------------------
# ch03.bits_per_char
# ----------------------------------------------------------------------------


def _bpc_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((math.log(2), 1, 1), label="one token, one character, probability 1/2 (answer: 1 bit)"),
        Case((1.5, 1000, 1000), label="a character tokenizer (n_tokens == n_chars)"),
        Case((3.2, 400, 1000), label="BPE tokens of 2.5 characters each"),
        Case((0.0, 10, 37), label="a perfect model (loss 0)"),
        Case((math.log(65), 5, 5), label="the uniform model over 65 characters (answer: log2 65)"),
    ]
    for i in range(5):
        n_tokens = int(rng.integers(1, 10_000))
        n_chars = int(n_tokens * rng.uniform(1.0, 5.0)) + 1
        cases.append(Case((float(rng.uniform(0.5, 7.0)), n_tokens, n_chars), label=f"random {i + 1}"))
    return cases


def _compare_bpc(got: Any, expected: Any) -> str | None:
    problem = compare_values(got, expected, rtol=1e-9, atol=1e-12)
    if problem is None or not isinstance(got, (int, float)) or not expected:
        return problem
    ratio = got / expected
    if math.isclose(ratio, math.log(2), rel_tol=1e-6):
        return problem + " (this is nats per character: divide by ln 2 to get bits)"
    return problem + " (the total is loss * n_tokens nats; spread it over n_chars characters, in bits)"


register("ch03.bits_per_char", bits_per_char, _bpc_cases, compare=_compare_bpc, title="Bits per character")


# ----------------------------------------------------------------------------
# ch03.nearest_neighbours
# ----------------------------------------------------------------------------


def ref_nearest_neighbours(emb: torch.Tensor, query: int, k: int) -> torch.Tensor:
    """The k rows most similar to row ``query`` by cosine similarity, most similar first, itself excluded."""
    return cosine_neighbours(emb, query, k)[0]


def _neighbour_cases(rng: np.random.Generator) -> list[Case]:
    # Row 1 points the same way as row 0 but is 10x longer; row 2 is short and close in angle...
    # a dot product prefers the long row 3, cosine similarity does not.
    hand = torch.tensor([[1.0, 0.0], [10.0, 0.5], [0.9, 0.3], [20.0, 20.0], [-1.0, 0.1]])
    cases = [
        Case((hand, 0, 2), label="vectors of very different lengths (cosine, not the dot product)"),
        Case((hand, 3, 4), label="k = N - 1: every other row, in order"),
        Case((torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1, 1), label="two rows"),
        Case((torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0], [3.0, 2.0, 1.0]]), 0, 2),
             label="an opposite vector (cosine -1) comes last"),
    ]
    for i in range(5):
        g = _gen(rng)
        N, C = int(rng.integers(3, 40)), int(rng.integers(2, 10))
        emb = torch.randn(N, C, generator=g) * torch.rand(N, 1, generator=g).mul(5).add(0.1)  # varied lengths
        cases.append(Case((emb, int(rng.integers(N)), int(rng.integers(1, N))), label=f"random embeddings {i + 1}, N={N}, C={C}"))
    return cases


def _compare_neighbours(got: Any, expected: Any) -> str | None:
    if isinstance(got, (list, tuple, np.ndarray)):
        got = torch.as_tensor(np.asarray(got))
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor (or list) of {len(expected)} row indices, got {type(got).__name__}"
    got = got.reshape(-1)
    if got.dtype.is_floating_point:
        return "expected row indices (integers), got floats: return the indices, not the similarities"
    if len(got) != len(expected):
        return f"expected k = {len(expected)} indices, got {len(got)}"
    got, expected = got.long(), expected.long()
    if torch.equal(got, expected):
        return None
    return f"got rows {got.tolist()}, expected {expected.tolist()} (most similar first, the query itself excluded)"


register("ch03.nearest_neighbours", ref_nearest_neighbours, _neighbour_cases, compare=_compare_neighbours,
         title="Nearest neighbours by cosine similarity")

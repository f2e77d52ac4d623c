"""Exercises of Chapter 6, "Decoding": the logit processors and a diversity metric.

Each is graded against the :mod:`lmlib.lm.decoding` function of the same name,
on hand-worked examples, edge cases (ties, ``-inf`` logits, identities) and
random batches. Logits are ``(B, V)`` float32 tensors; a removed token must
get the logit ``float("-inf")``.

* ``ch06.apply_temperature``: ``apply_temperature(logits, temperature)`` returns ``logits / T``.
* ``ch06.top_k_filter``: ``top_k_filter(logits, k)`` keeps, in each row, the
  tokens whose logit is ``>=`` the row's ``k``-th largest logit (so ties with
  the ``k``-th value are all kept) and sets the rest to ``-inf``.
* ``ch06.top_p_filter``: ``top_p_filter(logits, p)`` keeps the smallest set of
  most likely tokens whose probability mass is ``>= p`` (a token is kept when
  the mass of the more likely tokens is ``< p``); ties with the last kept
  token are kept too; ``p = 1`` keeps everything.
* ``ch06.repetition_penalty``: ``repetition_penalty(logits, previous_ids,
  penalty)``: for each token id in row ``b`` of ``previous_ids`` (penalised
  once however often it occurs), logit ``x`` becomes ``x / penalty`` if
  ``x > 0`` else ``x * penalty``.
* ``ch06.distinct_n``: ``distinct_n(sequences, n)``: distinct n-grams /
  all n-grams, n-grams taken inside each sequence and pooled.

Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..lm.decoding import apply_temperature, distinct_n, repetition_penalty, top_k_filter, top_p_filter
from .core import Case, compare_values, register

_NEG_INF = float("-inf")
_WORKED = [[2.0, 1.0, 0.0, -1.0]]  # softmax: [0.6439, 0.2369, 0.0871, 0.0321]


def _t(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def _random_logits(rng: np.random.Generator, B: int, V: int, scale: float = 2.0) -> Tensor:
    return torch.tensor(rng.normal(0.0, scale, size=(B, V)), dtype=torch.float32)


def _random_shape(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(1, 5)), int(rng.integers(2, 40))


def _compare_logits(got: Any, expected: Tensor) -> str | None:
    """Same checks as compare_values, with plain-words hints for the usual mistakes on logits."""
    if not isinstance(got, torch.Tensor):
        return f"return a torch.Tensor of logits, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"wrong shape: got {tuple(got.shape)}, expected {tuple(expected.shape)} (the same shape as logits)"
    got = got.detach().float()
    if torch.isnan(got).any():
        return "your logits contain NaN"
    both_removed = torch.isneginf(got) & torch.isneginf(expected)  # equal; and -inf - -inf would be NaN below
    problem = compare_values(got.masked_fill(both_removed, 0.0), expected.masked_fill(both_removed, 0.0),
                             rtol=1e-5, atol=1e-6)
    if problem and bool(((got >= 0) & (got <= 1)).all()) and bool(((got.sum(dim=-1) - 1).abs() < 1e-4).all()):
        problem += " (each row of your result sums to 1: return logits, not probabilities; no softmax)"
    return problem


def _compare_filtered(got: Any, expected: Tensor) -> str | None:
    """For top-k/top-p: which tokens were kept, then that kept logits are unchanged."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(expected.shape):
        return _compare_logits(got, expected)
    got = got.detach().float()
    for row in range(expected.shape[0]):
        kept_got = (~torch.isneginf(got[row])).nonzero().flatten().tolist()
        kept_exp = (~torch.isneginf(expected[row])).nonzero().flatten().tolist()
        if kept_got == kept_exp:
            continue
        message = f"row {row}: your result keeps tokens {kept_got}, expected to keep tokens {kept_exp}"
        if set(kept_exp) < set(kept_got) and bool((got[row][torch.isneginf(expected[row])] < -1e3).all()):
            message += " (set removed logits to float('-inf'), not to a large negative number)"
        elif bool(((got[row] >= 0) & (got[row] <= 1)).all()) and abs(float(got[row].sum()) - 1) < 1e-4:
            message += " (return filtered logits, not probabilities)"
        return message
    return _compare_logits(got, expected)


# ----------------------------------------------------------------------------- ch06.apply_temperature


def _temperature_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_t(_WORKED), 0.5), label="logits [2, 1, 0, -1], T=0.5 (answer [4, 2, 0, -2])"),
        Case((_t(_WORKED), 1.0), label="T=1 changes nothing"),
        Case((_t(_WORKED), 2.0), label="T=2 (answer [1, 0.5, 0, -0.5])"),
        Case((_t([[1.0, _NEG_INF, -3.0]]), 0.7), label="a removed token (-inf) stays removed"),
    ]
    for i in range(5):
        B, V = _random_shape(rng)
        T = float(rng.choice([0.1, 0.3, 0.8, 1.5, 4.0]))
        cases.append(Case((_random_logits(rng, B, V), T), label=f"random logits {i + 1}, shape ({B}, {V}), T={T}"))
    return cases


register("ch06.apply_temperature", apply_temperature, _temperature_cases, compare=_compare_logits,
         title="Temperature")


# ----------------------------------------------------------------------------- ch06.top_k_filter


def _top_k_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_t(_WORKED), 2), label="logits [2, 1, 0, -1], k=2 (keep tokens 0 and 1)"),
        Case((_t(_WORKED), 1), label="k=1 keeps only the largest logit"),
        Case((_t(_WORKED), 4), label="k=V keeps everything"),
        Case((_t([[0.0, 3.0, 1.0], [5.0, -2.0, 4.0]]), 2), label="two rows, each with its own top 2"),
        Case((_t([[1.0, 3.0, 3.0, 0.0]]), 1),
             label="a tie for the largest logit, k=1 (keep both: a token survives when its logit >= the k-th largest)"),
        Case((_t([[0.5, _NEG_INF, 2.0, _NEG_INF, 1.0]]), 4), label="k larger than the number of finite logits"),
    ]
    for i in range(5):
        B, V = _random_shape(rng)
        k = int(rng.integers(1, V + 1))
        cases.append(Case((_random_logits(rng, B, V), k), label=f"random logits {i + 1}, shape ({B}, {V}), k={k}"))
    return cases


register("ch06.top_k_filter", top_k_filter, _top_k_cases, compare=_compare_filtered, title="Top-k filtering")


# ----------------------------------------------------------------------------- ch06.top_p_filter


def _clear_p(rng: np.random.Generator, logits: Tensor) -> float:
    """A random p that is not within 1e-3 of a cumulative mass (so rounding cannot change the answer)."""
    masses = torch.softmax(logits.double(), dim=-1).sort(dim=-1, descending=True).values.cumsum(dim=-1).flatten()
    while True:
        p = round(float(rng.uniform(0.05, 0.99)), 3)
        if bool((masses - p).abs().min() > 1e-3):
            return p


def _top_p_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_t(_WORKED), 0.7),
             label="logits [2, 1, 0, -1] (probabilities [0.6439, 0.2369, 0.0871, 0.0321]), p=0.7: keep tokens 0 and 1"),
        Case((_t(_WORKED), 0.5), label="the same logits, p=0.5: keep only token 0"),
        Case((_t(_WORKED), 1.0), label="p=1 keeps everything"),
        Case((_t(_WORKED), 0.001), label="a tiny p still keeps the most likely token"),
        Case((_t([[-1.0, 2.0, 1.0, 0.0], [0.0, 0.0, 3.0, -5.0]]), 0.75), label="two rows, tokens not in sorted order"),
        Case((_t([[0.0, 1.0, 1.0, 0.0]]), 0.3),
             label="probabilities [0.134, 0.366, 0.366, 0.134], p=0.3: token 1 alone is enough, but token 2 is tied "
                   "with it: keep both"),
        Case((_t([[2.0, 0.0, 0.0, 0.0]]), 0.9),
             label="probabilities [0.711, 0.096, 0.096, 0.096], p=0.9: the boundary falls inside a tie: keep all four"),
        Case((_t([[1.0, _NEG_INF, 0.0, _NEG_INF]]), 0.9), label="removed tokens (-inf) stay removed"),
    ]
    for i in range(5):
        B, V = _random_shape(rng)
        logits = _random_logits(rng, B, V)
        p = _clear_p(rng, logits)
        cases.append(Case((logits, p), label=f"random logits {i + 1}, shape ({B}, {V}), p={p:g}"))
    return cases


register("ch06.top_p_filter", top_p_filter, _top_p_cases, compare=_compare_filtered, title="Top-p (nucleus) filtering")


# ----------------------------------------------------------------------------- ch06.repetition_penalty


def _ids(rows: list[list[int]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), -1)


def _penalty_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case((_t(_WORKED), _ids([[0, 3, 3]]), 2.0),
             label="logits [2, 1, 0, -1], previous ids [0, 3, 3] (token 3 twice, penalised once), penalty 2 "
                   "(answer [1, 1, 0, -2])"),
        Case((_t(_WORKED), _ids([[0, 3]]), 1.0), label="penalty 1 changes nothing"),
        Case((_t(_WORKED), _ids([[0, 3]]), 0.5),
             label="penalty 0.5 < 1 makes repeats more likely (answer [4, 1, 0, -0.5])"),
        Case((_t(_WORKED), _ids([[1, 1, 1, 1]]), 3.0), label="a token seen four times is penalised once"),
        Case((_t(_WORKED), _ids([[2]]), 2.0), label="a zero logit stays zero"),
        Case((_t([[1.0, 2.0, -1.0], [1.0, 2.0, -1.0]]), _ids([[1, 2], [0, 0]]), 1.5),
             label="two rows with different previous ids"),
        Case((_t(_WORKED), _ids([[]]), 2.0), label="no previous ids (shape (1, 0))"),
    ]
    for i in range(5):
        B, V = _random_shape(rng)
        L = int(rng.integers(1, 2 * V))
        ids = torch.tensor(rng.integers(0, V, size=(B, L)), dtype=torch.long)
        penalty = float(rng.choice([0.8, 1.2, 1.5, 2.0]))
        cases.append(Case((_random_logits(rng, B, V), ids, penalty),
                          label=f"random logits {i + 1}, shape ({B}, {V}), {L} previous ids, penalty {penalty}"))
    return cases


register("ch06.repetition_penalty", repetition_penalty, _penalty_cases, compare=_compare_logits,
         title="Repetition penalty")


# ----------------------------------------------------------------------------- ch06.distinct_n


def _distinct_cases(rng: np.random.Generator) -> list[Case]:
    worked = [[1, 2, 1, 2], [1, 2, 3]]
    cases = [
        Case((worked, 1), label="[[1, 2, 1, 2], [1, 2, 3]], n=1 (answer 3/7)"),
        Case((worked, 2), label="[[1, 2, 1, 2], [1, 2, 3]], n=2 (answer 3/5: no n-gram across two sequences)"),
        Case(([[4, 4, 4, 4, 4]], 2), label="one token repeated (answer 1/4)"),
        Case(([[1, 2, 3], [4, 5, 6]], 3), label="nothing repeats (answer 1)"),
        Case(([[1, 2], [1, 2, 3, 1, 2]], 3), label="a sequence shorter than n has no n-grams"),
        Case((["to be or not", "to be"], 2), label="strings: n-grams of characters"),
    ]
    for i in range(4):
        n = int(rng.integers(1, 4))
        seqs = [rng.integers(0, 5, size=int(rng.integers(n, 15))).tolist() for _ in range(int(rng.integers(1, 6)))]
        cases.append(Case((seqs, n), label=f"random sequences {i + 1}, n={n}"))
    return cases


register("ch06.distinct_n", distinct_n, _distinct_cases, title="Distinct-n")

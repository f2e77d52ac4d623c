"""Exercises of Chapter 11, "Learning rewards from human preferences".

* ``ch11.preference_probability(r1_sum, r2_sum, epsilon)``: tensors ``(N,)`` of returns -> ``(N,)``
  probabilities that segment 1 is preferred, (1 - ε)·σ(r1 - r2) + ε/2.
* ``ch11.preference_loss(pred_rewards_left, pred_rewards_right, mu, epsilon)``: per-step rewards
  ``(B, L)``, labels ``(B,)`` -> the scalar cross-entropy loss (a 0-d tensor; no masks, no
  diagnostics: the library version :func:`lmlib.preferences.preference_loss` adds those).
* ``ch11.select_queries(member_probs, k)``: each ensemble member's predicted P[left ≻ right]
  ``(K, N)`` -> the indices ``(k,)`` of the ``k`` pairs with the largest std across members,
  most uncertain first.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import preferences as P
from .core import Case, compare_close, register


def _ref_probability(r1_sum: torch.Tensor, r2_sum: torch.Tensor, epsilon: float) -> torch.Tensor:
    return P.preference_probability(r1_sum, r2_sum, epsilon)


def _ref_loss(left: torch.Tensor, right: torch.Tensor, mu: torch.Tensor, epsilon: float) -> torch.Tensor:
    return P.preference_loss(left, right, mu, epsilon)[0].detach()


def _ref_select(member_probs: np.ndarray, k: int) -> np.ndarray:
    scores = np.asarray(member_probs, dtype=np.float64).std(axis=0)
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


def _probability_cases(rng: np.random.Generator) -> list[Case]:
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return [
        Case((t([2.0]), t([0.0]), 0.0), label="the worked example: returns 2 and 0, epsilon = 0 (expect 0.880797)"),
        Case((t([2.0]), t([0.0]), 0.1), label="the worked example with epsilon = 0.1 (expect 0.842717)"),
        Case((t(rng.normal(0, 3, 50)), t(rng.normal(0, 3, 50)), 0.1), label="50 random pairs of returns, epsilon = 0.1"),
        Case((t(rng.normal(0, 3, 20)), t(rng.normal(0, 3, 20)), 0.0), label="20 random pairs, epsilon = 0"),
        Case((t([1.5, -4.0, 0.0]), t([1.5, -4.0, 0.0]), 0.1), label="equal returns (expect 0.5)"),
        Case((t([60.0, -60.0]), t([0.0, 0.0]), 0.1), label="huge differences: the rater still errs epsilon/2 of the time"),
        Case((t([3.0, -1.0]), t([0.0, 2.0]), 1.0), label="epsilon = 1: a rater who always answers at random"),
    ]


def _loss_cases(rng: np.random.Generator) -> list[Case]:
    def rewards(b: int, l: int, scale: float = 1.0) -> torch.Tensor:
        return torch.tensor(rng.normal(0, scale, (b, l)), dtype=torch.float32)

    def labels(b: int, values=(1.0, 0.0)) -> torch.Tensor:
        return torch.tensor(rng.choice(values, size=b), dtype=torch.float32)

    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return [
        Case((f([[1.0, 1.0]]), f([[0.0, 0.0]]), f([1.0]), 0.0), label="one pair, left preferred, returns 2 vs 0, epsilon = 0"),
        Case((f([[1.0, 1.0]]), f([[0.0, 0.0]]), f([0.0]), 0.1), label="one pair, right preferred (the model is wrong), epsilon = 0.1"),
        Case((rewards(16, 5), rewards(16, 5), labels(16), 0.1), label="16 random pairs of 5-step clips, epsilon = 0.1"),
        Case((rewards(8, 3), rewards(8, 7), labels(8), 0.0), label="left clips of 3 steps, right clips of 7, epsilon = 0"),
        Case((rewards(10, 4), rewards(10, 4), labels(10, (1.0, 0.0, 0.5)), 0.1), label="some ties (mu = 0.5)"),
        Case((rewards(6, 4, 30.0), rewards(6, 4, 30.0), labels(6), 0.0),
             label="a very confident model (returns differ by ~100), epsilon = 0: compute log P with logsigmoid, "
                   "log(sigmoid(x)) underflows to -inf"),
    ]


def _select_cases(rng: np.random.Generator) -> list[Case]:
    def probs(k: int, n: int) -> np.ndarray:
        return rng.uniform(0.0, 1.0, (k, n))

    p = probs(4, 30)
    return [
        Case((np.array([[0.5, 0.9, 0.5], [0.5, 0.1, 0.6]]), 1), label="3 pairs, 2 members who disagree most on pair 1"),
        Case((p, 5), label="4 members, 30 candidate pairs, k = 5"),
        Case((probs(5, 12), 12), label="k = all candidates: every index, most uncertain first"),
        Case((probs(3, 8), 0), label="k = 0: an empty selection"),
        Case((probs(2, 40), 7), label="2 members, 40 candidates, k = 7"),
    ]


register(
    "ch11.preference_probability",
    _ref_probability,
    _probability_cases,
    compare=compare_close(1e-6, 1e-9),
    title="The Bradley-Terry preference probability with a random-answer rate",
)
register(
    "ch11.preference_loss",
    _ref_loss,
    _loss_cases,
    compare=compare_close(1e-4, 1e-5),
    title="Cross-entropy loss of a reward model on preference labels",
)
register(
    "ch11.select_queries",
    _ref_select,
    _select_cases,
    compare=compare_close(0, 0),
    title="Pick the pairs the ensemble disagrees on",
)

"""Exercises of Chapter 14, "Reward models from rankings".

* ``ch14.ranking_loss(scores, ranks)``: reward-model scores ``(B, K)`` of K answers to each of B prompts
  and their ranks ``(B, K)`` (higher = better, equal = tie) -> the scalar K-wise loss of InstructGPT: for
  each prompt the mean of -log σ(s_better - s_worse) over its ordered pairs, then the mean over prompts
  (a 0-d tensor; no masks, no diagnostics: :func:`lmlib.preferences.ranking_loss` adds those).
* ``ch14.last_token_scores(values, mask)``: per-token values ``(B, L)`` of right-padded rows and their mask
  ``(B, L)`` (True on real tokens) -> ``(B,)``, each row's value at its last real token (where a sequence
  reward model reads its score).
* ``ch14.agreement(reward, better, worse)``: a reward model's scores ``(N,)`` of N answers and index arrays
  ``(M,)`` of M pairs (``better[m]`` is the gold judge's choice over ``worse[m]``) -> the fraction of pairs on
  which the reward model agrees, a float.
* ``ch14.best_of_n_kl(n)``: an int ``n >= 1`` -> the KL in nats of best-of-n to the policy it samples,
  log n - (n - 1)/n, a float.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
"""
from __future__ import annotations

import math
import numpy as np
import torch

from .. import preferences as P
from .core import Case, compare_close, register


def _ref_ranking_loss(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    return P.ranking_loss(scores, ranks)[0].detach()


def _ref_last_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    last = mask.long().sum(dim=1) - 1  # (B,): right padding, so the count minus one
    return values.gather(1, last[:, None])[:, 0]


def _ref_agreement(reward: np.ndarray, better: np.ndarray, worse: np.ndarray) -> float:
    reward = np.asarray(reward, dtype=np.float64)
    return float(np.mean(reward[np.asarray(better)] > reward[np.asarray(worse)]))


def _ref_kl(n: int) -> float:
    return math.log(n) - (n - 1) / n


def _ranking_cases(rng: np.random.Generator) -> list[Case]:
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731

    def ranks(b: int, k: int) -> torch.Tensor:
        return torch.tensor(np.stack([rng.permutation(k) for _ in range(b)]), dtype=torch.float32)

    return [
        Case((f([[2.0, 1.0, 0.0]]), f([[2, 1, 0]])), label="the worked example: scores [2, 1, 0], ranks [2, 1, 0] "
                                                          "(expect 0.251150)"),
        Case((f([[0.0, 1.0]]), f([[1, 0]])), label="K = 2, the model prefers the worse answer (expect 1.313262)"),
        Case((f(rng.normal(size=(8, 4))), ranks(8, 4)), label="8 prompts, rankings of K = 4"),
        Case((f(rng.normal(size=(3, 9))), ranks(3, 9)), label="3 prompts, rankings of K = 9 (36 pairs each)"),
        Case((f([[0.5, -0.2, 0.3, 0.0]]), f([[1, 1, 0, 0]])),
             label="ties: ranks [1, 1, 0, 0] give 4 ordered pairs, not 6"),
        Case((f([[1.0, 0.0, 0.0], [3.0, 1.0, 2.0]]), f([[2, 1, 0], [1, 0, 0]])),
             label="two prompts with different numbers of pairs (3 and 2): average per prompt first, then over "
                   "prompts"),
        Case((f([[80.0, -80.0, 0.0]]), f([[0, 2, 1]])),
             label="a very confident, very wrong model: use logsigmoid, log(sigmoid(x)) underflows to -inf"),
    ]


def _last_token_cases(rng: np.random.Generator) -> list[Case]:
    def masks(lengths: list[int], L: int) -> torch.Tensor:
        return torch.tensor([[i < n for i in range(L)] for n in lengths])

    v = torch.tensor(rng.normal(size=(5, 7)), dtype=torch.float32)
    return [
        Case((torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), masks([3, 2], 3)),
             label="rows of 3 and 2 real tokens (expect [3, 5])"),
        Case((v, masks([7, 1, 4, 2, 7], 7)), label="5 rows of different lengths"),
        Case((v[:, :1], masks([1] * 5, 1)), label="one token per row"),
        Case((torch.tensor(rng.normal(size=(4, 12)), dtype=torch.float32), masks([12, 12, 12, 12], 12)),
             label="no padding at all: the last column"),
    ]


def _agreement_cases(rng: np.random.Generator) -> list[Case]:
    r = rng.normal(size=40)
    pairs = rng.integers(0, 40, size=(2, 60))
    keep = pairs[0] != pairs[1]
    return [
        Case((np.array([0.3, 0.1, 0.5]), np.array([0, 2]), np.array([1, 1])), label="two pairs, both agree (expect 1.0)"),
        Case((np.array([0.3, 0.1, 0.5]), np.array([1, 0]), np.array([2, 2])), label="two pairs, neither agrees (expect 0.0)"),
        Case((r, pairs[0][keep], pairs[1][keep]), label="40 answers, random pairs"),
        Case((np.array([1.0, 1.0, 2.0]), np.array([0, 2]), np.array([1, 0])),
             label="a tie in reward is not agreement: expect 0.5"),
    ]


def _kl_cases(rng: np.random.Generator) -> list[Case]:
    return [Case((1,), label="n = 1: no choice, no KL (expect 0.0)"),
            Case((2,), label="n = 2 (expect 0.193147)"),
            Case((64,), label="n = 64 (expect 3.174508)"),
            Case((int(rng.integers(3, 1000)),), label="a random n")]


register(
    "ch14.ranking_loss",
    _ref_ranking_loss,
    _ranking_cases,
    compare=compare_close(1e-4, 1e-5),
    title="InstructGPT's K-wise ranking loss, all pairs of a prompt in one batch element",
)
register(
    "ch14.last_token_scores",
    _ref_last_token,
    _last_token_cases,
    compare=compare_close(0, 0),
    title="Read a sequence's score at its last real token",
)
register(
    "ch14.agreement",
    _ref_agreement,
    _agreement_cases,
    compare=compare_close(1e-12, 1e-12),
    title="Pairwise agreement of a reward model with the gold judge",
)
register(
    "ch14.best_of_n_kl",
    _ref_kl,
    _kl_cases,
    compare=compare_close(1e-9, 1e-9),
    title="The KL of best-of-n to the policy it samples",
)

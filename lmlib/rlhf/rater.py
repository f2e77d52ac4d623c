"""The synthetic rater: a labeller with a known amount of noise who ranks K answers by the gold judge.

People disagree with each other and with themselves; the reward model of Part III learns from labels
that are noisy in a way we control. The rater sees the gold :attr:`~lmlib.rlhf.judge.Scores.overall`
scores ``s_1..s_K`` of K answers to one prompt and draws a ranking from the **Plackett-Luce** model
with inverse temperature ``beta``: the best answer is picked with probability
``exp(β s_i) / Σ_j exp(β s_j)``, then the best of the rest, and so on. With probability ``epsilon``
it ignores the answers and ranks them uniformly at random (a distracted labeller). For K = 2 this is
chapter 11's Bradley-Terry rater,

    P[a ≻ b] = (1 - ε) · σ(β (s_a - s_b)) + ε / 2   =  preference_probability(β s_a, β s_b, ε),

and for any K the chance that a ranks above b is that same number (Luce's choice axiom: in the
Plackett-Luce model the order of two items does not depend on the others). So the probability that
the rater agrees with the gold judge on a pair with ``d = s_a - s_b ≠ 0`` is

    P[agree] = (1 - ε) · σ(β · abs(d)) + ε / 2,

and its mean over pairs is the **agreement ceiling** (:func:`agreement_ceiling`): the accuracy on the
rater's labels of a reward model that knows the gold scores exactly. No reward model can expect more,
because P[agree] ≥ ½ on every pair, so predicting the gold order is the best guess of each label.

Sampling uses the Gumbel trick: sorting ``β s_i + G_i`` with ``G_i`` standard Gumbel noise gives an
exact Plackett-Luce ranking. ``beta = inf`` is a noise-free rater (with ``epsilon = 0``).

Ranks follow :func:`lmlib.preferences.ranking_loss`: ``(B, K)`` numbers, higher = better (the best of
K answers gets K - 1). With ``tie_tol``, answers whose gold scores are within ``tie_tol`` of each other
(chained) are tied: they share a rank and the rater orders the tied groups (mean score) instead.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..preferences import check_epsilon, preference_probability

__all__ = ["plackett_luce_ranks", "agreement_ceiling", "RankingRater"]


def _check_beta(beta: float) -> float:
    beta = float(beta)
    if not beta >= 0:  # also rejects NaN
        raise ValueError(f"beta (the rater's inverse temperature) must be >= 0 (inf = noise-free), got {beta}")
    return beta


def _as_scores(scores: Any) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim not in (1, 2) or s.shape[-1] < 2:
        raise ValueError(f"scores must be (K,) or (B, K) gold scores with K >= 2 answers per prompt, got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (gold overall scores in [0, 1])")
    return s


def _tie_groups(row: np.ndarray, tie_tol: float | None) -> np.ndarray:
    """Group id of each answer: answers whose sorted scores are within ``tie_tol`` of the next are one group."""
    if tie_tol is None:
        return np.arange(len(row))
    order = np.argsort(row, kind="stable")
    gaps = np.diff(row[order]) > tie_tol
    group = np.empty(len(row), dtype=np.int64)
    group[order] = np.concatenate([[0], np.cumsum(gaps)])
    return group


def plackett_luce_ranks(
    scores: Any, beta: float, rng: np.random.Generator, epsilon: float = 0.0, tie_tol: float | None = None
) -> np.ndarray:
    """A noisy rater's ranking of K answers per prompt from their gold scores.

    Args:
        scores: ``(K,)`` or ``(B, K)`` gold scores (higher = better).
        beta: inverse temperature of the Plackett-Luce model; ``inf`` ranks by score (no noise).
        rng: a numpy Generator (``np.random.default_rng(seed)``).
        epsilon: probability that a prompt's ranking is uniformly random instead.
        tie_tol: None (no ties: every answer gets its own rank) or a tolerance: answers whose scores
            are within it (chained) share a rank.

    Returns:
        int64 ranks of the shape of ``scores``, higher = better, the best answer ``(number of groups) - 1``,
        the worst 0; ready for :func:`lmlib.preferences.ranking_loss`.
        Example: scores ``[0.2, 0.9, 0.5]`` with ``beta=inf`` give ranks ``[0, 2, 1]``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    s = _as_scores(scores)
    beta, epsilon = _check_beta(beta), check_epsilon(epsilon)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if tie_tol is not None and not tie_tol >= 0:
        raise ValueError(f"tie_tol must be None (no ties) or >= 0, got {tie_tol}")
    rows = s.reshape(-1, s.shape[-1])  # (B, K)
    B, K = rows.shape
    gumbel = rng.gumbel(size=(B, K))
    random_rank = rng.random(B) < epsilon  # (B,) which prompts get a random ranking
    ranks = np.empty((B, K), dtype=np.int64)
    for b in range(B):
        group = _tie_groups(rows[b], tie_tol)
        G = int(group.max()) + 1
        g_score = np.bincount(group, weights=rows[b], minlength=G) / np.bincount(group, minlength=G)  # (G,) means
        noise = gumbel[b, :G]
        if random_rank[b] or beta == 0:
            key_order = np.argsort(noise)  # uniformly random order of the groups
        elif math.isinf(beta):
            key_order = np.lexsort((noise, g_score))  # by score; equal scores in random order
        else:
            key_order = np.argsort(beta * g_score + noise)  # the Gumbel trick: exact Plackett-Luce
        g_rank = np.empty(G, dtype=np.int64)
        g_rank[key_order] = np.arange(G)  # ascending keys: the worst group gets 0
        ranks[b] = g_rank[group]
    return ranks.reshape(s.shape)


def agreement_ceiling(scores: Any, beta: float, epsilon: float = 0.0, tie_tol: float | None = None) -> float:
    """The probability that the noisy rater orders a pair of answers as the gold judge does, averaged over
    every pair of answers to the same prompt whose gold scores differ (or fall in different tie groups).

    Exact: ``mean over pairs of (1 - ε) σ(β |s_a - s_b|) + ε / 2`` (group means with ``tie_tol``). This
    is the accuracy, on the rater's labels, of a reward model that knows the gold scores, and no
    reward model can expect a higher one (see the module docstring).

    Args:
        scores: ``(K,)`` or ``(B, K)`` gold scores, K >= 2 answers per prompt.
        beta, epsilon, tie_tol: the rater's, as in :func:`plackett_luce_ranks`.

    Returns:
        A float in [½, 1]; NaN if every pair is tied.
        Example: one pair with scores 0.9 and 0.7, ``beta=10``, ``epsilon=0`` gives σ(2) = 0.880797.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    s = _as_scores(scores)
    beta, epsilon = _check_beta(beta), check_epsilon(epsilon)
    if tie_tol is not None and not tie_tol >= 0:
        raise ValueError(f"tie_tol must be None (no ties) or >= 0, got {tie_tol}")
    probs = []
    for row in s.reshape(-1, s.shape[-1]):
        group = _tie_groups(row, tie_tol)
        G = int(group.max()) + 1
        g_score = np.bincount(group, weights=row, minlength=G) / np.bincount(group, minlength=G)
        i, j = np.triu_indices(len(row), k=1)
        d = np.abs(g_score[group[i]] - g_score[group[j]])
        d = d[(group[i] != group[j]) & (d > 0)]
        if math.isinf(beta):
            probs.append(np.full(len(d), 1.0 - 0.5 * epsilon))
        else:
            probs.append(np.atleast_1d(preference_probability(beta * d, np.zeros_like(d), epsilon)))
    p = np.concatenate(probs)
    return float(p.mean()) if p.size else float("nan")


class RankingRater:
    """A synthetic labeller: Plackett-Luce rankings of gold scores with inverse temperature ``beta``,
    a random ranking with probability ``epsilon``, optional ties within ``tie_tol``; ``seed`` makes
    its labels repeatable.

    ``rater.rank(scores)`` ``(B, K) -> (B, K)`` ranks; ``rater.compare(s_a, s_b)`` ``(B,) -> (B,)`` labels
    μ (1 a better, 0 b better, 0.5 tied), as chapter 11's :class:`lmlib.preferences.SyntheticRater`
    answers; ``rater.agreement_ceiling(scores)`` the best accuracy any reward model can expect on its labels.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """

    def __init__(self, beta: float = 10.0, epsilon: float = 0.1, tie_tol: float | None = None, seed: int = 0):
        self.beta, self.epsilon = _check_beta(beta), check_epsilon(epsilon)
        if tie_tol is not None and not tie_tol >= 0:
            raise ValueError(f"tie_tol must be None (no ties) or >= 0, got {tie_tol}")
        self.tie_tol = tie_tol
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"RankingRater(beta={self.beta:g}, epsilon={self.epsilon:g}, tie_tol={self.tie_tol})"

    def rank(self, scores: Any) -> np.ndarray:
        """Ranks ``(B, K)`` (or ``(K,)``) of answers with gold ``scores`` of that shape; higher = better."""
        return plackett_luce_ranks(scores, self.beta, self.rng, self.epsilon, self.tie_tol)

    def compare(self, score_a: Any, score_b: Any) -> np.ndarray:
        """Labels μ ``(B,)`` for pairs (a, b): 1.0 if the rater prefers a, 0.0 if b, 0.5 if tied."""
        a = np.atleast_1d(np.asarray(score_a, dtype=np.float64))
        b = np.atleast_1d(np.asarray(score_b, dtype=np.float64))
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"score_a and score_b must be two (B,) arrays of one shape, got {a.shape} and {b.shape}")
        r = self.rank(np.stack([a, b], axis=1))  # (B, 2)
        return np.where(r[:, 0] > r[:, 1], 1.0, np.where(r[:, 0] < r[:, 1], 0.0, 0.5))

    def preference_probability(self, score_a: Any, score_b: Any) -> Any:
        """P[a ≻ b] = (1 - ε) σ(β (s_a - s_b)) + ε/2, chapter 11's Bradley-Terry model (ties aside)."""
        if math.isinf(self.beta):
            d = np.sign(np.asarray(score_a, dtype=np.float64) - np.asarray(score_b, dtype=np.float64))
            p = (1 - self.epsilon) * 0.5 * (1 + d) + 0.5 * self.epsilon
            return float(p) if p.ndim == 0 else p
        return preference_probability(self.beta * np.asarray(score_a, dtype=np.float64),
                                      self.beta * np.asarray(score_b, dtype=np.float64), self.epsilon)

    def agreement_ceiling(self, scores: Any) -> float:
        """:func:`agreement_ceiling` with this rater's ``beta``, ``epsilon`` and ``tie_tol``."""
        return agreement_ceiling(scores, self.beta, self.epsilon, self.tie_tol)

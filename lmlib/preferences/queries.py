"""Which pairs to ask about and when (disagreement queries, the label schedule), and a scripted rater.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .pairs import PreferenceDataset, PreferencePair, Segment, to_numpy
from .reward_models import RewardEnsemble


# --------------------------------------------------------------------------- which pairs to ask, and when


def select_queries(
    candidate_pairs: Sequence[PreferencePair],
    ensemble: RewardEnsemble | None,
    k: int,
    method: str = "disagreement",
    rng: np.random.Generator | int | None = None,
    epsilon: float = 0.1,
    return_scores: bool = False,
) -> list[PreferencePair] | tuple[list[PreferencePair], np.ndarray]:
    """Choose ``k`` of the candidate pairs to show the rater.

    ``method="disagreement"``: the ``k`` pairs where the ensemble members' predicted preference
    probabilities have the largest std (most uncertain first; ties keep candidate order).
    ``method="random"``: ``k`` pairs uniformly without replacement (needs ``rng``; the
    paper's baseline). With ``return_scores`` the disagreement of the chosen pairs (NaN for
    random) is returned too.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    candidate_pairs = list(candidate_pairs)
    if not 0 <= k <= len(candidate_pairs):
        raise ValueError(f"k must be between 0 and the number of candidates ({len(candidate_pairs)}), got {k}")
    if method == "disagreement":
        if not isinstance(ensemble, RewardEnsemble):
            raise TypeError("method='disagreement' needs a RewardEnsemble")
        scores = ensemble.disagreement(candidate_pairs, epsilon)
        chosen = np.argsort(-scores, kind="stable")[:k]
        picked_scores = scores[chosen]
    elif method == "random":
        if rng is None:
            raise ValueError("method='random' needs rng (a numpy Generator or an int seed) so that runs repeat")
        chosen = np.random.default_rng(rng).choice(len(candidate_pairs), size=k, replace=False)
        picked_scores = np.full(k, np.nan)
    else:
        raise ValueError(f"unknown method {method!r}; use 'disagreement' or 'random'")
    picked = [candidate_pairs[i] for i in chosen]
    return (picked, picked_scores) if return_scores else picked


@dataclass(frozen=True)
class LabelSchedule:
    """How many labels in total should have been requested by training step ``t``.

    The labelling *rate* falls like ``1 / (τ + t)`` (the paper used a rate ∝ 2·10⁶ / (T + 2·10⁶)
    for MuJoCo, T = environment steps so far). Integrating it, with a fraction ``f0`` of the labels
    asked up front (the paper: 25% of them from the untrained policy), gives

        N(t) = ⌊ n0 + (N - n0) · log(1 + t/τ) / log(1 + T/τ) ⌋,   n0 = round(f0 · N),

    so N(0) = n0, N(T) = N, N is non-decreasing and concave (fewer new labels later).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    total_labels: int
    total_steps: int
    initial_fraction: float
    tau: float

    def __call__(self, t: float) -> int:
        if t < 0:
            raise ValueError(f"step t must be >= 0, got {t}")
        n0 = round(self.initial_fraction * self.total_labels)
        t = min(float(t), float(self.total_steps))
        frac = math.log1p(t / self.tau) / math.log1p(self.total_steps / self.tau)
        return min(self.total_labels, int(math.floor(n0 + (self.total_labels - n0) * frac + 1e-9)))

    def due(self, t: float, have: int) -> int:
        """How many new labels to request at step ``t`` when ``have`` were already requested."""
        return max(0, self(t) - int(have))


def label_schedule(
    total_labels: int, total_steps: int, initial_fraction: float = 0.25, tau: float | None = None
) -> LabelSchedule:
    """A :class:`LabelSchedule`: ``schedule(t)`` = labels to have requested by step ``t``.

    ``tau`` (in steps) sets how fast the rate decays: the rate at the end is ``(τ + T)/τ`` times
    lower than at the start. Default ``τ = total_steps / 10`` (an 11-fold decrease; our choice,
    the paper's MuJoCo value was τ = 2·10⁶ environment steps).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if total_labels < 0 or total_steps < 1:
        raise ValueError(f"need total_labels >= 0 and total_steps >= 1, got {total_labels}, {total_steps}")
    if not 0.0 <= initial_fraction <= 1.0:
        raise ValueError(f"initial_fraction must be in [0, 1], got {initial_fraction}")
    tau = total_steps / 10 if tau is None else float(tau)
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return LabelSchedule(int(total_labels), int(total_steps), float(initial_fraction), tau)


# --------------------------------------------------------------------------- a scripted rater


class SyntheticRater:
    """A scripted rater who prefers the clip with the higher true return.

    The return of a segment is ``reward_fn(segment)`` summed (if given), else the sum of
    ``segment.rewards``. With ``ignore_components`` the rater is blind to those columns of
    ``(L, C)`` rewards: a rater who cannot see part of what matters, the set-up for reward
    hacking. The answer is ``"equal"`` when the returns differ by at most ``equal_tol``; with
    probability ``noise`` the rater instead answers ``"left"`` or ``"right"`` uniformly at random
    (the ε of the Bradley-Terry model). ``rng`` (Generator or seed, default 0) makes it repeatable.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(
        self,
        reward_fn: Callable[[Segment], Any] | None = None,
        noise: float = 0.0,
        equal_tol: float = 0.0,
        rng: np.random.Generator | int = 0,
        ignore_components: Sequence[int] = (),
        name: str = "synthetic",
    ) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be a probability in [0, 1], got {noise}")
        if equal_tol < 0:
            raise ValueError(f"equal_tol must be >= 0, got {equal_tol}")
        if reward_fn is not None and ignore_components:
            raise ValueError("ignore_components applies to Segment.rewards; with reward_fn, build the blind spot into it")
        self.reward_fn, self.noise, self.equal_tol = reward_fn, float(noise), float(equal_tol)
        self.ignore_components = tuple(int(c) for c in ignore_components)
        self.rng = np.random.default_rng(rng)
        self.name = name

    def segment_return(self, segment: Segment) -> float:
        """The return this rater perceives for ``segment``."""
        if self.reward_fn is not None:
            value = np.asarray(to_numpy(self.reward_fn(segment), "reward_fn(segment)"), dtype=np.float64)
            return float(value.sum())
        if segment.rewards is None:
            raise ValueError("the segment has no true rewards; give the rater a reward_fn")
        r = segment.rewards
        if self.ignore_components:
            if r.ndim != 2:
                raise ValueError("ignore_components needs per-component rewards (L, C) in Segment.rewards")
            bad = [c for c in self.ignore_components if not -r.shape[1] <= c < r.shape[1]]
            if bad:
                raise ValueError(f"ignore_components {bad} out of range for {r.shape[1]} reward components")
            keep = np.ones(r.shape[1], dtype=bool)
            keep[list(self.ignore_components)] = False
            r = r[:, keep]
        return float(r.sum())

    def __call__(self, pair: PreferencePair) -> str:
        """Answer ``"left"``, ``"right"`` or ``"equal"`` for one pair."""
        if self.noise > 0 and self.rng.random() < self.noise:
            return "left" if self.rng.random() < 0.5 else "right"
        d = self.segment_return(pair.left) - self.segment_return(pair.right)
        if abs(d) <= self.equal_tol:
            return "equal"
        return "left" if d > 0 else "right"

    def label(self, pairs: Iterable[PreferencePair]) -> PreferenceDataset:
        """Answer every pair and collect the answers in a :class:`PreferenceDataset`."""
        out = PreferenceDataset()
        for p in pairs:
            out.add(p, self(p))
        return out



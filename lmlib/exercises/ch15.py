"""Exercises of Chapter 15, "RLHF with PPO and a KL penalty".

* ``ch15.token_rewards(scores, logprobs, ref_logprobs, mask, beta)``: the reward function's score of each of B
  answers ``(B,)``, the sampled tokens' log-probabilities under the policy and the reference model ``(B, N)``,
  the mask ``(B, N)`` (True on real answer tokens, right-padded, at least one per row) and the KL coefficient
  ``beta >= 0`` -> the rewards ``(B, N)`` of PPO: ``-beta * (logprobs - ref_logprobs)`` at every real token,
  plus the score on each row's last real token, 0 at padding (:func:`lmlib.rlhf.ppo.token_rewards`).
* ``ch15.kl_controller_update(value, current_kl, target, n_steps, horizon)``: the KL coefficient ``value``,
  the mean KL per answer ``current_kl`` of a batch of ``n_steps`` answers, the target KL and the horizon ->
  the new coefficient of Ziegler et al. (2019)'s adaptive controller, a float:
  ``error = clip(current_kl / target - 1, -0.2, 0.2)``, ``value * (1 + error * n_steps / horizon)``
  (:class:`lmlib.rlhf.ppo.AdaptiveKLController`).
* ``ch15.sequence_kl(logprobs, ref_logprobs, mask)``: log-probabilities and mask as for ``token_rewards`` ->
  ``(B,)``, the k1 estimate of each answer's KL to the reference model in nats, summed over its real tokens
  (the "KL per answer" that RLHF reports; :func:`lmlib.rl.losses.kl_penalty`).
* ``ch15.overoptimisation_fit(d, gain, form)``: numpy arrays ``d = sqrt(KL) >= 0`` and the gold-score gains
  ``gain`` (same length, at least 3) and ``form`` (``"bon"`` or ``"rl"``) -> a tuple ``(alpha, beta)`` of
  floats, the least-squares fit without intercept of Gao et al. (2023)'s ``gain = d (alpha - beta d)``
  (``"bon"``) or ``gain = d (alpha - beta log d)`` (``"rl"``, with ``d log d = 0`` at ``d = 0``;
  :func:`lmlib.rlhf.ppo.overoptimisation_fit`).

Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
"""
from __future__ import annotations

import numpy as np
import torch

from ..rl.losses import kl_penalty
from ..rlhf import ppo as PPO
from .core import Case, compare_close, register


def _ref_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                       beta: float) -> torch.Tensor:
    return PPO.token_rewards(scores, logprobs, ref_logprobs, mask, beta)[0]


def _ref_controller(value: float, current_kl: float, target: float, n_steps: int, horizon: float) -> float:
    return PPO.AdaptiveKLController(value, target, horizon).update(current_kl, n_steps)


def _ref_sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return kl_penalty(logprobs, ref_logprobs, "k1", mask).sum(dim=1)


def _ref_fit(d: np.ndarray, gain: np.ndarray, form: str) -> tuple[float, float]:
    fit = PPO.overoptimisation_fit(d, gain, form)
    return fit["alpha"], fit["beta"]


def _f(a) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)


def _masks(lengths: list[int], n: int) -> torch.Tensor:
    return torch.tensor([[i < k for i in range(n)] for k in lengths])


def _logprobs(rng: np.random.Generator, lengths: list[int], n: int, junk: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy and reference log-probabilities of right-padded rows: junk at padding, or equal there (KL 0)."""
    lp = -rng.exponential(2.0, size=(len(lengths), n))
    ref = lp + rng.normal(scale=0.5, size=lp.shape)
    pad = ~_masks(lengths, n).numpy()
    ref[pad] = lp[pad]
    if junk:  # what a padded batch really holds: whatever the model says about the padding token
        lp[pad] = -30.0 + rng.normal(size=int(pad.sum()))
        ref[pad] = rng.normal(size=int(pad.sum()))
    return _f(lp), _f(ref)


def _token_rewards_cases(rng: np.random.Generator) -> list[Case]:
    lengths = [4, 2, 1]
    lp_clean, ref_clean = _logprobs(rng, lengths, 4, junk=False)
    lp_junk, ref_junk = _logprobs(rng, lengths, 4, junk=True)
    many = [int(k) for k in rng.integers(1, 13, size=8)]
    lp_many, ref_many = _logprobs(rng, many, 12, junk=True)
    return [
        Case((_f([2.0, -1.0]), _f([[-1.0], [-3.0]]), _f([[-2.0], [-1.0]]), _masks([1, 1], 1), 0.0),
             label="one token per row, beta = 0: the rewards are the scores (expect [[2], [-1]])"),
        Case((_f([1.0]), _f([[-1.0, -2.0, -3.0]]), _f([[-1.0, -2.0, -3.0]]), _masks([3], 3), 0.1),
             label="policy = reference: the score goes on the last real token only, not on every token "
                   "(expect [[0, 0, 1]])"),
        Case((_f([1.0]), _f([[-1.0, -2.0, -3.0]]), _f([[-1.5, -2.0, -2.0]]), _masks([3], 3), 0.1),
             label="the worked example (expect [[-0.05, 0, 1.1]]): the penalty is -beta * (logprobs - ref_logprobs), "
                   "a cost where the policy is more likely than the reference"),
        Case((_f([1.0, 2.0, 3.0]), lp_clean, ref_clean, _masks(lengths, 4), 0.2),
             label="right-padded rows of 4, 2 and 1 real tokens: the score goes on each row's last real token, "
                   "not on the last column"),
        Case((_f([1.0, 2.0, 3.0]), lp_junk, ref_junk, _masks(lengths, 4), 0.2),
             label="padding holds junk log-probabilities: the rewards at padding must be 0 (use the mask)"),
        Case((_f(rng.normal(size=8)), lp_many, ref_many, _masks(many, 12), float(rng.uniform(0.01, 0.5))),
             label="8 answers of random lengths, junk at padding, a random beta"),
        Case((_f(rng.normal(size=8)), lp_many, ref_many, _masks(many, 12), 0.0),
             label="beta = 0: no penalty, only the scores on the last real tokens"),
        Case((_f([0.5, -0.5]), _f([[-0.1] * 6, [-0.2] * 6]), _f([[-3.0] * 6, [-4.0] * 6]), _masks([6, 6], 6), 1.0),
             label="no padding, a policy far from the reference and beta = 1: the penalty outweighs the score"),
    ]


def _controller_cases(rng: np.random.Generator) -> list[Case]:
    randoms = [Case((float(rng.uniform(0.01, 1.0)), float(rng.uniform(0.0, 20.0)), float(rng.uniform(1.0, 10.0)),
                     int(rng.integers(1, 512)), float(rng.uniform(1000.0, 20000.0))),
                    label=f"random value, KL, target, batch and horizon ({i + 1} of 3)") for i in range(3)]
    return [
        Case((0.1, 6.0, 6.0, 256, 10000.0),
             label="KL on target (6 = 6): the error clip(KL / target - 1, -0.2, 0.2) is 0, beta stays 0.1"),
        Case((0.1, 6.6, 6.0, 256, 10000.0),
             label="KL a little above target (6.6 > 6, error 0.1 within the clip): beta goes up (expect 0.100256)"),
        Case((0.1, 9.0, 6.0, 256, 10000.0),
             label="the worked example, KL 9 far above target 6: the error 0.5 is clipped to 0.2 (expect 0.1005120)"),
        Case((0.1, 0.5, 6.0, 256, 10000.0),
             label="KL 0.5 far below target 6: the error is clipped to -0.2, beta goes down (expect 0.0994880)"),
        Case((0.05, -1.0, 6.0, 64, 10000.0),
             label="a negative KL estimate (k1 can be negative): the error is clipped to -0.2"),
        Case((0.2, 3.0, 4.0, 1, 10.0), label="a short horizon: one answer moves beta by error / horizon"),
        *randoms,
    ]


def _sequence_kl_cases(rng: np.random.Generator) -> list[Case]:
    lengths = [5, 3, 1, 2]
    lp, ref = _logprobs(rng, lengths, 5, junk=True)
    many = [int(k) for k in rng.integers(1, 21, size=16)]
    lp_many, ref_many = _logprobs(rng, many, 20, junk=True)
    full = [9, 9, 9]
    lp_full, ref_full = _logprobs(rng, full, 9, junk=False)
    return [
        Case((_f([[-1.0, -2.0, -3.0]]), _f([[-1.5, -2.0, -2.0]]), _masks([3], 3)),
             label="one answer of 3 tokens with KL [0.5, 0, -1] (expect [-0.5]): the KL of an answer is the sum "
                   "over its tokens, not the mean"),
        Case((lp_full, ref_full, _masks(full, 9)), label="3 answers of 9 tokens, no padding"),
        Case((lp, ref, _masks(lengths, 5)),
             label="right-padded rows of 5, 3, 1 and 2 real tokens, junk log-probabilities at padding: count only "
                   "the real tokens (use the mask)"),
        Case((lp_many, ref_many, _masks(many, 20)), label="16 answers of random lengths, junk at padding"),
        Case((_f([[-0.5, -0.5], [-2.0, -7.0]]), _f([[-0.5, -0.5], [-1.0, 0.0]]), _masks([2, 1], 2)),
             label="a policy equal to the reference has KL 0; a k1 estimate can be negative"),
    ]


def _fit_cases(rng: np.random.Generator) -> list[Case]:
    def noisy(d: np.ndarray, alpha: float, beta: float, form: str, scale: float) -> np.ndarray:
        return PPO.overoptimisation_curve(d, alpha, beta, form) + rng.normal(scale=scale, size=d.shape)

    d_bon = np.sqrt(np.log(np.arange(1.0, 11.0)) - (np.arange(1.0, 11.0) - 1) / np.arange(1.0, 11.0))  # n = 1..10
    d_rl = np.linspace(0.2, 4.0, 12)
    d_rl0 = np.concatenate([[0.0], rng.uniform(0.05, 5.0, size=14)])
    d_many = np.concatenate([[0.0, 0.0], rng.uniform(0.0, 6.0, size=30)])
    return [
        Case((np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.0]), "bon"),
             label='the worked example, "bon" through 3 points (expect (1.0, 0.5))'),
        Case((d_bon, noisy(d_bon, 0.8, 0.3, "bon", 0.05), "bon"),
             label='noisy best-of-n gains ("bon"): fit without an intercept, the curve passes through 0 at d = 0'),
        Case((d_rl, PPO.overoptimisation_curve(d_rl, 1.0, 0.4, "rl"), "rl"),
             label='the "rl" form on an exact curve (expect (1.0, 0.4)): it uses log d with d = sqrt(KL), '
                   "not log KL"),
        Case((d_rl0, noisy(d_rl0, 0.5, 0.2, "rl", 0.02), "rl"),
             label='the "rl" form with d = 0 among the points: d log d is 0 at d = 0, not nan'),
        Case((d_many, noisy(d_many, 0.6, 0.1, "rl", 0.1), "rl"), label='32 noisy "rl" points, two of them at d = 0'),
        Case((d_many, noisy(d_many, 0.6, 0.1, "bon", 0.1), "bon"), label='32 noisy "bon" points, two of them at d = 0'),
        Case((np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 4.0, 9.0]), "bon"),
             label="a gain that never turns down (d squared): beta < 0 is a fine answer (expect (0.0, -1.0))"),
    ]


register(
    "ch15.token_rewards",
    _ref_token_rewards,
    _token_rewards_cases,
    compare=compare_close(1e-5, 1e-6),
    title="RLHF's per-token rewards: a KL penalty on every token, the score on the last",
)
register(
    "ch15.kl_controller_update",
    _ref_controller,
    _controller_cases,
    compare=compare_close(1e-9, 1e-12),
    title="One step of the adaptive KL controller of Ziegler et al. (2019)",
)
register(
    "ch15.sequence_kl",
    _ref_sequence_kl,
    _sequence_kl_cases,
    compare=compare_close(1e-5, 1e-5),
    title="The KL of each answer to the reference model, summed over its tokens",
)
register(
    "ch15.overoptimisation_fit",
    _ref_fit,
    _fit_cases,
    compare=compare_close(1e-6, 1e-8),
    title="Fit Gao et al. (2023)'s over-optimisation curves to gold-score gains",
)

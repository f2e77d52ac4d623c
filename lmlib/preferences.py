"""Learning a reward function from human preferences (Christiano et al., 2017).

A rater watches two short clips (*segments*) and says which one is better. A
reward model r̂ predicts a reward for every step of a clip; the clip it
prefers is the one with the larger **sum** of predicted rewards, through the
Bradley-Terry model

    P[left ≻ right] = (1 - ε) · σ(R̂_left - R̂_right) + ε / 2,    R̂ = Σ_t r̂(s_t),

where ε = 0.1 says the rater answers at random one time in ten. Training
minimises the cross-entropy between this probability and the rater's label
μ ∈ {1 (left better), 0 (right better), 0.5 (equally good)}.

Nothing here knows about environments: a :class:`Segment` holds per-step
features ``(L, D)`` (a MuJoCo or Atari clip) or token ids ``(L,)`` (a
language-model completion), so the same code trains the reward models of the
RLHF chapters. Names follow TRL where they overlap (chosen/rejected, logits,
``beta``-free ``epsilon``).

The pieces, in the order the paper uses them:

* :class:`Segment`, :class:`PreferencePair`, :class:`PreferenceDataset` - clips, pairs and labels;
* :func:`preference_probability`, :func:`preference_loss` - the Bradley-Terry model and its loss;
* :class:`MLPRewardModel`, :class:`RewardEnsemble`, :func:`train_reward_model` - the reward predictor,
  an ensemble of them trained on bootstrap resamples, with normalised outputs;
* :func:`select_queries`, :func:`label_schedule` - which pairs to ask about, and how many, when;
* :class:`SyntheticRater` - a scripted rater that knows the true reward (optionally with a blind spot);
* :class:`LabelStore` - a crash-safe, append-only file of the reader's own labels.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CHOICES",
    "CHOICE_TO_MU",
    "Segment",
    "PreferencePair",
    "PreferenceDataset",
    "PairBatch",
    "collate_segments",
    "label_to_mu",
    "sample_pairs",
    "bootstrap_indices",
    "preference_probability",
    "masked_sum",
    "preference_loss",
    "per_step_rewards",
    "MLPRewardModel",
    "RewardEnsemble",
    "train_reward_model",
    "evaluate_reward_model",
    "select_queries",
    "LabelSchedule",
    "label_schedule",
    "SyntheticRater",
    "LabelFileError",
    "LabelStore",
]

_TAUGHT = 'Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).'

#: The four answers a rater can give, in the order the labelling widget shows them.
CHOICES = ("left", "right", "equal", "cant_tell")
#: Label μ = probability that the left clip is the better one; ``None``: not a training pair.
CHOICE_TO_MU: dict[str, float | None] = {"left": 1.0, "right": 0.0, "equal": 0.5, "cant_tell": None}


# --------------------------------------------------------------------------- segments and pairs


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc


@dataclass(eq=False)
class Segment:
    """One clip shown to the rater: ``L`` consecutive steps of a trajectory or ``L`` tokens.

    Attributes:
        obs: per-step inputs of the reward model: float features ``(L, D)`` (a MuJoCo/Atari
            clip, flattened frames or state vectors) or integer token ids ``(L,)`` (a prompt plus
            completion for an RLHF reward model).
        actions: optional ``(L,)`` or ``(L, A)`` actions. When present they are appended to the
            features (the paper's r̂(o, a)); pass discrete actions one-hot. Not allowed with tokens.
        rewards: optional true rewards ``(L,)``, or ``(L, C)`` for ``C`` reward components
            (the :class:`SyntheticRater` can be made blind to some of them). Never shown to the
            reward model.
        meta: anything else (environment name, start step, the text of a completion, ...).

    Arrays are stored as numpy (torch tensors are converted). :meth:`fingerprint` is a content
    hash, so a segment rebuilt after a kernel restart gets the same id.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    obs: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        obs = _to_numpy(self.obs, "Segment.obs")
        if obs.ndim == 1:
            if obs.dtype.kind not in "iu":
                raise ValueError(
                    f"Segment.obs of shape {obs.shape} has dtype {obs.dtype}: a 1-D obs must hold integer token "
                    "ids (L,); per-step features must be 2-D (L, D) - for one feature per step use obs[:, None]"
                )
            if obs.size and obs.min() < 0:
                raise ValueError(f"Segment.obs holds token ids, which must be >= 0; found {int(obs.min())}")
            obs = obs.astype(np.int64)
        elif obs.ndim == 2:
            if obs.dtype.kind not in "fiub":
                raise ValueError(f"Segment.obs features must be numbers, got dtype {obs.dtype}")
            obs = obs.astype(np.float32)
            if not np.isfinite(obs).all():
                raise ValueError("Segment.obs contains NaN or infinite values")
        else:
            raise ValueError(f"Segment.obs must be token ids (L,) or features (L, D), got shape {obs.shape}")
        if obs.shape[0] == 0:
            raise ValueError("Segment.obs is empty: a segment needs at least one step (L >= 1)")
        self.obs = obs
        L = obs.shape[0]
        if self.actions is not None:
            act = _to_numpy(self.actions, "Segment.actions")
            if obs.ndim == 1:
                raise ValueError("a token segment cannot have actions: the tokens are the actions; use meta instead")
            if act.ndim not in (1, 2) or act.shape[0] != L:
                raise ValueError(f"Segment.actions must have shape ({L},) or ({L}, A) to match obs {obs.shape}, got {act.shape}")
            self.actions = act
        if self.rewards is not None:
            rew = _to_numpy(self.rewards, "Segment.rewards").astype(np.float64)
            if rew.ndim not in (1, 2) or rew.shape[0] != L:
                raise ValueError(f"Segment.rewards must have shape ({L},) or ({L}, C) to match obs {obs.shape}, got {rew.shape}")
            self.rewards = rew
        if not isinstance(self.meta, dict):
            raise TypeError(f"Segment.meta must be a dict, got {type(self.meta).__name__}")

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def is_tokens(self) -> bool:
        """True for a token-id segment ``(L,)``, False for a feature segment ``(L, D)``."""
        return self.obs.ndim == 1

    @property
    def features(self) -> np.ndarray:
        """What the reward model sees: token ids ``(L,)``, or float features ``(L, D [+ A])``."""
        if self.is_tokens or self.actions is None:
            return self.obs
        act = self.actions.reshape(len(self), -1).astype(np.float32)
        return np.concatenate([self.obs, act], axis=1)

    @property
    def true_return(self) -> float:
        """Sum of the true rewards over steps and components; error if the segment has none."""
        if self.rewards is None:
            raise ValueError("this segment has no true rewards (Segment.rewards is None)")
        return float(self.rewards.sum())

    def fingerprint(self) -> str:
        """Hex SHA-256 of the segment's obs and actions (shape, dtype and bytes)."""
        h = hashlib.sha256()
        for arr in (self.obs, self.actions):
            if arr is None:
                h.update(b"none")
            else:
                arr = np.ascontiguousarray(arr)
                h.update(f"{arr.dtype.str}{arr.shape}".encode())
                h.update(arr.tobytes())
        return h.hexdigest()


@dataclass(eq=False)
class PreferencePair:
    """Two segments shown side by side, ``left`` and ``right``, under a stable ``id``.

    If no ``id`` is given it is derived from the contents of both segments (16 hex digits),
    so the same pair gets the same id after a kernel restart, which is what lets a
    :class:`LabelStore` resume.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    left: Segment
    right: Segment
    id: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for side in ("left", "right"):
            if not isinstance(getattr(self, side), Segment):
                raise TypeError(f"PreferencePair.{side} must be a Segment, got {type(getattr(self, side)).__name__}")
        if self.left.is_tokens != self.right.is_tokens:
            raise ValueError("a pair must hold two token segments or two feature segments, not one of each")
        if not self.left.is_tokens and self.left.features.shape[1] != self.right.features.shape[1]:
            raise ValueError(
                f"left and right segments have different feature sizes: {self.left.features.shape[1]} "
                f"vs {self.right.features.shape[1]}"
            )
        if not isinstance(self.id, str):
            raise TypeError(f"PreferencePair.id must be a str, got {type(self.id).__name__}")
        if not self.id:
            self.id = hashlib.sha256((self.left.fingerprint() + self.right.fingerprint()).encode()).hexdigest()[:16]


def label_to_mu(label: str | float | None) -> float | None:
    """Turn a rater's answer into the training target μ = P[left is better].

    ``"left"`` -> 1.0, ``"right"`` -> 0.0, ``"equal"`` -> 0.5, ``"cant_tell"`` or ``None`` -> ``None``
    (not a training pair). Numbers in [0, 1] pass through (soft labels).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if label is None:
        return None
    if isinstance(label, str):
        if label not in CHOICE_TO_MU:
            raise ValueError(f"unknown label {label!r}; expected one of {CHOICES} or a number in [0, 1]")
        return CHOICE_TO_MU[label]
    if isinstance(label, (bool, np.bool_)):
        raise TypeError("a label must be a choice string or a number in [0, 1], not a bool")
    mu = float(label)
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"a label μ must lie in [0, 1] (1 = left better, 0 = right better, 0.5 = equal), got {mu}")
    return mu


def collate_segments(segments: Sequence[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack segments of possibly different lengths, padding at the end.

    Returns ``(x, mask)``: ``x`` is float ``(B, L_max, D)`` for feature segments or long
    ``(B, L_max)`` for token segments (padding value 0), and ``mask`` is bool ``(B, L_max)``,
    True on real steps.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if len(segments) == 0:
        raise ValueError("collate_segments needs at least one segment")
    feats = [s.features for s in segments]
    tokens = segments[0].is_tokens
    if any(s.is_tokens != tokens for s in segments):
        raise ValueError("cannot batch token segments together with feature segments")
    if not tokens:
        dims = {f.shape[1] for f in feats}
        if len(dims) > 1:
            raise ValueError(f"segments have different feature sizes {sorted(dims)}; they cannot share a reward model")
    B, L = len(feats), max(f.shape[0] for f in feats)
    if tokens:
        x = np.zeros((B, L), dtype=np.int64)
    else:
        x = np.zeros((B, L, feats[0].shape[1]), dtype=np.float32)
    mask = np.zeros((B, L), dtype=bool)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
        mask[i, : f.shape[0]] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


@dataclass
class PairBatch:
    """A batch of labelled pairs as tensors: what :func:`preference_loss` consumes.

    ``left``/``right``: ``(B, L, D)`` float or ``(B, L)`` long; ``mask_left``/``mask_right``:
    bool ``(B, L)``; ``mu``: float ``(B,)``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    left: torch.Tensor
    right: torch.Tensor
    mask_left: torch.Tensor
    mask_right: torch.Tensor
    mu: torch.Tensor

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def index(self, idx: np.ndarray | torch.Tensor | Sequence[int]) -> "PairBatch":
        """The sub-batch at positions ``idx`` (repeats allowed)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return PairBatch(self.left[idx], self.right[idx], self.mask_left[idx], self.mask_right[idx], self.mu[idx])

    def to(self, device: torch.device | str) -> "PairBatch":
        """Move every tensor to ``device``."""
        return PairBatch(*(t.to(device) for t in (self.left, self.right, self.mask_left, self.mask_right, self.mu)))


class PreferenceDataset:
    """Labelled pairs: ``pairs[i]`` with target ``mu[i]`` = P[left is better] ∈ [0, 1].

    Add answers with :meth:`add`: ``"left"``/1.0, ``"right"``/0.0, ``"equal"``/0.5 are stored as
    training pairs; ``"cant_tell"`` (or ``None``) is *recorded* in :attr:`skipped` but never
    trained on, as in the paper ("incomparable" clips are dropped).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, pairs: Iterable[PreferencePair] = (), labels: Iterable[str | float | None] = ()) -> None:
        self.pairs: list[PreferencePair] = []
        self.mu: list[float] = []
        self.skipped: list[PreferencePair] = []
        pairs, labels = list(pairs), list(labels)
        if len(pairs) != len(labels):
            raise ValueError(f"got {len(pairs)} pairs but {len(labels)} labels")
        for p, lab in zip(pairs, labels):
            self.add(p, lab)

    def add(self, pair: PreferencePair, label: str | float | None) -> bool:
        """Record ``label`` for ``pair``; return True if it became a training pair."""
        if not isinstance(pair, PreferencePair):
            raise TypeError(f"expected a PreferencePair, got {type(pair).__name__}")
        if self.pairs and pair.left.is_tokens != self.pairs[0].left.is_tokens:
            raise ValueError("this dataset holds " + ("token" if self.pairs[0].left.is_tokens else "feature")
                             + " segments; cannot add a pair of the other kind")
        mu = label_to_mu(label)
        if mu is None:
            self.skipped.append(pair)
            return False
        self.pairs.append(pair)
        self.mu.append(mu)
        return True

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[PreferencePair, float]:
        return self.pairs[i], self.mu[i]

    def __repr__(self) -> str:
        counts = {"left": self.mu.count(1.0), "right": self.mu.count(0.0), "equal": self.mu.count(0.5)}
        return f"PreferenceDataset({len(self)} pairs {counts}, {len(self.skipped)} skipped as can't tell)"

    def subset(self, indices: Sequence[int] | np.ndarray) -> "PreferenceDataset":
        """A new dataset with the pairs at ``indices`` (repeats allowed); skipped pairs are kept."""
        out = PreferenceDataset()
        n = len(self)
        for i in np.asarray(indices, dtype=np.int64).reshape(-1):
            if not 0 <= i < n:
                raise IndexError(f"index {int(i)} out of range for a dataset of {n} pairs")
            out.pairs.append(self.pairs[i])
            out.mu.append(self.mu[i])
        out.skipped = list(self.skipped)
        return out

    def split(self, val_fraction: float, rng: np.random.Generator | int = 0) -> tuple["PreferenceDataset", "PreferenceDataset"]:
        """Random ``(train, val)`` split with ``round(val_fraction * len)`` validation pairs."""
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        rng = np.random.default_rng(rng)
        perm = rng.permutation(len(self))
        n_val = int(round(val_fraction * len(self)))
        return self.subset(perm[n_val:]), self.subset(perm[:n_val])

    def bootstrap(self, rng: np.random.Generator | int) -> "PreferenceDataset":
        """A bootstrap resample: ``len(self)`` pairs drawn with replacement (see :func:`bootstrap_indices`)."""
        return self.subset(bootstrap_indices(len(self), rng))

    def segments(self) -> list[Segment]:
        """Every distinct segment (by identity) appearing in the training pairs, in order."""
        seen: dict[int, Segment] = {}
        for p in self.pairs:
            seen.setdefault(id(p.left), p.left)
            seen.setdefault(id(p.right), p.right)
        return list(seen.values())

    def collate(self, indices: Sequence[int] | np.ndarray | None = None) -> PairBatch:
        """Tensors for the pairs at ``indices`` (default all), see :class:`PairBatch`."""
        idx = range(len(self)) if indices is None else [int(i) for i in np.asarray(indices).reshape(-1)]
        pairs = [self.pairs[i] for i in idx]
        if not pairs:
            raise ValueError("cannot collate an empty set of pairs")
        left, mask_left = collate_segments([p.left for p in pairs])
        right, mask_right = collate_segments([p.right for p in pairs])
        mu = torch.tensor([self.mu[i] for i in idx], dtype=torch.float32)
        return PairBatch(left, right, mask_left, mask_right, mu)

    @classmethod
    def from_labels(
        cls, pairs: Sequence[PreferencePair], labels: "LabelStore | dict[str, str]", missing: str = "raise"
    ) -> "PreferenceDataset":
        """Build a dataset from stored answers (a :class:`LabelStore` or ``{pair_id: choice}``).

        Pairs are matched by id, in the order of ``pairs``. A label whose id is not among ``pairs``
        raises ``ValueError`` (``missing="raise"``) or is ignored (``missing="skip"``).
        """
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
        choices = labels.choices() if isinstance(labels, LabelStore) else dict(labels)
        by_id = {p.id: p for p in pairs}
        unknown = [k for k in choices if k not in by_id]
        if unknown and missing == "raise":
            raise ValueError(
                f"{len(unknown)} stored label(s) refer to pairs that are not in `pairs` (first: {unknown[0]!r}). "
                "Were the pairs generated with a different seed or different clips? "
                "Pass missing='skip' to ignore them."
            )
        out = cls()
        for p in pairs:
            if p.id in choices:
                out.add(p, choices[p.id])
        return out


def sample_pairs(segments: Sequence[Segment], n: int, rng: np.random.Generator | int) -> list[PreferencePair]:
    """``n`` random pairs of two *different* segments (uniform, with replacement across pairs).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments to make pairs, got {len(segments)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(rng)
    i = rng.integers(0, len(segments), size=n)
    j = (i + rng.integers(1, len(segments), size=n)) % len(segments)  # j != i, uniform over the others
    return [PreferencePair(segments[a], segments[b]) for a, b in zip(i.tolist(), j.tolist())]


def bootstrap_indices(n: int, rng: np.random.Generator | int) -> np.ndarray:
    """``n`` indices drawn uniformly *with replacement* from ``range(n)``: one bootstrap resample.

    Each ensemble member trains on its own resample, which is what makes the members
    disagree where data is scarce (about 37% of the pairs are left out of each resample).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if n < 1:
        raise ValueError(f"cannot bootstrap an empty dataset (n={n})")
    return np.random.default_rng(rng).integers(0, n, size=n)


# --------------------------------------------------------------------------- the Bradley-Terry model


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not (0.0 <= epsilon <= 1.0):
        raise ValueError(f"epsilon (probability that the rater answers at random) must be in [0, 1], got {epsilon}")
    return epsilon


def preference_probability(r1_sum: Any, r2_sum: Any, epsilon: float = 0.1) -> Any:
    """P[segment 1 ≻ segment 2] = (1 - ε)·σ(R1 - R2) + ε/2 from summed predicted rewards.

    ``r1_sum`` and ``r2_sum`` are returns (sums of per-step rewards): floats, numpy arrays or
    torch tensors of broadcastable shapes; the result has the same kind (a float for floats).
    ``epsilon`` is the chance that the rater answers uniformly at random (0.1 in the paper).
    Example: a return difference of 2 gives 0.880797 with ε = 0 and 0.842717 with ε = 0.1.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    epsilon = _check_epsilon(epsilon)
    if isinstance(r1_sum, torch.Tensor) or isinstance(r2_sum, torch.Tensor):
        r1 = torch.as_tensor(r1_sum)
        r2 = torch.as_tensor(r2_sum)
        if not r1.is_floating_point():
            r1 = r1.float()
        return (1.0 - epsilon) * torch.sigmoid(r1 - r2) + 0.5 * epsilon
    d = np.asarray(r1_sum, dtype=np.float64) - np.asarray(r2_sum, dtype=np.float64)
    p = (1.0 - epsilon) * 0.5 * (1.0 + np.tanh(0.5 * d)) + 0.5 * epsilon  # σ(d), stable for any d
    return float(p) if p.ndim == 0 else p


def masked_sum(rewards: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum per-step rewards ``(B, L)`` over the steps where ``mask`` ``(B, L)`` is true -> ``(B,)``.

    Padded steps are replaced by 0 (not multiplied by 0), so NaN or inf in padding is harmless.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 2:
        shape = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise ValueError(f"per-step rewards must be a (B, L) tensor, got {shape}; for one reward per sequence use r.unsqueeze(1)")
    if mask is None:
        return rewards.sum(dim=1)
    if not isinstance(mask, torch.Tensor) or mask.shape != rewards.shape:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a tensor of the same shape as the rewards {tuple(rewards.shape)}, got {shape}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("a non-bool mask must contain only 0 and 1")
        mask = mask.bool()
    return torch.where(mask, rewards, torch.zeros((), dtype=rewards.dtype, device=rewards.device)).sum(dim=1)


def _log_probs(diff: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """log P[left ≻ right] and log P[right ≻ left] under the ε-Bradley-Terry model, computed stably."""
    if epsilon == 0.0:
        return F.logsigmoid(diff), F.logsigmoid(-diff)
    log_keep = math.log1p(-epsilon) if epsilon < 1.0 else -math.inf
    log_rand = torch.full_like(diff, math.log(0.5 * epsilon))
    return (
        torch.logaddexp(F.logsigmoid(diff) + log_keep, log_rand),
        torch.logaddexp(F.logsigmoid(-diff) + log_keep, log_rand),
    )


def preference_loss(
    pred_rewards_left: torch.Tensor,
    pred_rewards_right: torch.Tensor,
    mu: torch.Tensor,
    epsilon: float = 0.1,
    mask_left: torch.Tensor | None = None,
    mask_right: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy between the rater's labels and the Bradley-Terry preference probabilities.

    loss = -mean_b [ μ_b log P_b + (1 - μ_b) log(1 - P_b) ],  P_b = (1-ε)σ(R̂_left - R̂_right) + ε/2,
    with R̂ = sum of per-step predicted rewards over the unmasked steps.

    Args:
        pred_rewards_left, pred_rewards_right: per-step predicted rewards ``(B, L_left)`` and
            ``(B, L_right)`` (the two lengths may differ).
        mu: labels ``(B,)`` in [0, 1]: 1 left better, 0 right better, 0.5 tie (the loss is then
            smallest when both returns are equal).
        epsilon: probability that the rater answered at random (0.1 in the paper; TRL's reward
            trainer is ε = 0).
        mask_left, mask_right: optional bool ``(B, L)``, True on real steps, False on padding
            (variable-length token sequences).

    Returns:
        ``(loss, diagnostics)``: a scalar tensor (differentiable) and a dict of floats:
        ``accuracy`` (fraction of non-tie pairs whose preferred segment gets the strictly higher
        predicted return; NaN if all are ties) and ``margin`` (mean over non-tie pairs of
        R̂_preferred - R̂_other; NaN if all are ties).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    epsilon = _check_epsilon(epsilon)
    for name, r in (("pred_rewards_left", pred_rewards_left), ("pred_rewards_right", pred_rewards_right)):
        if not isinstance(r, torch.Tensor) or r.dim() != 2 or not r.is_floating_point():
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise ValueError(f"{name} must be a float tensor (B, L) of per-step rewards, got {shape}")
    B = pred_rewards_left.shape[0]
    if pred_rewards_right.shape[0] != B:
        raise ValueError(f"left and right batches differ in size: {B} vs {pred_rewards_right.shape[0]}")
    mu = torch.as_tensor(mu, dtype=pred_rewards_left.dtype, device=pred_rewards_left.device)
    if mu.shape != (B,):
        raise ValueError(f"mu must have shape ({B},) (one label per pair), got {tuple(mu.shape)}")
    if not bool(((mu >= 0) & (mu <= 1)).all()):
        raise ValueError("mu must lie in [0, 1]: 1 = left better, 0 = right better, 0.5 = equal")
    r_left = masked_sum(pred_rewards_left, mask_left)
    r_right = masked_sum(pred_rewards_right, mask_right)
    diff = r_left - r_right
    log_p_left, log_p_right = _log_probs(diff, epsilon)
    loss = -(mu * log_p_left + (1.0 - mu) * log_p_right).mean()
    with torch.no_grad():
        decisive = mu != 0.5
        sign = torch.sign(mu - 0.5)
        if bool(decisive.any()):
            signed = (sign * diff)[decisive]
            accuracy, margin = float((signed > 0).float().mean()), float(signed.mean())
        else:
            accuracy = margin = float("nan")
    return loss, {"accuracy": accuracy, "margin": margin}


# --------------------------------------------------------------------------- reward models


def per_step_rewards(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a reward model on ``x`` (``(B, L, D)`` features or ``(B, L)`` tokens) and check it returns ``(B, L)``.

    Any ``nn.Module`` mapping per-step inputs to per-step rewards is a reward model; a trailing
    dimension of size 1, ``(B, L, 1)``, is squeezed.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"a reward model must return a tensor, got {type(out).__name__}")
    if out.dim() == 3 and out.shape[-1] == 1:
        out = out.squeeze(-1)
    if tuple(out.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"a reward model must map inputs {tuple(x.shape)} to per-step rewards {tuple(x.shape[:2])}, got {tuple(out.shape)}"
        )
    return out


class MLPRewardModel(nn.Module):
    """The default reward predictor r̂: an MLP applied to every step independently.

    Features ``(B, L, in_dim)`` -> rewards ``(B, L)``. With ``vocab_size`` it instead embeds token
    ids ``(B, L)`` first (a bag-of-tokens baseline for text). The paper's MuJoCo predictor is
    2 hidden layers of 64 leaky-ReLU units; it also used dropout, which ``dropout`` adds.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(
        self,
        in_dim: int | None = None,
        hidden: int = 64,
        n_layers: int = 2,
        dropout: float = 0.0,
        vocab_size: int | None = None,
        emb_dim: int = 32,
    ) -> None:
        super().__init__()
        if (in_dim is None) == (vocab_size is None):
            raise ValueError("give exactly one of in_dim (feature segments) or vocab_size (token segments)")
        if n_layers < 0 or hidden < 1:
            raise ValueError(f"need hidden >= 1 and n_layers >= 0, got hidden={hidden}, n_layers={n_layers}")
        self.in_dim, self.vocab_size = in_dim, vocab_size
        self.embed = nn.Embedding(vocab_size, emb_dim) if vocab_size is not None else None
        layers: list[nn.Module] = []
        width = emb_dim if vocab_size is not None else int(in_dim)
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(0.01)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, in_dim)`` float or ``(B, L)`` long -> ``(B, L)`` per-step rewards."""
        if self.embed is not None:
            if x.dim() != 2 or x.is_floating_point():
                raise ValueError(f"this reward model reads token ids (B, L) of integer dtype, got {tuple(x.shape)} {x.dtype}")
            if x.numel() and int(x.max()) >= self.vocab_size:
                raise ValueError(f"token id {int(x.max())} is out of range for vocab_size={self.vocab_size}")
            h = self.embed(x)
        else:
            if x.dim() != 3 or x.shape[-1] != self.in_dim:
                raise ValueError(f"this reward model reads features (B, L, {self.in_dim}), got {tuple(x.shape)}")
            h = x.float()
        return self.net(h).squeeze(-1)


class RewardEnsemble(nn.Module):
    """``K`` reward models whose disagreement says which pairs are worth asking about.

    Each member is trained on its own bootstrap resample of the labelled pairs
    (:func:`train_reward_model` does this). Each member's output is normalised with a running
    mean and standard deviation of its per-step predictions on the segments seen so far
    (:meth:`update_normalization`) to zero mean and unit std, as in the paper; before any
    update the normalisation is the identity.

    * ``member_rewards(x, normalized)`` -> ``(K, B, L)``;
    * ``forward(x)`` / ``predict(x)`` -> ``(B, L)``: the mean over members of normalised rewards
      (``predict`` without gradients, in eval mode: the reward handed to the RL agent);
    * ``disagreement(pairs)`` -> ``(N,)``: std across members of P[left ≻ right].

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if len({id(m) for m in members}) != len(members):
            raise ValueError("ensemble members must be distinct modules (use copy.deepcopy or a factory)")
        self.members = nn.ModuleList(members)
        K = len(members)
        self.register_buffer("norm_count", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("norm_mean", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("norm_var", torch.ones(K, dtype=torch.float64))

    @classmethod
    def of_mlps(cls, k: int = 3, seed: int = 0, **mlp_kwargs: Any) -> "RewardEnsemble":
        """``k`` :class:`MLPRewardModel` members, member ``i`` initialised with seed ``seed + i``.

        The global torch RNG is left untouched.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        members = []
        for i in range(k):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                members.append(MLPRewardModel(**mlp_kwargs))
        return cls(members)

    def __len__(self) -> int:
        return len(self.members)

    def member_rewards(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Per-step rewards of every member, ``(K, B, L)``; raw or normalised."""
        r = torch.stack([per_step_rewards(m, x) for m in self.members])
        if normalized:
            mean = self.norm_mean.to(r.dtype)[:, None, None]
            std = torch.sqrt(self.norm_var + 1e-8).to(r.dtype)[:, None, None]
            r = (r - mean) / std
        return r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Ensemble mean of normalised per-step rewards, ``(B, L)``."""
        return self.member_rewards(x, normalized=True).mean(dim=0)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in eval mode without gradients: the reward the RL agent receives, ``(B, L)``."""
        was_training = self.training
        self.eval()
        try:
            return self(x)
        finally:
            self.train(was_training)

    def _inputs(self, data: Sequence[Segment] | torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(data, torch.Tensor):
            x = data
            mask = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
        else:
            x, mask = collate_segments(list(data))
        device = self.norm_mean.device
        return x.to(device), mask.to(device)

    def reset_normalization(self) -> None:
        """Forget the running statistics (identity normalisation)."""
        self.norm_count.zero_()
        self.norm_mean.zero_()
        self.norm_var.fill_(1.0)

    @torch.no_grad()
    def update_normalization(self, data: Sequence[Segment] | torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Fold each member's raw per-step predictions on ``data`` into its running mean/std.

        ``data``: segments, or inputs ``(B, L, D)``/``(B, L)`` with an optional bool ``mask (B, L)``.
        Uses the parallel (Chan et al.) update, so feeding data in pieces equals feeding it at once.
        """
        x, mask = self._inputs(data, mask)
        was_training = self.training
        self.eval()
        try:
            r = self.member_rewards(x).double()  # (K, B, L)
        finally:
            self.train(was_training)
        vals = r[:, mask]  # (K, n)
        n = vals.shape[1]
        if n == 0:
            return
        b_mean = vals.mean(dim=1)
        b_var = vals.var(dim=1, unbiased=False)
        tot = self.norm_count + n
        delta = b_mean - self.norm_mean
        m2 = self.norm_var * self.norm_count + b_var * n + delta**2 * self.norm_count * n / tot
        self.norm_mean += delta * n / tot
        self.norm_var.copy_(m2 / tot)
        self.norm_count.copy_(tot)

    @torch.no_grad()
    def member_probabilities(self, pairs: Sequence[PreferencePair], epsilon: float = 0.1, chunk: int = 256) -> np.ndarray:
        """P[left ≻ right] under each member's own (raw) reward, ``(K, N)``, for ``N`` pairs."""
        pairs = list(pairs)
        K = len(self)
        if not pairs:
            return np.zeros((K, 0))
        was_training = self.training
        self.eval()
        out = []
        try:
            for s in range(0, len(pairs), chunk):
                part = pairs[s : s + chunk]
                xl, ml = self._inputs([p.left for p in part], None)
                xr, mr = self._inputs([p.right for p in part], None)
                rl, rr = self.member_rewards(xl), self.member_rewards(xr)  # (K, b, L)
                ret_l = torch.stack([masked_sum(rl[k], ml) for k in range(K)])
                ret_r = torch.stack([masked_sum(rr[k], mr) for k in range(K)])
                out.append(preference_probability(ret_l.double(), ret_r.double(), epsilon).cpu().numpy())
        finally:
            self.train(was_training)
        return np.concatenate(out, axis=1)

    def disagreement(self, pairs: Sequence[PreferencePair], epsilon: float = 0.1) -> np.ndarray:
        """Std across members (population std) of the predicted P[left ≻ right], ``(N,)``."""
        return self.member_probabilities(pairs, epsilon).std(axis=0)


# --------------------------------------------------------------------------- training


def _members(model: nn.Module) -> list[nn.Module]:
    return list(model.members) if isinstance(model, RewardEnsemble) else [model]


@torch.no_grad()
def _evaluate_member(model: nn.Module, batch: PairBatch, epsilon: float) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        rl, rr = per_step_rewards(model, batch.left), per_step_rewards(model, batch.right)
        loss, diag = preference_loss(rl, rr, batch.mu, epsilon, batch.mask_left, batch.mask_right)
    finally:
        model.train(was_training)
    return {"loss": float(loss), **diag}


def evaluate_reward_model(model: nn.Module, dataset: PreferenceDataset, epsilon: float = 0.1) -> dict[str, float]:
    """Loss, accuracy and margin of a reward model (or an ensemble's mean reward) on ``dataset``.

    Accuracy is the fraction of non-tie pairs whose preferred segment gets the higher predicted
    return: the agreement with the rater.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    device = next(iter(model.buffers()), next(iter(model.parameters()), torch.empty(0))).device
    return _evaluate_member(model, dataset.collate().to(device), epsilon)


def train_reward_model(
    model: nn.Module,
    dataset: PreferenceDataset,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    epsilon: float = 0.1,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """Fit a reward model (or every member of a :class:`RewardEnsemble`) to labelled pairs with Adam.

    1. The pairs are split (seeded) into train and validation (``val_fraction``, may be 0).
    2. A single model trains on all training pairs. An ensemble member ``k`` trains on its own
       bootstrap resample of the training pairs (seed ``(seed, k)``), so members differ.
    3. After each epoch the member is evaluated (eval mode) on its training pairs and on the
       validation pairs.
    4. An ensemble's output normalisation is refitted on every segment of ``dataset``.

    Training continues from the model's current weights (call it again after new labels arrive,
    as the paper's asynchronous loop does). The paper also tuned an L2 penalty from the
    validation loss; ``weight_decay`` is that knob.

    Returns:
        history dict: ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` - lists with one value
        per epoch (mean over members for an ensemble; NaN without a validation set) - plus
        ``members`` (each member's own history) and ``bootstrap`` (each member's resample indices
        into the training split, ``None`` for a single model).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if not isinstance(dataset, PreferenceDataset):
        raise TypeError(f"dataset must be a PreferenceDataset, got {type(dataset).__name__}")
    if len(dataset) < 2:
        raise ValueError(f"need at least 2 labelled pairs to train, got {len(dataset)}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    epsilon = _check_epsilon(epsilon)
    members = _members(model)
    for m in members:
        if not any(p.requires_grad for p in m.parameters()):
            raise ValueError("the reward model has no trainable parameters")
    device = next(members[0].parameters()).device
    train_ds, val_ds = dataset.split(val_fraction, np.random.default_rng([seed, 0]))
    train_all = train_ds.collate().to(device)
    val_all = val_ds.collate().to(device) if len(val_ds) else None
    ensemble = isinstance(model, RewardEnsemble)
    nan = float("nan")
    member_histories, resamples = [], []
    for k, member in enumerate(members):
        rng = np.random.default_rng([seed, 1, k])
        idx = bootstrap_indices(len(train_ds), rng) if ensemble else np.arange(len(train_ds))
        resamples.append(idx if ensemble else None)
        mine = train_all.index(idx)
        opt = torch.optim.Adam(member.parameters(), lr=lr, weight_decay=weight_decay)
        hist: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        member.train()
        for _ in range(epochs):
            order = rng.permutation(len(idx))
            for s in range(0, len(order), batch_size):
                b = mine.index(order[s : s + batch_size])
                rl, rr = per_step_rewards(member, b.left), per_step_rewards(member, b.right)
                loss, _ = preference_loss(rl, rr, b.mu, epsilon, b.mask_left, b.mask_right)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            tr = _evaluate_member(member, mine, epsilon)
            va = _evaluate_member(member, val_all, epsilon) if val_all is not None else {"loss": nan, "accuracy": nan}
            hist["loss"].append(tr["loss"])
            hist["accuracy"].append(tr["accuracy"])
            hist["val_loss"].append(va["loss"])
            hist["val_accuracy"].append(va["accuracy"])
        member_histories.append(hist)
    if ensemble:
        model.reset_normalization()
        segments = dataset.segments()
        for s in range(0, len(segments), 256):  # running statistics: chunks bound the memory
            model.update_normalization(segments[s : s + 256])
    history: dict[str, Any] = {
        key: [float(np.mean([h[key][e] for h in member_histories])) for e in range(epochs)]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy")
    }
    history["members"] = member_histories
    history["bootstrap"] = resamples
    return history


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
            value = np.asarray(_to_numpy(self.reward_fn(segment), "reward_fn(segment)"), dtype=np.float64)
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


# --------------------------------------------------------------------------- the reader's labels on disk


class LabelFileError(ValueError):
    """A label file has a malformed line that is not a crash-torn last line (the message names it).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _validate_record(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key in ("pair_id", "choice", "time", "rater"):
        if key not in obj:
            return f"missing field {key!r}"
    if not isinstance(obj["pair_id"], str) or not obj["pair_id"]:
        return "pair_id must be a non-empty string"
    if obj["choice"] not in CHOICES:
        return f"choice {obj['choice']!r} is not one of {CHOICES}"
    if not isinstance(obj["rater"], str):
        return "rater must be a string"
    if not isinstance(obj["time"], (str, int, float)) or isinstance(obj["time"], bool):
        return "time must be a string or a number"
    return None


class LabelStore:
    """The reader's answers, one JSON object per line, appended to a file and never rewritten.

    Each :meth:`add` writes one complete line ``{"pair_id", "choice", "time", "rater", ...}`` with
    a single append, then flushes and fsyncs, so a crash or kernel restart loses at most the label
    being written. If that write fails, the file is truncated back, so it never holds half a line
    we know about. Opening an existing file resumes from it:

    * a torn last line (a crash mid-write) is ignored with a warning, moved to ``<path>.torn`` and
      cut from the file, so later appends start on a clean line;
    * any other malformed line raises :class:`LabelFileError` naming the file and line number.

    A pair answered twice keeps every answer in the file; the latest one counts
    (:meth:`choices`). ``add`` refuses a second answer unless ``replace=True``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, path: str | os.PathLike, rater: str = "reader") -> None:
        self.path = Path(path)
        self.rater = rater
        self._records: list[dict] = []
        self._size = 0
        if self.path.exists() and not self.path.is_file():
            raise IsADirectoryError(f"label file {self.path} exists but is not a file")
        self._load()

    # -- reading
    def _load(self) -> None:
        self._records = []
        if not self.path.exists():
            self._size = 0
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # lines[-1] is what follows the last newline: b"" for a complete file.
        records, good_end, last = [], 0, len(lines) - 1
        offset = 0
        for i, raw in enumerate(lines):
            line_end = offset + len(raw) + (1 if i < last else 0)
            is_last = i == last or (i == last - 1 and lines[last] == b"")
            if raw.strip() == b"":
                offset = line_end
                if i < last:
                    good_end = line_end
                continue
            problem = None
            try:
                obj = json.loads(raw.decode("utf-8"))
                problem = _validate_record(obj)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problem = f"not valid JSON ({exc})"
            if problem is None:
                records.append(obj)
                good_end = line_end
            elif is_last:
                self._repair(data, good_end, i + 1, problem)
                data = data[:good_end]
                break
            else:
                raise LabelFileError(
                    f"{self.path}, line {i + 1}: malformed label record: {problem}. Only a crash-torn LAST line is "
                    f"skipped automatically; fix or delete line {i + 1} by hand (the other labels are fine)."
                )
            offset = line_end
        if data and not data.endswith(b"\n"):  # complete last record whose newline never got written
            with open(self.path, "ab") as f:
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
        self._records = records
        self._size = self.path.stat().st_size

    def _repair(self, data: bytes, good_end: int, lineno: int, problem: str) -> None:
        torn = data[good_end:]
        backup = self.path.with_name(self.path.name + ".torn")
        with open(backup, "ab") as f:
            f.write(torn + (b"" if torn.endswith(b"\n") else b"\n"))
            f.flush()
            os.fsync(f.fileno())
        os.truncate(self.path, good_end)
        warnings.warn(
            f"{self.path}: ignored a torn last line (line {lineno}: {problem}), probably a crash while a label "
            f"was being written; it was moved to {backup}. All earlier labels were kept.",
            RuntimeWarning,
            stacklevel=3,
        )

    def labels(self) -> list[dict]:
        """All stored records in file order (copies)."""
        self._refresh()
        return [dict(r) for r in self._records]

    def choices(self) -> dict[str, str]:
        """``{pair_id: choice}`` with the latest answer for every labelled pair."""
        self._refresh()
        return {r["pair_id"]: r["choice"] for r in self._records}

    def done_ids(self) -> set[str]:
        """Ids of every pair that has an answer (``cant_tell`` included)."""
        return set(self.choices())

    def next_unlabelled(self, pairs: Sequence[PreferencePair]) -> PreferencePair | None:
        """The first pair in ``pairs`` without an answer, or ``None`` when all are done."""
        done = self.done_ids()
        for p in pairs:
            if p.id not in done:
                return p
        return None

    def __len__(self) -> int:
        self._refresh()
        return len(self._records)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, {len(self)} labels)"

    def _refresh(self) -> None:
        # Another LabelStore (say, from a re-run cell) may have appended meanwhile.
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._size:
            self._load()

    # -- writing
    def add(self, pair_id: str, choice: str, rater: str | None = None, replace: bool = False, **extra: Any) -> dict:
        """Append the answer ``choice`` (one of ``CHOICES``) for ``pair_id`` and return the record.

        Extra keyword arguments (JSON-serialisable) are stored in the record too.
        """
        if isinstance(pair_id, PreferencePair):
            pair_id = pair_id.id
        if not isinstance(pair_id, str) or not pair_id:
            raise ValueError(f"pair_id must be a non-empty string, got {pair_id!r}")
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        reserved = {"pair_id", "choice", "time", "rater"} & set(extra)
        if reserved:
            raise ValueError(f"extra fields may not override {sorted(reserved)}")
        self._refresh()
        if not replace and pair_id in {r["pair_id"] for r in self._records}:
            raise ValueError(f"pair {pair_id!r} already has a label; pass replace=True to record a new answer (the latest counts)")
        record = {
            "pair_id": pair_id,
            "choice": choice,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "rater": self.rater if rater is None else rater,
            **extra,
        }
        try:
            line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label record is not JSON-serialisable: {exc}") from exc
        new_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except BaseException:
                try:  # leave the file exactly as it was: no half line
                    os.ftruncate(fd, before)
                    os.fsync(fd)
                except OSError:
                    pass
                raise
            self._size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if new_file:
            _fsync_dir(self.path.parent)
        self._records.append(record)
        return dict(record)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Clips, pairs and labels: the data a rater sees and what they answered.

A :class:`Segment` holds per-step features ``(L, D)`` (a MuJoCo or Atari clip) or token ids ``(L,)``
(a language-model completion); a :class:`PreferencePair` pairs two of them with the rater's answer;
a :class:`PreferenceDataset` collates pairs into padded batches with masks.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:  # label_store imports this module
    from .label_store import LabelStore

#: The four answers a rater can give, in the order the labelling widget shows them.
CHOICES = ("left", "right", "equal", "cant_tell")
#: Label μ = probability that the left clip is the better one; ``None``: not a training pair.
CHOICE_TO_MU: dict[str, float | None] = {"left": 1.0, "right": 0.0, "equal": 0.5, "cant_tell": None}


# --------------------------------------------------------------------------- segments and pairs


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (a tensor, array or nested list) as a numpy array; ``ValueError`` naming ``name`` if it is not numeric.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
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
        obs = to_numpy(self.obs, "Segment.obs")
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
            act = to_numpy(self.actions, "Segment.actions")
            if obs.ndim == 1:
                raise ValueError("a token segment cannot have actions: the tokens are the actions; use meta instead")
            if act.ndim not in (1, 2) or act.shape[0] != L:
                raise ValueError(f"Segment.actions must have shape ({L},) or ({L}, A) to match obs {obs.shape}, got {act.shape}")
            self.actions = act
        if self.rewards is not None:
            rew = to_numpy(self.rewards, "Segment.rewards").astype(np.float64)
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
        choices = labels.choices() if hasattr(labels, "choices") else dict(labels)  # a LabelStore or a dict
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



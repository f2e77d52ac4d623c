"""Reward models: a per-step MLP, an ensemble trained on bootstrap resamples, and their training loop.

The loop trains any reward model that :func:`~lmlib.preferences.scoring.sequence_scores` can score:
per-step models (Chapter 11) and sequence models such as
:class:`~lmlib.preferences.scoring.SequenceRewardModel` (Part III).

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .bradley_terry import check_epsilon, masked_sum, preference_loss, preference_probability
from .pairs import PairBatch, PreferenceDataset, PreferencePair, Segment, bootstrap_indices, collate_segments
from .scoring import is_sequence_model, per_step_rewards, sequence_scores


# --------------------------------------------------------------------------- reward models


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
    mean and standard deviation of its predictions on the segments seen so far
    (:meth:`update_normalization`) to zero mean and unit std, as in the paper; before any
    update the normalisation is the identity.

    The members are all per-step models (Chapter 11) or all sequence models
    (``scores_sequences = True``, e.g. :class:`~lmlib.preferences.scoring.SequenceRewardModel`);
    the ensemble is then the same kind, so :func:`~lmlib.preferences.scoring.sequence_scores` scores it.

    * ``member_rewards(x, normalized)`` -> ``(K, B, L)`` (per-step members only);
    * ``member_scores(x, mask, normalized)`` -> ``(K, B)``: each member's score of each segment;
    * ``forward(x, mask=None)`` / ``predict(x, mask=None)``: the mean over members of normalised
      outputs, ``(B, L)`` per-step rewards (the mask is not needed) or ``(B,)`` sequence scores
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
        kinds = {is_sequence_model(m) for m in members}
        if len(kinds) > 1:
            raise ValueError("ensemble members must all be per-step reward models or all sequence models "
                             "(scores_sequences = True), not a mix")
        self.members = nn.ModuleList(members)
        K = len(members)
        self.register_buffer("norm_count", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("norm_mean", torch.zeros(K, dtype=torch.float64))
        self.register_buffer("norm_var", torch.ones(K, dtype=torch.float64))

    @property
    def scores_sequences(self) -> bool:
        """True when the members score whole sequences (then ``forward(x, mask) -> (B,)``)."""
        return is_sequence_model(self.members[0])

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

    def _normalize(self, r: torch.Tensor) -> torch.Tensor:
        """Member ``k``'s outputs ``r[k]`` (any trailing shape) to zero mean and unit std."""
        shape = (-1,) + (1,) * (r.dim() - 1)
        mean = self.norm_mean.to(r.dtype).view(shape)
        std = torch.sqrt(self.norm_var + 1e-8).to(r.dtype).view(shape)
        return (r - mean) / std

    def member_rewards(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Per-step rewards of every member, ``(K, B, L)``; raw or normalised (per-step members only)."""
        if self.scores_sequences:
            raise TypeError("the members score whole sequences; use member_scores(x, mask) -> (K, B)")
        r = torch.stack([per_step_rewards(m, x) for m in self.members])
        return self._normalize(r) if normalized else r

    def member_scores(self, x: torch.Tensor, mask: torch.Tensor | None = None, normalized: bool = False) -> torch.Tensor:
        """Every member's score of every segment, ``(K, B)``: a sum of (normalised) per-step rewards, or a
        (normalised) sequence score. ``x``: ``(B, L, D)`` or ``(B, L)``; ``mask``: ``(B, L)``, None = all real."""
        if self.scores_sequences:
            s = torch.stack([sequence_scores(m, x, mask) for m in self.members])  # (K, B)
            return self._normalize(s) if normalized else s
        r = self.member_rewards(x, normalized)  # (K, B, L)
        return torch.stack([masked_sum(rk, mask) for rk in r])  # (K, B)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Ensemble mean of normalised outputs: per-step rewards ``(B, L)`` or sequence scores ``(B,)``."""
        if self.scores_sequences:
            return self.member_scores(x, mask, normalized=True).mean(dim=0)
        return self.member_rewards(x, normalized=True).mean(dim=0)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` in eval mode without gradients: the reward the RL agent receives."""
        was_training = self.training
        self.eval()
        try:
            return self(x, mask)
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
        """Fold each member's raw predictions on ``data`` into its running mean/std.

        ``data``: segments, or inputs ``(B, L, D)``/``(B, L)`` with an optional bool ``mask (B, L)``.
        Per-step members contribute their reward on every real step, sequence members one score
        per segment. Uses the parallel (Chan et al.) update, so feeding data in pieces equals
        feeding it at once.
        """
        x, mask = self._inputs(data, mask)
        was_training = self.training
        self.eval()
        try:
            if self.scores_sequences:
                vals = self.member_scores(x, mask).double()  # (K, B)
            else:
                vals = self.member_rewards(x).double()[:, mask]  # (K, n real steps)
        finally:
            self.train(was_training)
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
                ret_l, ret_r = self.member_scores(xl, ml), self.member_scores(xr, mr)  # (K, b)
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


def pair_loss(model: nn.Module, batch: PairBatch, epsilon: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """:func:`preference_loss` of a reward model on a batch of labelled pairs: ``(loss, diagnostics)``.

    Each side is scored with :func:`~lmlib.preferences.scoring.sequence_scores` (``(B,)``: a masked
    sum of per-step rewards, or a sequence model's score), so the same loop trains both kinds.
    ``batch``: a :class:`PairBatch` (``left``/``right`` ``(B, L, D)`` or ``(B, L)``, masks ``(B, L)``,
    ``mu (B,)``).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    r_left = sequence_scores(model, batch.left, batch.mask_left)  # (B,)
    r_right = sequence_scores(model, batch.right, batch.mask_right)  # (B,)
    return preference_loss(r_left[:, None], r_right[:, None], batch.mu, epsilon)  # a score is a one-step return


@torch.no_grad()
def _evaluate_member(model: nn.Module, batch: PairBatch, epsilon: float) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        loss, diag = pair_loss(model, batch, epsilon)
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
    epsilon = check_epsilon(epsilon)
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
                loss, _ = pair_loss(member, b, epsilon)
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



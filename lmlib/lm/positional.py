"""Positional information for a Transformer: five ways to tell attention *where* a token is.

Attention on its own is permutation-equivariant: shuffle the tokens and the
outputs shuffle with them. A language model must know the order, and there are
two places to put it:

* **added to the input** (the residual stream at layer 0):

  - ``"learned"``: a trained table ``wpe[t]`` (GPT-2); at most ``block_size`` positions.
  - ``"sinusoidal"``: fixed sines and cosines of geometrically spaced frequencies
    (Vaswani et al. 2017, "Attention is all you need", section 3.5)::

        PE[pos, 2i]   = sin(pos / base^(2i / d))
        PE[pos, 2i+1] = cos(pos / base^(2i / d))

    (:class:`lmlib.lm.gpt.GPT` then multiplies the token embeddings by ``sqrt(d)``, as the paper does.)

* **inside attention**, so that only the *relative* offset ``i - j`` matters:

  - ``"alibi"``: add ``-m_h * (i - j)`` to the score of query ``i`` and key ``j`` in head h,
    with head-specific slopes ``m_h`` (Press, Smith & Lewis 2022, "Train short, test long").
  - ``"rope"``: rotate each pair of query/key features by the angle ``pos * theta_k``,
    ``theta_k = base^(-2k / d)`` (Su et al. 2021, "RoFormer"); then
    ``<R(i) q, R(j) k> = <q, R(j - i) k>`` depends on ``j - i`` only.

* ``"none"``: nothing. A *causal* model can still infer some position from the mask.

Only ``"learned"`` has a maximum length; the others are formulas and can be
evaluated at any position (whether the model then *works* there is an
experiment of Chapter 5).

Shapes: ``T`` positions, ``d`` features (``n_embd`` for additive encodings,
the head size ``hs`` for RoPE), ``nh`` heads.

Padded batches: the modules also take ``positions``, a (B, T) tensor of position ids per row (for a
left-padded row, ``cumsum(mask) - 1``: its first real token sits at position 0), so that a prompt
gets the same encodings with or without padding in front of it.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "POS_ENCODINGS",
    "PosEncoding",
    "ContextTooLongError",
    "position_ids",
    "sinusoidal_encoding",
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "alibi_slopes",
    "alibi_bias",
    "ALiBi",
    "rope_angles",
    "apply_rope",
    "RotaryEmbedding",
]

PosEncoding = Literal["none", "learned", "sinusoidal", "alibi", "rope"]
#: The values of ``GPTConfig.pos_encoding``.
POS_ENCODINGS: tuple[str, ...] = ("none", "learned", "sinusoidal", "alibi", "rope")


class ContextTooLongError(ValueError):
    """A sequence is longer than a positional encoding with a maximum length supports.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """


def _check_positions(T: int, offset: int = 0) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 0:
        raise ValueError(f"the number of positions T must be an int >= 0, got {T!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ValueError(f"offset (the position of the first token) must be an int >= 0, got {offset!r}")


def _check_position_ids(positions: Tensor, T: int) -> int:
    """``positions``: (B, T) integer position ids >= 0; returns the largest one (0 if empty)."""
    if not isinstance(positions, Tensor) or positions.ndim != 2 or positions.shape[1] != T:
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must be a (B, T={T}) tensor of position ids, got {got}")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"positions must hold integer position ids, got dtype {positions.dtype}")
    if positions.numel() == 0:
        return 0
    if int(positions.min()) < 0:
        raise ValueError(f"positions must be >= 0, got {int(positions.min())}")
    return int(positions.max())


def _check_base(base: float) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not (math.isfinite(base) and base > 0):
        raise ValueError(f"base must be a finite number > 0 (the wavelength scale, 10000 in the papers), "
                         f"got base={base!r}")


def position_ids(attention_mask: Tensor) -> Tensor:
    """Per-row positions of a padded batch: ``cumsum(mask) - 1``, clamped at 0.

    The first real token of each row gets position 0 wherever padding puts it, so a left-padded
    prompt is encoded exactly as the same prompt alone. Worked example: mask ``[0, 0, 1, 1, 1]``
    gives ``[0, 0, 0, 1, 2]`` (padding gets 0; nothing reads it).

    Args:
        attention_mask: (B, T) bool (or 0/1), True = a real token.

    Returns:
        (B, T) int64.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb), for batched generation.
    """
    if not isinstance(attention_mask, Tensor) or attention_mask.ndim != 2:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be (B, T) with True for real tokens, got {got}")
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


# ----------------------------------------------------------------------------- sinusoidal


def sinusoidal_encoding(
    T: int, d: int, base: float = 10000.0, offset: int = 0, device: torch.device | str | None = None
) -> Tensor:
    """The fixed sinusoidal position encodings of positions ``offset .. offset + T - 1``.

    ``PE[pos, 2i] = sin(pos / base^(2i/d))`` and ``PE[pos, 2i+1] = cos(pos / base^(2i/d))``
    (Vaswani et al. 2017). Position 0 is ``[0, 1, 0, 1, ...]``; the first pair
    turns fastest (one radian per position), the last slowest.

    Args:
        T: number of positions.
        d: number of features; must be even (sin/cos pairs).
        base: the wavelength scale (10000 in the paper).
        offset: position of the first row.
        device: where to build it.

    Returns:
        (T, d) float32.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    _check_positions(T, offset)
    if not isinstance(d, int) or d < 2 or d % 2:
        raise ValueError(f"sinusoidal encodings need an even number of features d >= 2 (sin/cos pairs), got d={d!r}")
    _check_base(base)
    pos = torch.arange(offset, offset + T, dtype=torch.float64, device=device)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)  # (d/2,) = 1 / base^(2i/d)
    angles = pos * inv_freq  # (T, d/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(T, d)  # interleave: sin, cos, sin, cos, ...
    return pe.float()


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (GPT-2's ``wpe``): ``forward(T) -> (T, d)``.

    It has ``block_size`` rows and nothing beyond: a longer sequence raises
    :class:`ContextTooLongError`.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    max_len: int | None

    def __init__(self, block_size: int, d: int) -> None:
        super().__init__()
        self.max_len = block_size
        self.weight = nn.Parameter(torch.empty(block_size, d))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def forward(self, T: int, offset: int = 0, device: torch.device | str | None = None, *,
                positions: Tensor | None = None) -> Tensor:
        """Rows ``offset .. offset + T - 1`` of the table: (T, d) (``device`` is ignored: the table's own).

        With ``positions`` (B, T) integer ids: the rows ``weight[positions]``, (B, T, d).
        """
        _check_positions(T, offset)
        if positions is not None:
            top = _check_position_ids(positions, T)
            if top >= self.max_len:
                raise ContextTooLongError(f"position {top} is beyond block_size={self.max_len}, the number of "
                                          "learned position embeddings; crop the input to the last block_size tokens")
            return self.weight[positions]  # (B, T, d)
        if offset + T > self.max_len:
            raise ContextTooLongError(
                f"sequence of {offset + T} tokens is longer than block_size={self.max_len}, the number of "
                "learned position embeddings; crop the input to the last block_size tokens "
                "(idx[:, -block_size:]) or use pos_encoding='rope', 'alibi' or 'sinusoidal', which extrapolate"
            )
        return self.weight[offset : offset + T]


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal encodings (no parameters): ``forward(T) -> (T, d)``; works at any length.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    max_len: int | None = None

    def __init__(self, d: int, base: float = 10000.0) -> None:
        super().__init__()
        sinusoidal_encoding(1, d, base)  # validate d and base now
        self.d, self.base = d, base
        self._cache: Tensor | None = None  # (T_cached, d), grown on demand; not saved in checkpoints

    def forward(self, T: int, offset: int = 0, device: torch.device | str | None = None, *,
                positions: Tensor | None = None) -> Tensor:
        """Encodings of positions ``offset .. offset + T - 1``: (T, d) float32 on ``device`` (default cpu).

        With ``positions`` (B, T) integer ids: the encodings of those positions, (B, T, d) on their device.
        """
        _check_positions(T, offset)
        if positions is not None:
            end = _check_position_ids(positions, T) + 1
            return self._table(end, positions.device)[positions]  # (B, T, d)
        device = torch.device("cpu") if device is None else torch.device(device)
        return self._table(offset + T, device)[offset : offset + T]

    def _table(self, n_rows: int, device: torch.device) -> Tensor:
        """The cached (>= n_rows, d) table on ``device``, grown (doubling) on demand."""
        if self._cache is None or self._cache.shape[0] < n_rows or self._cache.device != device:
            n = max(n_rows, 64, 0 if self._cache is None else 2 * self._cache.shape[0])
            self._cache = sinusoidal_encoding(n, self.d, self.base, device=device)
        return self._cache

    def extra_repr(self) -> str:
        return f"d={self.d}, base={self.base:g}"


# ----------------------------------------------------------------------------- ALiBi


def alibi_slopes(n_head: int) -> Tensor:
    """The head-specific slopes ``m_h`` of ALiBi (Press et al. 2022).

    For ``n`` a power of two: the geometric sequence starting at ``2^(-8/n)`` with
    ratio ``2^(-8/n)``, i.e. ``m_h = 2^(-8h/n)`` for h = 1..n
    (8 heads: 1/2, 1/4, ..., 1/256; 4 heads: 1/4, 1/16, 1/64, 1/256).
    Otherwise: the slopes of the largest power of two ``p < n``, then every other
    slope of ``2p`` heads (the paper's reference code).

    Returns:
        (n_head,) float32.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(n_head, int) or isinstance(n_head, bool) or n_head < 1:
        raise ValueError(f"n_head must be an int >= 1, got {n_head!r}")

    def power_of_2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    if math.log2(n_head).is_integer():
        slopes = power_of_2(n_head)
    else:
        p = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_2(p) + power_of_2(2 * p)[0::2][: n_head - p]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_head: int, T: int, S: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """ALiBi's additive attention bias ``bias[h, i, j] = -m_h * (i - j)`` (query i, key j).

    Queries are the *last* ``T`` of the ``S`` key positions (query i sits at
    position ``S - T + i``), so with a cache of past keys the offsets stay right.
    Entries with ``j > i`` are positive; the causal mask removes them.

    Returns:
        (n_head, T, S) float32 (S defaults to T).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    S = T if S is None else S
    _check_positions(T)
    _check_positions(S)
    if S < T:
        raise ValueError(f"ALiBi needs at least as many keys as queries, got T={T} queries and S={S} keys")
    slopes = alibi_slopes(n_head).to(device)  # (nh,)
    q_pos = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    return -slopes[:, None, None] * (q_pos - k_pos).float()  # (nh, T, S)


class ALiBi(nn.Module):
    """Attention with Linear Biases: ``forward(T, S) -> (1, nh, T, S)`` bias added to the scores.

    No parameters: the slopes are a (non-saved) buffer, so the bias follows the model's device.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.register_buffer("slopes", alibi_slopes(n_head), persistent=False)  # (nh,)

    def forward(self, T: int, S: int | None = None) -> Tensor:
        """Bias for T queries (the last T of S positions) over S keys: (1, nh, T, S) float32."""
        S = T if S is None else S
        _check_positions(T)
        _check_positions(S)
        if S < T:
            raise ValueError(f"ALiBi needs at least as many keys as queries, got T={T} queries and S={S} keys")
        dev = self.slopes.device
        distance = torch.arange(S - T, S, device=dev)[:, None] - torch.arange(S, device=dev)[None, :]  # (T, S): i - j
        return (-self.slopes[:, None, None] * distance.float())[None]

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}"


# ----------------------------------------------------------------------------- RoPE


def rope_angles(
    T: int, d: int, base: float = 10000.0, offset: int = 0, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of RoPE's angles ``pos * theta_k``, ``theta_k = base^(-2k/d)``.

    Returns:
        ``(cos, sin)``, each (T, d/2) float32, rows = positions ``offset .. offset + T - 1``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    _check_positions(T, offset)
    if not isinstance(d, int) or d < 2 or d % 2:
        raise ValueError(f"RoPE rotates pairs of features, so the head size must be even, got {d!r}")
    _check_base(base)
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=device) / d)  # (d/2,)
    angles = torch.arange(offset, offset + T, dtype=torch.float64, device=device)[:, None] * theta  # (T, d/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each pair ``(x[..., 2k], x[..., 2k+1])`` at position t by the angle whose cos/sin are given.

    ``(a, b) -> (a cos - b sin, a sin + b cos)``: a 2-D rotation, so norms are preserved.

    Args:
        x: (..., T, d) queries or keys (e.g. (B, nh, T, hs)).
        cos, sin: (T, d/2) from :func:`rope_angles`, or any shape (..., T, d/2) that broadcasts
            against x (e.g. (B, 1, T, d/2): one row of positions per sequence).

    Returns:
        (..., T, d), same dtype as ``x``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if x.ndim < 2:
        raise ValueError(f"x must be (..., T, d), got shape {tuple(x.shape)}")
    T, d = x.shape[-2:]
    if cos.shape[-2:] != (T, d // 2) or sin.shape != cos.shape or d % 2 or cos.ndim > x.ndim:
        raise ValueError(
            f"x (..., T={T}, d={d}) needs cos and sin of shape (T, d/2) = ({T}, {d // 2}) (or (..., T, d/2) "
            f"broadcasting against x) and an even d, got cos {tuple(cos.shape)}, sin {tuple(sin.shape)}"
        )
    a, b = x[..., 0::2].float(), x[..., 1::2].float()  # (..., T, d/2) each
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)  # (..., T, d/2, 2)
    return out.flatten(-2).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for one head size: ``forward(x, offset=0) -> x rotated``.

    Applied to the queries and keys of every head, in every layer (not to the
    values). No parameters; cos/sin are cached and grown on demand.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, head_size: int, base: float = 10000.0) -> None:
        super().__init__()
        rope_angles(1, head_size, base)  # validate now: an even head size, a finite base > 0 (else NaN angles)
        self.head_size, self.base = head_size, base
        self._cos: Tensor | None = None
        self._sin: Tensor | None = None

    def forward(self, x: Tensor, offset: int = 0, *, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` of shape (..., T, hs) whose first row sits at position ``offset``.

        With ``positions`` (B, T) integer ids and x (B, nh, T, hs): row t of sequence b is rotated by
        the angle of position ``positions[b, t]`` (the same for every head).
        """
        if x.ndim < 2:
            raise ValueError(f"x must be (..., T, hs), got shape {tuple(x.shape)}")
        T, d = x.shape[-2:]
        if d != self.head_size:
            raise ValueError(f"RotaryEmbedding was built for head size {self.head_size}, got x with last dim {d}")
        _check_positions(T, offset)
        if positions is not None:
            if x.ndim != 4 or positions.shape[:1] != x.shape[:1]:
                raise ValueError(f"positions (B, T) need x of shape (B, nh, T, hs) with the same B, got x "
                                 f"{tuple(x.shape)} and positions {tuple(getattr(positions, 'shape', ()))}")
            self._grow(_check_position_ids(positions, T) + 1, x.device)
            return apply_rope(x, self._cos[positions][:, None], self._sin[positions][:, None])  # (B, 1, T, hs/2)
        self._grow(offset + T, x.device)
        return apply_rope(x, self._cos[offset : offset + T], self._sin[offset : offset + T])

    def _grow(self, n_rows: int, device: torch.device) -> None:
        """Make the cached cos/sin tables (>= n_rows, hs/2) on ``device``, doubling on demand."""
        if self._cos is None or self._cos.shape[0] < n_rows or self._cos.device != device:
            n = max(n_rows, 64, 0 if self._cos is None else 2 * self._cos.shape[0])
            self._cos, self._sin = rope_angles(n, self.head_size, self.base, device=device)

    def extra_repr(self) -> str:
        return f"head_size={self.head_size}, base={self.base:g}"

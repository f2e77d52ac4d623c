"""Attention from scratch: scaled dot-product attention, masks and multi-head attention.

The whole idea in three lines (Vaswani et al. 2017, "Attention is all you need")::

    scores  = q @ k.T / sqrt(hs)          # (T, S): how well query i matches key j
    weights = softmax(scores + mask)      # each row sums to 1 over the visible keys
    out     = weights @ v                 # (T, hs): a weighted average of the values

Multi-head attention runs ``nh`` of these side by side on ``hs = C / nh``
dimensional slices, then mixes the heads with an output projection.

Conventions (the same as ``torch.nn.functional.scaled_dot_product_attention``):

* shapes are ``(B, nh, T, hs)`` for queries, ``(B, nh, S, hs)`` for keys and values
  (T queries, S keys; in self-attention S = T); any leading dims work;
* a **boolean mask is True where attention is allowed** (a float mask is added to the scores);
* ``is_causal=True``: query i sees keys ``j <= i`` (top-left aligned when T != S);
* a query that may see no key at all gets zero weights and a zero output (not NaN).

``nn.MultiheadAttention``'s ``key_padding_mask`` uses the opposite convention
(True = ignore); :func:`padding_mask` builds ours from sequence lengths.

Decoding one token at a time, a causal model would recompute the keys and values of the whole
context at every step although they never change: :class:`KVCache` keeps them, so each step feeds
only the new token (Chapter 6, "Decoding").

Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "scaled_dot_product_attention",
    "causal_mask",
    "padding_mask",
    "padded_causal_mask",
    "MultiHeadAttention",
    "CausalSelfAttention",
    "KVCache",
]

AttnImpl = Literal["fused", "manual"]


# ----------------------------------------------------------------------------- masks


def causal_mask(T: int, S: int | None = None, offset: int = 0, device: torch.device | str | None = None) -> Tensor:
    """Boolean causal mask: ``mask[i, j] = j <= i + offset`` (True = may attend).

    Args:
        T: number of queries.
        S: number of keys (default T).
        offset: position of query 0 among the keys. 0 is PyTorch's ``is_causal``
            (top-left aligned); ``S - T`` puts the T queries at the *end* of the S keys,
            as when new tokens attend to a cache of earlier ones.
        device: where to build it.

    Returns:
        (T, S) bool, lower-triangular for T == S, offset == 0::

            causal_mask(3) = [[1, 0, 0],
                              [1, 1, 0],
                              [1, 1, 1]]

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    S = T if S is None else S
    for name, n in (("T", T), ("S", S)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"causal_mask: {name} must be an int >= 0, got {n!r}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=offset)


def padding_mask(lengths: Tensor | list[int], S: int | None = None) -> Tensor:
    """Boolean key mask for right-padded sequences: True for the first ``lengths[b]`` keys of row b.

    Args:
        lengths: (B,) number of real (non-padding) tokens in each sequence.
        S: padded length (default ``max(lengths)``).

    Returns:
        (B, 1, 1, S) bool, broadcastable against scores of shape (B, nh, T, S).
        Combine with a causal mask by ``&``: ``padding_mask(lens) & causal_mask(T)``.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor (B,), got shape {tuple(lengths.shape)}, dtype {lengths.dtype}")
    if len(lengths) and int(lengths.min()) < 0:
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    S = int(lengths.max()) if S is None and len(lengths) else (S or 0)
    if len(lengths) and int(lengths.max()) > S:
        raise ValueError(f"a sequence has length {int(lengths.max())} > padded length S={S}")
    return (torch.arange(S, device=lengths.device)[None, :] < lengths[:, None])[:, None, None, :]


def padded_causal_mask(attention_mask: Tensor) -> Tensor:
    """The causal mask of a padded batch: query i of row b sees key j iff ``j <= i`` and key j is real.

    A padding *query* sees only itself (the diagonal is always allowed), so no row of the softmax is
    empty and padding never produces NaN; what padding positions compute is garbage nobody reads
    (real queries never attend to them). Works for left and right padding.

    Args:
        attention_mask: (B, T) bool, True = a real token (0/1 accepted).

    Returns:
        (B, 1, T, T) bool, True = may attend, broadcastable against scores (B, nh, T, T).

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb); batched generation in Chapter 6,
    "Decoding" (chapters/06_decoding.ipynb).
    """
    if not isinstance(attention_mask, Tensor) or attention_mask.ndim != 2:
        got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must be (B, T) with True for real tokens, got {got}")
    if attention_mask.dtype != torch.bool:
        if attention_mask.dtype.is_floating_point or bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError(f"attention_mask must be bool (or 0/1 integers), got dtype {attention_mask.dtype}")
        attention_mask = attention_mask.bool()
    T = attention_mask.shape[1]
    causal = causal_mask(T, device=attention_mask.device)  # (T, T)
    eye = torch.eye(T, dtype=torch.bool, device=attention_mask.device)
    return ((causal & attention_mask[:, None, :]) | eye)[:, None]  # (B, 1, T, T)


# ----------------------------------------------------------------------------- the function


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{name} must have shape (..., T, hs) (e.g. (B, nh, T, hs)), got {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if not (q.ndim == k.ndim == v.ndim):
        raise ValueError(f"q, k, v must have the same number of dims, got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        raise ValueError(
            f"q, k, v must agree on the leading (batch, head) dims, got q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"queries and keys need the same head size to take dot products: q has hs={q.shape[-1]}, "
            f"k has hs={k.shape[-1]} (q {tuple(q.shape)}, k {tuple(k.shape)})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"every key needs a value: k has S={k.shape[-2]} positions, v has {v.shape[-2]} "
            f"(k {tuple(k.shape)}, v {tuple(v.shape)})"
        )


def _check_mask(mask: Tensor, scores_shape: torch.Size) -> None:
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor (bool: True = attend, or float: added to scores), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
        raise TypeError(f"mask must be bool (True = attend) or floating point (added to the scores), got dtype {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != scores_shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores (..., T, S) = "
            f"{tuple(scores_shape)}; use (T, S), (B, 1, T, S) or (B, 1, 1, S) for padding"
        )


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    *,
    scale: float | None = None,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention written out: ``softmax(q k^T / sqrt(hs) + mask) v``.

    Args:
        q: (..., T, hs) queries, e.g. (B, nh, T, hs).
        k: (..., S, hs) keys.
        v: (..., S, hv) values.
        mask: broadcastable to (..., T, S); bool (True = may attend) or float (added to the scores,
            e.g. an ALiBi bias or -inf entries).
        is_causal: also hide the future: query i sees keys j <= i. Combines with ``mask``
            (unlike PyTorch's function, which refuses both).
        dropout_p: probability of zeroing each attention weight (the rest are scaled by 1/(1-p)).
            Pass 0 at evaluation time.
        scale: multiplies the scores; default ``1 / sqrt(hs)``.
        return_weights: also return the attention weights.

    Returns:
        ``out`` (..., T, hv), or ``(out, weights)`` with ``weights`` (..., T, S): the softmax
        probabilities *before* dropout (each row sums to 1, or is all zeros if the mask hides
        every key from that query).

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    _check_qkv(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    T, S = scores.shape[-2:]
    allowed = causal_mask(T, S, device=q.device) if is_causal else None  # (T, S) or None
    if mask is not None:
        _check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            allowed = mask if allowed is None else allowed & mask
        else:
            scores = scores + mask.to(scores.dtype)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    # a row with no visible key: every score is -inf and softmax would give 0/0 = NaN; give it zeros
    dead = scores.amax(dim=-1, keepdim=True) == float("-inf")  # (..., T, 1)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)  # (..., T, S)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = dropped @ v  # (..., T, hv)
    return (out, weights) if return_weights else out


# ----------------------------------------------------------------------------- the KV cache


class KVCache:
    """The keys and values of the tokens seen so far, per layer: decoding without recomputing the past.

    In a causal model, the key and value of token j never change once it is written (later tokens
    cannot influence it), so generating token t + 1 needs only the query, key and value of token t
    and the *stored* keys and values of tokens 0 .. t - 1. With the cache each decoding step is a
    forward pass of (B, 1) tokens instead of (B, t).

    Use (with :class:`lmlib.lm.gpt.GPT`, in eval mode, under ``torch.no_grad()``)::

        cache = KVCache(model.config.n_layer)
        logits, _ = model(prompt, attention_mask=mask, kv_cache=cache)   # (B, P, V); cache holds P keys
        logits, _ = model(next_id[:, None], kv_cache=cache)               # (B, 1, V); cache holds P + 1

    The model updates the cache in place. What it holds:

    * ``k[l]``, ``v[l]``: layer l's keys and values, (B, nh, S, hs) (RoPE already applied to the keys);
    * ``attention_mask``: (B, S) bool, True = a real key (padding stays hidden in every later step);
    * ``next_position``: (B,) long, the position id of each row's next token (the number of real
      tokens so far: positions count real tokens, as :func:`lmlib.lm.positional.position_ids` does).

    Storage: per layer one (B, nh, capacity, hs) buffer for k and for v, doubled when full, so a step
    writes its new key in place instead of copying the whole cache (``torch.cat`` would copy
    O(S) per step, O(S^2) per answer). The model and its cache must stay on one device and dtype.

    Args:
        n_layer: the number of attention layers that will store keys (``model.config.n_layer``).

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb); attention in Chapter 4, "Attention"
    (chapters/04_attention.ipynb).
    """

    def __init__(self, n_layer: int) -> None:
        if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
            raise ValueError(f"KVCache: n_layer must be an int >= 1 (model.config.n_layer), got {n_layer!r}")
        self.n_layer = n_layer
        self._k: list[Tensor | None] = [None] * n_layer  # (B, nh, capacity, hs) buffers
        self._v: list[Tensor | None] = [None] * n_layer
        self._len = [0] * n_layer  # keys stored per layer
        self.attention_mask: Tensor | None = None  # (B, S) bool
        self.next_position: Tensor | None = None  # (B,) long

    def __len__(self) -> int:
        """S: the number of tokens (columns, padding included) whose keys are stored."""
        return 0 if self.attention_mask is None else self.attention_mask.shape[1]

    @property
    def batch_size(self) -> int | None:
        """B, or None while the cache is empty."""
        return None if self.attention_mask is None else self.attention_mask.shape[0]

    @property
    def k(self) -> list[Tensor | None]:
        """Per layer: the stored keys (B, nh, S, hs), or None before the layer's first update."""
        return [None if b is None else b[:, :, :n] for b, n in zip(self._k, self._len)]

    @property
    def v(self) -> list[Tensor | None]:
        """Per layer: the stored values (B, nh, S, hs), or None before the layer's first update."""
        return [None if b is None else b[:, :, :n] for b, n in zip(self._v, self._len)]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new keys and values of ``layer``, (B, nh, T, hs) each; return all of them, (B, nh, S + T, hs).

        Called by :class:`CausalSelfAttention`; the returned tensors are views of the cache's buffers.
        """
        if not (isinstance(layer, int) and 0 <= layer < self.n_layer):
            raise ValueError(f"KVCache.update: layer must be in [0, {self.n_layer}), got {layer!r}: build the "
                             "cache with the model's n_layer (KVCache(model.config.n_layer))")
        if k.shape != v.shape or k.ndim != 4:
            raise ValueError(f"KVCache.update: k and v must both be (B, nh, T, hs), got {tuple(k.shape)} and "
                             f"{tuple(v.shape)}")
        n, buf_k, buf_v = self._len[layer], self._k[layer], self._v[layer]
        B, nh, T, hs = k.shape
        if buf_k is not None and (buf_k.shape[:2] != (B, nh) or buf_k.shape[3] != hs):
            raise ValueError(f"KVCache.update: layer {layer} stores keys of shape (B, nh, S, hs) = "
                             f"{tuple(buf_k[:, :, :n].shape)}, cannot append {tuple(k.shape)}")
        if buf_k is None or n + T > buf_k.shape[2]:  # grow: double the capacity (amortised O(1) per token)
            cap = max(n + T, 2 * (0 if buf_k is None else buf_k.shape[2]), 16)
            new_k, new_v = k.new_empty(B, nh, cap, hs), v.new_empty(B, nh, cap, hs)
            if buf_k is not None:
                new_k[:, :, :n], new_v[:, :, :n] = buf_k[:, :, :n], buf_v[:, :, :n]
            self._k[layer], self._v[layer] = buf_k, buf_v = new_k, new_v
        buf_k[:, :, n:n + T], buf_v[:, :, n:n + T] = k, v  # write the new tokens in place
        self._len[layer] = n + T
        return buf_k[:, :, :n + T], buf_v[:, :, :n + T]  # (B, nh, S + T, hs)

    def __repr__(self) -> str:
        return f"KVCache(n_layer={self.n_layer}, batch_size={self.batch_size}, length={len(self)})"


# ----------------------------------------------------------------------------- modules


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value projections (general: self or cross).

    ``forward(query, key=None, value=None, mask=None, is_causal=False, need_weights=False)``
    with ``query`` (B, T, C) and ``key``/``value`` (B, S, C) (default: ``query``, i.e.
    self-attention) returns ``(out, weights)``: ``out`` (B, T, C) and ``weights``
    (B, nh, T, S) per head if ``need_weights`` else ``None``.

    Same maths as ``nn.MultiheadAttention(C, nh, batch_first=True)``; copy one's weights
    in with :meth:`from_torch`.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads} (head size = C / nh)")
        self.embed_dim, self.num_heads, self.head_size = embed_dim, num_heads, embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, nh, T, hs)
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """``query`` (B, T, C), ``key``/``value`` (B, S, C) -> ``(out (B, T, C), weights (B, nh, T, S) or None)``.

        ``mask`` broadcasts to (B, nh, T, S) (bool True = attend, or float added to scores).
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(f"{name} must be (B, T, C={self.embed_dim}), got {tuple(t.shape)}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)} "
                             "must share the batch size B, and key/value the length S")
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        p = self.dropout if self.training else 0.0
        out, w = scaled_dot_product_attention(q, k, v, mask, is_causal, p, return_weights=True)  # (B, nh, T, hs)
        B, _, T, _ = out.shape
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.embed_dim))  # re-assemble heads: (B, T, C)
        return out, (w if need_weights else None)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A copy of a ``torch.nn.MultiheadAttention`` (packed in-projection, same embed dim for q, k, v)."""
        if not isinstance(mha, nn.MultiheadAttention) or not mha._qkv_same_embed_dim:
            raise ValueError("from_torch needs an nn.MultiheadAttention whose query, key and value have the same embed_dim")
        has_bias = mha.in_proj_bias is not None
        if (mha.out_proj.bias is not None) != has_bias or mha.bias_k is not None:
            raise ValueError("from_torch supports bias=True or bias=False for all projections, without add_bias_kv")
        new = cls(mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=has_bias)
        with torch.no_grad():
            wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
            for lin, w in ((new.q_proj, wq), (new.k_proj, wk), (new.v_proj, wv)):
                lin.weight.copy_(w)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                for lin, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3)):
                    lin.bias.copy_(b)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.to(mha.in_proj_weight.device, mha.in_proj_weight.dtype)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"


class CausalSelfAttention(nn.Module):
    """The GPT's masked multi-head self-attention (nanoGPT's names: ``c_attn``, ``c_proj``).

    One linear layer makes q, k, v for all heads at once (``c_attn``: C -> 3C), attention
    runs per head with the causal mask, ``c_proj`` mixes the heads back.

    Positional information that lives *inside* attention is handled here:
    ``pos_encoding="rope"`` rotates q and k, ``"alibi"`` adds a distance bias to the
    scores (see :mod:`lmlib.lm.positional`); the other encodings are added to the input.

    ``impl``: ``"fused"`` calls PyTorch's ``F.scaled_dot_product_attention`` (fast, no
    weights); ``"manual"`` calls :func:`scaled_dot_product_attention` (for teaching).
    Asking for the weights (``need_weights=True``) always takes the manual path.
    The attribute can be changed at any time: ``attn.impl = "manual"``.

    ``forward(x, need_weights=False, *, attention_mask=None, positions=None) -> (y, weights)``:
    x, y (B, T, C); weights (B, nh, T, T) or ``None``. ``attention_mask`` (B, T) bool, True = real
    token, hides padding keys on top of the causal mask (:func:`padded_causal_mask`); ``positions``
    (B, T) are the per-row position ids RoPE rotates by (default ``0 .. T-1``).

    Decoding with a :class:`KVCache` (``kv_cache=cache, layer=l``): x holds only the T *new* tokens;
    their keys and values are appended to layer l of the cache and the queries attend to all S keys
    (the past ones, then the new ones). ``attention_mask`` is then (B, S) over all keys and
    ``positions`` (B, T) the new tokens' position ids; weights are (B, nh, T, S).

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb); the positional options in
    Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = True,
        pos_encoding: str = "none",
        impl: AttnImpl = "fused",
    ) -> None:
        super().__init__()
        from .positional import ALiBi, RotaryEmbedding  # noqa: PLC0415 (positional is taught after attention)

        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head} (head size = n_embd / n_head)")
        if impl not in ("fused", "manual"):
            raise ValueError(f"impl must be 'fused' or 'manual', got {impl!r}")
        self.n_embd, self.n_head, self.head_size = n_embd, n_head, n_embd // n_head
        self.dropout, self.impl = dropout, impl
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)  # output projection (into the residual stream)
        self.resid_dropout = nn.Dropout(dropout)
        self.rotary = RotaryEmbedding(self.head_size) if pos_encoding == "rope" else None
        self.alibi = ALiBi(n_head) if pos_encoding == "alibi" else None

    def forward(self, x: Tensor, need_weights: bool = False, *, attention_mask: Tensor | None = None,
                positions: Tensor | None = None, kv_cache: KVCache | None = None,
                layer: int = 0) -> tuple[Tensor, Tensor | None]:
        """x (B, T, C) -> ``(y (B, T, C), weights (B, nh, T, T) or None)``; masks as in the class docstring."""
        if x.ndim != 3 or x.shape[-1] != self.n_embd:
            raise ValueError(f"CausalSelfAttention expects x of shape (B, T, C={self.n_embd}), got {tuple(x.shape)}")
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, self.head_size).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q, positions=positions), self.rotary(k, positions=positions)
        p = self.dropout if self.training else 0.0
        weights = None
        if kv_cache is not None:  # decoding: the new queries attend to the cached keys and their own
            y, weights = self._attend_cached(q, k, v, kv_cache, layer, attention_mask, need_weights, p)
        elif attention_mask is not None:  # padding: one explicit (B, 1, T, T) mask instead of is_causal
            allowed = padded_causal_mask(attention_mask)
            mask = allowed
            if self.alibi is not None:  # ALiBi is relative (i - j): padding in front does not shift it
                mask = self.alibi(T).to(q.dtype).masked_fill(~allowed, float("-inf"))  # (B, nh, T, T)
            if self.impl == "fused" and not need_weights:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            else:
                y, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p=p, return_weights=True)
        elif self.impl == "fused" and not need_weights:
            if self.alibi is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:  # PyTorch takes one mask: the ALiBi bias with -inf on the future
                bias = self.alibi(T).to(q.dtype).masked_fill(~causal_mask(T, device=q.device), float("-inf"))
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        else:
            bias = None if self.alibi is None else self.alibi(T).to(q.dtype)
            y, weights = scaled_dot_product_attention(q, k, v, bias, is_causal=True, dropout_p=p, return_weights=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all heads side by side
        y = self.resid_dropout(self.c_proj(y))
        return y, (weights if need_weights else None)

    def _attend_cached(self, q: Tensor, k: Tensor, v: Tensor, kv_cache: KVCache, layer: int,
                       attention_mask: Tensor | None, need_weights: bool, p: float) -> tuple[Tensor, Tensor | None]:
        """q, k, v (B, nh, T, hs) of the T new tokens -> (B, nh, T, hs) attending to the S cached + new keys."""
        if not isinstance(kv_cache, KVCache):
            raise TypeError(f"kv_cache must be a KVCache, got {type(kv_cache).__name__}")
        k, v = kv_cache.update(layer, k, v)  # (B, nh, S, hs): the past keys and values, then the new ones
        B, _, T, _ = q.shape
        S = k.shape[2]
        if attention_mask is None:
            attention_mask = torch.ones(B, S, dtype=torch.bool, device=q.device)
        if attention_mask.shape != (B, S):
            raise ValueError(f"with a KV cache, attention_mask must cover all S={S} keys (past and new): "
                             f"(B, S) = ({B}, {S}), got {tuple(attention_mask.shape)}")
        # query i is the token at column S - T + i: it sees real keys j <= S - T + i, and always itself
        # (a padding query then sees only itself, as in padded_causal_mask: no empty softmax row)
        causal = causal_mask(T, S, offset=S - T, device=q.device)  # (T, S)
        cols = torch.arange(S, device=q.device)
        own = cols[None, :] == cols[S - T:, None]  # (T, S): query i's own key, column S - T + i
        allowed = ((causal & attention_mask[:, None, :]) | own)[:, None]  # (B, 1, T, S)
        mask = allowed
        if self.alibi is not None:  # the bias of queries that are the last T of S positions (relative: i - j)
            mask = self.alibi(T, S).to(q.dtype).masked_fill(~allowed, float("-inf"))  # (B, nh, T, S)
        if self.impl == "fused" and not need_weights:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
        return scaled_dot_product_attention(q, k, v, mask, dropout_p=p, return_weights=True)

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}, head_size={self.head_size}, impl={self.impl!r}"

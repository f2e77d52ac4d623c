"""A GPT: the decoder-only Transformer of GPT-2, small enough to train on a laptop.

The architecture (Radford et al. 2019; nanoGPT's layout and parameter names)::

    x = wte[idx] (+ wpe[pos])                   # (B, T, C) the residual stream
                                                # ("sinusoidal": wte[idx] * sqrt(C) + PE[pos], as in Vaswani et al.)
    for each of n_layer blocks:                 # pre-LayerNorm blocks
        x = x + attn(ln_1(x))                   # tokens look at earlier tokens
        x = x + mlp(ln_2(x))                    # each token thinks on its own (C -> 4C -> C, GELU)
    h = ln_f(x)                                 # (B, T, C) hidden_states: where value/reward heads sit
    logits = lm_head(h)                         # (B, T, V); lm_head shares wte's weights (tying)

Padded batches (Part III): ``attention_mask`` (B, T), True = real token, hides padding keys and
numbers each row's positions from its first real token (``cumsum(mask) - 1``), so a left-padded
prompt gives the same logits as the prompt alone, for every ``pos_encoding``.

Fast decoding (Chapter 6): ``model(idx, kv_cache=cache)`` with a
:class:`lmlib.lm.attention.KVCache` feeds only the new tokens and reuses the stored keys and values
of the earlier ones (eval mode, no targets); see :meth:`GPT.forward`.

Initialisation follows GPT-2/nanoGPT: weights ~ N(0, 0.02), biases 0, and the two
projections that write into the residual stream (``attn.c_proj``, ``mlp.c_proj``)
~ N(0, 0.02 / sqrt(2 * n_layer)) so that the stream's variance does not grow with depth.

Usage::

    cfg = GPTConfig(vocab_size=64, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(cfg)
    logits, loss = model(x, y)                  # x, y: (B, T) token ids; y = -1: no loss there
    h = model.hidden_states(x)                  # (B, T, C), lm_head(h) == logits
    out = model.generate(x[:1, :5], 100, generator=torch.Generator().manual_seed(0))
    model.save("gpt.safetensors");  GPT.from_checkpoint("gpt.safetensors")

It trains with :func:`lmlib.lm.train.train` as it is (``train(model, data, cfg)``): the loop takes
the logits from the ``(logits, loss)`` pair.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal
import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, load_checkpoint, load_into, save_checkpoint
from ..checks import as_mask
from .attention import CausalSelfAttention, KVCache
from .decoding import sample
from .losses import masked_cross_entropy
from .positional import (
    POS_ENCODINGS,
    ContextTooLongError,
    LearnedPositionalEmbedding,
    PosEncoding,
    SinusoidalPositionalEncoding,
    position_ids,
)

__all__ = ["GPTConfig", "MLP", "Block", "GPT", "ContextTooLongError", "check_token_ids"]


@dataclass
class GPTConfig:
    """The hyperparameters of a :class:`GPT` (defaults: the book's small character-level model).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    vocab_size: int = 64
    """V: number of distinct tokens (64 characters for tiny Shakespeare; 50257 for GPT-2's BPE)."""
    block_size: int = 64
    """T_max: the context length the model is trained on (and the size of the learned position table)."""
    n_layer: int = 4
    """Number of Transformer blocks."""
    n_head: int = 4
    """nh: attention heads per block; the head size is n_embd / n_head."""
    n_embd: int = 128
    """C: width of the residual stream (embedding size)."""
    dropout: float = 0.0
    """Dropout probability on embeddings, attention weights and residual branches (0 = none)."""
    bias: bool = True
    """Biases in the Linear layers and LayerNorms (GPT-2: True; nanoGPT's small models often use False)."""
    pos_encoding: PosEncoding = "learned"
    """How position enters: "none", "learned" (GPT-2), "sinusoidal", "alibi" or "rope" (see lmlib.lm.positional)."""
    tie_weights: bool = True
    """Share one (V, C) matrix between the token embedding wte and the output layer lm_head."""
    attn_impl: Literal["fused", "manual"] = "fused"
    """"fused": PyTorch's F.scaled_dot_product_attention (fast); "manual": lmlib's from-scratch attention."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig: n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                f"(each head gets n_embd / n_head features)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"GPTConfig.pos_encoding must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"RoPE rotates pairs of features: the head size n_embd / n_head = "
                             f"{self.n_embd // self.n_head} must be even")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"sinusoidal encodings need an even n_embd, got {self.n_embd}")
        if self.attn_impl not in ("fused", "manual"):
            raise ValueError(f"GPTConfig.attn_impl must be 'fused' or 'manual', got {self.attn_impl!r}")

    @property
    def can_extrapolate(self) -> bool:
        """True if sequences longer than block_size can be fed (every encoding but "learned")."""
        return self.pos_encoding != "learned"


def check_token_ids(idx: object, name: str = "idx") -> None:
    """Raise a clear error unless ``idx`` is a non-empty (B, T) tensor of integer token ids.

    Shared by :class:`GPT` and the other Transformers of Chapter 5 (:mod:`lmlib.lm.architectures`), which
    add their own checks of length and vocabulary on top.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (B, T), got {type(idx).__name__}")
    if idx.ndim != 2:
        hint = f" (add a batch dim: {name}[None])" if idx.ndim == 1 else ""
        raise ValueError(f"{name} must have shape (B, T), got {tuple(idx.shape)}{hint}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
    if idx.shape[1] == 0:
        raise ValueError(f"{name} is empty (T = 0): the model needs at least one token")


class MLP(nn.Module):
    """The feed-forward sublayer: ``C -> 4C -> GELU -> C`` applied to each position on its own.

    ``forward(x)``: (B, T, C) -> (B, T, C).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """One pre-LN Transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``.

    ``forward(x, need_weights=False, *, attention_mask=None, positions=None, kv_cache=None, layer=0)
    -> (x, weights)``: x (B, T, C); weights (B, nh, T, T) or None; the masks and the KV cache (with this
    block's index ``layer``) go to :class:`CausalSelfAttention`.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias,
                                        config.pos_encoding, config.attn_impl)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, need_weights: bool = False, *, attention_mask: Tensor | None = None,
                positions: Tensor | None = None, kv_cache: KVCache | None = None,
                layer: int = 0) -> tuple[Tensor, Tensor | None]:
        """x (B, T, C) -> ``(x (B, T, C), attention weights (B, nh, T, T) or None)``."""
        if kv_cache is None:  # the ordinary path, exactly as before
            a, weights = self.attn(self.ln_1(x), need_weights, attention_mask=attention_mask, positions=positions)
        else:
            a, weights = self.attn(self.ln_1(x), need_weights, attention_mask=attention_mask, positions=positions,
                                   kv_cache=kv_cache, layer=layer)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(nn.Module):
    """A decoder-only Transformer language model (see the module docstring for the architecture).

    ``forward(idx, targets=None, *, attention_mask=None, kv_cache=None) -> (logits, loss)``: idx (B, T)
    int64 token ids; logits (B, T, V); loss = :func:`lmlib.lm.losses.masked_cross_entropy` against
    targets (B, T) (entries -1 are ignored), or ``None`` without targets. ``hidden_states(idx)``
    gives the (B, T, C) trunk output under the logits. ``kv_cache``: decode with a
    :class:`lmlib.lm.attention.KVCache` (see :meth:`forward`).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        C = config.n_embd
        modules: dict[str, nn.Module] = {"wte": nn.Embedding(config.vocab_size, C)}
        if config.pos_encoding == "learned":
            modules["wpe"] = LearnedPositionalEmbedding(config.block_size, C)
        elif config.pos_encoding == "sinusoidal":
            modules["wpe"] = SinusoidalPositionalEncoding(C)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        modules["ln_f"] = nn.LayerNorm(C, bias=config.bias)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if config.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight  # one matrix, two uses

        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # scaled init of the projections into the residual stream
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ sizes

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (a tied matrix counts once).

        ``non_embedding=True`` leaves out the position table ``wpe`` (nanoGPT's convention;
        the token table stays in because, tied, it is also the output layer).
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        if non_embedding and self.config.pos_encoding == "learned":
            n -= self.transformer.wpe.weight.numel()
        return n

    @torch.no_grad()
    def resize_vocab(self, new_vocab_size: int, init: Literal["mean", "normal"] = "mean",
                     generator: torch.Generator | None = None) -> "GPT":
        """Grow the vocabulary to ``new_vocab_size`` tokens, e.g. to add the special tokens of a chat template.

        The token table ``wte`` (V, C) becomes (V', C) and ``lm_head`` (C -> V) becomes (C -> V'); rows
        ``0 .. V-1`` are kept exactly, so old tokens keep their ids, embeddings and logits, and the new ids
        are ``V .. V'-1``. With tied weights the two stay one matrix. ``config.vocab_size`` becomes V' (the
        config is replaced by a copy, so a config shared with another model is untouched) and the model
        saves and loads with :meth:`save` / :meth:`from_checkpoint` as before.

        How the new rows start (Hewitt 2021, "Initializing new word embeddings for pretrained language
        models"; the usual practice):

        * ``"mean"`` (default): every new row is the mean of the old rows. A logit is linear in its row,
          ``h . mean(w_i) = mean(h . w_i)``, so a new token starts at the *average* logit of the old ones:
          it takes a small share of the probability (by Jensen, at most 1/V of the old mass per new
          token) and the model's next-token distribution barely moves. As an input it looks like an
          "average character" rather than noise the trunk has never seen.
        * ``"normal"``: N(0, 0.02), the init of a fresh GPT. In a trained model the real logits are far from
          0 (rare characters sit far below), so a new token with logit ~0 can take a large share of the
          probability at every position until fine-tuning pushes it down.

        Args:
            new_vocab_size: V' >= V (equal: nothing changes).
            init: ``"mean"`` or ``"normal"``, see above.
            generator: a ``torch.Generator`` on the weights' device for ``"normal"`` (reproducible rows).

        Returns:
            ``self`` (resized in place). Build the optimizer *after* resizing: it must see the new matrices.

        Raises:
            ValueError: ``new_vocab_size`` smaller than V (shrinking would drop trained rows) or not an int;
                an unknown ``init``.

        Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
        """
        V, C = self.config.vocab_size, self.config.n_embd
        if isinstance(new_vocab_size, bool) or not isinstance(new_vocab_size, int):
            raise TypeError(f"new_vocab_size must be an int, got {type(new_vocab_size).__name__} {new_vocab_size!r}")
        if new_vocab_size < V:
            raise ValueError(f"new_vocab_size={new_vocab_size} is smaller than the vocabulary (vocab_size={V}): "
                             "resize_vocab only adds tokens; shrinking would drop trained embedding rows")
        if init not in ("mean", "normal"):
            raise ValueError(f"init must be 'mean' or 'normal', got {init!r}")
        n_new = new_vocab_size - V
        if n_new == 0:
            return self

        def grown(old: Tensor) -> Tensor:  # (V, C) -> (V', C), old rows first
            if init == "mean":
                new = old.mean(dim=0, keepdim=True).expand(n_new, C)  # (n_new, C) every new row = the mean row
            else:
                new = torch.empty(n_new, C, dtype=old.dtype, device=old.device).normal_(0.0, 0.02, generator=generator)
            return torch.cat([old, new.to(old.dtype)], dim=0)

        wte, lm_head = self.transformer.wte, self.lm_head
        new_wte = nn.Embedding(new_vocab_size, C, device=wte.weight.device, dtype=wte.weight.dtype)
        new_head = nn.Linear(C, new_vocab_size, bias=False, device=lm_head.weight.device, dtype=lm_head.weight.dtype)
        new_head.weight.copy_(grown(lm_head.weight))
        if self.config.tie_weights:
            new_wte.weight = new_head.weight  # still one matrix, two uses
        else:
            new_wte.weight.copy_(grown(wte.weight))
        new_head.weight.requires_grad_(lm_head.weight.requires_grad)  # a frozen table stays frozen
        new_wte.weight.requires_grad_(wte.weight.requires_grad)
        self.transformer.wte, self.lm_head = new_wte, new_head
        self.config = replace(self.config, vocab_size=new_vocab_size)
        return self

    # ------------------------------------------------------------------ forward

    def _check_idx(self, idx: Tensor, name: str = "idx", check_length: bool = True) -> None:
        check_token_ids(idx, name)
        T, cfg = idx.shape[1], self.config
        if check_length and T > cfg.block_size and not cfg.can_extrapolate:
            raise ContextTooLongError(
                f"{name} has T={T} tokens but this model (pos_encoding='learned') has only "
                f"block_size={cfg.block_size} position embeddings; crop it to the last block_size tokens "
                f"(idx[:, -{cfg.block_size}:]) or use pos_encoding 'rope', 'alibi' or 'sinusoidal', which extrapolate"
            )
        if torch.compiler.is_compiling():
            return  # reading values would break the compiled graph; the embedding still fails on a bad id
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= cfg.vocab_size:
            raise ValueError(f"{name} holds token ids in [{lo}, {hi}], outside [0, vocab_size={cfg.vocab_size})")

    def _check_attention_mask(self, attention_mask: Tensor | None, idx: Tensor) -> Tensor | None:
        """None, or ``attention_mask`` as a (B, T) bool tensor with at least one real token per row."""
        if attention_mask is None:
            return None
        mask = as_mask(attention_mask, idx, "attention_mask")  # (B, T) bool, True = real token
        if not torch.compiler.is_compiling() and not bool(mask.any(dim=1).all()):
            row = int((~mask.any(dim=1)).nonzero()[0])
            raise ValueError(f"attention_mask row {row} is all False: every sequence needs a real token")
        return mask

    def _check_kv_cache(self, kv_cache: KVCache, idx: Tensor) -> None:
        """Raise a clear error unless ``kv_cache`` can take the next tokens ``idx`` (B, T) of this model."""
        if not isinstance(kv_cache, KVCache):
            raise TypeError(f"kv_cache must be a lmlib.lm.attention.KVCache (KVCache(model.config.n_layer)), "
                            f"got {type(kv_cache).__name__}")
        if self.training:
            raise RuntimeError("a KV cache is for decoding: call model.eval() first (dropout would make the stored "
                               "keys and values differ from the ones a full forward pass computes)")
        if kv_cache.n_layer != self.config.n_layer:
            raise ValueError(f"kv_cache was built for n_layer={kv_cache.n_layer} but this model has "
                             f"n_layer={self.config.n_layer}: use KVCache(model.config.n_layer)")
        S, B, T = len(kv_cache), idx.shape[0], idx.shape[1]
        if S and kv_cache.batch_size != B:
            raise ValueError(f"kv_cache holds {kv_cache.batch_size} sequences but idx has B={B} rows "
                             f"(idx {tuple(idx.shape)}); use one cache per batch")
        if any(n != S for n in kv_cache._len):
            raise RuntimeError(f"kv_cache is inconsistent (layers hold {kv_cache._len} keys, the mask {S}): "
                               "an earlier call failed midway; start a new KVCache")
        if S and kv_cache.attention_mask.device != idx.device:
            raise ValueError(f"kv_cache is on {kv_cache.attention_mask.device} but idx is on {idx.device}")

    def _hidden(self, idx: Tensor, need_weights: bool = False,
                attention_mask: Tensor | None = None, kv_cache: KVCache | None = None) -> tuple[Tensor, list[Tensor]]:
        """idx (B, T) -> final hidden states ln_f(x) (B, T, C) and the per-layer attention weights."""
        if kv_cache is not None:
            return self._hidden_cached(idx, attention_mask, kv_cache), []
        B, T = idx.shape
        # a padded batch numbers each row from its first real token; otherwise every row is 0 .. T-1
        positions = None if attention_mask is None else position_ids(attention_mask)  # (B, T)
        x = self.transformer.wte(idx)  # (B, T, C) token embeddings
        if self.config.pos_encoding == "sinusoidal":
            # Vaswani et al. (section 3.4) scale the embeddings by sqrt(C); otherwise the fixed encodings
            # (entries of size ~1) drown the token embeddings (std 0.02) and training is much slower
            x = x * math.sqrt(self.config.n_embd)
        if "wpe" in self.transformer:  # additive position encodings ("learned", "sinusoidal")
            # (T, C) broadcast over B, or (B, T, C) with per-row positions
            x = x + self.transformer.wpe(T, device=idx.device, positions=positions).to(x.dtype)
        x = self.transformer.drop(x)
        rope = positions if self.config.pos_encoding == "rope" else None  # ALiBi is relative: the mask is enough
        maps = []
        for block in self.transformer.h:
            x, w = block(x, need_weights, attention_mask=attention_mask, positions=rope)
            if need_weights:
                maps.append(w)
        return self.transformer.ln_f(x), maps

    def _hidden_cached(self, idx: Tensor, attention_mask: Tensor | None, kv_cache: KVCache) -> Tensor:
        """The new tokens idx (B, T) after the ones in ``kv_cache`` -> ln_f(x) (B, T, C); updates the cache.

        The same computation as :meth:`_hidden` on the whole sequence (past + new), restricted to the
        new rows: positions continue each row's count of real tokens, and the cache's mask keeps hiding
        the padding keys of earlier steps.
        """
        B, T = idx.shape
        new_mask = (torch.ones(B, T, dtype=torch.bool, device=idx.device) if attention_mask is None
                    else attention_mask)  # (B, T)
        if len(kv_cache) == 0:
            start = torch.zeros(B, dtype=torch.long, device=idx.device)  # (B,)
            key_mask = new_mask  # (B, S = T)
        else:
            start = kv_cache.next_position  # (B,)
            key_mask = torch.cat([kv_cache.attention_mask, new_mask], dim=1)  # (B, S)
        if not bool(key_mask.any(dim=1).all()):
            row = int((~key_mask.any(dim=1)).nonzero()[0])
            raise ValueError(f"attention_mask row {row} is all False and the cache holds no real token for it: "
                             "every sequence needs a real token")
        # as position_ids(mask) over the whole row: (real tokens before) + (real tokens so far among the new) - 1
        positions = (start[:, None] + new_mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
        top = int(positions.max())
        if top >= self.config.block_size and not self.config.can_extrapolate:  # before any layer touches the cache
            raise ContextTooLongError(
                f"with the {len(kv_cache)} cached tokens, a row reaches position {top} (its real tokens are counted) "
                f">= block_size={self.config.block_size}, the number of learned position embeddings; a cache "
                "cannot slide a window over learned positions: recompute the last block_size tokens without a cache"
            )
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.config.pos_encoding == "sinusoidal":
            x = x * math.sqrt(self.config.n_embd)  # as in _hidden
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(T, device=idx.device, positions=positions).to(x.dtype)  # (B, T, C)
        x = self.transformer.drop(x)
        rope = positions if self.config.pos_encoding == "rope" else None
        for layer, block in enumerate(self.transformer.h):
            x, _ = block(x, attention_mask=key_mask, positions=rope, kv_cache=kv_cache, layer=layer)
        kv_cache.attention_mask = key_mask  # (B, S)
        kv_cache.next_position = start + new_mask.long().sum(dim=1)  # (B,)
        return self.transformer.ln_f(x)

    def hidden_states(self, idx: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The trunk's output, after the final LayerNorm: where ``lm_head``, a value head or a reward head sit.

        Args:
            idx: (B, T) integer token ids.
            attention_mask: (B, T) bool (or 0/1), True = real token; padding (left or right) is never
                attended to and positions count real tokens only. None = no padding.

        Returns:
            (B, T, C) with ``self.lm_head(hidden_states(idx)) == forward(idx)[0]``. Rows at padding
            positions are finite but meaningless.

        Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb); heads on the trunk in Part III.
        """
        self._check_idx(idx)
        return self._hidden(idx, attention_mask=self._check_attention_mask(attention_mask, idx))[0]

    def forward(self, idx: Tensor, targets: Tensor | None = None, *,
                attention_mask: Tensor | None = None, kv_cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) -> ``(logits (B, T, V), loss or None)``; targets (B, T) with -1 = ignore.

        ``attention_mask`` (B, T), True = real token: see :meth:`hidden_states`. It does not change
        which targets count: give padding the target -1.

        ``kv_cache``: a :class:`lmlib.lm.attention.KVCache` (eval mode, no targets; use it under
        ``torch.no_grad()``). ``idx`` is then the tokens that come *after* the ones already in the
        cache (all of the prompt on the first call, then the last sampled token), ``attention_mask``
        (B, T) covers those new tokens only (the cache remembers the earlier ones, padding included),
        and the logits (B, T, V) equal the last T positions of a full forward over the whole
        sequence, to float rounding (~1e-6 in the logits; up to ~2e-5 in the log-probabilities of the
        book's fine-tuned GPT, as between two uncached ways of computing them). The cache is updated in
        place. With ``pos_encoding="learned"`` each row's real tokens (padding is not counted) must fit
        in ``block_size``.

        Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb); the KV cache in
        Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
        """
        if kv_cache is not None:
            return self._forward_cached(idx, targets, attention_mask, kv_cache)
        self._check_idx(idx)
        attention_mask = self._check_attention_mask(attention_mask, idx)
        if targets is not None and (not isinstance(targets, Tensor) or targets.shape != idx.shape):
            got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {got}")
        x, _ = self._hidden(idx, attention_mask=attention_mask)  # (B, T, C), as hidden_states returns
        logits = self.lm_head(x)  # (B, T, V)
        # the loss in float32 even when the logits are bf16 (autocast); -1 = no loss there
        loss = None if targets is None else masked_cross_entropy(logits, targets)
        return logits, loss

    def _forward_cached(self, idx: Tensor, targets: Tensor | None, attention_mask: Tensor | None,
                        kv_cache: KVCache) -> tuple[Tensor, None]:
        """:meth:`forward` with a KV cache: checks, then the new tokens' logits (B, T, V)."""
        if targets is not None:
            raise ValueError("forward with kv_cache is for decoding and takes no targets; compute a loss with "
                             "a full forward pass (kv_cache=None)")
        self._check_idx(idx, check_length=False)  # the length check counts the cached tokens too
        self._check_kv_cache(kv_cache, idx)
        if attention_mask is not None:
            attention_mask = as_mask(attention_mask, idx, "attention_mask")  # (B, T) bool over the new tokens
        return self.lm_head(self._hidden(idx, attention_mask=attention_mask, kv_cache=kv_cache)[0]), None

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> list[Tensor]:
        """The attention weights of every layer for ``idx`` (B, T), in eval mode (no dropout).

        Returns:
            A list of n_layer tensors (B, nh, T, T); row i of head h says how much token i
            attends to each earlier token (rows sum to 1, the upper triangle is 0).
        """
        self._check_idx(idx)
        was_training = self.training
        self.eval()
        try:
            return self._hidden(idx, need_weights=True)[1]
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample ``max_new_tokens`` tokens after ``idx``, one at a time (autoregressive decoding).

        Each step feeds the last ``block_size`` tokens, divides the last position's logits
        by ``temperature``, keeps the ``top_k`` largest (if given) and samples from the
        softmax. ``temperature=0`` picks the most likely token (greedy). Runs in eval mode
        (no dropout) and restores the previous mode. The loop is :func:`lmlib.lm.decoding.sample`
        (which also has top-p and a repetition penalty); for padded batches that stop at an end
        token, see :func:`lmlib.lm.decoding.generate_batch`.

        Args:
            idx: (B, T) int64 prompt token ids.
            max_new_tokens: number of tokens to append (>= 0).
            temperature: > 0 flattens (> 1) or sharpens (< 1) the distribution; 0 = greedy.
            top_k: sample only among the k most likely tokens.
            generator: a ``torch.Generator`` on the model's device, for reproducible samples.

        Returns:
            (B, T + max_new_tokens) int64: the prompt followed by the sampled tokens.
        """
        self._check_idx(idx, check_length=False)  # a long prompt is fine: each step sees its last block_size tokens
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        was_training = self.training
        self.eval()
        try:  # one sampler for the whole book: lmlib.lm.decoding.sample, the context cropped to block_size
            return sample(self, idx.long(), max_new_tokens, temperature=temperature, top_k=top_k,
                          generator=generator, max_context=self.config.block_size)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> str:
        """Save weights and config atomically (safetensors + .sha256 sidecar); return the SHA-256.

        ``meta`` (JSON-like: dict, list, str, numbers) is stored alongside, e.g. the tokenizer's
        characters or the training step. The tied wte/lm_head matrix is stored once.
        """
        return save_checkpoint(path, self.state_dict(), meta={**(meta or {}), "kind": "lmlib.gpt",
                                                              "config": asdict(self.config)})

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        config: GPTConfig | None = None,
        map_location: str | torch.device = "cpu",
        expected_sha256: str | None = None,
    ) -> "GPT":
        """Rebuild a GPT from a file written by :meth:`save` (one line: ``GPT.from_checkpoint(path)``).

        The checksum is verified. ``config`` is needed only for checkpoints that do not store one
        (e.g. one written by :func:`lmlib.lm.train.train`). The model is returned in eval mode.
        """
        ckpt = load_checkpoint(path, map_location=map_location, expected_sha256=expected_sha256)
        if config is None:
            saved = ckpt.meta.get("config")
            if ckpt.meta.get("kind") != "lmlib.gpt" or not isinstance(saved, dict):
                raise CheckpointError(f"{path} does not store a GPTConfig (not written by GPT.save); "
                                      "pass config=GPTConfig(...) with the model's hyperparameters")
            known = {f.name for f in fields(GPTConfig)}
            config = GPTConfig(**{k: v for k, v in saved.items() if k in known})
        model = cls(config)
        load_into(model, ckpt.model)
        return model.to(map_location).eval()

    def extra_repr(self) -> str:
        return f"params={self.num_params():,}"


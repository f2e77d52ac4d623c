"""The Transformer family tree: encoder-only, decoder-only and encoder-decoder, trained small and compared.

The 2017 Transformer (Vaswani et al.) had two stacks; its descendants kept one or both:

* **Encoder-only** (BERT, Devlin et al. 2019): self-attention *without* a causal mask, so every
  token sees the whole text, left and right. It cannot generate left to right; it is trained
  by **masked language modelling** (MLM): hide 15% of the tokens and predict them. Of the
  chosen positions 80% become ``[MASK]``, 10% a random token, 10% stay as they are (so the
  model cannot learn that only ``[MASK]`` positions matter). Good at *understanding* a whole
  text: filling blanks, classification, retrieval embeddings.
* **Decoder-only** (GPT): causal self-attention, next-token prediction
  (:class:`lmlib.lm.gpt.GPT`). Good at *generating*; sees only the left context.
* **Encoder-decoder** (the original Transformer, T5, BART): an encoder reads the source
  bidirectionally; a decoder generates the target with causal self-attention plus
  **cross-attention** to the encoder's output (queries from the decoder, keys and values from
  the encoder). Good at *transforming* one sequence into another (translation, summarising).

Everything here is character-level on the same Shakespeare text and the same tokenizer
(:func:`family_tokenizer`), with the same building blocks as the GPT
(:class:`lmlib.lm.attention.MultiHeadAttention`, :class:`lmlib.lm.gpt.MLP`, pre-LN residual blocks,
learned positions, tied embeddings), and every model trains with :func:`lmlib.lm.train.train`.
Two measured comparisons (run by :mod:`lmlib.experiments.family_tree`):

1. **Fill in a blank** (:func:`blank_accuracy`): the encoder sees ``T - 1`` characters around
   the blank (both sides); a GPT of the same size sees the ``T - 1`` characters before it.
2. **Reverse a word** (:func:`reversal_accuracy`), a toy sequence-to-sequence task with a
   checkable answer: ``"king" -> "gnik"``, exact match on words the models never saw
   (words of the validation text absent from the training text). The encoder-decoder
   (``n_layer`` encoder + ``n_layer`` decoder blocks) is compared with a decoder-only GPT of
   ``2 * n_layer`` blocks trained on ``"king[SEP]gnik[EOS]"`` with the loss on the answer
   only, so both learn from exactly the same targets with about the same number of parameters.

Shapes: B batch, T (decoder/target) positions, S source positions, C = n_embd, V vocab, nh heads.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention
from ..text.corpus import shakespeare
from .gpt import GPT, GPTConfig, MLP, check_token_ids
from .losses import masked_cross_entropy  # re-exported: Chapter 5 trains MLM and seq2seq with it
from .positional import ContextTooLongError, LearnedPositionalEmbedding
from ..text.tokenizer import CharTokenizer
from .train import BatchFn, get_batch

__all__ = [
    "SPECIAL_TOKENS",
    "family_tokenizer",
    "special_id",
    "PackedSeq2Seq",
    "EncoderBlock",
    "DecoderBlock",
    "MaskedLM",
    "EncoderDecoder",
    "mask_tokens",
    "masked_cross_entropy",
    "mlm_batch_fn",
    "fill_in_the_blank",
    "blank_accuracy",
    "reversal_words",
    "reversal_batch_fn",
    "reverse_words",
    "reversal_accuracy",
]

#: Special tokens of :func:`family_tokenizer` (after ``<unk>``, before the characters).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[MASK]", "[SEP]", "[BOS]", "[EOS]")

_TAUGHT = 'Chapter 5, "Transformers" (chapters/05_transformers.ipynb)'


def family_tokenizer(text: str | None = None) -> CharTokenizer:
    """The character tokenizer shared by every model of the family tree.

    ``<unk>``, then :data:`SPECIAL_TOKENS` (``[PAD]``, ``[MASK]``, ``[SEP]``, ``[BOS]``, ``[EOS]``),
    then the sorted characters of ``text`` (default: ``shakespeare("tiny").text``, 64 characters,
    so 70 ids). ``tok.encode("to [MASK]e")`` turns the special token into its single id.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    text = shakespeare("tiny").text if text is None else text
    return CharTokenizer.train(text, unk_token="<unk>", special_tokens=list(SPECIAL_TOKENS))


def special_id(tok: CharTokenizer, name: str) -> int:
    if name not in tok.stoi:
        raise ValueError(f"the tokenizer has no {name} token; build it with lmlib.lm.architectures.family_tokenizer()")
    return tok.stoi[name]


# ----------------------------------------------------------------------------- building blocks


def _check_config(config: GPTConfig, who: str) -> None:
    if not isinstance(config, GPTConfig):
        raise TypeError(f"{who} needs a lmlib.lm.gpt.GPTConfig, got {type(config).__name__}")
    if config.pos_encoding != "learned":
        raise ValueError(f"{who} uses learned positions (BERT, the original Transformer); "
                         f"got pos_encoding={config.pos_encoding!r}, use 'learned'")


def _key_mask(key_mask: Tensor | None, B: int, S: int) -> Tensor | None:
    """(B, S) bool True = real token -> (B, 1, 1, S), broadcast over heads and queries."""
    if key_mask is None:
        return None
    if not isinstance(key_mask, Tensor) or key_mask.dtype != torch.bool or tuple(key_mask.shape) != (B, S):
        got = f"{tuple(key_mask.shape)} {key_mask.dtype}" if isinstance(key_mask, Tensor) else type(key_mask).__name__
        raise ValueError(f"the padding mask must be a bool tensor (B, S) = ({B}, {S}), True for real tokens; got {got}")
    if not bool(key_mask.any(dim=1).all()):
        raise ValueError("a sequence in the batch is all padding (its mask row is all False)")
    return key_mask[:, None, None, :]


class EncoderBlock(nn.Module):
    """A pre-LN Transformer block *without* a causal mask: every token attends to every token.

    ``forward(x, key_mask=None, need_weights=False) -> (x, weights)``: x (B, T, C);
    ``key_mask`` (B, T) bool, True for real tokens (padding is never attended to);
    weights (B, nh, T, T) or None. Same layout as :class:`lmlib.lm.gpt.Block`, minus the mask.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = MultiHeadAttention(config.n_embd, config.n_head, config.dropout, config.bias)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, key_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, T, C) -> ``(x (B, T, C), weights (B, nh, T, T) or None)``."""
        a, w = self.attn(self.ln_1(x), mask=_key_mask(key_mask, x.shape[0], x.shape[1]), need_weights=need_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, w


class DecoderBlock(nn.Module):
    """The original Transformer's decoder block (pre-LN): causal self-attention, cross-attention, MLP.

    ``forward(x, memory, memory_mask=None, need_weights=False) -> (x, self_w, cross_w)``:
    x (B, T, C) the target so far; memory (B, S, C) the encoder's output; memory_mask (B, S)
    bool, True for real source tokens. In cross-attention the *queries* come from x and the
    *keys and values* from memory, so self_w is (B, nh, T, T) (lower-triangular) and cross_w
    is (B, nh, T, S); both None unless ``need_weights``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        C, nh = config.n_embd, config.n_head
        self.ln_1 = nn.LayerNorm(C, bias=config.bias)
        self.self_attn = MultiHeadAttention(C, nh, config.dropout, config.bias)
        self.ln_2 = nn.LayerNorm(C, bias=config.bias)
        self.cross_attn = MultiHeadAttention(C, nh, config.dropout, config.bias)
        self.ln_3 = nn.LayerNorm(C, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x (B, T, C), memory (B, S, C) -> ``(x (B, T, C), self_w (B, nh, T, T), cross_w (B, nh, T, S))``."""
        if memory.ndim != 3 or memory.shape[0] != x.shape[0] or memory.shape[2] != x.shape[2]:
            raise ValueError(f"memory must be (B, S, C) = ({x.shape[0]}, S, {x.shape[2]}) to match x "
                             f"{tuple(x.shape)}, got {tuple(memory.shape)}")
        a, self_w = self.self_attn(self.ln_1(x), is_causal=True, need_weights=need_weights)
        x = x + a
        h = self.ln_2(x)
        a, cross_w = self.cross_attn(h, memory, memory, mask=_key_mask(memory_mask, *memory.shape[:2]),
                                     need_weights=need_weights)
        x = x + a
        x = x + self.mlp(self.ln_3(x))
        return x, self_w, cross_w


def _init_like_gpt(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02), zero biases, residual projections N(0, 0.02 / sqrt(2 L))."""
    model.apply(GPT._init_weights)
    for name, p in model.named_parameters():
        if name.endswith(("c_proj.weight", "out_proj.weight")):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


def _check_ids(idx: Any, config: GPTConfig, name: str) -> None:
    check_token_ids(idx, name)
    if idx.shape[1] > config.block_size:
        raise ContextTooLongError(f"{name} has {idx.shape[1]} tokens but the model has block_size="
                                  f"{config.block_size} learned positions; use a shorter input")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= config.vocab_size:
        raise ValueError(f"{name} holds token ids in [{lo}, {hi}], outside [0, vocab_size={config.vocab_size})")


# ----------------------------------------------------------------------------- encoder-only


class MaskedLM(nn.Module):
    """A BERT-style encoder-only Transformer with a masked-language-model head.

    ``x = wte[idx] + wpe[pos]`` -> ``n_layer`` :class:`EncoderBlock` (no causal mask) -> ``ln_f``
    -> ``lm_head`` (tied to wte). ``forward(idx, targets=None, key_mask=None) -> (logits, loss)``:
    idx (B, T) with T <= block_size; logits (B, T, V); loss = :func:`masked_cross_entropy`
    against targets (B, T) (-1 = not masked, no loss), or None. Output t depends on *every*
    input token, before and after t.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        _check_config(config, "MaskedLM")
        self.config = config
        C = config.n_embd
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, C),
            "wpe": LearnedPositionalEmbedding(config.block_size, C),
            "drop": nn.Dropout(config.dropout),
            "h": nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layer)),
            "ln_f": nn.LayerNorm(C, bias=config.bias),
        })
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        _init_like_gpt(self, config.n_layer)

    def num_params(self) -> int:
        """Number of parameters (the tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, targets: Tensor | None = None,
                key_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) -> ``(logits (B, T, V), loss or None)``; targets (B, T), -1 = ignore."""
        _check_ids(idx, self.config, "idx")
        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(idx.shape[1]))  # (B, T, C)
        for block in tr.h:
            x, _ = block(x, key_mask)
        logits = self.lm_head(tr.ln_f(x))  # (B, T, V)
        return logits, (None if targets is None else masked_cross_entropy(logits, targets))


def mask_tokens(
    idx: Tensor,
    mask_id: int,
    random_ids: Tensor | Sequence[int],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's corruption: choose each position with probability ``mask_prob``; of the chosen,
    80% become ``mask_id``, 10% a random token from ``random_ids``, 10% stay unchanged.

    Args:
        idx: (B, T) integer token ids.
        mask_id: the id of ``[MASK]``.
        random_ids: (N,) ids the random replacements are drawn from (e.g. the characters).
        mask_prob: fraction of positions chosen for prediction (BERT: 0.15).
        generator: a CPU ``torch.Generator`` for reproducible masks.

    Returns:
        ``(inputs, targets)``, both (B, T) int64: ``inputs`` is the corrupted text;
        ``targets`` holds the original token at chosen positions and -1 elsewhere.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise ValueError(f"idx must be a (B, T) integer tensor, got {getattr(idx, 'shape', type(idx).__name__)}")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    random_ids = torch.as_tensor(random_ids, dtype=torch.long)
    if random_ids.ndim != 1 or len(random_ids) == 0:
        raise ValueError(f"random_ids must be a non-empty 1-D list of token ids, got shape {tuple(random_ids.shape)}")
    idx = idx.long()
    chosen = torch.rand(idx.shape, generator=generator) < mask_prob  # (B, T)
    r = torch.rand(idx.shape, generator=generator)  # which of the three treatments
    replace = random_ids[torch.randint(len(random_ids), idx.shape, generator=generator)]
    chosen, r, replace = chosen.to(idx.device), r.to(idx.device), replace.to(idx.device)
    inputs = torch.where(chosen & (r < 0.8), torch.full_like(idx, mask_id), idx)
    inputs = torch.where(chosen & (r >= 0.8) & (r < 0.9), replace, inputs)  # the last 10% keep the token
    targets = torch.where(chosen, idx, torch.full_like(idx, -1))
    return inputs, targets


def _char_ids(tok: CharTokenizer) -> Tensor:
    """Ids of the ordinary characters (not <unk>, not special tokens)."""
    skip = set(tok.special_tokens) | {tok.unk_token}
    return torch.tensor([i for i, t in enumerate(tok.itos) if t not in skip], dtype=torch.long)


def mlm_batch_fn(
    data: dict[str, Tensor], tok: CharTokenizer, block_size: int, batch_size: int, mask_prob: float = 0.15
) -> BatchFn:
    """A :data:`lmlib.lm.train.BatchFn` for masked language modelling: random windows, then :func:`mask_tokens`.

    ``batch_fn(split, generator) -> (inputs (B, T), targets (B, T))``; plug it into
    :func:`lmlib.lm.train.train` with ``loss_fn=masked_cross_entropy``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    mask_id, chars = special_id(tok, "[MASK]"), _char_ids(tok)

    def batch_fn(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if split not in data:
            raise KeyError(f"no {split!r} split; have {list(data)}")
        x, _ = get_batch(data[split], block_size, batch_size, generator)
        return mask_tokens(x, mask_id, chars, mask_prob, generator)

    return batch_fn


@torch.no_grad()
def fill_in_the_blank(
    model: MaskedLM, tok: CharTokenizer, text_with_blanks: str, blank: str = "_", top_k: int = 3
) -> list[list[tuple[str, float]]]:
    """Ask an encoder what goes in each blank: ``"to be or n_t to be"`` -> ``[[("o", 0.93), ...]]``.

    Every ``blank`` character becomes ``[MASK]``; the model sees the whole text (both sides of
    every blank) and returns, for each blank in order, the ``top_k`` most likely characters with
    their probabilities (largest first).

    Args:
        model: a trained :class:`MaskedLM`.
        tok: its tokenizer (:func:`family_tokenizer`).
        text_with_blanks: at most ``model.config.block_size`` characters, at least one blank.
        blank: the character that marks a blank (must not be a character of the corpus).
        top_k: predictions per blank.

    Returns:
        A list with one list of ``(character, probability)`` per blank.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(model, MaskedLM):
        raise TypeError(f"fill_in_the_blank needs a MaskedLM (an encoder), got {type(model).__name__}; "
                        "a GPT cannot see the right-hand side of a blank")
    if not isinstance(text_with_blanks, str) or blank not in text_with_blanks:
        raise ValueError(f"text_with_blanks must be a str with at least one blank {blank!r}, got {text_with_blanks!r}")
    if len(blank) != 1 or blank in tok.stoi:
        raise ValueError(f"blank must be one character that is not in the vocabulary, got {blank!r}")
    if len(text_with_blanks) > model.config.block_size:
        raise ContextTooLongError(f"the text has {len(text_with_blanks)} characters but the encoder has "
                                  f"block_size={model.config.block_size} positions; shorten it")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    mask_id = special_id(tok, "[MASK]")
    ids = [mask_id if c == blank else tok.encode(c)[0] for c in text_with_blanks]
    blanks = [i for i, c in enumerate(text_with_blanks) if c == blank]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        logits, _ = model(torch.tensor([ids], device=device))
    finally:
        model.train(was_training)
    chars = _char_ids(tok).to(logits.device)
    probs = torch.zeros_like(logits[0, blanks].float())  # (n_blanks, V): only characters can fill a blank
    probs[:, chars] = F.softmax(logits[0, blanks][:, chars].float(), dim=-1)
    top = probs.topk(min(top_k, len(chars)), dim=-1)
    return [[(tok.itos[int(i)], float(p)) for p, i in zip(ps, ix)] for ps, ix in zip(top.values, top.indices)]


@torch.no_grad()
def blank_accuracy(
    model: MaskedLM | GPT, ids: Tensor, tok: CharTokenizer, context: int, n: int = 256, seed: int = 0,
    batch_size: int = 128,
) -> float:
    """Top-1 accuracy at guessing a hidden character, with ``context - 1`` visible characters.

    ``n`` target positions are drawn (seeded) from ``ids``. A :class:`MaskedLM` sees a window of
    ``context`` characters with the target, in the middle (index ``context // 2``), replaced by
    ``[MASK]``; a :class:`lmlib.lm.gpt.GPT` sees the ``context - 1`` characters just *before* the
    target and predicts the next one. Same targets, same amount of text, different sides.

    Args:
        model: a MaskedLM or a GPT (``context - 1 <= block_size``).
        ids: (N,) token ids, e.g. the validation text.
        tok: the tokenizer (for ``[MASK]`` and the set of characters).
        context: window length T (the MaskedLM needs ``T <= block_size``).

    Returns:
        The fraction of the ``n`` targets whose most likely character is right.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(model, (MaskedLM, GPT)):
        raise TypeError(f"model must be a MaskedLM or a GPT, got {type(model).__name__}")
    if not isinstance(ids, Tensor) or ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D tensor of token ids, got {getattr(ids, 'shape', type(ids).__name__)}")
    if not isinstance(context, int) or context < 2:
        raise ValueError(f"context must be an int >= 2, got {context!r}")
    need = context if isinstance(model, MaskedLM) else context - 1
    if need > model.config.block_size:
        raise ContextTooLongError(f"context={context} needs {need} positions but the model has "
                                  f"block_size={model.config.block_size}")
    if len(ids) < 2 * context + 1:
        raise ValueError(f"ids has {len(ids)} tokens; need at least {2 * context + 1} for context={context}")
    mid = context // 2
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(context, len(ids) - context, (n,), generator=g)  # (n,) target positions
    mask_id, chars = special_id(tok, "[MASK]"), _char_ids(tok)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for s in range(0, n, batch_size):
            p = pos[s : s + batch_size]
            if isinstance(model, MaskedLM):
                x = ids[(p - mid)[:, None] + torch.arange(context)].long()  # (b, T), target at column mid
                x[:, mid] = mask_id
                logits = model(x.to(device))[0][:, mid]  # (b, V)
            else:
                x = ids[(p - (context - 1))[:, None] + torch.arange(context - 1)].long()  # (b, T-1) left context
                logits = model(x.to(device))[0][:, -1]
            guess = chars.to(device)[logits[:, chars].argmax(-1)]
            correct += int((guess.cpu() == ids[p]).sum())
    finally:
        model.train(was_training)
    return correct / n


# ----------------------------------------------------------------------------- encoder-decoder


class EncoderDecoder(nn.Module):
    """An encoder-decoder Transformer (Vaswani et al. 2017, pre-LN as in T5/GPT-2).

    ``encode(src) -> memory``: ``wte[src] + wpe_enc`` -> ``n_layer`` :class:`EncoderBlock` -> ``ln_enc``.
    ``decode(tgt, memory) -> logits``: ``wte[tgt] + wpe_dec`` -> ``n_layer`` :class:`DecoderBlock`
    (causal self-attention + cross-attention to memory) -> ``ln_f`` -> ``lm_head``. One token
    table serves encoder, decoder and output layer (T5's tying). ``config.n_layer`` is the
    depth of *each* stack; S, T <= ``config.block_size``.

    ``forward(src, tgt, targets=None, src_mask=None) -> (logits, loss)``: src (B, S), tgt (B, T)
    (the target shifted right, starting with ``[BOS]``), logits (B, T, V), loss =
    :func:`masked_cross_entropy` against targets (B, T). ``src_mask`` (B, S) bool marks real
    source tokens; by default it is ``src != pad_id`` when ``pad_id`` is given.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """

    def __init__(self, config: GPTConfig, pad_id: int | None = None) -> None:
        super().__init__()
        _check_config(config, "EncoderDecoder")
        self.config, self.pad_id = config, pad_id
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)
        self.encoder = nn.ModuleDict({
            "wpe": LearnedPositionalEmbedding(config.block_size, C),
            "h": nn.ModuleList(EncoderBlock(config) for _ in range(config.n_layer)),
            "ln_f": nn.LayerNorm(C, bias=config.bias),
        })
        self.decoder = nn.ModuleDict({
            "wpe": LearnedPositionalEmbedding(config.block_size, C),
            "h": nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layer)),
            "ln_f": nn.LayerNorm(C, bias=config.bias),
        })
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        _init_like_gpt(self, 2 * config.n_layer)

    def num_params(self) -> int:
        """Number of parameters (the tied matrix counts once)."""
        return sum(p.numel() for p in self.parameters())

    def _src_mask(self, src: Tensor, src_mask: Tensor | None) -> Tensor | None:
        if src_mask is None and self.pad_id is not None:
            src_mask = src != self.pad_id
            if bool(src_mask.all()):
                return None  # no padding: skip the mask
        return src_mask

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (B, S) -> memory (B, S, C)."""
        _check_ids(src, self.config, "src")
        src_mask = self._src_mask(src, src_mask)
        x = self.drop(self.wte(src) + self.encoder.wpe(src.shape[1]))
        for block in self.encoder.h:
            x, _ = block(x, src_mask)
        return self.encoder.ln_f(x)

    def decode(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None = None,
               need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """tgt (B, T), memory (B, S, C) -> ``(logits (B, T, V), cross-attention maps [(B, nh, T, S)] per layer)``."""
        _check_ids(tgt, self.config, "tgt")
        x = self.drop(self.wte(tgt) + self.decoder.wpe(tgt.shape[1]))
        maps = []
        for block in self.decoder.h:
            x, _, cross_w = block(x, memory, memory_mask, need_weights)
            if need_weights:
                maps.append(cross_w)
        return self.lm_head(self.decoder.ln_f(x)), maps

    def forward(self, src: Tensor, tgt: Tensor, targets: Tensor | None = None,
                src_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """src (B, S), tgt (B, T) -> ``(logits (B, T, V), loss or None)``."""
        _check_ids(src, self.config, "src")
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(f"src {tuple(src.shape)} and tgt {tuple(tgt.shape)} must have the same batch size")
        src_mask = self._src_mask(src, src_mask)
        logits, _ = self.decode(tgt, self.encode(src, src_mask), src_mask)
        return logits, (None if targets is None else masked_cross_entropy(logits, targets))

    @torch.no_grad()
    def generate(self, src: Tensor, max_new_tokens: int, bos_id: int, eos_id: int | None = None,
                 src_mask: Tensor | None = None) -> Tensor:
        """Greedy decoding: encode ``src`` once, then pick the most likely next token until ``[EOS]``.

        Returns (B, n) int64, n <= max_new_tokens (``[BOS]`` not included; stops early once every
        row has produced ``eos_id``; tokens after a row's EOS are ``eos_id``).
        """
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens < self.config.block_size:
            raise ValueError(f"max_new_tokens must be an int in [1, block_size={self.config.block_size}), "
                             f"got {max_new_tokens!r}")
        was_training = self.training
        self.eval()
        try:
            src_mask = self._src_mask(src, src_mask)
            memory = self.encode(src, src_mask)
            out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
            done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
            for _ in range(max_new_tokens):
                logits, _ = self.decode(out, memory, src_mask)
                nxt = logits[:, -1].argmax(-1)
                if eos_id is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
                    done |= nxt == eos_id
                out = torch.cat([out, nxt[:, None]], dim=1)
                if bool(done.all()):
                    break
            return out[:, 1:]
        finally:
            self.train(was_training)


class PackedSeq2Seq(nn.Module):
    """Lets :func:`lmlib.lm.train.train` drive an EncoderDecoder: x = cat(src, tgt) -> logits over tgt."""

    def __init__(self, model: EncoderDecoder, src_len: int) -> None:
        super().__init__()
        self.model, self.src_len = model, src_len

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x[:, : self.src_len], x[:, self.src_len :])[0]


def reversal_words(text: str, min_len: int = 3, max_len: int = 6) -> list[str]:
    """The distinct lower-case words of ``text`` with ``min_len <= len <= max_len`` letters, sorted.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    return sorted({w for w in re.findall(r"[a-z]+", text.lower()) if min_len <= len(w) <= max_len})


def _encode_word(tok: CharTokenizer, word: str) -> list[int]:
    ids = tok.encode(word)
    if tok.unk_id is not None and tok.unk_id in ids:
        raise ValueError(f"word {word!r} has characters outside the tokenizer's vocabulary")
    return ids


def reversal_batch_fn(
    words: dict[str, Sequence[str]], tok: CharTokenizer, max_len: int, batch_size: int, kind: str
) -> BatchFn:
    """Batches of the reversal task, for :func:`lmlib.lm.train.train` with ``loss_fn=masked_cross_entropy``.

    ``kind="encdec"``: x = cat(src (B, max_len) padded with ``[PAD]``, tgt_in (B, max_len + 1) =
    ``[BOS]`` + reversed word, padded); y (B, max_len + 1) = reversed word + ``[EOS]``, -1 after.
    ``kind="gpt"``: the sequence ``word [SEP] reversed [EOS]`` padded to 2 * max_len + 2; x and
    y = the sequence shifted by one (B, 2 * max_len + 1), with y = -1 except on the answer and
    ``[EOS]``, so both models are scored on the same tokens.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if kind not in ("encdec", "gpt"):
        raise ValueError(f"kind must be 'encdec' or 'gpt', got {kind!r}")
    pad, sep, bos, eos = (special_id(tok, t) for t in ("[PAD]", "[SEP]", "[BOS]", "[EOS]"))
    tables = {}
    for split, ws in words.items():
        if not ws:
            raise ValueError(f"no words in split {split!r}")
        too_long = [w for w in ws if len(w) > max_len]
        if too_long:
            raise ValueError(f"{len(too_long)} words of split {split!r} are longer than max_len={max_len}, "
                             f"e.g. {too_long[0]!r}")
        L = 2 * max_len + 2
        x = torch.full((len(ws), L), pad, dtype=torch.long)
        y = torch.full((len(ws), L), -1, dtype=torch.long)
        for i, w in enumerate(ws):
            a = _encode_word(tok, w)
            r = a[::-1]
            if kind == "encdec":
                x[i, : len(a)] = torch.tensor(a)
                x[i, max_len : max_len + 1 + len(r)] = torch.tensor([bos] + r)
                y[i, : len(r) + 1] = torch.tensor(r + [eos])
            else:
                seq = a + [sep] + r + [eos]
                x[i, : len(seq)] = torch.tensor(seq)
                y[i, len(a) : len(a) + len(r) + 1] = torch.tensor(r + [eos])  # y[t] = seq[t + 1]
        if kind == "encdec":
            tables[split] = (x[:, : 2 * max_len + 1], y[:, : max_len + 1])
        else:
            tables[split] = (x[:, :-1], y[:, :-1])

    def batch_fn(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if split not in tables:
            raise KeyError(f"no {split!r} split; have {list(tables)}")
        x, y = tables[split]
        ix = torch.randint(len(x), (batch_size,), generator=generator)
        return x[ix], y[ix]

    return batch_fn


@torch.no_grad()
def reverse_words(model: EncoderDecoder | GPT, tok: CharTokenizer, words: Sequence[str]) -> list[str]:
    """Greedy answers of a trained reverser (an :class:`EncoderDecoder` or a decoder-only GPT).

    Words are batched by length (no padding needed); the answer is cut at ``[EOS]``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(model, (EncoderDecoder, GPT)):
        raise TypeError(f"model must be an EncoderDecoder or a GPT, got {type(model).__name__}")
    if isinstance(words, str):
        raise TypeError("words must be a list of words, not one string (wrap it: [word])")
    sep, bos, eos = (special_id(tok, t) for t in ("[SEP]", "[BOS]", "[EOS]"))
    device = next(model.parameters()).device
    answers: dict[int, str] = {}
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(words):
        if not w:
            raise ValueError("cannot reverse an empty word")
        by_len.setdefault(len(w), []).append(i)
    for L, rows in by_len.items():
        src = torch.tensor([_encode_word(tok, words[i]) for i in rows], device=device)  # (b, L)
        if isinstance(model, EncoderDecoder):
            if L + 1 >= model.config.block_size:
                raise ContextTooLongError(f"words of {L} letters need block_size > {L + 1}, "
                                          f"the model has {model.config.block_size}")
            out = model.generate(src, L + 1, bos, eos)
        else:
            if 2 * L + 1 > model.config.block_size:
                raise ContextTooLongError(f"words of {L} letters need block_size >= {2 * L + 1}, "
                                          f"the model has {model.config.block_size}")
            prompt = torch.cat([src, torch.full((len(rows), 1), sep, device=device)], dim=1)
            out = model.generate(prompt, L + 1, temperature=0)[:, L + 1 :]
        for i, ids in zip(rows, out.tolist()):
            ids = ids[: ids.index(eos)] if eos in ids else ids
            answers[i] = tok.decode(ids)
    return [answers[i] for i in range(len(words))]


def reversal_accuracy(model: EncoderDecoder | GPT, tok: CharTokenizer, words: Sequence[str]) -> float:
    """Exact-match accuracy: the fraction of ``words`` whose greedy answer is the word reversed.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if len(words) == 0:
        raise ValueError("words is empty")
    answers = reverse_words(model, tok, words)
    return sum(a == w[::-1] for a, w in zip(answers, words)) / len(words)

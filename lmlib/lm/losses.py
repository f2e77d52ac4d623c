"""Next-token losses and per-token log-probabilities: the one home of ``log p(x_t | x_<t)``.

Every model of the book is scored the same way: logits ``(B, T, V)`` at each position, a target id
``(B, T)`` per position, ``log_softmax`` and a gather::

    logprobs[b, t] = log softmax(logits[b, t])[labels[b, t]]           # logprobs_from_logits
    loss = -mean(logprobs[targets != ignore_index])                    # masked_cross_entropy

* :func:`masked_cross_entropy` is the training loss of every language model here (the GPT, the MLP
  of Chapter 3, BERT's masked LM and the encoder-decoder of Chapter 5): targets equal to
  ``ignore_index`` (-1, as in nanoGPT) carry no loss (unmasked positions in MLM, prompts, padding).
* :func:`logprobs_from_logits` keeps the per-token values instead of averaging them;
  :func:`token_logprobs` runs a model on a batch of (possibly padded) sequences and returns
  ``log p(ids[:, t] | ids[:, :t])`` with its mask, the quantity that decoding metrics (Chapter 6),
  supervised fine-tuning, reward models, PPO's KL penalty and DPO are built from.

Shapes: B sequences, T positions, V vocabulary.

Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb); per-token
log-probabilities in Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import as_mask

__all__ = ["masked_cross_entropy", "logprobs_from_logits", "token_logprobs"]


def _check_logits_3d(logits: Any) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 3:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be (B, T, V), got {shape}; does model(x) return per-position logits?")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor (B, T, V), got dtype {logits.dtype}")
    if logits.shape[-1] == 0:
        raise ValueError(f"logits have an empty vocabulary (V = 0): shape {tuple(logits.shape)}")


def _check_labels(labels: Any, logits: Tensor, name: str, ignore_index: int | None) -> None:
    """``labels``: integer (B, T) matching ``logits`` (B, T, V), ids in [0, V) (or ``ignore_index``)."""
    B, T, V = logits.shape
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (B, T), got {type(labels).__name__}")
    if tuple(labels.shape) != (B, T):
        raise ValueError(f"{name} must have shape (B, T) = {(B, T)} to match logits {(B, T, V)}, "
                         f"got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise TypeError(f"{name} must be integer token ids, got dtype {labels.dtype}")
    if labels.numel() == 0 or torch.compiler.is_compiling():
        return  # reading values would break a compiled graph; the gather still fails on a bad id
    bad = (labels < 0) | (labels >= V)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if bool(bad.any()):
        value = int(labels[bad][0])
        where = tuple(int(i) for i in bad.nonzero()[0].tolist())
        allowed = f"[0, V={V})" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
        raise ValueError(f"{name} holds the id {value} at {where}, outside {allowed}")


def masked_cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -1) -> Tensor:
    """Mean next-token cross-entropy over the positions whose target is not ``ignore_index``.

    ``loss = -mean_{(b, t): targets[b, t] != ignore_index} log softmax(logits[b, t])[targets[b, t]]``,
    computed in float32 even when the logits are bf16 (autocast). Worked example: uniform logits
    over V = 5 tokens give ``log 5`` whatever the targets.

    Args:
        logits: (B, T, V) unnormalised next-token scores.
        targets: (B, T) integer ids in ``[0, V)``, or ``ignore_index`` where there is nothing to predict
            (unmasked positions in MLM, the prompt and the padding of a fine-tuning example).
        ignore_index: the id that means "no loss here" (-1, nanoGPT's convention).

    Returns:
        A scalar tensor. **If every target is ignored it is 0** (``logits.sum() * 0``: still part of the
        graph, so ``backward()`` works and gives zero gradients) rather than PyTorch's NaN (0 / 0): a
        batch with nothing to predict, e.g. an MLM batch where no token was chosen, then contributes
        nothing instead of turning every parameter into NaN.

    Raises:
        ValueError / TypeError naming the shape, dtype or the first target outside ``[0, V)``.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb); the
    ignored positions in Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    _check_logits_3d(logits)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__} {ignore_index!r}")
    _check_labels(targets, logits, "targets", ignore_index)
    B, T, V = logits.shape
    flat = targets.reshape(B * T).long()
    if not torch.compiler.is_compiling() and not bool((flat != ignore_index).any()):
        return logits.sum() * 0.0  # nothing to predict: 0 with a zero gradient, not NaN
    return F.cross_entropy(logits.float().reshape(B * T, V), flat, ignore_index=ignore_index)


def logprobs_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """``log softmax(logits)[b, t, labels[b, t]]``: the log-probability of each label, (B, T).

    ``log_softmax`` then ``gather`` (in float32), so only one (B, T, V) temporary is made; the
    values are those of ``-F.cross_entropy(..., reduction="none")``.

    Args:
        logits: (B, T, V) floating-point scores; ``logits[:, t]`` is the distribution of ``labels[:, t]``.
        labels: (B, T) integer ids in ``[0, V)``.

    Returns:
        (B, T) float32, values ``<= 0``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb); the building block of the RLHF losses.
    """
    _check_logits_3d(logits)
    _check_labels(labels, logits, "labels", None)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    return logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)  # (B, T)


def token_logprobs(
    model: Callable[..., Any], ids: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Per-token log-probabilities of ``ids`` under ``model``: ``log p(ids[:, t] | ids[:, :t])``.

    One forward pass over ``ids[:, :-1]`` (position t predicts token t + 1, so the input is one token
    shorter and a model with ``block_size`` positions can score ``block_size + 1`` tokens). Token 0 has
    no context, so ``logprobs[:, 0] = 0`` and the returned mask is False there.
    Worked example: ids ``[[a, b, c]]`` give ``[[0, log p(b | a), log p(c | a b)]]`` and mask
    ``[[False, True, True]]``.

    With a ``mask`` (True = real token, e.g. left-padded prompts) the model is called as
    ``model(ids[:, :-1], attention_mask=mask[:, :-1])`` (:meth:`lmlib.lm.gpt.GPT.forward` takes it:
    padding is never attended to and positions count real tokens only); positions where the mask is
    False get logprob 0. Runs with the gradient on if it is on (fine-tuning needs it); wrap it in
    ``torch.no_grad()`` for scoring.

    Args:
        model: ``model(idx (B, T)) -> logits (B, T, V)`` or a tuple starting with them.
        ids: (B, T) integer token ids in ``[0, V)`` everywhere (padding too: pad with a real id), T >= 2.
        mask: (B, T) bool (or 0/1), True for real tokens; default all True.

    Returns:
        ``(logprobs, mask)``: logprobs (B, T) float32, 0 wherever the returned mask is False; mask (B, T)
        bool, True where ``logprobs`` is a real log-probability: the given mask with column 0 set False,
        and also False on the first real token of a left-padded row (what precedes it is padding, so
        nothing predicted it). Without left padding this is just the given mask minus column 0.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb); used by the RLHF chapters.
    """
    if not isinstance(ids, Tensor) or ids.ndim != 2:
        got = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a (B, T) tensor of token ids, got {got}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"ids must be integer token ids, got dtype {ids.dtype}")
    B, T = ids.shape
    if T < 2:
        raise ValueError(f"ids must have T >= 2 tokens (token 0 has no context to be predicted from), got {(B, T)}")
    if ids.numel() and int(ids.min()) < 0:
        raise ValueError(f"ids holds the negative id {int(ids.min())}; pad with a real token id (e.g. 0) "
                         "and mark padding with mask=False")
    ids = ids.long()
    if mask is None:
        out = model(ids[:, :-1])
        mask = torch.ones_like(ids, dtype=torch.bool)
    else:
        mask = as_mask(mask, ids, "mask")
        out = model(ids[:, :-1], attention_mask=mask[:, :-1])
    logits = out[0] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(logits, Tensor) or logits.ndim != 3 or tuple(logits.shape[:2]) != (B, T - 1):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"model(ids[:, :-1]) must return logits (B, T - 1, V) = ({B}, {T - 1}, V), got {got}")
    V = logits.shape[-1]
    if bool(((ids < 0) | (ids >= V)).any()):
        raise ValueError(f"ids holds token ids in [{int(ids.min())}, {int(ids.max())}], outside the model's "
                         f"vocabulary [0, V={V})")
    # token t is scored from the logits at position t - 1: both must be real. Column 0 has no context, and
    # neither has the first real token of a left-padded row (its predecessor is padding)
    mask = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, 1:] & mask[:, :-1]], dim=1)
    logp = logprobs_from_logits(logits, ids[:, 1:])  # (B, T - 1): position t predicts token t + 1
    logprobs = torch.cat([logp.new_zeros(B, 1), logp], dim=1)  # (B, T)
    return logprobs.masked_fill(~mask, 0.0), mask

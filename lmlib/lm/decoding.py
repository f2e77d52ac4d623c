"""Decoding: turning a language model's next-token logits into text.

A model gives, for every prefix, logits over the vocabulary. How we pick the
next token from them is a separate choice, and it changes the text a lot:

* **logit processors** reshape one step's logits ``(B, V)``:
  :func:`apply_temperature` (divide by ``T``), :func:`top_k_filter` (keep the
  ``k`` most likely tokens, Fan et al. 2018), :func:`top_p_filter` (nucleus
  sampling: keep the smallest set with probability mass ``>= p``, Holtzman et
  al. 2020) and :func:`repetition_penalty` (CTRL, Keskar et al. 2019). A removed
  token gets logit ``-inf``, i.e. probability 0 after the softmax.
  :func:`next_token_distribution` chains them in the usual order.
* **decoding loops**: :func:`sample` (random draws, reproducible with a
  ``torch.Generator``; the one sampler of the book, :meth:`lmlib.lm.gpt.GPT.generate`
  calls it), :func:`greedy` (always the most likely token) and
  :func:`beam_search` (keep the ``num_beams`` most likely prefixes).
* **batched generation** for fine-tuning and RLHF: :func:`generate_batch` takes prompts of
  different lengths, left-pads them, lets each row stop at an end token and returns a
  :class:`Generation` with the response, its mask and the log-probabilities of the sampled
  tokens under the model. With a :class:`lmlib.lm.gpt.GPT` it keeps the keys and values of the
  context in a :class:`lmlib.lm.attention.KVCache`, so each step feeds only the newest token.
* **metrics** for the diversity/quality trade-off: :func:`distinct_n` (share
  of distinct n-grams, Li et al. 2016) and :func:`sequence_log_likelihood`
  (mean log-probability per generated token under a model).

Every loop takes ``model``: any callable mapping token ids ``(B, T)`` (long) to
logits ``(B, T, V)`` (only the last position is used), or directly to the
next-token logits ``(B, V)``. A tuple output such as nanoGPT's
``(logits, loss)`` is fine: its first element is used. ``max_context`` crops
the context to its last ``max_context`` tokens (a transformer's block size).

Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .losses import logprobs_from_logits

__all__ = [
    "apply_temperature", "top_k_filter", "top_p_filter", "repetition_penalty", "next_token_distribution",
    "sample", "greedy", "beam_search", "BeamSearchResult", "Generation", "generate_batch",
    "distinct_n", "sequence_log_likelihood",
]

Model = Callable[[Tensor], Any]  # ids (B, T) long -> logits (B, T, V) or (B, V), or a tuple starting with them

# ----------------------------------------------------------------------------- input checks


def _check_logits(logits: Tensor, name: str = "logits") -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, V), got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape (B, V) (one row of logits per sequence), "
                         f"got shape {tuple(logits.shape)}"
                         + (": add a batch dimension with logits[None]" if logits.dim() == 1 else ""))
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.shape[1] == 0:
        raise ValueError(f"{name} has an empty vocabulary (shape {tuple(logits.shape)})")
    if torch.isnan(logits).any():
        raise ValueError(f"{name} contain NaN")
    if torch.isposinf(logits).any():
        raise ValueError(f"{name} contain +inf (only -inf, for a removed token, is allowed)")


def _check_ids(idx: Tensor, name: str = "idx") -> None:
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, shape (B, T), got {type(idx).__name__}")
    if idx.dim() != 2:
        raise ValueError(f"{name} must have shape (B, T), got shape {tuple(idx.shape)}"
                         + (": add a batch dimension with idx[None]" if idx.dim() == 1 else ""))
    if idx.dtype != torch.long:
        raise TypeError(f"{name} must hold token ids as torch.long, got dtype {idx.dtype}")


def _check_count(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, penalty: float) -> None:
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None:
        _check_count(top_k, "top_k", 1)
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not isinstance(penalty, (int, float)) or not math.isfinite(penalty) or penalty <= 0:
        raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = no penalty), got {penalty!r}")


# ----------------------------------------------------------------------------- logit processors


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Divide the logits by ``temperature``: ``softmax(logits / T)``.

    ``T < 1`` sharpens the distribution (towards greedy decoding as ``T -> 0``),
    ``T > 1`` flattens it (towards uniform as ``T -> inf``), ``T = 1`` leaves it
    unchanged. ``T = 0`` is not a division: use :func:`greedy` (or
    ``sample(..., temperature=0)``).

    Args:
        logits: ``(B, V)`` floating-point logits (``-inf`` allowed).
        temperature: ``T > 0``.

    Returns:
        a new ``(B, V)`` tensor ``logits / T``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r} "
                         "(for T = 0 use greedy decoding: greedy() or sample(..., temperature=0))")
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row; set the others to ``-inf``.

    Ties at the boundary are all kept (the rule of nanoGPT and Hugging Face): a
    token survives when its logit is ``>=`` the row's ``k``-th largest logit,
    so the result never depends on the order of the vocabulary, and a row can
    keep more than ``k`` tokens only when several share the ``k``-th value.
    ``k = V`` returns the logits unchanged.

    Args:
        logits: ``(B, V)`` floating-point logits (``-inf`` allowed).
        k: number of tokens to keep, ``1 <= k <= V``.

    Returns:
        a new ``(B, V)`` tensor: kept logits unchanged, the rest ``-inf``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_logits(logits)
    _check_count(k, "k", 1)
    V = logits.shape[1]
    if k > V:
        raise ValueError(f"k must be <= the vocabulary size V={V}, got k={k}")
    kth = torch.topk(logits, k, dim=-1).values[:, [-1]]  # (B, 1): the k-th largest logit of each row
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability mass is ``>= p``.

    Sort the tokens by probability (descending); keep a token when the mass of
    the tokens before it is still ``< p``. The most likely token is always
    kept. Ties at the boundary are all kept (as in :func:`top_k_filter`), so the
    result never depends on the order of the vocabulary. ``p = 1`` returns the
    logits unchanged.

    Example: logits ``[2, 1, 0, -1]`` have probabilities ``[0.6439, 0.2369,
    0.0871, 0.0321]``; ``p = 0.7`` keeps the first two (mass 0.8808), ``p = 0.5``
    only the first (mass 0.6439).

    Args:
        logits: ``(B, V)`` floating-point logits (``-inf`` allowed, but not a whole row).
        p: the mass to cover, ``0 < p <= 1``.

    Returns:
        a new ``(B, V)`` tensor: kept logits unchanged, the rest ``-inf``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_logits(logits)
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"p must be a number in (0, 1], got {type(p).__name__}")
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    dead = torch.isneginf(logits).all(dim=-1)
    if dead.any():
        raise ValueError(f"row {int(dead.nonzero()[0])} of logits is all -inf: no token to keep")
    if p == 1:
        return logits.clone()
    sorted_logits = torch.sort(logits, dim=-1, descending=True).values  # (B, V)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of the more likely tokens
    n_keep = (mass_before < p).sum(dim=-1, keepdim=True)  # (B, 1), >= 1 since mass_before[0] = 0
    threshold = sorted_logits.gather(-1, n_keep - 1)  # logit of the last kept token
    return logits.masked_fill(logits < threshold, float("-inf"))


def repetition_penalty(logits: Tensor, previous_ids: Tensor, penalty: float) -> Tensor:
    """CTRL's repetition penalty: make tokens that already occur less likely.

    For every token id that occurs in row ``b`` of ``previous_ids`` (once or
    more, it is penalised once), its logit ``x`` becomes ``x / penalty`` if
    ``x > 0`` and ``x * penalty`` otherwise (Keskar et al. 2019, with the sign
    fix of Hugging Face). ``penalty > 1`` discourages repetition, ``penalty = 1``
    changes nothing, ``penalty < 1`` encourages it.

    Example: logits ``[2, 1, 0, -1]``, previous ids ``[0, 3, 3]``, penalty 2
    give ``[1, 1, 0, -2]``.

    Args:
        logits: ``(B, V)`` floating-point logits.
        previous_ids: ``(B, L)`` long token ids in ``[0, V)`` (``L = 0`` allowed).
        penalty: a number ``> 0``.

    Returns:
        a new ``(B, V)`` tensor.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_logits(logits)
    _check_ids(previous_ids, "previous_ids")
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)):
        raise TypeError(f"penalty must be a number, got {type(penalty).__name__}")
    if not math.isfinite(penalty) or penalty <= 0:
        raise ValueError(f"penalty must be a finite number > 0 (1 = no penalty), got {penalty!r}")
    B, V = logits.shape
    if previous_ids.shape[0] != B:
        raise ValueError(f"previous_ids has {previous_ids.shape[0]} rows but logits has {B} (shapes "
                         f"{tuple(previous_ids.shape)} and {tuple(logits.shape)})")
    if previous_ids.numel() and (previous_ids.min() < 0 or previous_ids.max() >= V):
        raise ValueError(f"previous_ids must be token ids in [0, {V}), got values in "
                         f"[{int(previous_ids.min())}, {int(previous_ids.max())}]")
    seen = logits.gather(-1, previous_ids)  # (B, L): the logits of the tokens seen (a repeated id reads the same)
    penalised = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous_ids, penalised)


_apply_repetition_penalty = repetition_penalty  # `sample` has an argument of the same name


def next_token_distribution(
    logits: Tensor,
    previous_ids: Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
) -> Tensor:
    """The probabilities :func:`sample` draws the next token from, one row per sequence.

    Applies, in this order (as Hugging Face does): the repetition penalty over
    ``previous_ids``, the temperature, top-k, top-p, then the softmax.
    ``temperature = 0`` gives a one-hot distribution on the (penalised) argmax:
    greedy decoding.

    Args:
        logits: ``(B, V)`` next-token logits.
        previous_ids: ``(B, L)`` ids seen so far (needed only for a repetition penalty ``!= 1``).
        temperature: ``>= 0``; top_k: ``None`` or ``1 <= top_k`` (capped at ``V``);
        top_p: ``None`` or in ``(0, 1]``; repetition_penalty: ``> 0``.

    Returns:
        ``(B, V)`` float probabilities; each row sums to 1.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_logits(logits)
    _check_sampling_args(temperature, top_k, top_p, repetition_penalty)
    if repetition_penalty != 1:
        if previous_ids is None:
            raise ValueError("a repetition penalty needs previous_ids, the (B, L) ids generated so far")
        logits = _apply_repetition_penalty(logits, previous_ids, repetition_penalty)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(torch.float32)
    logits = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, min(top_k, logits.shape[-1]))
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    if torch.isnan(probs).any():
        raise ValueError("the next-token probabilities contain NaN: is a row of logits all -inf, "
                         "or the temperature so small that logits / T overflows?")
    return probs


# ----------------------------------------------------------------------------- calling the model


def _model_logits(model: Model, idx: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """``model(idx)`` as a tensor: the first element of a tuple/list output, checked for shape."""
    out = model(idx) if attention_mask is None else model(idx, attention_mask=attention_mask)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"model(idx) must return logits as a torch.Tensor (or a tuple starting with them), "
                        f"got {type(out).__name__}")
    B = idx.shape[0]
    if out.dim() not in (2, 3) or out.shape[0] != B:
        raise ValueError(f"model(idx) with idx of shape {tuple(idx.shape)} must return logits of shape "
                         f"({B}, T, V) or ({B}, V), got shape {tuple(out.shape)}")
    return out


def _next_logits(model: Model, idx: Tensor, max_context: int | None, attention_mask: Tensor | None = None) -> Tensor:
    """The ``(B, V)`` logits of the token after ``idx``, the context cropped to its last ``max_context`` tokens."""
    context = idx if max_context is None or idx.shape[1] <= max_context else idx[:, -max_context:]
    out = _model_logits(model, context, attention_mask)
    return out[:, -1, :] if out.dim() == 3 else out


def _check_model_mode(model: Model) -> None:
    if isinstance(model, torch.nn.Module) and model.training:
        warnings.warn("the model is in training mode (dropout is on): call model.eval() before decoding",
                      stacklevel=4)  # past the torch.no_grad wrapper: the caller's line


def _check_loop_args(idx: Tensor, max_new_tokens: int, max_context: int | None) -> None:
    _check_ids(idx)
    if idx.shape[1] == 0:
        raise ValueError("idx has no tokens: give a prompt of at least one token (shape (B, T) with T >= 1)")
    _check_count(max_new_tokens, "max_new_tokens", 0)
    if max_context is not None:
        _check_count(max_context, "max_context", 1)


# ----------------------------------------------------------------------------- decoding loops


@torch.no_grad()
def sample(
    model: Model,
    idx: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
    max_context: int | None = None,
) -> Tensor:
    """Extend each prompt by ``max_new_tokens`` tokens drawn from the model's (processed) distribution.

    At every step: next-token logits from ``model`` (context cropped to
    ``max_context``), then :func:`next_token_distribution` (repetition penalty
    over the whole sequence so far, temperature, top-k, top-p), then one draw
    with ``torch.multinomial``. The same ``generator`` seed gives the same
    tokens; ``temperature = 0`` is greedy decoding.

    Args:
        model: ids ``(B, T)`` long -> logits ``(B, T, V)`` or ``(B, V)`` (see the module docstring).
            Put an ``nn.Module`` in eval mode first.
        idx: ``(B, T)`` long prompt ids, ``T >= 1``.
        max_new_tokens: number of tokens to add (``>= 0``).
        temperature, top_k, top_p, repetition_penalty: see :func:`next_token_distribution`.
        generator: a seeded ``torch.Generator`` on the model's device, for reproducible samples.
        max_context: crop the context to its last ``max_context`` tokens (the model's block size).

    Returns:
        ``(B, T + max_new_tokens)`` long ids: the prompts followed by the new tokens.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_loop_args(idx, max_new_tokens, max_context)
    _check_sampling_args(temperature, top_k, top_p, repetition_penalty)
    _check_model_mode(model)
    for _ in range(max_new_tokens):
        logits = _next_logits(model, idx, max_context)
        probs = next_token_distribution(logits, idx, temperature, top_k, top_p, repetition_penalty)
        if temperature == 0:
            next_id = probs.argmax(dim=-1, keepdim=True)
        else:
            next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id.to(idx.device)], dim=1)
    return idx


@torch.no_grad()
def greedy(
    model: Model,
    idx: Tensor,
    max_new_tokens: int,
    repetition_penalty: float = 1.0,
    max_context: int | None = None,
) -> Tensor:
    """Extend each prompt by ``max_new_tokens`` tokens, always taking the most likely one.

    Deterministic; on a tie the lowest token id wins. The same as
    ``sample(..., temperature=0)`` and as :func:`beam_search` with one beam.

    Args:
        model: ids ``(B, T)`` long -> logits ``(B, T, V)`` or ``(B, V)``.
        idx: ``(B, T)`` long prompt ids, ``T >= 1``.
        max_new_tokens: number of tokens to add (``>= 0``).
        repetition_penalty: ``> 0``, applied over the whole sequence so far (1 = none).
        max_context: crop the context to its last ``max_context`` tokens.

    Returns:
        ``(B, T + max_new_tokens)`` long ids.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_loop_args(idx, max_new_tokens, max_context)
    _check_sampling_args(0.0, None, None, repetition_penalty)
    _check_model_mode(model)
    for _ in range(max_new_tokens):
        logits = _next_logits(model, idx, max_context)
        if repetition_penalty != 1:
            logits = _apply_repetition_penalty(logits, idx, repetition_penalty)
        next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1); the first maximum on a tie
        idx = torch.cat([idx, next_id.to(idx.device)], dim=1)
    return idx


class BeamSearchResult(NamedTuple):
    """What :func:`beam_search` returns, best hypothesis first.

    * ``sequences``: list of ``n`` 1-D long tensors, each the prompt followed by
      its generated tokens (lengths differ when ``eos_id`` ended some early);
    * ``log_probs``: ``(n,)`` float, the sum of the generated tokens' log-probabilities;
    * ``scores``: ``(n,)`` float, ``log_probs / n_generated ** length_penalty``,
      sorted in descending order.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """

    sequences: list[Tensor]
    log_probs: Tensor
    scores: Tensor


@torch.no_grad()
def beam_search(
    model: Model,
    idx: Tensor,
    max_new_tokens: int,
    num_beams: int,
    length_penalty: float = 1.0,
    eos_id: int | None = None,
    max_context: int | None = None,
) -> BeamSearchResult:
    """Beam search for one prompt: keep the ``num_beams`` most likely prefixes at every step.

    At each step every live beam is extended by every token; the
    ``num_beams`` candidates with the highest total log-probability survive
    (ties: the earlier beam, then the lower token id; impossible candidates,
    log-probability ``-inf``, are dropped). A survivor ending in ``eos_id`` is
    finished and leaves the beam. After ``max_new_tokens`` steps (or when no
    beam is left) all finished and live hypotheses are ranked by
    ``score = log_prob / n_generated ** length_penalty`` (``length_penalty = 0``:
    the plain sum; larger values favour longer hypotheses), and the best
    ``num_beams`` are returned. With ``num_beams >= V ** (max_new_tokens - 1)``
    nothing is ever pruned, so the result is the exhaustive search's.

    Args:
        model: ids ``(B, T)`` long -> logits ``(B, T, V)`` or ``(B, V)``.
        idx: ``(1, T)`` long prompt ids (batch size 1), ``T >= 1``.
        max_new_tokens: number of tokens to add (``>= 0``).
        num_beams: ``>= 1``; 1 is greedy decoding.
        length_penalty: exponent of the length normalisation (only matters when ``eos_id`` ends hypotheses early).
        eos_id: token id that ends a hypothesis, or ``None``.
        max_context: crop the context to its last ``max_context`` tokens.

    Returns:
        a :class:`BeamSearchResult` with at most ``num_beams`` hypotheses, best first.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_loop_args(idx, max_new_tokens, max_context)
    if idx.shape[0] != 1:
        raise ValueError(f"beam_search decodes one prompt at a time: idx must have shape (1, T), "
                         f"got {tuple(idx.shape)}")
    _check_count(num_beams, "num_beams", 1)
    if not isinstance(length_penalty, (int, float)) or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if eos_id is not None:
        _check_count(eos_id, "eos_id", 0)
    _check_model_mode(model)

    beams, beam_logp = idx, torch.zeros(1, device=idx.device)  # (n, T + t) live prefixes and their log-probs
    finished: list[tuple[Tensor, float, int]] = []  # (sequence, log_prob, n_generated)
    for step in range(1, max_new_tokens + 1):
        logp = torch.log_softmax(_next_logits(model, beams, max_context).float(), dim=-1)  # (n, V)
        V = logp.shape[1]
        if eos_id is not None and eos_id >= V:
            raise ValueError(f"eos_id={eos_id} is not a token id of this model (vocabulary size {V})")
        candidates = (beam_logp[:, None] + logp).flatten()  # (n * V,), ordered by (beam, token)
        best = torch.sort(candidates, descending=True, stable=True).indices[:num_beams]
        best = best[torch.isfinite(candidates[best])]
        if best.numel() == 0:
            raise ValueError(f"at step {step} every continuation has probability 0 (all logits -inf)")
        beams = torch.cat([beams[best // V], (best % V)[:, None]], dim=1)
        beam_logp = candidates[best]
        if eos_id is not None:
            done = beams[:, -1] == eos_id
            finished += [(seq, float(lp), step) for seq, lp in zip(beams[done], beam_logp[done])]
            beams, beam_logp = beams[~done], beam_logp[~done]
            if beams.shape[0] == 0:
                break
    finished += [(seq, float(lp), max_new_tokens) for seq, lp in zip(beams, beam_logp)]

    def score(lp: float, n: int) -> float:
        return lp / n**length_penalty if n > 0 else lp

    ranked = sorted(finished, key=lambda h: -score(h[1], h[2]))[:num_beams]  # sorted() is stable
    return BeamSearchResult(
        sequences=[seq for seq, _, _ in ranked],
        log_probs=torch.tensor([lp for _, lp, _ in ranked]),
        scores=torch.tensor([score(lp, n) for _, lp, n in ranked]),
    )


# ----------------------------------------------------------------------------- batched generation


@dataclass
class Generation:
    """What :func:`generate_batch` returns: B prompts (left-padded) and their responses.

    * ``tokens``: (B, P + N) long, the left-padded prompts followed by the responses
      (P = the longest prompt, N = the steps taken, ``<= max_new_tokens``);
    * ``prompt_mask``: (B, P) bool, True on real prompt tokens (False on the padding in front);
    * ``response``: (B, N) long, the sampled tokens; ``pad_id`` after a row's end token;
    * ``logprobs``: (B, N) float32, ``log p(response[:, t] | tokens before it)`` under the model itself
      (temperature 1, no filtering; see :func:`generate_batch`), 0 where ``response_mask`` is False;
    * ``response_mask``: (B, N) bool, True up to and including the first ``eos_id``, False after.

    ``attention_mask`` = ``cat([prompt_mask, response_mask], 1)``, (B, P + N): with it,
    ``lmlib.lm.losses.token_logprobs(model, tokens, attention_mask)[0][:, P:]`` recomputes ``logprobs``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb); used by the RLHF chapters.
    """

    tokens: Tensor
    prompt_mask: Tensor
    response: Tensor
    logprobs: Tensor
    response_mask: Tensor

    @property
    def attention_mask(self) -> Tensor:
        """(B, P + N) bool: real prompt tokens and response tokens up to the end token."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def _model_config(model: Model, name: str) -> int | None:
    value = getattr(getattr(model, "config", None), name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_special_ids(model: Model, pad_id: int, eos_id: int | None) -> int | None:
    """Check pad_id and eos_id against the model's vocabulary (if it has a config); return vocab_size or None."""
    vocab_size = _model_config(model, "vocab_size")
    for name, value in (("pad_id", pad_id), ("eos_id", eos_id)):
        if value is not None:
            _check_count(value, name, 0)
            if vocab_size is not None and value >= vocab_size:
                raise ValueError(f"{name}={value} is not a token id of this model (vocab_size={vocab_size})")
    return vocab_size


def _left_pad(prompts: Sequence[Sequence[int] | Tensor], pad_id: int, vocab_size: int | None,
              device: torch.device) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths -> ``(ids (B, P), mask (B, P))``, padded on the left with ``pad_id``."""
    if isinstance(prompts, Tensor) or not isinstance(prompts, Sequence) or isinstance(prompts, str):
        raise TypeError(f"prompts must be a list of prompts (lists of ints or 1-D tensors), got "
                        f"{type(prompts).__name__}; for a (B, T) tensor use list(ids)")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: give at least one prompt")
    rows = []
    for i, p in enumerate(prompts):
        if isinstance(p, Tensor):
            if p.ndim != 1 or p.dtype.is_floating_point or p.dtype.is_complex or p.dtype == torch.bool:
                raise ValueError(f"prompts[{i}] must be a 1-D integer tensor, got shape {tuple(p.shape)}, "
                                 f"dtype {p.dtype}")
            p = p.tolist()
        if isinstance(p, str) or not isinstance(p, Sequence) or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in p):
            raise TypeError(f"prompts[{i}] must be a list of int token ids (encode text first), got {p!r:.60}")
        if len(p) == 0:
            raise ValueError(f"prompts[{i}] is empty: every prompt needs at least one token (e.g. a BOS token)")
        bad = [t for t in p if t < 0 or (vocab_size is not None and t >= vocab_size)]
        if bad:
            raise ValueError(f"prompts[{i}] holds the token id {bad[0]}, outside [0, vocab_size={vocab_size})")
        rows.append(list(p))
    P = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (P - len(r)) + r for r in rows], dtype=torch.long, device=device)  # (B, P)
    mask = torch.tensor([[False] * (P - len(r)) + [True] * len(r) for r in rows], device=device)  # (B, P)
    return ids, mask


def _cropped_next_logits(model: Model, tokens: Tensor, mask: Tensor, max_context: int | None) -> Tensor:
    """Next-token logits (B, V) float of ``tokens`` (B, L), ``mask`` (B, L), cropped to the last max_context columns."""
    if max_context is not None and tokens.shape[1] > max_context:  # the model sees its last max_context tokens
        tokens, mask = tokens[:, -max_context:], mask[:, -max_context:]
    attention_mask = None if bool(mask.all()) else mask
    return _next_logits(model, tokens, None, attention_mask).float()  # (B, V)


def _new_kv_cache(model: Model) -> Any:
    """An empty :class:`lmlib.lm.attention.KVCache` for a :class:`lmlib.lm.gpt.GPT` in eval mode, else None.

    (In training mode dropout makes every forward pass different: the loop recomputes, and warns.)
    """
    from .attention import KVCache  # noqa: PLC0415
    from .gpt import GPT  # noqa: PLC0415 (gpt imports this module)

    return KVCache(model.config.n_layer) if isinstance(model, GPT) and not model.training else None


@torch.no_grad()
def generate_batch(
    model: Model,
    prompts: Sequence[Sequence[int] | Tensor],
    max_new_tokens: int,
    *,
    eos_id: int | None = None,
    pad_id: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    max_context: int | None = None,
    use_cache: bool = True,
) -> Generation:
    """Continue a batch of prompts of different lengths; each row stops at its own end token.

    The prompts are padded on the *left* with ``pad_id`` so that every row's next token is in the
    last column; the model is called as ``model(ids, attention_mask=mask)`` whenever a row has
    padding (:class:`lmlib.lm.gpt.GPT` then hides the padding and numbers each row's positions from
    its first real token, so a padded prompt is continued exactly as the prompt alone). A row that
    has produced ``eos_id`` gets ``pad_id`` from then on (``response_mask`` False, logprob 0); the loop
    stops early once every row has ended. The context is cropped from the left to its last
    ``max_context`` columns (default: the model's ``config.block_size``, if it has one), as
    :meth:`lmlib.lm.gpt.GPT.generate` does, so prompts longer than the block size are allowed.

    **The KV cache.** Recomputing the whole context at every step costs a forward pass of (B, P + t)
    tokens at step t. With ``use_cache`` and a :class:`lmlib.lm.gpt.GPT`, the first step runs the
    prompts once and stores every layer's keys and values in a :class:`lmlib.lm.attention.KVCache`;
    each later step feeds only the (B, 1) newest tokens. Cropping the context to ``max_context``
    columns changes nothing while it removes only left padding (padding is hidden and positions count
    real tokens), so a row reads its logits from the cache until its real tokens outgrow
    ``max_context``; from that step on, that row's cropped window is recomputed in full at every step,
    as without a cache (learned absolute positions cannot slide along with the window), while the
    other rows keep using the cache. The results are the same either way, up to float rounding of the
    logits (~1e-6: a sampled token could differ only if a draw falls within that distance of a
    boundary; 100 answers of the book's fine-tuned GPT came out identical, with log-probabilities within
    2e-5, as close as the plain loop is to a one-pass recompute). ``use_cache=False`` gives the plain loop.

    **Which distribution the log-probabilities come from.** ``logprobs`` are taken from the model
    itself, ``log softmax(logits)`` at temperature 1 with no top-k/top-p filtering, whatever was used
    to *draw* the tokens. These are the policy's log-probabilities that RLHF needs (TRL's
    ``logprobs``): PPO's ratio and the KL penalty ``logprobs - ref_logprobs`` compare the policy with
    itself and with the reference model, and :func:`lmlib.lm.losses.token_logprobs` recomputes them
    from ``tokens`` (equal to about 1e-6 while ``P + N <= max_context``). With ``temperature != 1``,
    ``top_k`` or ``top_p`` the tokens are drawn from a *different* distribution than the one scored,
    so the sample mean of ``logprobs - ref_logprobs`` is no longer an estimate of KL(policy || ref)
    and can come out negative; for on-policy RLHF sample with the defaults (temperature 1, no filters).

    Args:
        model: ``model(ids (B, T), attention_mask=(B, T) bool) -> logits (B, T, V)`` or a tuple
            starting with them (a :class:`lmlib.lm.gpt.GPT`); equal-length prompts need no mask.
            Put it in eval mode first.
        prompts: B prompts, each a non-empty list of int ids or a 1-D integer tensor.
        max_new_tokens: at most this many tokens per row, ``>= 1``.
        eos_id: the end token (None: every row runs ``max_new_tokens`` steps).
        pad_id: the id put in front of short prompts and after an end token (a real id, ``[0, V)``).
        temperature, top_k, top_p: as in :func:`sample` (temperature 0 is greedy).
        greedy: take the most likely token (ties: the lowest id); ignores the three above.
        generator: a seeded ``torch.Generator`` on the model's device, for reproducible samples.
        max_context: crop the context to its last ``max_context`` tokens (default ``model.config.block_size``).
        use_cache: keep a KV cache when the model is a :class:`lmlib.lm.gpt.GPT` (other models are always
            called on the whole context); False recomputes the whole context at every step.

    Returns:
        a :class:`Generation` (tokens, prompt_mask, response, logprobs, response_mask).

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb); used by the RLHF chapters.
    """
    _check_count(max_new_tokens, "max_new_tokens", 1)
    _check_sampling_args(temperature, top_k, top_p, 1.0)
    if not isinstance(greedy, bool):
        raise TypeError(f"greedy must be True or False, got {greedy!r}")
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    vocab_size = _check_special_ids(model, pad_id, eos_id)
    max_context = _model_config(model, "block_size") if max_context is None else max_context
    if max_context is not None:
        _check_count(max_context, "max_context", 1)
    _check_model_mode(model)
    params = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    device = params.device if params is not None else torch.device("cpu")
    tokens, mask = _left_pad(prompts, pad_id, vocab_size, device)  # (B, P) each
    prompt_mask, B = mask, tokens.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=device)  # rows that have produced eos_id
    response, logprobs, response_mask = [], [], []
    kv_cache = _new_kv_cache(model) if use_cache else None
    n_cached = 0  # columns of `tokens` whose keys and values are in kv_cache
    for _ in range(max_new_tokens):
        if kv_cache is not None:
            # cropping to max_context removes only padding from a row whose real tokens fit in it, and padding
            # changes nothing: such a row reads its logits from the cache. A running row whose real tokens
            # outgrow max_context ("over") really sees a cropped window: recompute it (learned positions cannot
            # slide); in the cache it becomes padding (as does an ended row: nobody reads their logits).
            over = ~done & (mask.sum(dim=1) > max_context) if max_context is not None else torch.zeros_like(done)
            if bool((over | done).all()):
                kv_cache = None  # no row reads the cache any more
        if kv_cache is not None:
            if n_cached == 0:  # the prompts: an "over" row keeps only its last token real, to stay valid
                new_mask = mask.clone()  # (B, P)
                new_mask[over] = False
                new_mask[over, -1] = True
            else:  # the token sampled last
                new_mask = (~done & ~over)[:, None]  # (B, 1)
            out = model(tokens[:, n_cached:], attention_mask=new_mask, kv_cache=kv_cache)[0]  # (B, T, V)
            logits = out[:, -1, :].float()  # (B, V)
            n_cached = tokens.shape[1]
            if bool(over.any()):
                logits[over] = _cropped_next_logits(model, tokens[over], mask[over], max_context)
        else:  # no cache: recompute the (cropped) context
            logits = _cropped_next_logits(model, tokens, mask, max_context)  # (B, V)
        logp = torch.log_softmax(logits, dim=-1)  # (B, V): the policy itself, temperature 1, unfiltered
        if greedy:
            next_id = logits.argmax(dim=-1)  # (B,)
        else:
            probs = next_token_distribution(logits, None, temperature, top_k, top_p)  # what we draw from
            next_id = torch.multinomial(probs, num_samples=1, generator=generator)[:, 0].to(device)  # (B,)
        alive = ~done
        next_id = torch.where(alive, next_id, torch.full_like(next_id, pad_id))
        response.append(next_id)
        logprobs.append(logp.gather(-1, next_id[:, None])[:, 0].masked_fill(~alive, 0.0))
        response_mask.append(alive)
        tokens = torch.cat([tokens, next_id[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(alive)[:, None]], dim=1)  # ended rows: finite, ignored
        if eos_id is not None:
            done = done | (alive & (next_id == eos_id))
            if bool(done.all()):
                break
    return Generation(tokens=tokens, prompt_mask=prompt_mask, response=torch.stack(response, dim=1),
                      logprobs=torch.stack(logprobs, dim=1), response_mask=torch.stack(response_mask, dim=1))


# ----------------------------------------------------------------------------- metrics


def distinct_n(sequences: Sequence[Sequence[Any]] | Tensor, n: int) -> float:
    """Distinct-n: the number of distinct n-grams divided by the number of n-grams (Li et al. 2016).

    N-grams are counted inside each sequence (never across two) and pooled
    over all sequences. 1.0 means no n-gram repeats; a value near 0 means the
    samples keep saying the same thing.

    Example: ``[[1, 2, 1, 2], [1, 2, 3]]`` has 7 unigrams, 3 distinct
    (distinct-1 = 3/7), and 5 bigrams, 3 distinct ((1,2), (2,1), (2,3)):
    distinct-2 = 3/5.

    Args:
        sequences: a list of sequences of hashable tokens (ids, strings), or a ``(B, T)`` tensor.
        n: the n-gram order, ``>= 1``.

    Returns:
        a float in ``(0, 1]``.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_count(n, "n", 1)
    if isinstance(sequences, str):
        raise TypeError("sequences must be a list of sequences; for one text, pass [text] (or its tokens)")
    if isinstance(sequences, Tensor):
        if sequences.dim() != 2:
            raise ValueError(f"a tensor of sequences must have shape (B, T), got {tuple(sequences.shape)}")
        sequences = sequences.tolist()
    total, seen = 0, set()
    for seq in sequences:
        seq = seq.tolist() if isinstance(seq, Tensor) else list(seq)
        grams = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
        total += len(grams)
        seen.update(grams)
    if total == 0:
        raise ValueError(f"no {n}-grams: every sequence is shorter than n={n} (or there are no sequences)")
    return len(seen) / total


@torch.no_grad()
def sequence_log_likelihood(
    model: Model,
    sequences: Tensor,
    prompt_len: int,
    max_context: int | None = None,
) -> Tensor:
    """Mean log-probability per generated token of each sequence, under ``model``.

    For ``sequences[b] = prompt + generated`` it returns
    ``mean_{t >= prompt_len} log p(x_t | x_<t)`` (natural log), the quality
    axis of the diversity/quality trade-off (its negation is the per-token
    cross-entropy; ``exp(-value)`` the perplexity). One forward pass when the
    whole sequence fits in ``max_context`` and the model returns logits for every
    position; otherwise one pass per generated token, each context cropped
    to its last ``max_context`` tokens, exactly as the decoding loops see it.

    Args:
        model: ids ``(B, T)`` long -> logits ``(B, T, V)`` or ``(B, V)``.
        sequences: ``(B, T)`` long ids, prompts followed by generated tokens.
        prompt_len: length of the prompt, ``1 <= prompt_len < T``.
        max_context: crop contexts to their last ``max_context`` tokens.

    Returns:
        ``(B,)`` float tensor (values ``<= 0``).

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    _check_ids(sequences, "sequences")
    _check_count(prompt_len, "prompt_len", 1)
    T = sequences.shape[1]
    if prompt_len >= T:
        raise ValueError(f"prompt_len must be < the sequence length T={T} (at least one generated token), "
                         f"got {prompt_len}")
    if max_context is not None:
        _check_count(max_context, "max_context", 1)
    _check_model_mode(model)
    targets = sequences[:, prompt_len:]  # (B, L) the generated tokens
    # the per-token values are lmlib.lm.losses.token_logprobs(model, sequences)[0][:, prompt_len:]; a next-token
    # function (B, V) or a cropped context needs the step-by-step path, so both share logprobs_from_logits
    logits = None
    if max_context is None or T - 1 <= max_context:
        out = _model_logits(model, sequences[:, :-1])
        if out.dim() == 3 and out.shape[1] == T - 1:
            logits = out[:, prompt_len - 1:, :]  # (B, L, V): position t predicts token t + 1
    if logits is None:  # a next-token function, or contexts longer than max_context: one step at a time
        logits = torch.stack([_next_logits(model, sequences[:, :t], max_context) for t in range(prompt_len, T)], dim=1)
    return logprobs_from_logits(logits, targets).mean(dim=1)  # (B, L) -> (B,)

"""Reward models on the chat GPT: prompt + answer in, one score out (InstructGPT's reward model).

* :func:`encode_answers` turns (prompt, answer) pairs into token ids in the chat format, ending with
  ``<|end|>`` when the answer ended, cropped from the left to the context (the score is read at the
  last token, so the end is what must survive);
* :func:`right_pad` makes a ``(B, L)`` batch and its mask from those rows;
* :class:`FrozenPrefixTrunk` wraps a GPT so that only its last ``trainable_layers`` blocks (and the final
  LayerNorm) learn: the blocks below run without gradients, as InstructGPT starts its reward model
  from the SFT model and the cheapest way to adapt it on a CPU is to tune its top;
* :func:`gpt_reward_model` puts :class:`lmlib.preferences.SequenceRewardModel`'s scalar head on such a trunk;
* :func:`score_answers` scores many (prompt, answer) pairs in batches, without gradients;
* :func:`label_stream` asks a synthetic rater for pairs or rankings of candidate answers, prompt after prompt;
* :func:`fit_reward_model` trains a reward model on them with the K-wise ranking loss
  (:func:`lmlib.preferences.ranking_loss`, one batch element per pair or ranking);
* :func:`gold_pairs` and :func:`agreement_report` measure it against the gold judge: held-out pairwise
  agreement, and its length bias;
* :func:`save_reward_model` / :func:`load_reward_model` store one in a single checked safetensors file;
* :func:`best_of_n_kl` and :func:`best_of_n_curve`: best-of-n sampling, the first use of a reward model,
  its exact KL to the sampling policy and unbiased estimates of its proxy and gold scores for every n.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapters 11 and 13.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, fields
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, load_checkpoint, load_into, save_checkpoint
from ..lm.gpt import GPT, GPTConfig
from ..preferences import SequenceRewardModel, ranking_loss
from ..text.tokenizer import CharTokenizer
from .chat import Example, Turn
from .rater import RankingRater
from .template import END, format_prompt, require_chat_tokens

__all__ = ["encode_answers", "right_pad", "FrozenPrefixTrunk", "gpt_reward_model", "score_answers",
           "label_stream", "fit_reward_model", "gold_pairs", "agreement_report", "save_reward_model", "load_reward_model", "best_of_n_kl", "best_of_n_curve"]

KIND = "lmlib.reward_gpt"  # the checkpoint kind written by save_reward_model


def encode_answers(
    tokenizer: CharTokenizer,
    conversations: Sequence[Example | Sequence[Turn] | str],
    answers: Sequence[str],
    block_size: int,
    ended: Sequence[bool] | None = None,
) -> list[list[int]]:
    """Token ids of ``format_prompt(conversation) + answer (+ <|end|>)`` for each pair, at most ``block_size``.

    ``ended[i]`` (default: all True) says whether answer i stopped with ``<|end|>`` (an answer cut at the
    length limit did not, and the reward model should see that). Rows longer than ``block_size`` keep
    their last ``block_size`` tokens.

    Example: prompt ``"Hi"`` and answer ``"Yo"`` give the ids of ``"<|user|>Hi<|assistant|>Yo<|end|>"``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    require_chat_tokens(tokenizer)
    if len(conversations) != len(answers):
        raise ValueError(f"got {len(conversations)} conversations but {len(answers)} answers: one answer each")
    ended = [True] * len(answers) if ended is None else list(ended)
    if len(ended) != len(answers):
        raise ValueError(f"ended has {len(ended)} entries for {len(answers)} answers")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    end_id = tokenizer.stoi[END]
    rows = []
    for conv, ans, done in zip(conversations, answers, ended):
        ids = tokenizer.encode(format_prompt(conv)) + tokenizer.encode(ans) + ([end_id] if done else [])
        rows.append(ids[-block_size:])
    return rows


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """``rows`` of token ids -> ``ids (B, L)`` right-padded with ``pad_id`` and ``mask (B, L)``, True on real tokens.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("right_pad needs a non-empty list of non-empty rows")
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


class FrozenPrefixTrunk(nn.Module):
    """A GPT whose last ``trainable_layers`` blocks and final LayerNorm learn; everything below is frozen.

    ``hidden_states(ids (B, L)) -> (B, L, C)`` is :meth:`GPT.hidden_states` (right padding needs no mask: a
    causal model's real tokens never see the padding after them). Freezing is ``requires_grad=False`` only:
    autograd records nothing until the first trainable block, so the frozen part costs a forward pass and
    stores no activations. ``trainable_layers = n_layer`` trains the whole GPT.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """

    def __init__(self, gpt: GPT, trainable_layers: int) -> None:
        super().__init__()
        n = gpt.config.n_layer
        if not isinstance(trainable_layers, int) or not 0 <= trainable_layers <= n:
            raise ValueError(f"trainable_layers must be an int in [0, {n}], got {trainable_layers!r}")
        self.gpt, self.trainable_layers = gpt, trainable_layers
        self.n_frozen = n - trainable_layers
        train_all = trainable_layers == n  # everything learns, embeddings (tied to lm_head) included
        for p in gpt.parameters():
            p.requires_grad_(train_all)
        for module in [*gpt.transformer.h[self.n_frozen:], gpt.transformer.ln_f]:
            for p in module.parameters():
                p.requires_grad_(True)

    def hidden_states(self, ids: Tensor) -> Tensor:
        return self.gpt.hidden_states(ids)  # (B, L, C)


def gpt_reward_model(gpt: GPT, trainable_layers: int = 1, copy_model: bool = True) -> SequenceRewardModel:
    """InstructGPT's reward model on the chat GPT: :class:`SequenceRewardModel` (a scalar head on the last real
    token) over a :class:`FrozenPrefixTrunk` of ``gpt`` (a deep copy unless ``copy_model=False``). The head
    starts at zero, so every answer starts with reward 0.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    gpt = copy.deepcopy(gpt) if copy_model else gpt
    model = SequenceRewardModel(FrozenPrefixTrunk(gpt, trainable_layers), gpt.config.n_embd)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


@torch.no_grad()
def score_answers(model: SequenceRewardModel, rows: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 64) -> Tensor:
    """Reward-model scores ``(N,)`` of N encoded answers (:func:`encode_answers`), in eval mode, mode restored.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(rows), batch_size):
            ids, mask = right_pad(rows[i:i + batch_size], pad_id)
            out.append(model(ids, mask))
        return torch.cat(out)
    finally:
        model.train(was_training)


Label = tuple  # (prompt index, answer indices (k,), ranks (k,)): one pair (k = 2) or one ranking


def label_stream(gold: Any, k: int, n_labels: int, rater: RankingRater, seed: int = 0) -> list[Label]:
    """``n_labels`` labels from ``rater`` on candidate answers with gold scores ``gold (P, K)``.

    Each label is ``(p, idx, ranks)``: prompt ``p``, the indices ``idx (k,)`` of the answers shown (all K for
    ``k = K``, a random pair for ``k = 2``, any ``2 <= k <= K`` in general, in increasing order) and the rater's
    ``ranks (k,)`` of them (higher = better; see :meth:`RankingRater.rank`). Prompts come in shuffled cycles,
    so every prompt is labelled once before any is labelled again (a fresh, independent noisy label of the
    same answers). A stream's first m labels are the labels of a budget of m: budgets are nested.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    gold = np.asarray(gold, dtype=np.float64)
    if gold.ndim != 2 or gold.shape[1] < 2 or not np.isfinite(gold).all():
        raise ValueError(f"gold must be finite scores (P, K) of K >= 2 answers per prompt, got shape {gold.shape}")
    P, K = gold.shape
    if not isinstance(k, (int, np.integer)) or not 2 <= k <= K:
        raise ValueError(f"k (answers per label) must be an int in [2, K = {K}], got {k!r}")
    if not isinstance(n_labels, (int, np.integer)) or n_labels < 1:
        raise ValueError(f"n_labels must be a positive int, got {n_labels!r}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(P) for _ in range(n_labels // P + 1)])[:n_labels]
    out = []
    for p in order:
        idx = np.arange(K) if k == K else np.sort(rng.choice(K, size=k, replace=False))
        out.append((int(p), idx, rater.rank(gold[p, idx][None])[0]))
    return out


def fit_reward_model(
    model: SequenceRewardModel,
    rows: Sequence[Sequence[Sequence[int]]],
    labels: Sequence[Label],
    pad_id: int,
    *,
    epochs: int = 4,
    min_steps: int = 30,
    seqs_per_step: int = 32,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``model`` on ``labels`` (:func:`label_stream`) with :func:`lmlib.preferences.ranking_loss`.

    ``rows[p][j]`` are the token ids (:func:`encode_answers`) of answer ``j`` to prompt ``p``. Every label (a
    pair or a whole ranking of k answers) is one batch element, as InstructGPT keeps the C(K, 2) pairs of one
    ranking together; each update scores ``seqs_per_step`` answers (``seqs_per_step // k`` labels), so pairs
    and rankings cost the same per step. ``epochs`` passes over the labels, at least ``min_steps`` updates.
    AdamW on the trainable trunk parameters at ``lr`` and on the head at ``max(lr, head_lr)``; gradients
    clipped to norm 1. Returns ``{"steps", "labels", "seconds", "history": {"loss", "accuracy"}}``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    if not labels:
        raise ValueError("no labels to train on")
    k = len(labels[0][1])
    if any(len(idx) != k or len(rk) != k for _, idx, rk in labels):
        raise ValueError(f"every label must show the same number of answers (the first shows {k})")
    if seqs_per_step < k:
        raise ValueError(f"seqs_per_step ({seqs_per_step}) must fit at least one label of {k} answers")
    for p, idx, _ in labels:
        if not 0 <= p < len(rows) or any(not 0 <= j < len(rows[p]) for j in idx):
            raise ValueError(f"label ({p}, {list(idx)}) points outside rows ({len(rows)} prompts)")
    g = torch.Generator().manual_seed(seed)
    per_step = seqs_per_step // k
    steps = max(min_steps, epochs * math.ceil(len(labels) / per_step))
    head = list(model.head.parameters())
    rest = [q for q in model.trunk.parameters() if q.requires_grad]
    opt = torch.optim.AdamW([{"params": rest, "lr": lr}, {"params": head, "lr": max(lr, head_lr)}],
                            weight_decay=0.0)
    model.train()
    hist: dict[str, list[float]] = {"loss": [], "accuracy": []}
    t0 = time.perf_counter()
    perm, pos = torch.randperm(len(labels), generator=g), 0
    for _ in range(steps):
        if pos + per_step > len(perm):
            perm, pos = torch.randperm(len(labels), generator=g), 0
        batch = [labels[i] for i in perm[pos:pos + per_step].tolist()]
        pos += per_step
        ids, mask = right_pad([rows[p][j] for p, idx, _ in batch for j in idx], pad_id)  # (b*k, L)
        scores = model(ids, mask).view(len(batch), k)  # (b, k)
        ranks = torch.tensor(np.stack([rk for _, _, rk in batch]), dtype=torch.float32)  # (b, k)
        loss, diag = ranking_loss(scores, ranks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*rest, *head], 1.0)
        opt.step()
        hist["loss"].append(round(float(loss.detach()), 4))
        hist["accuracy"].append(round(diag["accuracy"], 4))
    return {"steps": steps, "labels": len(labels), "seconds": round(time.perf_counter() - t0, 1), "history": hist}


def gold_pairs(gold: Any, min_gap: float = 0.05) -> np.ndarray:
    """Rows ``(prompt, better, worse)`` of every pair of answers to the same prompt whose gold scores differ by
    more than ``min_gap``: the pairs on which agreement with the gold judge is measured. ``gold``: ``(P, K)``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    gold = np.asarray(gold, dtype=np.float64)
    if gold.ndim != 2 or not np.isfinite(gold).all():
        raise ValueError(f"gold must be finite scores (P, K), got shape {gold.shape}")
    if not min_gap >= 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    p, b, w = np.nonzero(gold[:, :, None] - gold[:, None, :] > min_gap)
    return np.stack([p, b, w], 1).astype(np.int64).reshape(-1, 3)


def agreement_report(reward: Any, gold: Any, length: Any, pairs: Any) -> dict[str, Any]:
    """How a reward model's scores ``reward (P, K)`` agree with gold on ``pairs`` (:func:`gold_pairs`), and its
    length bias.

    Returns ``agreement`` (the fraction of pairs whose better answer gets the strictly higher reward),
    ``agreement_longer_worse`` / ``agreement_longer_better`` (the same on the pairs where the longer answer
    is the worse / the better one; a length-biased model does badly on the first), and
    ``length_partial_corr``: the correlation of reward with answer ``length (P, K)`` at fixed gold score (both
    centred within each prompt, then the part linear in gold removed). 0 means no length bias beyond what
    gold explains; > 0 favours longer answers, < 0 shorter ones. ``reward_gold_corr``: within-prompt correlation.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    reward, gold = np.asarray(reward, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    length, pairs = np.asarray(length, dtype=np.float64), np.asarray(pairs, dtype=np.int64).reshape(-1, 3)
    if not reward.shape == gold.shape == length.shape or reward.ndim != 2:
        raise ValueError(f"reward, gold and length must all be (P, K), got {reward.shape}, {gold.shape}, "
                         f"{length.shape}")
    if not np.isfinite(reward).all():
        raise ValueError("reward has non-finite values")
    if not len(pairs):
        raise ValueError("no pairs to measure agreement on")
    p, b, w = pairs.T
    right = reward[p, b] > reward[p, w]
    longer_worse = length[p, w] > length[p, b]
    longer_better = length[p, b] > length[p, w]

    def resid(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # y minus its least-squares fit on [1, x]
        X = np.stack([np.ones_like(x), x], 1)
        return y - X @ np.linalg.lstsq(X, y, rcond=None)[0]

    def centred(a: np.ndarray) -> np.ndarray:  # centred within each prompt
        return (a - a.mean(1, keepdims=True)).ravel()

    g, L, R = centred(gold), centred(length), centred(reward)
    rr, rl = resid(R, g), resid(L, g)
    partial = float(np.corrcoef(rr, rl)[0, 1]) if rr.std() > 0 and rl.std() > 0 else 0.0
    return {"agreement": round(float(right.mean()), 4), "n_pairs": int(len(pairs)),
            "agreement_longer_worse": round(float(right[longer_worse].mean()), 4) if longer_worse.any() else None,
            "n_longer_worse": int(longer_worse.sum()),
            "agreement_longer_better": round(float(right[longer_better].mean()), 4) if longer_better.any() else None,
            "length_partial_corr": round(partial, 4),
            "reward_gold_corr": round(float(np.corrcoef(R, g)[0, 1]), 4) if R.std() > 0 and g.std() > 0 else 0.0}


def save_reward_model(model: SequenceRewardModel, path: str | os.PathLike, meta: dict | None = None) -> str:
    """Write a :func:`gpt_reward_model` (GPT trunk + scalar head) to one safetensors file, atomically, with a
    ``.sha256`` sidecar; return the SHA-256. ``meta`` (JSON-like) is stored beside the GPT's config.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    if not isinstance(model, SequenceRewardModel) or not isinstance(getattr(model.trunk, "gpt", None), GPT):
        raise TypeError(f"save_reward_model saves a gpt_reward_model(...) (a SequenceRewardModel on a "
                        f"FrozenPrefixTrunk), got {type(model).__name__}")
    gpt = model.trunk.gpt
    return save_checkpoint(path, model.state_dict(), meta={**(meta or {}), "kind": KIND,
                                                           "config": asdict(gpt.config),
                                                           "trainable_layers": model.trunk.trainable_layers})


def load_reward_model(path: str | os.PathLike, *, expected_sha256: str | None = None,
                      map_location: str | torch.device = "cpu") -> tuple[SequenceRewardModel, dict[str, Any]]:
    """Read a reward model written by :func:`save_reward_model` (checksum verified): ``(model in eval mode, meta)``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    ckpt = load_checkpoint(path, expected_sha256=expected_sha256, map_location=map_location)
    meta = ckpt.meta
    if meta.get("kind") != KIND or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path} is not a reward model written by save_reward_model "
                              f"(kind {meta.get('kind')!r}, expected {KIND!r})")
    known = {f.name for f in fields(GPTConfig)}
    gpt = GPT(GPTConfig(**{k: v for k, v in meta["config"].items() if k in known}))
    model = gpt_reward_model(gpt, int(meta.get("trainable_layers", 1)), copy_model=False)
    load_into(model, ckpt.model)
    return model.to(map_location).eval(), meta


def best_of_n_kl(n: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """KL(best-of-n || policy) in nats: ``log n - (n - 1) / n`` (Stiennon et al. 2020, app. G.3).

    Drawing n answers from a policy and keeping the one the reward model likes best is a new policy; when
    the rewards of different answers never tie its KL to the sampling policy is exactly this (0 for n = 1,
    growing only like log n: n = 64 costs 3.17 nats). With ties it is an upper bound.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    n_arr = np.asarray(n)
    if n_arr.dtype.kind not in "iu" or (n_arr < 1).any():
        raise ValueError(f"n must be integers >= 1, got {n!r}")
    n_f = n_arr.astype(np.float64)
    return np.log(n_f) - (n_f - 1.0) / n_f


def best_of_n_curve(proxy: Any, gold: Any, ns: Sequence[int]) -> dict[str, np.ndarray]:
    """Expected proxy and gold scores of best-of-n for each n in ``ns``, from N >= max(ns) samples per prompt.

    ``proxy``, ``gold``: ``(P, N)`` arrays, the reward model's and the gold judge's scores of N answers
    sampled independently for each of P prompts. Rather than one random subset of n answers per prompt, the
    estimate averages over *all* C(N, n) subsets at once (Nakano et al. 2021; Gao et al. 2023): sorted by
    proxy score, the i-th of N answers (1-based, ascending) is the best of a random n-subset with probability
    C(i-1, n-1) / C(N, n). Ties in ``proxy`` are broken by position (use continuous scores).

    Returns ``{"n", "kl", "proxy", "gold", "gold_sem"}``: arrays over ``ns``; ``proxy`` and ``gold`` are means
    over prompts, ``gold_sem`` the standard error of that mean across prompts.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if proxy.ndim != 2 or proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold must be (P, N) arrays of the same shape, got {proxy.shape} and {gold.shape}")
    if not (np.isfinite(proxy).all() and np.isfinite(gold).all()):
        raise ValueError("proxy and gold scores must be finite")
    P, N = proxy.shape
    ns = np.asarray(list(ns))
    if ns.size == 0 or ns.dtype.kind not in "iu" or (ns < 1).any() or (ns > N).any():
        raise ValueError(f"every n must be an integer in [1, N = {N}], got {ns.tolist()}")
    order = np.argsort(proxy, axis=1, kind="stable")
    p_sorted = np.take_along_axis(proxy, order, 1)  # (P, N), ascending proxy
    g_sorted = np.take_along_axis(gold, order, 1)
    i = np.arange(1, N + 1)
    out = {"n": ns, "kl": best_of_n_kl(ns), "proxy": [], "gold": [], "gold_sem": []}
    for n in ns:
        logw = np.full(N, -np.inf)
        ok = i >= n  # C(i-1, n-1) = 0 below
        logw[ok] = [math.lgamma(k) - math.lgamma(n) - math.lgamma(k - n + 1) for k in i[ok]]
        logw -= math.lgamma(N + 1) - math.lgamma(n + 1) - math.lgamma(N - n + 1)
        w = np.exp(logw)  # (N,), sums to 1
        per_prompt = g_sorted @ w  # (P,)
        out["proxy"].append(float((p_sorted @ w).mean()))
        out["gold"].append(float(per_prompt.mean()))
        out["gold_sem"].append(float(per_prompt.std(ddof=1) / np.sqrt(P)) if P > 1 else float("nan"))
    return {k: np.asarray(v) for k, v in out.items()}

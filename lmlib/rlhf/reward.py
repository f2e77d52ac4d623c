"""Reward models on the chat GPT: prompt + answer in, one score out (InstructGPT's reward model).

* :func:`encode_answers` turns (prompt, answer) pairs into token ids in the chat format, ending with
  ``<|end|>`` when the answer ended, cropped from the left to the context (the score is read at the
  last token, so the end is what must survive);
* :func:`right_pad` makes a ``(B, L)`` batch and its mask from those rows;
* :class:`FrozenPrefixTrunk` wraps a GPT so that only its last ``trainable_layers`` blocks (and the final
  LayerNorm) learn: the blocks below run without gradients, as InstructGPT starts its reward model
  from the SFT model and the cheapest way to adapt it on a CPU is to tune its top;
* :func:`gpt_reward_model` puts :class:`lmlib.preferences.SequenceRewardModel`'s scalar head on such a trunk;
* :func:`score_answers` scores many (prompt, answer) pairs in batches, without gradients.

Taught in: Chapter 14, "Reward models from rankings" (to come); built on Chapters 11 and 13.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import Tensor, nn

from ..lm.gpt import GPT
from ..preferences import SequenceRewardModel
from ..text.tokenizer import CharTokenizer
from .chat import Example, Turn
from .template import END, format_prompt, require_chat_tokens

__all__ = ["encode_answers", "right_pad", "FrozenPrefixTrunk", "gpt_reward_model", "score_answers"]


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

    Taught in: Chapter 14, "Reward models from rankings" (to come).
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

    Taught in: Chapter 14, "Reward models from rankings" (to come).
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

    Taught in: Chapter 14, "Reward models from rankings" (to come).
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

    Taught in: Chapter 14, "Reward models from rankings" (to come).
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

    Taught in: Chapter 14, "Reward models from rankings" (to come).
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

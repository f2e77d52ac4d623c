"""Exercises of Chapter 13, "Instruction tuning".

* ``ch13.format_chat(turns)``: a conversation as ``(role, text)`` pairs (user first, ending with a user turn)
  -> the prompt string of the chat template, ending with ``<|assistant|>``
  (:func:`lmlib.rlhf.template.format_prompt`).
* ``ch13.answer_mask(prompt_len, answer_len)``: the lengths of an example's prompt and answer ids -> a bool
  tensor ``(prompt_len + answer_len - 1,)``, True at the target positions that carry loss in SFT (the targets
  that are answer tokens; :func:`lmlib.rlhf.sft.collate`).
* ``ch13.masked_loss(logits, targets)``: logits ``(B, T, V)`` and targets ``(B, T)`` with -1 where there is
  no loss -> the mean cross-entropy over the other targets, a 0-d tensor
  (:func:`lmlib.lm.losses.masked_cross_entropy`).

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..lm.losses import masked_cross_entropy
from ..rlhf.chat import Turn
from ..rlhf.template import ASSISTANT, END, USER, format_prompt
from .core import Case, compare_values, register


# ----------------------------------------------------------------------------- format_chat


def _ref_format(turns: list[tuple[str, str]]) -> str:
    return format_prompt([Turn(role, text) for role, text in turns])


def _compare_format(got: Any, expected: str) -> str | None:
    if not isinstance(got, str):
        return f"expected a str, got {type(got).__name__}"
    if got == expected:
        return None
    if got + ASSISTANT == expected:
        return (f"the prompt must end with {ASSISTANT}: it is what tells the model that its turn begins "
                f"(expected {expected!r})")
    if got.replace(END, "") == expected.replace(END, ""):
        return f"every assistant turn of the conversation ends with {END} (expected {expected!r}, got {got!r})"
    if "".join(got.split()) == "".join(expected.split()):
        return ("the template adds no spaces or newlines (each costs a token of a 128-token context): "
                f"expected {expected!r}, got {got!r}")
    return f"got {got!r}, expected {expected!r}"


def _format_cases(rng: np.random.Generator) -> list[Case]:
    words = ["Who says it?", "Shorter.", "In which play?", "Again, as Juliet.", "Praise my aunt as Lear would.",
             "What did Hamlet eat for breakfast?", "Speak as Puck of the moon."]
    answers = ["Hamlet.", "O worthy aunt, thou art wise and kind!", "I know not; the play does not say.",
               "The moon shines bright.", "In Macbeth."]

    def conversation(n_exchanges: int) -> list[tuple[str, str]]:
        out = []
        for _ in range(n_exchanges):
            out += [("user", str(rng.choice(words))), ("assistant", str(rng.choice(answers)))]
        return out + [("user", str(rng.choice(words)))]

    return [
        Case(([("user", "Who wrote Hamlet?")],), label="one question (expect '<|user|>Who wrote Hamlet?<|assistant|>')"),
        Case(([("user", "A line as Romeo about love."), ("assistant", "Did my heart love till now?"),
               ("user", "Shorter.")],), label="a follow-up: one earlier exchange, then the new question"),
        Case((conversation(2),), label="two earlier exchanges"),
        Case((conversation(3),), label="three earlier exchanges"),
        Case(([("user", "  Hi  ")],), label="text is used as it is, spaces included (no stripping)"),
    ]


# ----------------------------------------------------------------------------- answer_mask


def _ref_mask(prompt_len: int, answer_len: int) -> torch.Tensor:
    L = prompt_len + answer_len
    t = torch.arange(L - 1)  # target positions: y[t] = ids[t + 1]
    return t >= prompt_len - 1  # the first answer token ids[prompt_len] is the target at t = prompt_len - 1


def _compare_mask(got: Any, expected: torch.Tensor) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor of bools, got {type(got).__name__}"
    if got.shape != expected.shape:
        return (f"wrong shape: got {tuple(got.shape)}, expected {tuple(expected.shape)}: a sequence of L tokens has "
                "L - 1 targets (x = ids[:-1], y = ids[1:])")
    if got.dtype != torch.bool:
        return f"expected dtype torch.bool, got {got.dtype} (compare with >=, or use .bool())"
    if torch.equal(got, expected):
        return None
    if torch.equal(got[:-1], expected[1:]) and got[-1]:
        return ("off by one: the target at position t is token t + 1, so the first answer token is predicted at "
                "position prompt_len - 1 (by the model reading <|assistant|>)")
    if torch.equal(got[1:], expected[:-1]) and not got[0]:
        return ("off by one: you also mask the first answer token; it is the target at position prompt_len - 1, "
                "read at <|assistant|>")
    return compare_values(got, expected)


def _mask_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case((4, 4), label="the worked example: U H i A + H e y E (expect 3 False then 4 True)"),
        Case((1, 1), label="the shortest: 1 prompt token, 1 answer token (expect [True])"),
        Case((int(rng.integers(10, 60)), int(rng.integers(5, 40))), label="a random example"),
        Case((int(rng.integers(60, 90)), int(rng.integers(2, 30))), label="a long prompt (a follow-up)"),
        Case((3, 1), label="an answer of one token (just <|end|>)"),
    ]


# ----------------------------------------------------------------------------- masked_loss


def _ref_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return masked_cross_entropy(logits, targets, ignore_index=-1).detach()


def _compare_loss(got: Any, expected: torch.Tensor) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if got.dim() != 0:
        return f"expected a 0-d tensor (one number: the mean), got shape {tuple(got.shape)}"
    return compare_values(got.detach().to(expected.dtype), expected, rtol=1e-5, atol=1e-6)


def _loss_cases(rng: np.random.Generator) -> list[Case]:
    def batch(B: int, T: int, V: int, masked: float, uneven: bool = False):
        logits = torch.tensor(rng.normal(0, 2, (B, T, V)), dtype=torch.float32)
        targets = torch.tensor(rng.integers(0, V, (B, T)), dtype=torch.long)
        for b in range(B):
            n = int(rng.integers(1, T)) if uneven else int(masked * T)
            targets[b, :n] = -1  # a prompt of n targets, then the answer
        return logits, targets

    return [
        Case((torch.tensor([[[2.0, 0.0], [0.0, 2.0]]]), torch.tensor([[-1, 1]])),
             label="one row, the first target masked: -1 targets are not counted in the mean, so the loss is that of "
                   "the second target alone, log(1 + e^-2) = 0.126928"),
        Case(batch(1, 6, 5, 0.0), label="no target masked: the ordinary cross-entropy"),
        Case(batch(4, 12, 7, 0.5), label="half of every row masked (-1 targets are not counted in the mean)"),
        Case(batch(6, 20, 11, 0.0, uneven=True),
             label="rows with different numbers of answer tokens: the mean is over all answer tokens of the batch, "
                   "not the mean of the rows' means"),
        Case(batch(3, 9, 81, 0.3), label="the chat vocabulary, V = 81"),
    ]


register("ch13.format_chat", _ref_format, _format_cases, compare=_compare_format,
         title="The chat template: a conversation as the prompt string")
register("ch13.answer_mask", _ref_mask, _mask_cases, compare=_compare_mask,
         title="Which targets carry the SFT loss")
register("ch13.masked_loss", _ref_loss, _loss_cases, compare=_compare_loss,
         title="Cross-entropy averaged over the answer tokens only")

"""Supervised fine-tuning (SFT): teach the book GPT to answer in the chat format, with the book's training loop.

SFT is next-token prediction on demonstrations, with one change: the loss counts only the answer tokens.
Each example is ``prompt_ids + answer_ids`` (:func:`lmlib.rlhf.template.format_example`); the batch is the
usual ``x = ids[:-1]``, ``y = ids[1:]``, padded on the right, and the targets of the prompt and the padding
are set to -1, the ``ignore_index`` of :func:`lmlib.lm.losses.masked_cross_entropy`. With U, A, E for
``<|user|>``, ``<|assistant|>``, ``<|end|>``, the example "Hi" -> "Hey" (ids ``U H i A H e y E``) in a batch
of width T = 9::

    t                 0  1  2  3  4  5  6  7  8
    x[t]              U  H  i  A  H  e  y  .  .     (. = padding: the id of <|end|>, never attended to)
    y[t] masked      -1 -1 -1  H  e  y  E -1 -1     mask_prompt=True: loss on the answer only
    y[t] all          H  i  A  H  e  y  E -1 -1     mask_prompt=False: loss on every token

With ``mask_prompt=False`` the model is also trained to write the user's questions (the chapter compares
the two). Right padding needs no attention mask: in a causal model a real token never sees the padding
that comes after it.

Nothing else is new, so SFT runs in :func:`lmlib.lm.train.train` as it is (checkpoints, resume, schedule):
:func:`sft_batch_fn` is its batch function and the default loss is already the masked cross-entropy::

    model, tok = chat_model(*load_book_gpt())
    batch_fn = sft_batch_fn({"train": train_set, "val": val_set}, tok, block_size=128, batch_size=32)
    history = train(model, batch_fn, TrainConfig(max_steps=500, lr=3e-4, ...))
    answer(model, tok, ["Who wrote Hamlet?"], greedy=True)

The loss is the mean over the answer tokens of the batch (a long answer weighs more than a short one,
as in TRL's SFT trainer).

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..lm.decoding import generate_batch
from ..lm.gpt import GPT
from ..lm.train import BatchFn
from ..text.tokenizer import CharTokenizer
from .chat import Example, Turn
from .template import END, example_length, fits, format_example, format_prompt, require_chat_tokens

__all__ = ["encode_examples", "collate", "sft_batch", "sft_batch_fn", "answer_loss", "answer"]

Encoded = tuple[list[int], list[int]]  # (prompt_ids, answer_ids) of one example


def encode_examples(examples: Sequence[Example], tokenizer: CharTokenizer, block_size: int) -> list[Encoded]:
    """``format_example`` of every example, after checking that each one :func:`~lmlib.rlhf.template.fits`.

    Raises:
        ValueError: no examples, or an example longer than ``block_size + 1`` tokens (naming it and its
            length; filter the data with ``fits``), or one that ``format_example`` rejects.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if isinstance(examples, Example) or not isinstance(examples, Sequence) or len(examples) == 0:
        raise ValueError(f"examples must be a non-empty list of Example, got {type(examples).__name__}")
    for e in examples:
        if not isinstance(e, Example):
            raise TypeError(f"examples must be Example objects, got {type(e).__name__}")
        if not fits(e, block_size):
            raise ValueError(f"example {e.id!r} has {example_length(e)} tokens, more than block_size + 1 = "
                             f"{block_size + 1}: drop it (filter with lmlib.rlhf.template.fits(e, {block_size})); "
                             "SFT does not truncate")
    return [format_example(e, tokenizer) for e in examples]


def collate(encoded: Sequence[Encoded], pad_id: int, mask_prompt: bool = True) -> tuple[Tensor, Tensor]:
    """Right-padded ``(x, y)`` from encoded examples: the batch of the module docstring.

    Args:
        encoded: B pairs ``(prompt_ids, answer_ids)`` (each part non-empty).
        pad_id: the id in ``x`` after a sequence ends (any real id: it is never attended to by real tokens
            and its targets are -1).
        mask_prompt: True: targets -1 on the prompt, loss on the answer only; False: loss on every token.

    Returns:
        ``(x, y)``, both (B, T) int64 with T = the longest ``len(prompt) + len(answer) - 1`` of the batch;
        ``y[b, t] = ids[b, t + 1]``, or -1 on padding (and on the prompt if ``mask_prompt``).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    T = max(len(p) + len(a) for p, a in encoded) - 1
    x = torch.full((len(encoded), T), pad_id, dtype=torch.long)  # (B, T)
    y = torch.full((len(encoded), T), -1, dtype=torch.long)  # (B, T)
    for b, (p, a) in enumerate(encoded):
        if not p or not a:
            raise ValueError(f"example {b} has an empty prompt or answer: ({len(p)}, {len(a)}) tokens")
        ids = torch.tensor(p + a)
        L = len(ids)
        x[b, :L - 1] = ids[:-1]
        y[b, :L - 1] = ids[1:]
        if mask_prompt:
            y[b, :len(p) - 1] = -1  # targets that are prompt tokens; y[len(p) - 1] is the first answer token
    return x, y


def sft_batch(examples: Sequence[Example], tokenizer: CharTokenizer, block_size: int,
              mask_prompt: bool = True) -> tuple[Tensor, Tensor]:
    """The SFT batch of ``examples``: ``collate(encode_examples(...), pad_id=<|end|>, mask_prompt)``.

    Returns:
        ``(x, y)``: (B, T) int64, T <= ``block_size``; ``y`` is -1 on padding and, with ``mask_prompt``, on
        the prompt, so ``model(x, y)[1]`` is the cross-entropy of the answer tokens only.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    return collate(encode_examples(examples, tokenizer, block_size), tokenizer.stoi[END], mask_prompt)


def sft_batch_fn(
    examples: Sequence[Example] | Mapping[str, Sequence[Example]],
    tokenizer: CharTokenizer,
    block_size: int,
    batch_size: int,
    seed: int = 0,
    mask_prompt: bool = True,
) -> BatchFn:
    """A :data:`lmlib.lm.train.BatchFn` ``(split, generator) -> (x, y)`` of random SFT batches.

    Every example is encoded and checked once, here. A batch is ``batch_size`` examples drawn uniformly
    with replacement with ``generator`` (the loop's, so a resumed run draws the same batches), then
    :func:`collate`. ``generator`` may be left out to draw from an internal one seeded with ``seed``
    (to look at a batch in the chapter).

    Args:
        examples: the examples of the "train" split, or a mapping ``{"train": [...], "val": [...]}``. With a
            plain list, pass ``splits=("train",)`` to :func:`lmlib.lm.train.train` (it evaluates "train"
            and "val" by default).
        tokenizer: the chat tokenizer.
        block_size: the model's context; longer examples raise (see :func:`lmlib.rlhf.template.fits`).
        batch_size: B, examples per batch.
        seed: seeds the internal generator (used only when no generator is passed).
        mask_prompt: loss on the answer only (True) or on every token (False).

    Returns:
        ``batch_fn(split, generator=None) -> (x (B, T), y (B, T))`` as :func:`collate` makes them, on the CPU
        (the loop moves them to its device).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    require_chat_tokens(tokenizer)
    splits = dict(examples) if isinstance(examples, Mapping) else {"train": examples}
    encoded = {name: encode_examples(ex, tokenizer, block_size) for name, ex in splits.items()}
    pad_id = tokenizer.stoi[END]
    own = torch.Generator().manual_seed(seed)

    def batch_fn(split: str, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if split not in encoded:
            raise KeyError(f"no {split!r} split in the SFT data; have {list(encoded)} (pass splits=... to train)")
        data = encoded[split]
        ix = torch.randint(len(data), (batch_size,), generator=generator or own)  # (B,) example indices
        return collate([data[i] for i in ix.tolist()], pad_id, mask_prompt)

    return batch_fn


@torch.no_grad()
def answer_loss(model: GPT, examples: Sequence[Example], tokenizer: CharTokenizer, batch_size: int = 64,
                mask_prompt: bool = True) -> float:
    """Mean cross-entropy per answer token over *all* ``examples`` (no sampling), in eval mode.

    The same loss as training (every target that is not -1 counts once), summed over batches of
    ``batch_size`` and divided by the number of answer tokens. Deterministic: use it to compare a model
    before and after fine-tuning on a held-out set.

    Returns:
        a float, nats per answer token (per token of every kind with ``mask_prompt=False``).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    encoded = encode_examples(examples, tokenizer, model.config.block_size)
    pad_id = tokenizer.stoi[END]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        for i in range(0, len(encoded), batch_size):
            x, y = collate(encoded[i:i + batch_size], pad_id, mask_prompt)
            x, y = x.to(device), y.to(device)
            n = int((y != -1).sum())
            total += float(model(x, y)[1]) * n  # the mean over this batch's answer tokens, back to a sum
            count += n
        return total / count
    finally:
        model.train(was_training)


@torch.no_grad()
def answer(
    model: GPT,
    tokenizer: CharTokenizer,
    conversations: Sequence[Example | Sequence[Turn] | str],
    max_new_tokens: int = 100,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
) -> list[str]:
    """The model's answers to a batch of conversations, generated in the chat format until ``<|end|>``.

    Each conversation (an :class:`Example`, a sequence of :class:`Turn` ending with a user turn, or a string,
    one user message) becomes ``format_prompt(...)``; the prompts, of different lengths, are generated
    together by :func:`lmlib.lm.decoding.generate_batch` with ``eos_id = <|end|>``. Prompts longer than the
    context are cropped from the left as generation goes (the model sees its last ``block_size`` tokens).
    Characters outside the vocabulary become ``<unk>``.

    Args:
        model: a chat model (:func:`lmlib.rlhf.template.chat_model`); run in eval mode, its mode restored.
        tokenizer: its chat tokenizer.
        conversations: B conversations.
        max_new_tokens: at most this many answer tokens (an answer cut here has no ``<|end|>``).
        greedy: always the most likely token (temperature and top_k are then ignored).
        temperature, top_k: sampling settings, as in :func:`lmlib.lm.decoding.sample`.
        seed: seeds the sampler, so the answers are reproducible.

    Returns:
        B strings, each answer without its ``<|end|>`` (other special tokens the model writes are kept as text).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    require_chat_tokens(tokenizer)
    if isinstance(conversations, (str, Example)) or not isinstance(conversations, Sequence) or not conversations:
        raise TypeError("conversations must be a non-empty list (of strings, Examples or lists of Turns); "
                        "for one question write [question]")
    end_id = tokenizer.stoi[END]
    prompts = [tokenizer.encode(format_prompt(c)) for c in conversations]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        gen = generate_batch(model, prompts, max_new_tokens, eos_id=end_id, pad_id=end_id, temperature=temperature,
                             top_k=top_k, greedy=greedy, generator=torch.Generator(device=device).manual_seed(seed))
    finally:
        model.train(was_training)
    out = []
    for row, mask in zip(gen.response.tolist(), gen.response_mask.tolist()):
        ids = [t for t, m in zip(row, mask) if m]
        out.append(tokenizer.decode(ids[:-1] if ids and ids[-1] == end_id else ids))
    return out

"""The chat template: how a conversation becomes the token ids the book GPT reads and writes.

A base model only continues text. To make it answer, we write every conversation in one fixed format with
three new *special tokens*, each a single id that no ordinary text can produce::

    <|user|>Who wrote Hamlet?<|assistant|>Shakespeare.<|end|><|user|>When?<|assistant|>Around 1600.<|end|>
    '------------------------------- prompt (format_prompt) ----------------------------''--- answer ---'

* ``<|user|>`` opens a user turn, ``<|assistant|>`` opens an assistant turn (and closes the user's);
* ``<|end|>`` closes every assistant turn: it is the end token the model learns to emit and at which
  generation stops (``eos_id`` of :func:`lmlib.lm.decoding.generate_batch`).

The *prompt* is the conversation so far followed by ``<|assistant|>``: what the model is given. The
*answer* is the demonstration followed by ``<|end|>``: what fine-tuning teaches it to write. No spaces or
newlines are added: the book GPT has a context of only ``block_size = 128`` characters, and each tag costs
one token. A one-question example costs ``len(question) + len(answer) + 3`` tokens.

The book GPT knows none of the three tokens. :func:`chat_tokenizer` adds them to its character tokenizer
and :func:`chat_model` grows the model's vocabulary to match (:meth:`lmlib.lm.gpt.GPT.resize_vocab`: each
new row starts at the mean of the old embeddings), so the chat model starts out exactly as the base model on
ordinary text. The chat tokenizer is an ordinary :class:`lmlib.text.tokenizer.CharTokenizer`, so a fine-tuned
model saved with ``model.save(path, meta={"tokenizer": tokenizer_meta(tok)})`` loads, tokenizer included, with
``lmlib.assets.load_book_gpt(path)`` like the book GPT.

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from ..lm.gpt import GPT
from ..text.tokenizer import CharTokenizer
from .chat import Example, Turn

__all__ = ["USER", "ASSISTANT", "END", "CHAT_TOKENS", "chat_tokenizer", "chat_model", "tokenizer_meta",
           "require_chat_tokens",
           "as_turns", "format_prompt", "format_example", "example_length", "fits"]

USER = "<|user|>"
"""Opens a user turn."""
ASSISTANT = "<|assistant|>"
"""Opens an assistant turn; the prompt ends with it."""
END = "<|end|>"
"""Closes an assistant turn: the end-of-answer token (the ``eos_id`` that generation stops at)."""
CHAT_TOKENS = (USER, ASSISTANT, END)
"""The special tokens of the chat template, in the order :func:`chat_tokenizer` adds them."""


# ----------------------------------------------------------------------------- tokenizer and model


def chat_tokenizer(base: CharTokenizer) -> CharTokenizer:
    """The base character tokenizer plus the chat tokens :data:`CHAT_TOKENS` as special tokens.

    Same characters, same ``<unk>``, the base special tokens (``<|endoftext|>``) followed by the three chat
    tokens. A :class:`CharTokenizer` numbers ``<unk>``, then the special tokens, then the characters, so the
    characters' ids move up by 3: use the model from :func:`chat_model`, whose rows are moved to match.

    Example (the book GPT): ``base.vocab_size == 78`` -> ``chat_tokenizer(base).vocab_size == 81``, and
    ``encode("<|user|>Hi")`` gives 3 ids.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(base, CharTokenizer):
        raise TypeError(f"chat_tokenizer needs a CharTokenizer (the book GPT's), got {type(base).__name__}")
    present = [t for t in CHAT_TOKENS if t in base.stoi]
    if present:
        raise ValueError(f"the tokenizer already has the chat tokens {present}: it is a chat tokenizer already; "
                         "call chat_tokenizer on the base model's tokenizer")
    meta = tokenizer_meta(base)
    return CharTokenizer(meta["chars"], unk_token=base.unk_token, special_tokens=[*base.special_tokens, *CHAT_TOKENS])


def chat_model(model: GPT, tokenizer: CharTokenizer) -> tuple[GPT, CharTokenizer]:
    """A copy of ``model`` whose vocabulary is that of ``chat_tokenizer(tokenizer)``, and that tokenizer.

    The copy is resized with :meth:`lmlib.lm.gpt.GPT.resize_vocab` (``init="mean"``: the new tokens start at
    the mean embedding), then its token rows are reordered so that row ``i`` belongs to the chat tokenizer's
    id ``i``: ``W_chat[i] = W[tokenizer.stoi[chat.itos[i]]]`` for every old token. On text without chat tokens
    the copy gives the base model's logits (columns reordered the same way). ``model`` itself is untouched,
    so it can stay as the frozen reference of the RLHF chapters.

    Usage: ``model, tok = chat_model(*load_book_gpt())``.

    Args:
        model: a :class:`GPT` with ``config.vocab_size == tokenizer.vocab_size``.
        tokenizer: its character tokenizer, without chat tokens.

    Returns:
        ``(chat_gpt, chat_tok)``: the resized copy (in the mode ``model`` was in) and the chat tokenizer.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(model, GPT):
        raise TypeError(f"chat_model needs a lmlib GPT, got {type(model).__name__}")
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the model has vocab_size={model.config.vocab_size} but the tokenizer "
                         f"{tokenizer.vocab_size} tokens: pass the tokenizer the model was trained with")
    chat = chat_tokenizer(tokenizer)
    V = tokenizer.vocab_size
    new = {t: V + k for k, t in enumerate(CHAT_TOKENS)}  # resize_vocab appends the new rows after the old ones
    rows = torch.tensor([tokenizer.stoi[t] if t in tokenizer.stoi else new[t] for t in chat.itos])  # (V',)
    m = copy.deepcopy(model).resize_vocab(chat.vocab_size, init="mean")
    with torch.no_grad():  # row i of the new table = the row of the token that has chat id i
        m.lm_head.weight.copy_(m.lm_head.weight[rows.to(m.lm_head.weight.device)].clone())
        if not m.config.tie_weights:
            m.transformer.wte.weight.copy_(m.transformer.wte.weight[rows.to(m.lm_head.weight.device)].clone())
    return m, chat


def tokenizer_meta(tokenizer: CharTokenizer) -> dict:
    """The tokenizer as the book GPT's checkpoints store it (``meta["tokenizer"]``), JSON-able.

    ``{"kind": "char", "chars": [...], "unk_token": ..., "special_tokens": [...]}``: what
    ``lmlib.assets.book_gpt_tokenizer`` rebuilds a :class:`CharTokenizer` from, ids unchanged.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(f"tokenizer_meta needs a CharTokenizer, got {type(tokenizer).__name__}")
    reserved = set(tokenizer.special_tokens) | {tokenizer.unk_token}
    return {"kind": "char", "chars": [t for t in tokenizer.itos if t not in reserved],
            "unk_token": tokenizer.unk_token, "special_tokens": list(tokenizer.special_tokens)}


def require_chat_tokens(tokenizer: CharTokenizer) -> None:
    """Raise ``ValueError`` unless ``tokenizer`` has the chat tokens (made by :func:`chat_tokenizer`).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    missing = [t for t in CHAT_TOKENS if t not in getattr(tokenizer, "stoi", {})]
    if missing:
        raise ValueError(f"the tokenizer lacks the chat tokens {missing}: use the one from chat_model(model, "
                         "tokenizer) or chat_tokenizer(tokenizer)")


# ----------------------------------------------------------------------------- the format


def as_turns(conversation: Example | Sequence[Turn] | str) -> tuple[Turn, ...]:
    """The turns of an :class:`Example`, a sequence of :class:`Turn`, or a string (one user turn), checked.

    The turns must alternate user/assistant, start and end with a user turn, and contain no chat token
    (a user who types ``<|assistant|>`` must not be able to write the assistant's turn).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if isinstance(conversation, Example):
        turns = conversation.turns
    elif isinstance(conversation, str):
        turns = (Turn("user", conversation),)
    else:
        turns = tuple(conversation)
        if not all(isinstance(t, Turn) for t in turns):
            bad = next(t for t in turns if not isinstance(t, Turn))
            raise TypeError(f"a conversation is a sequence of Turn, got an item {bad!r:.60}")
    if not turns or turns[0].role != "user" or turns[-1].role != "user":
        raise ValueError(f"a conversation must start and end with a user turn, got roles {[t.role for t in turns]}")
    for a, b in zip(turns, turns[1:]):
        if a.role == b.role:
            raise ValueError(f"turns must alternate user/assistant, got two {a.role!r} turns in a row")
    for t in turns:
        _check_no_chat_tokens(t.text, f"a {t.role} turn")
    return turns


def _check_no_chat_tokens(text: str, what: str) -> None:
    found = [tok for tok in CHAT_TOKENS if tok in text]
    if found:
        raise ValueError(f"{what} contains the chat token(s) {found} in {text!r:.80}: they are reserved for the "
                         "template")


def format_prompt(conversation: Example | Sequence[Turn] | str) -> str:
    """The conversation so far in the chat format, ending with ``<|assistant|>``: what the model is given.

    ``user: Q1, assistant: A1, user: Q2`` ->
    ``"<|user|>Q1<|assistant|>A1<|end|><|user|>Q2<|assistant|>"``; a string ``"Q"`` ->
    ``"<|user|>Q<|assistant|>"``. Turn texts are used as they are (no stripping).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    parts = []
    for t in as_turns(conversation):
        parts.append(USER + t.text if t.role == "user" else ASSISTANT + t.text + END)
    return "".join(parts) + ASSISTANT


def format_example(example: Example, tokenizer: CharTokenizer) -> tuple[list[int], list[int]]:
    """``(prompt_ids, answer_ids)``: ``encode(format_prompt(example))`` and ``encode(example.answer + "<|end|>")``.

    Concatenated they are the training sequence of :func:`lmlib.rlhf.sft.sft_batch`; the answer ends with the
    id of ``<|end|>``. Its length is :func:`example_length` (checked by :func:`fits`).

    Raises:
        ValueError: the tokenizer has no chat tokens; a text has a character outside the vocabulary (it
            would be trained as ``<unk>``: fix or drop the example), or contains a chat token.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not isinstance(example, Example):
        raise TypeError(f"format_example needs an Example, got {type(example).__name__}")
    require_chat_tokens(tokenizer)
    _check_no_chat_tokens(example.answer, f"the answer of example {example.id!r}")
    prompt = tokenizer.encode(format_prompt(example))
    answer = tokenizer.encode(example.answer + END)
    if tokenizer.unk_id is not None and (tokenizer.unk_id in prompt or tokenizer.unk_id in answer):
        text = "".join(t.text for t in example.turns) + example.answer
        unknown = sorted({c for c in text if c not in tokenizer.stoi})
        raise ValueError(f"example {example.id!r} has characters outside the tokenizer's vocabulary {unknown}: "
                         "they would be trained as <unk>; fix or drop the example")
    return prompt, answer


def example_length(example: Example) -> int:
    """Number of tokens of ``format_example(example, chat_tok)``, prompt and answer (character tokenizer).

    Every character is one token and every tag one more: the length of the texts plus one ``<|user|>`` per
    user turn, ``<|assistant|>`` and ``<|end|>`` per assistant turn and for the answer. Worked example:
    ``user "Hi", answer "Hello"`` -> ``<|user|>Hi<|assistant|>Hello<|end|>`` = 1 + 2 + 1 + 5 + 1 = 10.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    turns = as_turns(example)
    n_user = sum(t.role == "user" for t in turns)
    n_assistant = len(turns) - n_user + 1  # the answer is one more assistant turn
    return sum(len(t.text) for t in turns) + len(example.answer) + n_user + 2 * n_assistant


def fits(example: Example, block_size: int) -> bool:
    """True if the whole example (prompt + answer) can be trained on by a model with ``block_size`` positions.

    A sequence of L tokens is trained as ``x = ids[:-1]``, ``y = ids[1:]``, so it needs ``L - 1 <= block_size``:
    the last token (``<|end|>``) is only ever predicted, never read. The book GPT (``block_size=128``) takes
    examples of up to 129 tokens. There is no truncation: :func:`lmlib.rlhf.sft.sft_batch` rejects an example
    that does not fit (cutting the prompt would change the question, cutting the answer would teach the model
    to stop mid-sentence), so filter the data set with ``[e for e in data if fits(e, 128)]``.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    return example_length(example) - 1 <= block_size

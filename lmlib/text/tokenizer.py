"""Tokenizers: characters, words, and byte-level BPE (GPT-2 style) built from scratch.

A language model sees integers, not text. A *tokenizer* turns a string into a
list of ids (``encode``) and back (``decode``). This module has three:

* :class:`CharTokenizer`: one id per character (what chapter 1 used).
* :class:`WordTokenizer`: one id per word, punctuation mark or run of spaces;
  rare words fall back to ``<unk>``.
* :class:`BPETokenizer`: byte-level Byte-Pair Encoding as in GPT-2. Text becomes
  UTF-8 bytes (ids 0..255), then learned *merges* glue frequent adjacent pairs
  into new ids 256, 257, ... Any string, in any script, round-trips exactly.

Two trainers learn the merges and give *identical* results:

* :func:`train_bpe_simple`: the textbook loop (count every pair, merge the most
  frequent everywhere, repeat). Easy to read; slow (~30 s for 256 merges on 1 MB).
* :func:`train_bpe`: the same algorithm, incrementally: count each distinct
  word once, keep pair counts and an index pair -> words, after a merge update
  only the words that contained the pair, and find the most frequent pair with
  a heap (stale entries are skipped when popped). Under 1 s on the same text.

Ties are broken the same way in both: among the pairs with the highest count,
the one with the smallest ids ``(left, right)`` wins. On the classic example
``"aaabdaaabac"`` this rule gives the merges of the Wikipedia article.

Pre-tokenisation. Like GPT-2, the text is first cut into chunks (words with
their leading space, numbers, punctuation runs, whitespace) and merges never
cross a chunk boundary. GPT-2's pattern uses ``\\p{L}`` / ``\\p{N}``, which the
standard :mod:`re` module lacks (the third-party ``regex`` module has them).
:data:`GPT2_SPLIT_PATTERN` rewrites it with stdlib classes: letters are
``[^\\W\\d_]`` and numbers are ``\\d``. The only difference: characters that are
numeric but not decimal digits (Unicode No/Nl, e.g. ``"²"``, ``"½"``, ``"Ⅻ"``)
count as letters here and as numbers in GPT-2. For ASCII text, including the
Shakespeare corpus, the two patterns split identically. Round trips are exact
either way, because the pattern matches every character of any string.

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

import heapq
import json
import numbers
import os
import re
import warnings
from collections import Counter, defaultdict
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Sequence

from .._io import atomic_write_text

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "WORD_PATTERN",
    "ENDOFTEXT",
    "CharTokenizer",
    "WordTokenizer",
    "BPETokenizer",
    "get_pair_counts",
    "merge_pair",
    "pretokenize",
    "train_bpe_simple",
    "train_bpe",
    "bytes_per_token",
]

#: GPT-2's pre-tokenisation pattern, written for the standard ``re`` module.
#: GPT-2 (with the ``regex`` module): ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+``.
#: Here ``\p{L}`` -> ``[^\W\d_]`` (word characters minus digits and underscore) and
#: ``\p{N}`` -> ``\d``; "other" is ``[^\s\w]`` plus the underscore. See the module docstring.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

#: How :class:`WordTokenizer` cuts text: runs of word characters, single punctuation marks, runs of whitespace.
WORD_PATTERN = r"\w+|[^\w\s]|\s+"

#: The end-of-text special token of GPT-2.
ENDOFTEXT = "<|endoftext|>"

_TAUGHT = 'Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).'
_FORMAT = "lmlib-bpe"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- shared helpers


def _check_text(text: Any, what: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}")
    return text


def _check_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, got the single string {special_tokens!r}; wrap it in a list")
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special tokens must be distinct, got {specials}")
    return specials


def _special_splitter(specials: Sequence[str]) -> re.Pattern | None:
    """A regex whose ``split`` keeps the special tokens as separate pieces (longest first)."""
    if not specials:
        return None
    alternatives = sorted(specials, key=len, reverse=True)
    return re.compile("(" + "|".join(re.escape(s) for s in alternatives) + ")")


def _as_id_list(ids: Any) -> list:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"decode needs a sequence of integer ids, got {type(ids).__name__}")
    if hasattr(ids, "tolist"):  # numpy arrays and torch tensors
        ids = ids.tolist()
        if not isinstance(ids, list):
            ids = [ids]
    return list(ids)


def _unknown_id_error(ids: list, table: dict, vocab_size: int) -> ValueError:
    bad = next(i for i in ids if not isinstance(i, numbers.Integral) or isinstance(i, bool) or i not in table)
    return ValueError(f"unknown token id {bad!r}: ids must be integers in 0..{vocab_size - 1}")


# ----------------------------------------------------------------------------- character and word tokenizers


class _TableTokenizer:
    """Shared machinery of :class:`CharTokenizer` and :class:`WordTokenizer`: a token table plus ``<unk>``."""

    def __init__(self, tokens: Sequence[str], unk_token: str | None = "<unk>", special_tokens: Sequence[str] = ()) -> None:
        specials = _check_special_tokens(special_tokens)
        if unk_token is not None:
            if not isinstance(unk_token, str) or not unk_token:
                raise ValueError(f"unk_token must be a non-empty string or None, got {unk_token!r}")
            if unk_token in specials:
                raise ValueError(f"unk_token {unk_token!r} is also listed in special_tokens")
        tokens = list(tokens)
        for t in tokens:
            if not isinstance(t, str) or not t:
                raise ValueError(f"tokens must be non-empty strings, got {t!r}")
        table = ([unk_token] if unk_token is not None else []) + specials + tokens
        if len(set(table)) != len(table):
            dup = next(t for t in table if table.count(t) > 1)
            raise ValueError(f"token {dup!r} appears twice in the vocabulary")
        self.unk_token = unk_token
        self.special_tokens = specials
        self.itos: list[str] = table
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(table)}
        self._id_to_str = dict(enumerate(table))
        self._split_specials = _special_splitter(specials)

    @property
    def vocab_size(self) -> int:
        """Number of ids (``<unk>`` and special tokens included)."""
        return len(self.itos)

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>``, or ``None`` when unknown tokens raise an error instead."""
        return None if self.unk_token is None else self.stoi[self.unk_token]

    def _pieces(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Turn ``text`` into ids; tokens not in the vocabulary become ``unk_id`` (or raise if there is no ``<unk>``)."""
        _check_text(text)
        parts = [text] if self._split_specials is None else self._split_specials.split(text)
        ids: list[int] = []
        stoi, unk = self.stoi, self.unk_id
        for k, part in enumerate(parts):
            if k % 2 == 1:  # a special token (re.split puts captured separators at odd positions)
                ids.append(stoi[part])
                continue
            for piece in self._pieces(part):
                i = stoi.get(piece, unk)
                if i is None:
                    raise ValueError(
                        f"{piece!r} is not in the vocabulary of this {type(self).__name__} and it has no unk_token; "
                        "train on a text that contains it or create the tokenizer with unk_token='<unk>'"
                    )
                ids.append(i)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Turn ids back into text (``unk_id`` decodes to the ``<unk>`` string). Unknown ids raise ``ValueError``."""
        ids = _as_id_list(ids)
        table = self._id_to_str
        try:
            return "".join([table[i] for i in ids])
        except (KeyError, TypeError):
            raise _unknown_id_error(ids, table, self.vocab_size) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, unk_token={self.unk_token!r}, special_tokens={self.special_tokens})"


class CharTokenizer(_TableTokenizer):
    """One token per character.

    Ids: ``<unk>`` first (if any), then the special tokens, then the characters
    in sorted order. With ``unk_token=None`` and no special tokens the ids are
    exactly chapter 1's ``stoi`` (sorted distinct characters).

    Example::

        tok = CharTokenizer.train("hello")   # vocab: <unk>, e, h, l, o
        tok.encode("hole!")                  # [2, 4, 3, 1, 0]  ('!' is unknown -> 0)

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """

    def __init__(self, chars: Sequence[str], unk_token: str | None = "<unk>", special_tokens: Sequence[str] = ()) -> None:
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer tokens must be single characters, got {c!r}")
        super().__init__(chars, unk_token, special_tokens)

    @classmethod
    def train(cls, text: str, unk_token: str | None = "<unk>", special_tokens: Sequence[str] = ()) -> "CharTokenizer":
        """Vocabulary = the sorted distinct characters of ``text`` (special tokens are not split into characters)."""
        _check_text(text)
        if not text:
            raise ValueError("cannot train a tokenizer on an empty text")
        splitter = _special_splitter(_check_special_tokens(special_tokens))
        plain = text if splitter is None else "".join(splitter.split(text)[::2])
        return cls(sorted(set(plain)), unk_token=unk_token, special_tokens=special_tokens)

    def _pieces(self, text: str) -> str:
        return text


class WordTokenizer(_TableTokenizer):
    """One token per word, punctuation mark or whitespace run (cut by :data:`WORD_PATTERN`).

    Whitespace is kept as tokens, so ``decode(encode(x)) == x`` whenever every
    word of ``x`` is in the vocabulary. Words outside the vocabulary become
    ``<unk>``: the weakness that motivates subword tokenizers such as BPE.

    Ids: ``<unk>``, special tokens, then words from most to least frequent
    (ties alphabetical).

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """

    _split = re.compile(WORD_PATTERN).findall

    @classmethod
    def train(
        cls,
        text: str,
        max_vocab: int | None = None,
        min_freq: int = 1,
        unk_token: str | None = "<unk>",
        special_tokens: Sequence[str] = (),
    ) -> "WordTokenizer":
        """Learn the vocabulary of ``text``.

        Args:
            text: training text.
            max_vocab: keep at most this many ids in all (``<unk>`` and specials included);
                the most frequent words are kept.
            min_freq: drop words seen fewer than ``min_freq`` times.
            unk_token: the token for everything else (``None``: unknown words raise).
            special_tokens: strings such as ``"<|endoftext|>"`` that always get their own id.
        """
        _check_text(text)
        if not text:
            raise ValueError("cannot train a tokenizer on an empty text")
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an integer >= 1, got {min_freq!r}")
        specials = _check_special_tokens(special_tokens)
        n_reserved = len(specials) + (unk_token is not None)
        if max_vocab is not None and (not isinstance(max_vocab, int) or max_vocab <= n_reserved):
            raise ValueError(f"max_vocab must be an integer > {n_reserved} (the <unk> and special tokens), got {max_vocab!r}")
        splitter = _special_splitter(specials)
        parts = [text] if splitter is None else splitter.split(text)[::2]
        counts = Counter(w for part in parts for w in cls._split(part))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            words = words[: max_vocab - n_reserved]
        return cls(words, unk_token=unk_token, special_tokens=specials)

    def _pieces(self, text: str) -> list[str]:
        return self._split(text)


# ----------------------------------------------------------------------------- BPE building blocks


def get_pair_counts(ids: Sequence[int], counts: dict[tuple[int, int], int] | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Count adjacent pairs in ``ids``: ``[1, 2, 2, 2]`` -> ``{(1, 2): 1, (2, 2): 2}``.

    Overlapping pairs count: ``(2, 2)`` appears twice in ``2, 2, 2``. Pass ``counts``
    to add to an existing dict, and ``weight`` to count each pair that many times
    (used when ``ids`` is a word seen ``weight`` times).

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    ``merge_pair([1, 1, 1, 2], (1, 1), 9)`` -> ``[9, 1, 2]``: occurrences never overlap.

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def pretokenize(text: str, pattern: str | None = GPT2_SPLIT_PATTERN, special_tokens: Sequence[str] = ()) -> list[str]:
    """Cut ``text`` into the chunks that BPE merges stay inside.

    Special tokens are removed (they are never merged with anything); the text
    between them is cut with ``pattern`` (``None``: one chunk per piece, so
    merges may cross spaces). ``"".join(chunks)`` is the text minus the specials.

    ``pretokenize("Hello world's 42!")`` -> ``['Hello', ' world', "'s", ' 42', '!']``

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    _check_text(text)
    splitter = _special_splitter(_check_special_tokens(special_tokens))
    parts = [text] if splitter is None else splitter.split(text)[::2]
    if pattern is None:
        return [p for p in parts if p]
    findall = re.compile(pattern).findall
    return [chunk for part in parts for chunk in findall(part)]


def _check_training_input(text: Any, num_merges: Any) -> None:
    _check_text(text)
    if not text:
        raise ValueError("cannot train BPE on an empty text")
    if not isinstance(num_merges, int) or isinstance(num_merges, bool) or num_merges < 0:
        raise ValueError(f"num_merges must be an integer >= 0, got {num_merges!r}")


def train_bpe_simple(
    text: str, num_merges: int, pattern: str | None = GPT2_SPLIT_PATTERN, special_tokens: Sequence[str] = ()
) -> list[tuple[int, int]]:
    """Learn BPE merges with the textbook algorithm (clear, slow; the reference for :func:`train_bpe`).

    1. Cut the text into chunks (:func:`pretokenize`), count how often each distinct
       chunk ("word") occurs, and write each word as UTF-8 bytes (ids 0..255).
    2. Count every adjacent pair in every word, weighted by the word's frequency.
    3. Take the most frequent pair (ties: the smallest ``(left, right)``), give it the next id
       (256, 257, ...) and replace it in every word.
    4. Repeat ``num_merges`` times, or until every word is a single token.

    This is the algorithm of Sennrich et al. (2016). Counting distinct words instead of
    every occurrence gives the same counts, many times faster.

    Returns:
        ``merges``: list of pairs; ``merges[k]`` created token id ``256 + k``.

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    _check_training_input(text, num_merges)
    word_freq = Counter(pretokenize(text, pattern, special_tokens))
    words = [(list(w.encode("utf-8")), f) for w, f in word_freq.items()]
    merges: list[tuple[int, int]] = []
    for k in range(num_merges):
        counts: dict[tuple[int, int], int] = {}
        for ids, f in words:
            get_pair_counts(ids, counts, weight=f)
        if not counts:
            break  # every word is a single token: nothing left to merge
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest pair
        words = [(merge_pair(ids, best, 256 + k), f) for ids, f in words]
        merges.append(best)
    return merges


def train_bpe(
    text: str, num_merges: int, pattern: str | None = GPT2_SPLIT_PATTERN, special_tokens: Sequence[str] = ()
) -> list[tuple[int, int]]:
    """Learn BPE merges fast; returns exactly the merges of :func:`train_bpe_simple`.

    The same algorithm, without redoing work:

    * each *distinct* chunk ("word") is stored once with its frequency (as in the simple trainer);
    * ``counts[pair]`` holds the weighted pair counts and ``where[pair]`` the
      words that contain the pair;
    * after merging a pair, only the words in ``where[pair]`` are rewritten and
      only their pairs' counts change;
    * the most frequent pair comes from a heap of ``(-count, pair)`` entries. A
      count change pushes a new entry; an entry whose count is out of date is
      thrown away when it is popped ("lazy deletion"). Heap order breaks ties by
      the smallest pair, the same rule as the simple trainer.

    Without pre-tokenisation (``pattern=None``) the whole text is one word and
    this is no faster than the simple trainer.

    Returns:
        ``merges``: list of pairs; ``merges[k]`` created token id ``256 + k``.

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    _check_training_input(text, num_merges)
    word_freq = Counter(pretokenize(text, pattern, special_tokens))
    words = [list(w.encode("utf-8")) for w in word_freq]
    freqs = list(word_freq.values())

    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            counts[pair] += f
            where[pair].add(wi)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg_count:
            continue  # stale entry: this pair's count changed after it was pushed
        new_id = 256 + len(merges)
        merges.append(pair)
        delta: dict[tuple[int, int], int] = defaultdict(int)  # change of each pair's count
        for wi in where.pop(pair):
            w = words[wi]
            new = merge_pair(w, pair, new_id)
            if len(new) == len(w):
                continue  # the word lost this pair in an earlier merge (``where`` is only ever added to)
            f = freqs[wi]
            for p in zip(w, w[1:]):
                delta[p] -= f
            for p in zip(new, new[1:]):
                delta[p] += f
                if new_id in p:
                    where[p].add(wi)
            words[wi] = new
        for p, d in delta.items():
            if d == 0:
                continue  # e.g. a pair far from the merge: removed and added back
            c = counts[p] + d
            if c > 0:
                counts[p] = c
                heapq.heappush(heap, (-c, p))
            else:  # count 0: the merged pair itself, or a pair the merge destroyed everywhere
                del counts[p]
                where.pop(p, None)
    return merges


# ----------------------------------------------------------------------------- the BPE tokenizer


class BPETokenizer:
    """Byte-level BPE tokenizer (GPT-2 style): UTF-8 bytes + learned merges + special tokens.

    Ids: 0..255 are the bytes, ``256 + k`` is the token made by ``merges[k]``,
    and the special tokens come last. Any string round-trips:
    ``decode(encode(s)) == s``.

    Example::

        tok = BPETokenizer.train(text, vocab_size=512, special_tokens=["<|endoftext|>"])
        ids = tok.encode("To be, or not to be<|endoftext|>")
        tok.decode(ids)
        tok.save("shakespeare_bpe.json"); tok = BPETokenizer.load("shakespeare_bpe.json")

    Args:
        merges: the learned pairs, in order (from :func:`train_bpe`).
        pattern: pre-tokenisation regex (``None``: none). Must be the one used in training.
        special_tokens: strings that are never split, e.g. ``"<|endoftext|>"``.

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """

    def __init__(
        self,
        merges: Sequence[tuple[int, int]],
        pattern: str | None = GPT2_SPLIT_PATTERN,
        special_tokens: Sequence[str] = (),
    ) -> None:
        vocab: list[bytes] = [bytes([i]) for i in range(256)]
        self.merges: dict[tuple[int, int], int] = {}
        for k, pair in enumerate(merges):
            if (
                not isinstance(pair, (tuple, list))
                or len(pair) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 256 + k for i in pair)
            ):
                raise ValueError(f"merge {k} must be a pair of existing token ids (integers in 0..{255 + k}), got {pair!r}")
            pair = (int(pair[0]), int(pair[1]))
            if pair in self.merges:
                raise ValueError(f"merge {k} repeats the pair {pair}, already merged into id {self.merges[pair]}")
            self.merges[pair] = 256 + k
            vocab.append(vocab[pair[0]] + vocab[pair[1]])
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a regex string or None, got {type(pattern).__name__}")
        try:
            self._findall = None if pattern is None else re.compile(pattern).findall
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        self.pattern = pattern
        self.special_tokens: dict[str, int] = {s: len(vocab) + i for i, s in enumerate(_check_special_tokens(special_tokens))}
        for s in self.special_tokens:
            vocab.append(s.encode("utf-8"))
        self.vocab: list[bytes] = vocab  # id -> bytes
        self._id_to_bytes = dict(enumerate(vocab))
        self._split_specials = _special_splitter(list(self.special_tokens))
        self._cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str | None = GPT2_SPLIT_PATTERN,
        special_tokens: Sequence[str] = (),
        trainer: str = "fast",
    ) -> "BPETokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges on ``text``.

        Args:
            text: training text (special tokens in it are never merged).
            vocab_size: total number of ids: 256 bytes + merges + special tokens.
            pattern: pre-tokenisation regex, or ``None`` to let merges cross word boundaries.
            special_tokens: e.g. ``["<|endoftext|>"]``.
            trainer: ``"fast"`` (:func:`train_bpe`) or ``"simple"`` (:func:`train_bpe_simple`); same result.

        If the text runs out of pairs before reaching ``vocab_size``, training stops
        early with a warning and the tokenizer is smaller.
        """
        _check_text(text)
        specials = _check_special_tokens(special_tokens)
        minimum = 256 + len(specials)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < minimum:
            raise ValueError(
                f"vocab_size must be an integer >= {minimum} (256 byte tokens + {len(specials)} special tokens), got {vocab_size!r}"
            )
        trainers = {"fast": train_bpe, "simple": train_bpe_simple}
        if trainer not in trainers:
            raise ValueError(f"trainer must be 'fast' or 'simple', got {trainer!r}")
        num_merges = vocab_size - minimum
        merges = trainers[trainer](text, num_merges, pattern, specials)
        if len(merges) < num_merges:
            warnings.warn(
                f"the text ran out of pairs to merge after {len(merges)} of {num_merges} merges; "
                f"vocab_size is {minimum + len(merges)} instead of {vocab_size}",
                stacklevel=2,
            )
        return cls(merges, pattern=pattern, special_tokens=specials)

    # ------------------------------------------------------------------ encoding and decoding

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 + merges + special tokens."""
        return len(self.vocab)

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Apply the merges to one chunk: repeatedly merge the adjacent pair that was learned first.

        This gives the same ids as applying every merge in training order, because a merge
        can only create pairs that involve its new token, and those were learned later.
        """
        ids = list(data)
        rank = self.merges.get  # pair -> new id; a smaller new id means learned earlier
        while len(ids) >= 2:
            best = None
            for pair in zip(ids, ids[1:]):
                new_id = rank(pair)
                if new_id is not None and (best is None or new_id < best):
                    best, best_pair = new_id, pair
            if best is None:
                break  # no learned merge applies any more
            ids = merge_pair(ids, best_pair, best)
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special-token strings as ordinary text."""
        _check_text(text)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"text contains a lone surrogate {text[exc.start]!r} at position {exc.start}, which UTF-8 cannot encode") from None
        if self._findall is None:  # one chunk: the whole text (not cached)
            return self._encode_chunk(text.encode("utf-8"))
        chunks = self._findall(text)
        cache = self._cache  # chunk -> ids: each distinct word is encoded once
        if len(cache) > 200_000:  # keep memory bounded on huge, varied inputs
            cache.clear()
        for chunk in set(chunks).difference(cache):
            cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
        return list(chain.from_iterable(map(cache.__getitem__, chunks)))

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Turn ``text`` into token ids.

        Args:
            text: any string.
            allow_special: if True, special-token strings in ``text`` become their single id;
                if False they are encoded as ordinary text (safer for untrusted input).
        """
        _check_text(text)
        if not allow_special or self._split_specials is None:
            return self.encode_ordinary(text)
        out: list[int] = []
        for k, part in enumerate(self._split_specials.split(text)):
            if k % 2 == 1:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """Concatenate the bytes of the tokens ``ids`` (raises ``ValueError`` on an unknown id)."""
        ids = _as_id_list(ids)
        table = self._id_to_bytes
        try:
            return b"".join([table[i] for i in ids])
        except (KeyError, TypeError):
            raise _unknown_id_error(ids, table, self.vocab_size) from None

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """Turn ids back into text.

        A slice of ids can cut a multi-byte character in half; such bytes are
        shown as U+FFFD (``errors="replace"``, as in GPT-2) or raise with ``errors="strict"``.
        """
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def id_to_token(self, i: int) -> str:
        """A readable form of token ``i`` (its bytes decoded, invalid UTF-8 shown as U+FFFD)."""
        if not isinstance(i, int) or not 0 <= i < self.vocab_size:
            raise ValueError(f"unknown token id {i!r}: ids must be integers in 0..{self.vocab_size - 1}")
        return self.vocab[i].decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ saving and loading

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the tokenizer, as plain JSON-able data."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "pattern": self.pattern,
            "special_tokens": list(self.special_tokens),
            "merges": [list(p) for p in self.merges],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer to a JSON file, atomically (see :mod:`lmlib._io`)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a tokenizer written by :meth:`save`; raises a clear error on a missing or malformed file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a valid tokenizer file (not JSON: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a tokenizer file written by BPETokenizer.save (no \"format\": \"{_FORMAT}\")")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{path} has tokenizer format version {data.get('version')!r}; this lmlib reads version {_FORMAT_VERSION}")
        missing = [k for k in ("pattern", "special_tokens", "merges") if k not in data]
        if missing:
            raise ValueError(f"{path} is missing the fields {missing}")
        if not isinstance(data["merges"], list):
            raise ValueError(f"{path}: 'merges' must be a list of [left, right] pairs")
        try:
            return cls([tuple(p) if isinstance(p, list) else p for p in data["merges"]], data["pattern"], data["special_tokens"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} is malformed: {exc}") from None

    def __repr__(self) -> str:
        pattern = "GPT-2" if self.pattern == GPT2_SPLIT_PATTERN else repr(self.pattern)
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, pattern={pattern}, special_tokens={list(self.special_tokens)})"


def bytes_per_token(tokenizer: Any, text: str) -> float:
    """Compression of ``tokenizer`` on ``text``: UTF-8 bytes divided by the number of tokens.

    Works with any object whose ``encode`` returns a list of ids, or a Hugging Face
    ``tokenizers.Tokenizer`` (whose ``encode`` returns an ``Encoding`` with ``.ids``).

    Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
    """
    _check_text(text)
    if not text:
        raise ValueError("cannot measure compression on an empty text")
    encoded = tokenizer.encode(text)
    n = len(getattr(encoded, "ids", encoded))
    return len(text.encode("utf-8")) / n

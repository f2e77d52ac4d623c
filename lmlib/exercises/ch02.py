"""Exercises of Chapter 2, "Data and tokenization": byte-pair encoding by hand.

The learner writes the pieces of a byte-level BPE tokenizer, each checked
against :mod:`lmlib.text.tokenizer`:

* ``ch02.get_pair_counts``: count adjacent pairs (overlaps count: ``a a a`` has ``(a, a)`` twice).
* ``ch02.merge_pair``: replace a pair by a new id, left to right, without overlaps.
* ``ch02.train_merges``: the textbook training loop on one string (no pre-tokenisation);
  ties go to the smallest pair ``(left, right)``.
* ``ch02.encode_with_merges``: UTF-8 bytes, then the merges in the order they were learned.
* ``ch02.decode_with_merges``: ids back to text (join the bytes first, then decode UTF-8).

Conventions: text becomes its UTF-8 bytes (ids 0..255); ``merges[k]`` is the
pair merged into the new id ``256 + k``.

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..text.tokenizer import BPETokenizer, get_pair_counts, merge_pair, train_bpe_simple
from .core import Case, compare_values, register

# Small alphabets make repeated pairs (and ties) likely; the last ones test multi-byte UTF-8.
_ALPHABETS = ["ab", "abc", "ab ", "aab", "héllo", "日本語", "🙂a"]


def _random_text(rng: np.random.Generator, alphabet: str, low: int = 1, high: int = 40) -> str:
    n = int(rng.integers(low, high))
    return "".join(alphabet[int(i)] for i in rng.integers(0, len(alphabet), n))


# ----------------------------------------------------------------------------- get_pair_counts


def ref_get_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair ``(ids[i], ids[i+1])`` occurs in ``ids``."""
    return get_pair_counts(ids)


def _pair_count_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(([],), label="an empty list"),
        Case(([7],), label="a single id (no pairs)"),
        Case(([1, 2, 3, 1, 2],), label="a repeated pair"),
        Case(([5, 5, 5, 5],), label="overlapping pairs 5 5 5 5"),
        Case((list(b"aaabdaaabac"),), label='the bytes of "aaabdaaabac"'),
    ]
    for k in range(5):
        ids = [int(i) for i in rng.integers(0, 4, int(rng.integers(2, 30)))]
        cases.append(Case((ids,), label=f"random list {k + 1}"))
    return cases


def _compare_pair_counts(got: Any, expected: Any) -> str | None:
    if isinstance(got, dict) and got and not all(isinstance(k, tuple) and len(k) == 2 for k in got):
        key = next(k for k in got if not (isinstance(k, tuple) and len(k) == 2))
        return f"keys must be pairs (tuples) of ids such as (97, 98), but one key is {key!r}"
    if isinstance(got, dict):
        got = {k: v for k, v in got.items() if v != 0}  # a Counter or defaultdict may hold zeros
    return compare_values(got, expected)


register(
    "ch02.get_pair_counts",
    ref_get_pair_counts,
    _pair_count_cases,
    compare=_compare_pair_counts,
    title="Count adjacent pairs",
)


# ----------------------------------------------------------------------------- merge_pair


def ref_merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id`` (left to right, no overlaps)."""
    return merge_pair(ids, pair, new_id)


def _merge_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(([], (1, 2), 9), label="an empty list"),
        Case(([1, 2], (1, 2), 9), label="the whole list is the pair"),
        Case(([3, 1, 2, 4, 1, 2], (1, 2), 9), label="two occurrences"),
        Case(([1, 1, 1], (1, 1), 9), label="1 1 1 with pair (1, 1): the left two merge"),
        Case(([1, 1, 1, 1, 1], (1, 1), 9), label="five 1s with pair (1, 1)"),
        Case(([2, 1, 3, 2], (1, 2), 9), label="the pair does not occur"),
        Case(([4, 5, 4], (4, 5), 9), label="the pair at the start, its first id again at the end"),
    ]
    for k in range(6):
        ids = [int(i) for i in rng.integers(0, 3, int(rng.integers(2, 25)))]
        pair = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        cases.append(Case((ids, pair, 256 + k), label=f"random list {k + 1}"))
    return cases


register(
    "ch02.merge_pair",
    ref_merge_pair,
    _merge_cases,
    title="Merge one pair",
)


# ----------------------------------------------------------------------------- train_merges


def ref_train_merges(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Learn ``num_merges`` merges on the UTF-8 bytes of ``text`` (no pre-tokenisation).

    Each step merges the most frequent pair; on a tie, the smallest pair
    ``(left, right)``. Stop early when the text is a single token.
    """
    return train_bpe_simple(text, num_merges, pattern=None)


def _train_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(("aaabdaaabac", 3), label='the classic "aaabdaaabac", 3 merges'),
        Case(("aaabdaaabac", 8), label='"aaabdaaabac", 8 merges (ties; it stops after 7: one token left)'),
        Case(("ab", 0), label="zero merges"),
        Case(("hello hello", 2), label='"hello hello", 2 merges'),
        Case(("日本語", 2), label="Japanese (3 bytes per character)"),
    ]
    for k in range(5):
        alphabet = _ALPHABETS[int(rng.integers(0, len(_ALPHABETS)))]
        cases.append(Case((_random_text(rng, alphabet, 5, 40), int(rng.integers(1, 8))), label=f"random text {k + 1}"))
    return cases


register(
    "ch02.train_merges",
    ref_train_merges,
    _train_cases,
    title="Train BPE merges",
)


# ----------------------------------------------------------------------------- encode / decode with given merges


def ref_encode_with_merges(text: str, merges: list[tuple[int, int]]) -> list[int]:
    """Encode ``text``: its UTF-8 bytes, then apply ``merges[0]``, ``merges[1]``, ... in order."""
    return BPETokenizer(merges, pattern=None).encode(text)


def _encode_cases(rng: np.random.Generator) -> list[Case]:
    classic = train_bpe_simple("aaabdaaabac", 3, pattern=None)  # [(97, 97), (97, 98), (256, 257)]
    cases = [
        Case(("aaabdaaabac", classic), label='"aaabdaaabac" with its 3 merges'),
        Case(("abaaab", classic), label='"abaaab" with the merges of "aaabdaaabac"'),
        Case(("", classic), label="the empty string"),
        Case(("héllo", []), label="no merges: just the UTF-8 bytes"),
        Case(("aaaa", [(97, 97), (256, 256)]), label="a merge of two merged tokens"),
    ]
    for k in range(5):
        alphabet = _ALPHABETS[int(rng.integers(0, len(_ALPHABETS)))]
        merges = train_bpe_simple(_random_text(rng, alphabet, 10, 40), int(rng.integers(1, 6)), pattern=None)
        cases.append(Case((_random_text(rng, alphabet, 1, 30), merges), label=f"random text {k + 1}"))
    return cases


register(
    "ch02.encode_with_merges",
    ref_encode_with_merges,
    _encode_cases,
    title="Encode with learned merges",
)


def ref_decode_with_merges(ids: list[int], merges: list[tuple[int, int]]) -> str:
    """Decode ``ids``: expand each id to its bytes, join them, then decode the bytes as UTF-8."""
    return BPETokenizer(merges, pattern=None).decode(ids)


def _decode_cases(rng: np.random.Generator) -> list[Case]:
    classic = train_bpe_simple("aaabdaaabac", 3, pattern=None)
    cases = [
        Case(([258, 100, 258, 97, 99], classic), label="the encoded classic example"),
        Case(([], classic), label="no ids"),
        Case(([195, 169], []), label='"é" as two separate bytes'),
        Case(([230, 151, 165, 230, 156, 172], []), label='"日本" as six separate bytes'),
    ]
    for k in range(5):
        alphabet = _ALPHABETS[int(rng.integers(0, len(_ALPHABETS)))]
        merges = train_bpe_simple(_random_text(rng, alphabet, 10, 40), int(rng.integers(1, 6)), pattern=None)
        ids = ref_encode_with_merges(_random_text(rng, alphabet, 1, 30), merges)
        cases.append(Case((ids, merges), label=f"random ids {k + 1}"))
    return cases


register(
    "ch02.decode_with_merges",
    ref_decode_with_merges,
    _decode_cases,
    title="Decode with learned merges",
)

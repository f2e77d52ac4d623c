"""Exercises of Chapter 2, "Data and tokenization": Jaccard similarity and MinHash signatures.

* ``ch02.jaccard``: ``jaccard(a, b) -> float``, ``|A & B| / |A | B|`` of two
  sets (never both empty).
* ``ch02.minhash_signature``: ``minhash_signature(shingle_hashes, a, b, prime)
  -> array (num_perm,)`` with entry ``i`` equal to
  ``min over x of (a[i] * x + b[i]) % prime``.

The references are :func:`lmlib.text.dedup.jaccard` and :func:`lmlib.text.dedup.minhash_signature`.

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

import numpy as np

from ..text.dedup import MERSENNE_PRIME, jaccard, minhash_params, minhash_signature
from .core import Case, register

__all__ = ["jaccard_cases", "minhash_signature_cases"]


def jaccard_cases(rng: np.random.Generator) -> list[Case]:
    """Random integer sets with every amount of overlap, character shingles, and edge cases."""
    cases = []
    for n in range(8):
        universe = int(rng.integers(5, 60))
        a = set(rng.choice(universe, size=int(rng.integers(1, universe)), replace=False).tolist())
        b = set(rng.choice(universe, size=int(rng.integers(1, universe)), replace=False).tolist())
        cases.append(Case((a, b), label=f"random sets {n + 1}"))
    words = ["to be or not to be", "to be or not to see", "that is the question", "the question is that"]
    for s, t in [(words[0], words[1]), (words[2], words[3])]:
        cases.append(Case(({s[i : i + 3] for i in range(len(s) - 2)}, {t[i : i + 3] for i in range(len(t) - 2)}), label="3-gram shingles"))
    cases += [
        Case(({1, 2, 3}, {1, 2, 3}), label="identical sets (answer 1.0)"),
        Case(({1, 2}, {3, 4}), label="disjoint sets (answer 0.0)"),
        Case(({"a", "b"}, set()), label="one empty set (answer 0.0)"),
        Case(({1, 2, 3, 4}, {2, 3}), label="one set inside the other"),
        Case((frozenset({"x"}), frozenset({"x", "y"})), label="frozensets"),
    ]
    return cases


def minhash_signature_cases(rng: np.random.Generator) -> list[Case]:
    """Random hash arrays and coefficient sets, plus single-shingle, repeated and extreme hashes."""
    cases = []
    for num_perm, n in [(1, 5), (4, 1), (8, 20), (16, 100), (64, 300)]:
        x = rng.integers(0, 2**32, size=n, dtype=np.uint64)
        a, b = minhash_params(num_perm, seed=int(rng.integers(1 << 30)))
        cases.append(Case((x, a, b, MERSENNE_PRIME), label=f"{n} random hashes, num_perm {num_perm}"))
    a, b = minhash_params(8, seed=int(rng.integers(1 << 30)))
    cases += [
        Case((np.array([7, 7, 7, 3, 3], dtype=np.uint64), a, b, MERSENNE_PRIME), label="repeated hashes"),
        Case((np.array([0, 2**32 - 1], dtype=np.uint64), a, b, MERSENNE_PRIME), label="smallest and largest 32-bit hash"),
        Case(
            (np.array([10, 20, 30], dtype=np.uint64), np.array([1, 2, 3], dtype=np.uint64), np.array([0, 5, 1], dtype=np.uint64), 11),
            label="small prime 11 (work it by hand)",
        ),
    ]
    return cases


register(
    "ch02.jaccard",
    reference=jaccard,
    cases=jaccard_cases,
    title="Jaccard similarity of two sets",
)

register(
    "ch02.minhash_signature",
    reference=minhash_signature,
    cases=minhash_signature_cases,
    title="MinHash signature with universal hashing (a*x + b) mod p",
)

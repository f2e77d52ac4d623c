"""Deduplication: exact hashing and MinHash with locality-sensitive hashing (LSH), from scratch.

Exact duplicates are found by hashing a normalised form of each document
(lower case, collapsed whitespace). Near-duplicates are found with MinHash
(Broder 1997): a document becomes a set of *shingles* (character k-grams or
word n-grams); for a random hash function h, the probability that two sets
have the same minimum ``min h(A) == min h(B)`` equals their Jaccard similarity
``|A & B| / |A | B|``. ``num_perm`` such hash functions give a *signature*
whose fraction of agreeing entries estimates the Jaccard similarity.

Comparing all pairs is quadratic, so LSH cuts each signature into ``b``
bands of ``r`` rows and calls two documents *candidates* when all ``r`` rows
of some band agree. A pair with similarity ``s`` becomes a candidate with
probability ``1 - (1 - s**r)**b``: an S-curve that is steep around
``(1/b)**(1/r)``. Candidates are then verified against a threshold.

The hash functions are the universal family ``h(x) = (a*x + b) mod p`` with
the Mersenne prime ``p = 2**31 - 1``: with ``x < 2**32`` and ``a, b < p`` the
product fits in 64 bits, so numpy computes it exactly (no overflow).

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

import hashlib
import itertools
import unicodedata
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "MERSENNE_PRIME",
    "normalize",
    "exact_hash",
    "exact_duplicate_groups",
    "shingles",
    "hash_shingles",
    "jaccard",
    "minhash_params",
    "minhash_signature",
    "minhash_signatures",
    "estimate_jaccard",
    "lsh_candidate_probability",
    "lsh_threshold",
    "choose_bands",
    "lsh_collides",
    "lsh_candidate_pairs",
    "find_clusters",
    "pairs_from_clusters",
    "PRF",
    "precision_recall",
    "DedupResult",
    "exact_dedup",
    "minhash_dedup",
]

#: The prime of the universal hash family: 2**31 - 1.
MERSENNE_PRIME = (1 << 31) - 1


# --------------------------------------------------------------------------------------------
# Exact duplicates
# --------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower-case ``text``, apply Unicode NFKC and collapse every run of whitespace to one space.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize needs a str, got {type(text).__name__}")
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_hash(text: str, normalized: bool = True) -> str:
    """Hex BLAKE2b (128-bit) digest of ``text``, after :func:`normalize` unless ``normalized=False``.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not isinstance(text, str):
        raise TypeError(f"exact_hash needs a str, got {type(text).__name__}")
    key = normalize(text) if normalized else text
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def _check_docs(docs: Sequence[str]) -> None:
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise TypeError("docs must be a list of document strings, not " + type(docs).__name__)
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise TypeError(f"document {i} is a {type(d).__name__}, not a str")
        if not d.strip():
            raise ValueError(f"document {i} is empty (or only whitespace); drop empty documents before deduplicating")


def exact_duplicate_groups(docs: Sequence[str], normalized: bool = True) -> list[list[int]]:
    """Groups (sorted lists of indices, size >= 2) of documents with the same :func:`exact_hash`.

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_docs(docs)
    buckets: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        buckets.setdefault(exact_hash(d, normalized), []).append(i)
    return sorted(g for g in buckets.values() if len(g) > 1)


# --------------------------------------------------------------------------------------------
# Shingles and Jaccard similarity
# --------------------------------------------------------------------------------------------


def shingles(text: str, k: int = 5, kind: str = "char") -> set[str]:
    """The set of shingles of ``text`` after :func:`normalize`.

    ``kind="char"``: character ``k``-grams, e.g. ``shingles("abcd", 2) == {"ab", "bc", "cd"}``.
    ``kind="word"``: word ``k``-grams, each joined by one space.
    A text shorter than ``k`` (characters or words) gives one shingle: the whole text.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not isinstance(text, str):
        raise TypeError(f"shingles needs a str, got {type(text).__name__}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"shingle size k must be an integer >= 1, got {k!r}")
    norm = normalize(text)
    if not norm:
        raise ValueError("cannot shingle an empty document")
    if kind == "char":
        if len(norm) <= k:
            return {norm}
        return {norm[i : i + k] for i in range(len(norm) - k + 1)}
    if kind == "word":
        words = norm.split(" ")
        if len(words) <= k:
            return {" ".join(words)}
        return {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}
    raise ValueError(f"kind must be 'char' or 'word', got {kind!r}")


def hash_shingles(shingle_set: Iterable[str]) -> np.ndarray:
    """Sorted unique 32-bit CRC32 hashes of the shingles, shape ``(n,)``, dtype uint64.

    CRC32 is deterministic across runs (Python's ``hash`` of a str is not).

    Taught in: Chapter 2, "Data and tokenization".
    """
    values = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in shingle_set), dtype=np.uint64)
    if values.size == 0:
        raise ValueError("no shingles to hash (empty document?)")
    return np.unique(values)


def jaccard(a: Iterable, b: Iterable) -> float:
    """Jaccard similarity ``|A & B| / |A | B|`` of two sets; undefined (ValueError) when both are empty.

    Taught in: Chapter 2, "Data and tokenization".
    """
    a, b = set(a), set(b)
    union = len(a | b)
    if union == 0:
        raise ValueError("the Jaccard similarity of two empty sets is undefined")
    return len(a & b) / union


# --------------------------------------------------------------------------------------------
# MinHash
# --------------------------------------------------------------------------------------------


def minhash_params(num_perm: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``a`` (in [1, p)) and ``b`` (in [0, p)) of ``num_perm`` hash functions, each shape ``(num_perm,)`` uint64.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not isinstance(num_perm, (int, np.integer)) or num_perm < 1:
        raise ValueError(f"num_perm must be an integer >= 1, got {num_perm!r}")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    return a, b


def _as_hashes(shingle_hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    x = np.asarray(shingle_hashes)
    if x.ndim != 1:
        raise ValueError(f"shingle hashes must be a 1-D array, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot compute the MinHash of an empty set of shingles")
    if x.dtype.kind not in "iu":
        raise TypeError(f"shingle hashes must be integers, got dtype {x.dtype}")
    if x.min() < 0 or x.max() >= 1 << 32:
        raise ValueError("shingle hashes must lie in [0, 2**32) so that a*x + b fits in 64 bits")
    return x.astype(np.uint64)


def minhash_signature(
    shingle_hashes: np.ndarray | Sequence[int], a: np.ndarray, b: np.ndarray, prime: int = MERSENNE_PRIME
) -> np.ndarray:
    """MinHash signature of one set: ``sig[i] = min over x of (a[i]*x + b[i]) mod prime``.

    Args:
        shingle_hashes: ``(n,)`` integers in ``[0, 2**32)`` (see :func:`hash_shingles`).
        a, b: ``(num_perm,)`` coefficients (see :func:`minhash_params`), below ``prime``.

    Returns:
        ``(num_perm,)`` uint64 array.

    Taught in: Chapter 2, "Data and tokenization".
    """
    x = _as_hashes(shingle_hashes)
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D arrays of the same length, got shapes {a.shape} and {b.shape}")
    if not 2 <= prime <= 1 << 31:
        raise ValueError(f"prime must be in [2, 2**31] so that a*x + b fits in 64 bits, got {prime}")
    if a.size == 0:
        raise ValueError("need at least one hash function (a and b are empty)")
    if a.max() >= prime or b.max() >= prime:
        raise ValueError("the coefficients a and b must be smaller than prime")
    return ((a[:, None] * x[None, :] + b[:, None]) % np.uint64(prime)).min(axis=1)


def minhash_signatures(
    sets: Sequence[Iterable[str]] | Sequence[np.ndarray], num_perm: int = 128, seed: int = 0, chunk: int = 1 << 18
) -> np.ndarray:
    """MinHash signatures of many sets at once, shape ``(n_sets, num_perm)`` uint64.

    ``sets`` holds shingle sets (hashed with :func:`hash_shingles`) or arrays of
    shingle hashes. The shingle hashes of a block of documents (about
    ``chunk`` hash values times permutations in all) are concatenated into
    ``x``; ``(x[:, None] * a + b) % p`` is computed in place in one reused
    buffer, and each document's minimum is a ``np.minimum.reduceat`` over its
    segment. The result equals :func:`minhash_signature` row by row.

    Taught in: Chapter 2, "Data and tokenization".
    """
    a, b = minhash_params(num_perm, seed)
    if isinstance(sets, (str, np.ndarray)) or len(sets) == 0:
        raise ValueError("sets must be a non-empty list of shingle sets or hash arrays")
    hashed = []
    for i, s in enumerate(sets):
        if isinstance(s, np.ndarray):
            hashed.append(_as_hashes(s))
        else:
            s = list(s)
            if not s:
                raise ValueError(f"set {i} is empty: an empty document has no MinHash signature")
            hashed.append(hash_shingles(s))
    sizes = np.array([h.size for h in hashed])
    out = np.empty((len(hashed), num_perm), dtype=np.uint64)
    p = np.uint64(MERSENNE_PRIME)
    buf = np.empty((max(1, chunk // num_perm, int(sizes.max())), num_perm), dtype=np.uint64)
    start = 0
    while start < len(hashed):  # a block of documents whose hashes fit in the buffer
        stop, total = start + 1, sizes[start]
        while stop < len(hashed) and total + sizes[stop] <= len(buf):
            total += sizes[stop]
            stop += 1
        x = np.concatenate(hashed[start:stop])
        h = buf[: len(x)]
        np.multiply(x[:, None], a[None, :], out=h)  # (block hashes, num_perm); < 2**63, no overflow
        h += b
        np.remainder(h, p, out=h)
        offsets = np.concatenate([[0], np.cumsum(sizes[start : stop - 1])])
        out[start:stop] = np.minimum.reduceat(h, offsets, axis=0)
        start = stop
    return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float | np.ndarray:
    """Fraction of agreeing signature entries: the MinHash estimate of Jaccard similarity.

    Works on two ``(num_perm,)`` signatures (returns a float) or two
    ``(n, num_perm)`` stacks (returns ``(n,)``).

    Taught in: Chapter 2, "Data and tokenization".
    """
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim not in (1, 2) or sig_a.shape[-1] == 0:
        raise ValueError(f"signatures must have the same shape (num_perm,) or (n, num_perm); got {sig_a.shape} and {sig_b.shape}")
    est = (sig_a == sig_b).mean(axis=-1)
    return float(est) if est.ndim == 0 else est


# --------------------------------------------------------------------------------------------
# Locality-sensitive hashing
# --------------------------------------------------------------------------------------------


def lsh_candidate_probability(s: float | np.ndarray, b: int, r: int) -> float | np.ndarray:
    """Probability ``1 - (1 - s**r)**b`` that a pair with Jaccard ``s`` shares at least one of ``b`` bands of ``r`` rows.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if b < 1 or r < 1:
        raise ValueError(f"need b >= 1 bands and r >= 1 rows, got b={b}, r={r}")
    s_arr = np.asarray(s, dtype=float)
    if np.any((s_arr < 0) | (s_arr > 1)):
        raise ValueError("similarity s must lie in [0, 1]")
    p = 1.0 - (1.0 - s_arr**r) ** b
    return float(p) if p.ndim == 0 else p


def lsh_threshold(b: int, r: int) -> float:
    """``(1/b)**(1/r)``: the similarity where the LSH S-curve is steepest (roughly 50% candidates).

    Taught in: Chapter 2, "Data and tokenization".
    """
    if b < 1 or r < 1:
        raise ValueError(f"need b >= 1 bands and r >= 1 rows, got b={b}, r={r}")
    return (1.0 / b) ** (1.0 / r)


def choose_bands(
    threshold: float,
    num_perm: int = 128,
    fp_weight: float = 0.5,
    fn_weight: float = 0.5,
    min_prob: float | None = None,
) -> tuple[int, int]:
    """Pick ``(b, r)`` with ``b * r == num_perm`` for a Jaccard ``threshold``.

    Let FP be the area under the S-curve ``P(s)`` below the threshold
    (dissimilar pairs that become candidates) and FN the area above it left
    uncovered (similar pairs that are missed).

    * ``min_prob=None``: minimise ``fp_weight * FP + fn_weight * FN``, as in
      ``datasketch``'s MinHashLSH.
    * ``min_prob=q``: among the choices that make a pair exactly at the
      threshold a candidate with probability ``>= q``, take the one with the
      smallest FP (fewest wasted candidates). Use this when LSH is only a
      pre-filter before verification and missing a duplicate is what hurts.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if not isinstance(num_perm, (int, np.integer)) or num_perm < 1:
        raise ValueError(f"num_perm must be an integer >= 1, got {num_perm!r}")
    if min_prob is not None and not 0.0 < min_prob < 1.0:
        raise ValueError(f"min_prob must be in (0, 1), got {min_prob}")
    lo, hi = np.linspace(0.0, threshold, 201), np.linspace(threshold, 1.0, 201)
    best, best_err = None, np.inf
    for b in (b for b in range(1, num_perm + 1) if num_perm % b == 0):
        r = num_perm // b
        fp = np.trapezoid(lsh_candidate_probability(lo, b, r), lo)
        if min_prob is None:
            err = fp_weight * fp + fn_weight * np.trapezoid(1.0 - lsh_candidate_probability(hi, b, r), hi)
        elif lsh_candidate_probability(threshold, b, r) >= min_prob:
            err = fp
        else:
            continue
        if err < best_err:
            best, best_err = (b, r), err
    if best is None:
        raise ValueError(
            f"no (b, r) with b * r = {num_perm} reaches candidate probability {min_prob} at s = {threshold}; "
            "use more permutations or a lower min_prob"
        )
    return best


def _check_signatures(signatures: np.ndarray, bands: int) -> int:
    if signatures.ndim != 2:
        raise ValueError(f"signatures must have shape (n_docs, num_perm), got {signatures.shape}")
    num_perm = signatures.shape[1]
    if not isinstance(bands, (int, np.integer)) or bands < 1:
        raise ValueError(f"bands must be an integer >= 1, got {bands!r}")
    if num_perm % bands:
        raise ValueError(f"num_perm={num_perm} is not divisible by bands={bands}; rows per band r = num_perm / bands")
    return num_perm // bands


def lsh_collides(sig_a: np.ndarray, sig_b: np.ndarray, bands: int) -> bool | np.ndarray:
    """Whether two signatures (or two ``(n, num_perm)`` stacks, row by row) agree on all rows of at least one band.

    Taught in: Chapter 2, "Data and tokenization".
    """
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures have different shapes {sig_a.shape} and {sig_b.shape}")
    single = sig_a.ndim == 1
    sig_a, sig_b = np.atleast_2d(sig_a), np.atleast_2d(sig_b)
    r = _check_signatures(sig_a, bands)
    hit = (sig_a == sig_b).reshape(len(sig_a), bands, r).all(axis=2).any(axis=1)
    return bool(hit[0]) if single else hit


def lsh_candidate_pairs(signatures: np.ndarray, bands: int) -> set[tuple[int, int]]:
    """Candidate pairs ``(i, j)``, ``i < j``, whose signatures agree on all rows of at least one band.

    Each band's ``r`` values are bucketed with ``np.unique`` (exact, no
    extra hashing); every pair inside a bucket is a candidate.

    Taught in: Chapter 2, "Data and tokenization".
    """
    signatures = np.ascontiguousarray(signatures)
    r = _check_signatures(signatures, bands)
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * r : (band + 1) * r])
        keys = block.view(np.dtype((np.void, block.dtype.itemsize * r))).ravel()
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        if counts.max(initial=0) < 2:
            continue
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(counts)[:-1]
        for group in np.split(order, bounds):
            if len(group) > 1:
                pairs.update(itertools.combinations(sorted(group.tolist()), 2))
    return pairs


# --------------------------------------------------------------------------------------------
# Clusters and evaluation
# --------------------------------------------------------------------------------------------


def find_clusters(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components (size >= 2, sorted) of the graph on ``n`` documents with edges ``pairs`` (union-find).

    Taught in: Chapter 2, "Data and tokenization".
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"pair {(i, j)} is out of range for {n} documents")
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return sorted(g for g in groups.values() if len(g) > 1)


def pairs_from_clusters(clusters: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, inside each cluster.

    Taught in: Chapter 2, "Data and tokenization".
    """
    return {p for c in clusters for p in itertools.combinations(sorted(set(c)), 2)}


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 of found pairs, with the raw counts.

    Taught in: Chapter 2, "Data and tokenization".
    """

    precision: float
    recall: float
    f1: float
    true_positives: int
    found: int
    expected: int

    def __str__(self) -> str:
        return (
            f"precision {self.precision:.3f} ({self.true_positives}/{self.found}), "
            f"recall {self.recall:.3f} ({self.true_positives}/{self.expected}), F1 {self.f1:.3f}"
        )


def precision_recall(found: Iterable[tuple[int, int]], truth: Iterable[tuple[int, int]]) -> PRF:
    """Precision and recall of ``found`` duplicate pairs against ``truth`` (pair order inside a pair is ignored).

    By convention precision is 1.0 when nothing was found and recall is 1.0
    when there was nothing to find.

    Taught in: Chapter 2, "Data and tokenization".
    """
    norm = lambda pairs: {(min(i, j), max(i, j)) for i, j in pairs}  # noqa: E731
    found, truth = norm(found), norm(truth)
    if any(i == j for i, j in found | truth):
        raise ValueError("a pair (i, i) is not a duplicate pair")
    tp = len(found & truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1, tp, len(found), len(truth))


@dataclass
class DedupResult:
    """What a deduplication pass found.

    Attributes:
        pairs: duplicate pairs ``(i, j)``, ``i < j`` (for exact dedup: all pairs inside each group).
        clusters: connected components of ``pairs`` (sorted lists, size >= 2).
        keep: indices to keep: every document outside a cluster plus the first of each cluster.
        n_candidates: number of LSH candidate pairs before verification (exact dedup: ``len(pairs)``).
        signatures: the ``(n_docs, num_perm)`` MinHash signatures (``None`` for exact dedup).

    Taught in: Chapter 2, "Data and tokenization".
    """

    pairs: set[tuple[int, int]]
    clusters: list[list[int]]
    keep: list[int]
    n_candidates: int
    signatures: np.ndarray | None = None


def _keep(n: int, clusters: list[list[int]]) -> list[int]:
    drop = {i for c in clusters for i in c[1:]}
    return [i for i in range(n) if i not in drop]


def exact_dedup(docs: Sequence[str], normalized: bool = True) -> DedupResult:
    """Exact deduplication by :func:`exact_hash`: keeps the first document of each group.

    Taught in: Chapter 2, "Data and tokenization".
    """
    groups = exact_duplicate_groups(docs, normalized)
    pairs = pairs_from_clusters(groups)
    return DedupResult(pairs=pairs, clusters=groups, keep=_keep(len(docs), groups), n_candidates=len(pairs))


def minhash_dedup(
    docs: Sequence[str],
    threshold: float = 0.7,
    num_perm: int = 128,
    bands: int | None = None,
    k: int = 5,
    kind: str = "char",
    seed: int = 0,
    verify: str = "estimate",
) -> DedupResult:
    """Near-duplicate detection: shingles -> MinHash signatures -> LSH candidates -> verification -> clusters.

    Args:
        docs: document strings (none empty).
        threshold: Jaccard similarity above which (``>=``) two documents are duplicates.
        num_perm: MinHash signature length.
        bands: LSH bands ``b``; ``num_perm`` must be divisible by it. Default:
            ``choose_bands(threshold, num_perm, min_prob=0.95)``, so that a pair
            right at the threshold is a candidate with probability >= 0.95.
        k, kind: shingles, see :func:`shingles`.
        seed: seed of the hash functions.
        verify: ``"estimate"`` (signature agreement), ``"true"`` (exact
            Jaccard of the shingle sets) or ``"none"`` (keep every candidate).

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_docs(docs)
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if verify not in ("estimate", "true", "none"):
        raise ValueError(f"verify must be 'estimate', 'true' or 'none', got {verify!r}")
    if bands is None:
        bands = choose_bands(min(threshold, 0.999), num_perm, min_prob=0.95)[0]
    if not isinstance(num_perm, (int, np.integer)) or num_perm < 1:
        raise ValueError(f"num_perm must be an integer >= 1, got {num_perm!r}")
    if not isinstance(bands, (int, np.integer)) or bands < 1 or num_perm % bands:
        raise ValueError(f"num_perm={num_perm} is not divisible by bands={bands}; rows per band r = num_perm / bands")
    sets = [shingles(d, k, kind) for d in docs]
    sigs = minhash_signatures(sets, num_perm=num_perm, seed=seed)
    candidates = sorted(lsh_candidate_pairs(sigs, bands))
    if verify == "none" or not candidates:
        pairs = set(candidates)
    else:
        idx = np.array(candidates)
        if verify == "estimate":
            sim = estimate_jaccard(sigs[idx[:, 0]], sigs[idx[:, 1]])
        else:
            sim = np.array([jaccard(sets[i], sets[j]) for i, j in candidates])
        pairs = {c for c, s in zip(candidates, sim) if s >= threshold}
    clusters = find_clusters(len(docs), pairs)
    return DedupResult(pairs=pairs, clusters=clusters, keep=_keep(len(docs), clusters), n_candidates=len(candidates), signatures=sigs)

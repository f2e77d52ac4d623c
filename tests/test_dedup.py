"""Tests of lmlib.text.dedup (exact hashing, MinHash, LSH) and the Chapter 2 exercises."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.text.dedup import (
    MERSENNE_PRIME,
    choose_bands,
    estimate_jaccard,
    exact_dedup,
    exact_duplicate_groups,
    exact_hash,
    find_clusters,
    hash_shingles,
    jaccard,
    lsh_candidate_pairs,
    lsh_candidate_probability,
    lsh_collides,
    lsh_threshold,
    minhash_dedup,
    minhash_params,
    minhash_signature,
    minhash_signatures,
    normalize,
    pairs_from_clusters,
    precision_recall,
    shingles,
)
import lmlib.exercises.ch02_data  # noqa: F401  registers ch02.jaccard/minhash_signature without importing every chapter
from lmlib.exercises import ExerciseFailed, check
from lmlib.text.quality import make_noisy_corpus, shakespeare_documents


@pytest.fixture(scope="module")
def dup_corpus():
    """500 clean speeches plus 25 exact and 25 near copies (no other junk), seed 11."""
    docs = shakespeare_documents("tiny")[:500]
    zero = dict(boilerplate_frac=0, repetitive_frac=0, gibberish_frac=0, other_script_frac=0)
    return make_noisy_corpus(docs, seed=11, **zero)


# ---------------------------------------------------------------- exact duplicates


def test_normalize_and_exact_hash():
    assert normalize("  To BE,\n\tor  not ") == "to be, or not"
    assert normalize("ﬁne") == "fine"  # NFKC folds the ligature
    assert exact_hash("To be\nor not") == exact_hash("to   BE or not ")
    assert exact_hash("To be\nor not", normalized=False) != exact_hash("to   BE or not ", normalized=False)
    assert len(exact_hash("x")) == 32  # 128-bit blake2b, hex
    assert exact_hash("to be") != exact_hash("to be.")


def test_exact_duplicate_groups_hand_example():
    docs = ["a b", "c", "A  b", "d", "c", "a b"]
    assert exact_duplicate_groups(docs) == [[0, 2, 5], [1, 4]]
    assert exact_duplicate_groups(docs, normalized=False) == [[0, 5], [1, 4]]
    res = exact_dedup(docs)
    assert res.keep == [0, 1, 3]
    assert res.pairs == {(0, 2), (0, 5), (2, 5), (1, 4)}


def test_exact_dedup_finds_all_planted_exact_copies(dup_corpus):
    truth = dup_corpus.duplicate_pairs(["exact_dup"])
    prf = precision_recall(exact_dedup(dup_corpus.texts).pairs, truth)
    assert prf.recall == 1.0 and prf.precision == 1.0 and prf.expected == 25


# ---------------------------------------------------------------- shingles and Jaccard, hand-worked


def test_shingles_and_jaccard_hand_example():
    a, b = shingles("abcd", k=2), shingles("ABCE", k=2)
    assert a == {"ab", "bc", "cd"} and b == {"ab", "bc", "ce"}
    assert jaccard(a, b) == pytest.approx(2 / 4)  # {ab, bc} shared, {ab, bc, cd, ce} in all
    assert shingles("to be or not to be", k=2, kind="word") == {"to be", "be or", "or not", "not to"}
    assert shingles("hi", k=5) == {"hi"}  # shorter than k: the whole text
    assert shingles("a  b", k=3) == {"a b"}  # whitespace is normalised first
    assert jaccard({1, 2}, {3}) == 0.0 and jaccard({1}, {1}) == 1.0 and jaccard(set(), {1}) == 0.0


def test_shingle_and_jaccard_errors():
    with pytest.raises(ValueError, match="k must be"):
        shingles("abc", k=0)
    with pytest.raises(ValueError, match="empty"):
        shingles("   ")
    with pytest.raises(ValueError, match="kind"):
        shingles("abc", kind="byte")
    with pytest.raises(ValueError, match="two empty sets"):
        jaccard(set(), set())
    with pytest.raises(ValueError, match="empty"):
        hash_shingles(set())


# ---------------------------------------------------------------- MinHash


def test_minhash_signature_small_prime_by_hand():
    # h_i(x) = (a_i x + b_i) mod 11 on x in {10, 20, 30}:
    # i=0: 10, 9, 8 -> 8;  i=1: 25%11=3, 45%11=1, 65%11=10 -> 1;  i=2: 31%11=9, 61%11=6, 91%11=3 -> 3
    x = np.array([10, 20, 30], dtype=np.uint64)
    sig = minhash_signature(x, np.array([1, 2, 3], dtype=np.uint64), np.array([0, 5, 1], dtype=np.uint64), prime=11)
    assert sig.tolist() == [8, 1, 3]


def test_minhash_signature_matches_python_integers():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, size=50, dtype=np.uint64)
    x[0] = 2**32 - 1  # the largest hash: a*x + b must not overflow 64 bits
    a, b = minhash_params(32, seed=1)
    expected = [min((int(ai) * int(xi) + int(bi)) % MERSENNE_PRIME for xi in x) for ai, bi in zip(a, b)]
    assert minhash_signature(x, a, b).tolist() == expected


def test_minhash_signatures_equal_one_at_a_time():
    docs = ["the quick brown fox", "jumps over the lazy dog", "x", "the quick brown fax"] * 3
    sets = [shingles(d, 3) for d in docs]
    a, b = minhash_params(64, seed=5)
    one = np.stack([minhash_signature(hash_shingles(s), a, b) for s in sets])
    for chunk in (1, 200, 1 << 20):  # block boundaries must not matter
        assert np.array_equal(minhash_signatures(sets, 64, seed=5, chunk=chunk), one)
    assert np.array_equal(minhash_signatures([hash_shingles(s) for s in sets], 64, seed=5), one)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet="abcde ", min_size=1, max_size=30).filter(str.strip), min_size=1, max_size=6), st.integers(0, 2**31))
def test_minhash_signatures_property(texts, seed):
    sets = [shingles(t, 2) for t in texts]
    sigs = minhash_signatures(sets, 16, seed=seed)
    a, b = minhash_params(16, seed)
    assert sigs.shape == (len(texts), 16) and sigs.dtype == np.uint64
    assert (sigs < MERSENNE_PRIME).all()
    for s, sig in zip(sets, sigs):
        assert np.array_equal(sig, minhash_signature(hash_shingles(s), a, b))
    for i in range(len(texts)):
        for j in range(len(texts)):
            if sets[i] == sets[j]:
                assert estimate_jaccard(sigs[i], sigs[j]) == 1.0


def test_minhash_estimate_is_close_to_true_jaccard():
    rng = np.random.default_rng(42)
    num_perm, errors = 256, []
    for trial in range(40):
        universe = 400
        a = set(rng.choice(universe, size=int(rng.integers(20, 200)), replace=False).tolist())
        b = set(rng.choice(universe, size=int(rng.integers(20, 200)), replace=False).tolist())
        keep = rng.random() < 0.5  # half the pairs: make b overlap a lot with a
        if keep:
            b = set(list(a)[: int(len(a) * rng.uniform(0.3, 1.0))]) | set(list(b)[:10])
        hashes = [np.array(sorted(a), dtype=np.uint64), np.array(sorted(b), dtype=np.uint64)]
        sigs = minhash_signatures(hashes, num_perm, seed=trial)
        est, true = estimate_jaccard(sigs[0], sigs[1]), jaccard(a, b)
        # standard error sqrt(J(1-J)/256) <= 0.031; allow 4 of them
        assert abs(est - true) <= 0.125, (trial, est, true)
        errors.append(est - true)
    assert abs(np.mean(errors)) < 0.02  # unbiased
    assert np.mean(np.abs(errors)) < 0.04


def test_minhash_is_deterministic_with_seed():
    sets = [shingles("to be or not to be"), shingles("that is the question")]
    assert np.array_equal(minhash_signatures(sets, 32, seed=3), minhash_signatures(sets, 32, seed=3))
    assert not np.array_equal(minhash_signatures(sets, 32, seed=3), minhash_signatures(sets, 32, seed=4))
    assert hash_shingles({"abc"}).tolist() == [891568578]  # CRC32("abc"): the same in every process


def test_minhash_clear_errors():
    a, b = minhash_params(4)
    with pytest.raises(ValueError, match="empty set"):
        minhash_signature(np.array([], dtype=np.uint64), a, b)
    with pytest.raises(ValueError, match=r"2\*\*32"):
        minhash_signature(np.array([2**33], dtype=np.uint64), a, b)
    with pytest.raises(TypeError, match="integers"):
        minhash_signature(np.array([1.5]), a, b)
    with pytest.raises(ValueError, match="same length"):
        minhash_signature(np.array([1]), a, b[:2])
    with pytest.raises(ValueError, match="smaller than prime"):
        minhash_signature(np.array([1]), a, b, prime=3)
    with pytest.raises(ValueError, match="num_perm"):
        minhash_params(0)
    with pytest.raises(ValueError, match="set 1 is empty"):
        minhash_signatures([{"ab"}, set()])
    with pytest.raises(ValueError, match="same shape"):
        estimate_jaccard(np.zeros(4), np.zeros(5))


# ---------------------------------------------------------------- LSH


def test_lsh_probability_by_hand():
    # s=0.8, b=20, r=5: s^r = 0.32768; (1 - 0.32768)^20 = 0.67232^20 = 3.5606e-4; P = 0.99964
    assert 0.8**5 == pytest.approx(0.32768)
    assert lsh_candidate_probability(0.8, 20, 5) == pytest.approx(1 - 0.67232**20)
    assert lsh_candidate_probability(0.8, 20, 5) == pytest.approx(0.999644, abs=1e-6)
    # s=0.3: s^r = 0.00243; 1 - 0.99757^20 = 0.04749
    assert lsh_candidate_probability(0.3, 20, 5) == pytest.approx(0.04749, abs=1e-5)
    assert lsh_candidate_probability(0.0, 20, 5) == 0.0 and lsh_candidate_probability(1.0, 20, 5) == 1.0
    assert lsh_candidate_probability(0.5, 1, 1) == 0.5  # one band of one row: P = s
    curve = lsh_candidate_probability(np.linspace(0, 1, 11), 20, 5)
    assert curve.shape == (11,) and np.all(np.diff(curve) > 0)  # an increasing S-curve
    assert lsh_threshold(20, 5) == pytest.approx(0.05**0.2) and lsh_threshold(20, 5) == pytest.approx(0.5493, abs=1e-4)
    with pytest.raises(ValueError, match="bands"):
        lsh_candidate_probability(0.5, 0, 5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lsh_candidate_probability(1.5, 20, 5)


def test_choose_bands():
    for threshold in (0.5, 0.7, 0.9):
        b, r = choose_bands(threshold, 128)
        assert b * r == 128
        b, r = choose_bands(threshold, 128, min_prob=0.95)
        assert b * r == 128 and lsh_candidate_probability(threshold, b, r) >= 0.95
        b2, r2 = choose_bands(threshold, 128, min_prob=0.5)
        assert r2 >= r  # asking for less recall allows a steeper, more selective curve
    assert choose_bands(0.7, 128, min_prob=0.95) == (32, 4)  # 0.7^4 = 0.24; 1 - 0.76^32 = 0.9998; 16x8 gives 0.61
    assert choose_bands(0.8, 100) == (10, 10)  # equal FP/FN weights: steepest near 0.8
    with pytest.raises(ValueError, match="no \\(b, r\\)"):
        choose_bands(0.5, 1, min_prob=0.9)
    with pytest.raises(ValueError, match="threshold"):
        choose_bands(1.0, 128)


def test_lsh_candidate_pairs_hand_example():
    sigs = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]], dtype=np.uint64)
    # band 0 = rows 0-1: docs 0, 1, 4 share (1, 2); band 1 = rows 2-3: docs 0, 2, 4 share (3, 4)
    assert lsh_candidate_pairs(sigs, bands=2) == {(0, 1), (0, 4), (1, 4), (0, 2), (2, 4)}
    assert lsh_candidate_pairs(sigs, bands=1) == {(0, 4)}
    assert lsh_collides(sigs[0], sigs[1], 2) is True and lsh_collides(sigs[0], sigs[3], 2) is False
    assert lsh_collides(sigs[:2], sigs[2:4], 2).tolist() == [True, False]  # 0 vs 2 share band 1; 1 vs 3 nothing
    with pytest.raises(ValueError, match="not divisible by bands=3"):
        lsh_candidate_pairs(sigs, bands=3)
    with pytest.raises(ValueError, match="shape"):
        lsh_candidate_pairs(sigs[0], bands=2)


def test_lsh_candidate_rate_matches_formula():
    # 300 pairs of 100-element sets sharing 60 elements: J = 60/140 = 0.4286; b=8 bands of r=4 rows
    rng = np.random.default_rng(7)
    left, right = [], []
    for _ in range(300):
        elems = rng.choice(2**32, size=140, replace=False).astype(np.uint64)
        left.append(elems[:100])
        right.append(elems[40:])
    sig_l, sig_r = minhash_signatures(left, 32, seed=1), minhash_signatures(right, 32, seed=1)
    measured = lsh_collides(sig_l, sig_r, 8).mean()
    theory = lsh_candidate_probability(60 / 140, 8, 4)
    assert theory == pytest.approx(1 - (1 - (3 / 7) ** 4) ** 8)
    assert abs(measured - theory) < 4 * math.sqrt(theory * (1 - theory) / 300), (measured, theory)


# ---------------------------------------------------------------- clusters, evaluation, end to end


def test_clusters_and_precision_recall_by_hand():
    assert find_clusters(6, [(0, 1), (1, 2), (4, 5)]) == [[0, 1, 2], [4, 5]]
    assert pairs_from_clusters([[0, 1, 2], [4, 5]]) == {(0, 1), (0, 2), (1, 2), (4, 5)}
    prf = precision_recall({(1, 0), (2, 3), (4, 5)}, {(0, 1), (4, 5), (6, 7), (8, 9)})
    assert (prf.precision, prf.recall) == (2 / 3, 2 / 4)
    assert prf.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert precision_recall(set(), {(0, 1)}).precision == 1.0 and precision_recall(set(), set()).recall == 1.0
    with pytest.raises(ValueError, match="out of range"):
        find_clusters(2, [(0, 2)])
    with pytest.raises(ValueError, match=r"\(i, i\)"):
        precision_recall({(1, 1)}, set())


def test_minhash_dedup_finds_planted_near_duplicates(dup_corpus):
    truth = dup_corpus.duplicate_pairs()
    res = minhash_dedup(dup_corpus.texts)  # defaults: char 5-grams, 128 perms, threshold 0.7, 32 x 4 bands
    prf = precision_recall(res.pairs, truth)
    assert prf.recall >= 0.9 and prf.precision >= 0.9, prf
    near = precision_recall(res.pairs, dup_corpus.duplicate_pairs(["near_dup"]))
    assert near.recall >= 0.9, near
    assert res.signatures.shape == (len(dup_corpus), 128)
    assert len(res.keep) == len(dup_corpus) - sum(len(c) - 1 for c in res.clusters)
    # the same seed gives the same answer, another seed (almost surely) other signatures
    sub = dup_corpus.texts[:150]
    assert minhash_dedup(sub, seed=1).pairs == minhash_dedup(sub, seed=1).pairs
    assert not np.array_equal(minhash_dedup(sub, seed=1).signatures, minhash_dedup(sub, seed=2).signatures)


def test_minhash_dedup_verification_modes():
    docs = ["the quick brown fox jumps over the lazy dog", "the quick brown fox jumps over the lazy cat", "completely different text here"]
    loose = minhash_dedup(docs, threshold=0.5, verify="true")
    assert loose.pairs == {(0, 1)} and loose.clusters == [[0, 1]] and loose.keep == [0, 2]
    strict = minhash_dedup(docs, threshold=0.99, verify="true")
    assert strict.pairs == set()
    assert minhash_dedup(docs, threshold=0.5, verify="none").pairs >= {(0, 1)}


def test_minhash_dedup_clear_errors():
    with pytest.raises(ValueError, match="not divisible by bands=5"):
        minhash_dedup(["a b c", "d e f"], num_perm=128, bands=5)
    with pytest.raises(ValueError, match="document 1 is empty"):
        minhash_dedup(["a b c", ""])
    with pytest.raises(ValueError, match="k must be"):
        minhash_dedup(["a b c"], k=0)
    with pytest.raises(ValueError, match="threshold"):
        minhash_dedup(["a b c"], threshold=0)
    with pytest.raises(ValueError, match="verify"):
        minhash_dedup(["a b c"], verify="maybe")
    with pytest.raises(TypeError, match="list of document"):
        minhash_dedup("a b c")


# ---------------------------------------------------------------- exercises


def test_exercise_jaccard_passes_reference_and_fails_wrong():
    assert check("ch02.jaccard", jaccard, quiet=True).ok

    def by_hand(a, b):
        a, b = set(a), set(b)
        return len(a & b) / len(a | b)

    assert check("ch02.jaccard", by_hand, quiet=True).ok
    with pytest.raises(ExerciseFailed, match="ch02.jaccard"):
        check("ch02.jaccard", lambda a, b: len(set(a) & set(b)) / (len(a) + len(b)), quiet=True)  # Sorensen-ish, wrong


def test_exercise_minhash_signature_passes_reference_and_fails_wrong():
    assert check("ch02.minhash_signature", minhash_signature, quiet=True).ok

    def loops(x, a, b, prime):
        return [min((int(ai) * int(xi) + int(bi)) % prime for xi in x) for ai, bi in zip(a, b)]

    assert check("ch02.minhash_signature", loops, quiet=True).ok

    def takes_max(x, a, b, prime):
        return [max((int(ai) * int(xi) + int(bi)) % prime for xi in x) for ai, bi in zip(a, b)]

    def forgets_mod(x, a, b, prime):
        return [min(int(ai) * int(xi) + int(bi) for xi in x) for ai, bi in zip(a, b)]

    for wrong in (takes_max, forgets_mod):
        with pytest.raises(ExerciseFailed, match="ch02.minhash_signature"):
            check("ch02.minhash_signature", wrong, quiet=True)

"""Tests of lmlib.lm.ngram (Chapter 1): hand-worked counts, properties, golden values, errors, exercises."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.exercises import ExerciseFailed, check
from lmlib.lm.ngram import (
    BOS,
    UNK,
    AddK,
    Interpolated,
    KneserNey,
    NGramCounts,
    Vocab,
    add_k_distribution,
    char_tokens,
    count_ngrams,
    detokenize_words,
    em_lambdas,
    fit_lambdas,
    perplexity_from_probs,
    sample_index,
    word_tokens,
)

# ---------------------------------------------------------------------------
# A worked example, by hand.
#
# Corpus "abba", n = 2. Padded with one BOS:  <s> a b b a
# Bigrams ending at each token: (<s>,a) (a,b) (b,b) (b,a), each once.
# Context totals: c(<s>) = 1, c(a) = 1, c(b) = 2.   Unigrams: c(a) = 2, c(b) = 2.
# MLE:      P(a|<s>) = 1, P(b|a) = 1, P(a|a) = 0, P(b|b) = P(a|b) = 1/2.
#           log-likelihood of "abba" = log 1 + log 1 + log 1/2 + log 1/2 = -2 log 2,
#           perplexity = exp(2 log 2 / 4) = sqrt(2).
# Add-one:  P(b|a) = (1+1)/(1+2) = 2/3, P(a|a) = 1/3, P(b|b) = (1+1)/(2+2) = 1/2.
# Kneser-Ney, D = 1/2: continuation counts N1+(. a) = 2 ((<s>,a), (b,a)), N1+(. b) = 2, N1+(. .) = 4,
#           P1(a) = (2 - 1/2)/4 + (1/2)(2/4)(1/2) = 1/2 = P1(b);
#           P(b|a) = (1 - 1/2)/1 + (1/2)(1/1) P1(b) = 3/4, P(a|a) = 1/4;
#           P(a|b) = (1 - 1/2)/2 + (1/2)(2/2) P1(a) = 1/2.
# Interpolated, lambdas (1/2, 1/2), unigram k = 0: P(b|a) = 1/2 * 1/2 + 1/2 * 1 = 3/4.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def abba():
    return NGramCounts(list("abba"), 2)


def test_hand_worked_counts(abba):
    assert abba.N == 4 and abba.V == 2 and abba.vocab.itos == ["a", "b"]
    assert abba.to_dict(2) == {(BOS, "a"): 1, ("a", "b"): 1, ("b", "b"): 1, ("b", "a"): 1}
    assert abba.to_dict(1) == {("a",): 2, ("b",): 2}
    assert abba.count(["b", "a"]) == 1 and abba.count(["a", "a"]) == 0
    assert abba.context_count([BOS]) == 1 and abba.context_count(["a"]) == 1 and abba.context_count(["b"]) == 2
    assert abba.context_count([]) == 4


def test_hand_worked_mle_and_perplexity(abba):
    mle = AddK(abba, k=0)
    np.testing.assert_allclose(mle.next_token_probs([]), [1.0, 0.0])  # after <s>
    np.testing.assert_allclose(mle.next_token_probs(["a"]), [0.0, 1.0])
    np.testing.assert_allclose(mle.next_token_probs(["b"]), [0.5, 0.5])
    assert mle.log_likelihood(list("abba")) == pytest.approx(-2 * math.log(2))
    assert mle.perplexity(list("abba")) == pytest.approx(math.sqrt(2))
    assert mle.perplexity(list("aa")) == math.inf  # P(a|a) = 0


def test_hand_worked_smoothing(abba):
    np.testing.assert_allclose(AddK(abba, k=1).next_token_probs(["a"]), [1 / 3, 2 / 3])
    np.testing.assert_allclose(AddK(abba, k=1).next_token_probs(["b"]), [1 / 2, 1 / 2])
    kn = KneserNey(abba, discount=0.5)
    np.testing.assert_allclose(kn.next_token_probs(["a"]), [1 / 4, 3 / 4])
    np.testing.assert_allclose(kn.next_token_probs(["b"]), [1 / 2, 1 / 2])
    np.testing.assert_allclose(KneserNey(abba, 0.5, order=1).next_token_probs([]), [1 / 2, 1 / 2])
    np.testing.assert_allclose(Interpolated(abba, [0.5, 0.5], k=0).next_token_probs(["a"]), [1 / 4, 3 / 4])


def test_log_prob_is_the_chain_rule(abba):
    m = AddK(abba, k=1)
    assert m.log_prob(["b", "a"], prompt=["a"]) == pytest.approx(math.log(2 / 3) + math.log(1 / 2))
    assert m.log_prob([], prompt=["a"]) == 0.0
    assert m.log_prob(list("abba")) == pytest.approx(m.log_likelihood(list("abba")))


# ---------------------------------------------------------------------------
# Equivalence with the plain-Python references
# ---------------------------------------------------------------------------

token_lists = st.lists(st.sampled_from(list("abcd ")), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None)
@given(tokens=token_lists, n=st.integers(1, 4))
def test_counts_equal_plain_python_counting(tokens, n):
    counts = NGramCounts(tokens, n)
    for m in range(1, n + 1):
        assert counts.to_dict(m) == dict(count_ngrams([BOS] * (m - 1) + tokens, m))


@settings(max_examples=40, deadline=None)
@given(tokens=token_lists, n=st.integers(1, 4), k=st.floats(0.01, 3), data=st.data())
def test_add_k_equals_the_formula(tokens, n, k, data):
    counts = NGramCounts(tokens, n)
    context = data.draw(st.lists(st.sampled_from(sorted(set(tokens))), max_size=n - 1))
    h = [BOS] * (n - 1 - len(context)) + context
    followers = {g[-1]: c for g, c in count_ngrams([BOS] * (n - 1) + tokens, n).items() if list(g[:-1]) == h}
    expected = add_k_distribution(followers, counts.vocab.itos, k)
    np.testing.assert_allclose(AddK(counts, k).next_token_probs(context), [expected[w] for w in counts.vocab.itos])


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------


def _models(counts, rng):
    n = counts.n
    lam = rng.dirichlet(np.ones(n))
    return [
        AddK(counts, k=float(rng.uniform(0.01, 2))),
        Interpolated(counts, lam, k=float(rng.uniform(0.01, 2))),
        KneserNey(counts, discount=float(rng.uniform(0.05, 1.0))),
    ]


@settings(max_examples=40, deadline=None)
@given(tokens=token_lists, n=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_probabilities_sum_to_one_and_smoothing_is_never_zero(tokens, n, seed, data):
    counts = NGramCounts(tokens, n, vocab=Vocab(list("abcde ")))  # 'e' never occurs in training
    context = data.draw(st.lists(st.sampled_from(list("abcde ")), max_size=6))
    text = data.draw(st.lists(st.sampled_from(list("abcde ")), min_size=1, max_size=30))
    for model in _models(counts, np.random.default_rng(seed)):
        p = model.next_token_probs(context)
        assert p.shape == (6,)
        assert p.sum() == pytest.approx(1.0), repr(model)
        assert np.all(p > 0), repr(model)
        assert np.all(model.token_probs(text) > 0), repr(model)
        assert math.isfinite(model.perplexity(text))


@given(tokens=token_lists, n=st.integers(2, 4))
@settings(max_examples=20, deadline=None)
def test_mle_probabilities_sum_to_one_on_seen_contexts(tokens, n):
    counts = NGramCounts(tokens, n)
    mle = AddK(counts, k=0)
    for i in range(len(tokens)):
        assert mle.next_token_probs(tokens[:i]).sum() == pytest.approx(1.0)


def test_uniform_model_perplexity_is_the_vocabulary_size():
    V = 7
    tokens = list("abcdefg") * 5
    unigram = AddK(NGramCounts(tokens, 1), k=0)  # every token seen equally often: P = 1/V
    text = list("gfedcbaabba")
    assert unigram.perplexity(text) == pytest.approx(V)
    # add-k gives a context it never saw the uniform distribution: perplexity V again
    bigram = AddK(NGramCounts(tokens, 2, vocab=Vocab(list("abcdefgz"))), k=0.5)
    probs = bigram.token_probs(list("zzzzz"))[1:]  # the contexts are 'z', never seen in training
    assert perplexity_from_probs(probs) == pytest.approx(V + 1)
    assert perplexity_from_probs([1 / V] * 13) == pytest.approx(V)


def test_perplexity_from_probs_matches_models(abba):
    m = AddK(abba, k=0.5)
    text = list("abbab")
    assert m.perplexity(text) == pytest.approx(perplexity_from_probs(m.token_probs(text)))


def test_interpolation_em_fits_better_than_uniform_weights():
    rng = np.random.default_rng(0)
    # a text with strong 2nd-order structure: "abc" repeated with noise
    tokens = [("abc"[i % 3] if rng.random() < 0.9 else "d") for i in range(3000)]
    counts = NGramCounts(tokens[:2000], 3)
    held = tokens[2000:2500]
    lam = fit_lambdas(counts, held, order=3)
    assert lam.shape == (3,) and lam.sum() == pytest.approx(1.0) and np.all(lam >= 0)
    fitted = Interpolated(counts, lam).log_likelihood(held)
    for other in ([1 / 3] * 3, [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]):
        assert fitted >= Interpolated(counts, other).log_likelihood(held) - 1e-9


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def test_sample_index_follows_the_probabilities():
    rng = np.random.default_rng(0)
    p = np.array([0.0, 0.2, 0.0, 0.8])
    draws = np.array([sample_index(p, rng) for _ in range(4000)])
    assert set(draws.tolist()) <= {1, 3}  # never a zero-probability index
    assert abs((draws == 3).mean() - 0.8) < 0.03


def test_seeded_sampling_is_reproducible(abba):
    m = KneserNey(NGramCounts(list("to be or not to be that is the question"), 3))
    a = m.sample(np.random.default_rng(42), 50, prompt=list("to "))
    b = m.sample(np.random.default_rng(42), 50, prompt=list("to "))
    c = m.sample(np.random.default_rng(43), 50, prompt=list("to "))
    assert a == b and a != c and len(a) == 50
    assert AddK(abba, k=0).sample(np.random.default_rng(0), 5, prompt=["a"])[0] == "b"  # P(b|a) = 1


@pytest.fixture(scope="module")
def tiny():
    from lmlib.text.corpus import shakespeare

    return shakespeare("tiny")


def test_golden_values_on_tiny_shakespeare(tiny):
    counts = NGramCounts(tiny.train, 5)
    kn = KneserNey(counts, order=5)
    assert kn.perplexity(tiny.val) == pytest.approx(4.699677449680943, rel=1e-9)
    assert AddK(counts, 0.1, order=3).perplexity(tiny.val) == pytest.approx(7.832995985733455, rel=1e-9)
    assert "".join(kn.sample(np.random.default_rng(0), 60, "ROMEO:\n")) == (
        "O DURlirown\nfavour hair, how so.\n\nKINGHAM:\nLord,\nWill give a"
    )
    words = word_tokens(tiny.train)
    wcounts = NGramCounts(words, 3, Vocab.build(words, min_count=2, unk=UNK))
    assert KneserNey(wcounts).perplexity(word_tokens(tiny.val)) == pytest.approx(94.37674391178984, rel=1e-9)


# ---------------------------------------------------------------------------
# Tokens and vocabulary
# ---------------------------------------------------------------------------


def test_tokenizers_round_trip():
    assert char_tokens("To be") == ["T", "o", " ", "b", "e"]
    text = "First Citizen:\nWe know't, we know't.\n"
    words = word_tokens(text)
    assert words == ["First", "Citizen", ":", "\n", "We", "know't", ",", "we", "know't", ".", "\n"]
    assert detokenize_words(words) == text


@settings(max_examples=30, deadline=None)
@given(text=st.text(alphabet="abc \n\u2014\u00e9", max_size=40), unk=st.sampled_from([None, UNK]))
def test_fast_character_encoding_equals_the_plain_path(text, unk):
    vocab = Vocab(list("abc \n\u2014") + ([UNK] if unk else []), unk=unk)
    if unk is None and "\u00e9" in text:
        with pytest.raises(KeyError, match="not in the vocabulary"):
            vocab.encode(text)
        return
    assert vocab.encode(text).tolist() == vocab.encode(list(text)).tolist()


def test_unknown_tokens_map_to_unk():
    vocab = Vocab.build(["a", "a", "b", "c"], min_count=2, unk=UNK)
    assert vocab.itos == ["a", UNK]
    assert vocab.decode(vocab.encode(["a", "b", "z"])) == ["a", UNK, UNK]
    counts = NGramCounts(["a", "a", "b", "c"], 2, vocab)
    assert counts.to_dict(1) == {("a",): 2, (UNK,): 2}
    assert math.isfinite(AddK(counts, k=0).perplexity(["a", "zebra"]))


# ---------------------------------------------------------------------------
# Clear errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NGramCounts(list("ab"), 0), "n must be an int >= 1"),
        (lambda: NGramCounts(list("ab"), True), "n must be an int >= 1"),
        (lambda: NGramCounts([], 2), "empty corpus"),
        (lambda: NGramCounts(list(range(100_000)), 5), r"do not fit in 64-bit codes; use n <= 3"),
        (lambda: AddK(NGramCounts(list("ab"), 2), k=-1), "k must be a finite number >= 0"),
        (lambda: AddK(NGramCounts(list("ab"), 2), order=3), r"order must be an int in 1..2"),
        (lambda: Interpolated(NGramCounts(list("ab"), 2), [0.5, 0.6]), "must sum to 1"),
        (lambda: Interpolated(NGramCounts(list("ab"), 2), [1.5, -0.5]), "finite and >= 0"),
        (lambda: Interpolated(NGramCounts(list("ab"), 2), [0.2, 0.3, 0.5]), r"order must be an int in 1..2"),
        (lambda: KneserNey(NGramCounts(list("ab"), 2), discount=1.5), r"discount must be in \(0, 1\]"),
        (lambda: Vocab(["a", BOS]), "reserved for padding"),
        (lambda: Vocab(["a", "a"]), "must be distinct"),
        (lambda: Vocab.build(["a"], min_count=2), "pass unk="),
        (lambda: Vocab.build([]), "empty corpus"),
        (lambda: perplexity_from_probs([]), "empty"),
        (lambda: perplexity_from_probs([0.5, 1.5]), r"must lie in \[0, 1\]"),
        (lambda: AddK(NGramCounts(list("ab"), 2)).perplexity([]), "empty"),
        (lambda: count_ngrams("ab", 0), "n must be an int >= 1"),
        (lambda: em_lambdas(np.ones(3)), r"P must be a \(T, M\) array"),
        (lambda: fit_lambdas(NGramCounts(list("ab"), 2), [], 2), "needs held-out tokens"),
    ],
)
def test_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_errors_at_prediction_time():
    counts = NGramCounts(list("abba"), 2)
    with pytest.raises(KeyError, match="not in the vocabulary .* unk="):
        AddK(counts).perplexity(list("abz"))
    with pytest.raises(ValueError, match="never followed by a token .* use smoothing"):
        AddK(NGramCounts(list("abc"), 2), k=0).next_token_probs(["c"])  # 'c' ends the text
    with pytest.raises(TypeError, match="numpy Generator"):
        AddK(counts).sample(0, 5)
    words = NGramCounts(word_tokens("to be or not to be"), 2)
    with pytest.raises(TypeError, match="not characters: pass a list of tokens"):
        AddK(words).next_token_probs("to be")


# ---------------------------------------------------------------------------
# Exercises: the references pass, wrong answers fail with a helpful message
# ---------------------------------------------------------------------------


def test_exercise_references_pass():
    from lmlib.exercises import get

    for id in ("ch01.count_ngrams", "ch01.perplexity", "ch01.add_k_next_probs", "ch01.continuation_logprob"):
        assert check(id, get(id).reference, quiet=True).ok


def test_count_ngrams_wrong_answers():
    def string_keys(tokens, n):
        out = {}
        for i in range(len(tokens) - n + 1):
            key = "".join(tokens[i : i + n])
            out[key] = out.get(key, 0) + 1
        return out

    def off_by_one(tokens, n):
        return dict(count_ngrams(tokens[:-1], n)) if tokens else {}

    with pytest.raises(ExerciseFailed, match=r"keys must be tuples of tokens such as \('a', 'b'\)"):
        check("ch01.count_ngrams", string_keys)
    expected = r"2/12 checks passed\. First problem: on the worked example .*for key \(.a., .b.\): got 1, expected 2"
    with pytest.raises(ExerciseFailed, match=expected):
        check("ch01.count_ngrams", off_by_one)


def test_perplexity_wrong_answers():
    def forgot_exp(probs):
        return -sum(math.log(p) for p in probs) / len(probs)

    def crashes_on_zero(probs):
        return math.exp(-sum(math.log(p) for p in probs) / len(probs))

    def wrong_sign(probs):
        return math.exp(sum(math.log(p) for p in probs) / len(probs))

    with pytest.raises(ExerciseFailed, match=r"on a single token of probability 0.5, .*: got 0.69.*take its exp"):
        check("ch01.perplexity", forgot_exp)
    with pytest.raises(ExerciseFailed, match=r"got 0.5, expected 2.0 \(that is 1 / perplexity"):
        check("ch01.perplexity", wrong_sign)
    with pytest.raises(ExerciseFailed, match=r"on a token of probability zero.*raised ValueError: math domain error"):
        check("ch01.perplexity", crashes_on_zero)


def test_add_k_wrong_answers():
    def no_kv_in_denominator(next_counts, vocab, k):
        total = sum(next_counts.values()) + k
        return {w: (next_counts.get(w, 0) + k) / total for w in vocab}

    def not_implemented(next_counts, vocab, k):
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match=r"on the worked example .*: for key .a.: got 0.25, expected 0.2"):
        check("ch01.add_k_next_probs", no_kv_in_denominator)
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check("ch01.add_k_next_probs", not_implemented)


def test_continuation_logprob_wrong_answer():
    def returns_probability(model, prompt, continuation):
        return math.exp(model.log_prob(continuation, prompt=prompt))

    with pytest.raises(ExerciseFailed, match="return its natural log"):
        check("ch01.continuation_logprob", returns_probability)


# ---------------------------------------------------------------------------
# The next-token explorer builds and reacts (no kernel needed to construct it)
# ---------------------------------------------------------------------------


def test_next_token_explorer_builds_and_updates():
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    from lmlib.ui.next_tokens import next_token_explorer

    model = KneserNey(NGramCounts(list("to be or not to be"), 3))
    box = next_token_explorer({"chars": (model, char_tokens)}, prefix="to ", k=3)
    text, (choice, top_k), out = box.children[0], box.children[1].children, box.children[2]
    text.value = "not t"  # triggers a redraw
    top_k.value = 5
    text.value = "zebra"  # unknown characters: the widget reports, it does not crash
    assert choice.value == "chars"

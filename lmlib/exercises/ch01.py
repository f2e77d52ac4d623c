"""Exercises of Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).

Each exercise is graded against the lmlib function that the chapter teaches,
on random inputs and on edge cases (empty text, a single token, zero
probabilities, unseen contexts, ...).

Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..lm.ngram import AddK, KneserNey, NGramCounts, Vocab, add_k_distribution, count_ngrams, perplexity_from_probs
from .core import Case, compare_values, register

_LETTERS = list("abcde")


def _random_tokens(rng: np.random.Generator, length: int, alphabet: list[str] = _LETTERS) -> list[str]:
    return [alphabet[i] for i in rng.integers(0, len(alphabet), size=length)]


# ----------------------------------------------------------------------------
# ch01.count_ngrams
# ----------------------------------------------------------------------------


def _count_ngrams_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(args=(list("abab"), 2), label="the worked example ['a','b','a','b'], n=2"),
        Case(args=([], 2), label="an empty text"),
        Case(args=(["to"], 1), label="a single token, n=1"),
        Case(args=(list("ab"), 3), label="a text shorter than n"),
        Case(args=(list("aaaa"), 2), label="overlapping repeats 'aaaa', n=2"),
        Case(args=("to be or not to be".split(), 2), label="word tokens"),
    ]
    for i in range(6):
        n = int(rng.integers(1, 5))
        cases.append(Case(args=(_random_tokens(rng, int(rng.integers(0, 40))), n), label=f"random text {i + 1}, n={n}"))
    return cases


def _compare_counts(got: Any, expected: Any) -> str | None:
    if isinstance(got, dict) and got and not all(isinstance(key, tuple) for key in got):
        key = next(key for key in got if not isinstance(key, tuple))
        return f"keys must be tuples of tokens such as ('a', 'b'), but one key is {key!r}"
    if isinstance(got, dict):
        got = {key: value for key, value in got.items() if value != 0}  # a Counter may hold zeros
    return compare_values(got, dict(expected))


register("ch01.count_ngrams", count_ngrams, _count_ngrams_cases, compare=_compare_counts, title="Count n-grams")


# ----------------------------------------------------------------------------
# ch01.perplexity
# ----------------------------------------------------------------------------


def _perplexity_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(args=([0.5],), label="a single token of probability 0.5"),
        Case(args=([1.0, 1.0, 1.0],), label="a model that is always certain and right"),
        Case(args=([1 / 65] * 10,), label="the uniform model over 65 characters"),
        Case(args=([0.5, 0.0, 0.25],), label="a token of probability zero"),
        Case(args=([0.9, 0.1],), label="two tokens"),
    ]
    for i in range(6):
        probs = rng.uniform(0.001, 1.0, size=int(rng.integers(1, 30))).round(6).tolist()
        cases.append(Case(args=(probs,), label=f"random probabilities {i + 1}"))
    return cases


def _compare_perplexity(got: Any, expected: Any) -> str | None:
    problem = compare_values(got, expected)
    if problem and isinstance(got, (int, float)) and math.isfinite(got) and math.isfinite(expected):
        if math.isclose(got, math.log(expected), rel_tol=1e-6, abs_tol=1e-9):
            return problem + " (that is the average negative log-probability: take its exp)"
        if expected > 0 and math.isclose(got, 1 / expected, rel_tol=1e-6):
            return problem + " (that is 1 / perplexity: check the sign inside exp)"
    return problem


register(
    "ch01.perplexity", perplexity_from_probs, _perplexity_cases, compare=_compare_perplexity,
    title="Perplexity from probabilities",
)


# ----------------------------------------------------------------------------
# ch01.add_k_next_probs
# ----------------------------------------------------------------------------


def _add_k_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case(args=({"u": 3}, ["a", "u"], 1.0), label="the worked example ({'u': 3}, ['a', 'u'], k=1)"),
        Case(args=({}, list("abcd"), 1.0), label="an unseen context (no counts), k=1"),
        Case(args=({"a": 2, "b": 6}, list("abc"), 0.0), label="k=0 (maximum likelihood)"),
        Case(args=({"x": 5}, ["x"], 0.5), label="a one-token vocabulary"),
        Case(args=({"a": 1}, list("abcdefgh"), 0.01), label="a small k"),
    ]
    for i in range(5):
        vocab = _LETTERS[: int(rng.integers(1, len(_LETTERS) + 1))]
        seen = [w for w in vocab if rng.random() < 0.6]
        counts = {w: int(rng.integers(1, 20)) for w in seen}
        k = float(rng.choice([0.1, 0.5, 1.0, 2.0]))
        cases.append(Case(args=(counts, vocab, k), label=f"random counts {i + 1}, k={k}"))
    return cases


register("ch01.add_k_next_probs", add_k_distribution, _add_k_cases, title="Add-k smoothed next-token distribution")


# ----------------------------------------------------------------------------
# ch01.continuation_logprob
# ----------------------------------------------------------------------------


def _continuation_logprob_reference(model, prompt: list, continuation: list) -> float:
    return model.log_prob(continuation, prompt=prompt)


def _continuation_cases(rng: np.random.Generator) -> list[Case]:
    text = _random_tokens(rng, 300, list("abc "))
    counts = NGramCounts(text, 3, vocab=Vocab.build(list("abc ")))
    bigram, trigram, kn = AddK(counts, k=0.5, order=2), AddK(counts, k=0.1, order=3), KneserNey(counts, order=3)
    cases = [
        Case(args=(bigram, list("ab"), list("c")), label="one token after a prompt (bigram model)"),
        Case(args=(trigram, list("ab"), []), label="an empty continuation"),
        Case(args=(trigram, [], list("abc")), label="an empty prompt (the text starts with the continuation)"),
        Case(args=(trigram, list("a"), list("b")), label="a prompt shorter than the context (trigram model)"),
        Case(args=(kn, list("cab a"), list("bc a")), label="a Kneser-Ney trigram model"),
    ]
    for i in range(4):
        model = [bigram, trigram, kn][i % 3]
        prompt = _random_tokens(rng, int(rng.integers(0, 6)), list("abc "))
        cont = _random_tokens(rng, int(rng.integers(1, 8)), list("abc "))
        cases.append(Case(args=(model, prompt, cont), label=f"random prompt and continuation {i + 1} ({model!r})"))
    return cases


def _compare_logprob(got: Any, expected: Any) -> str | None:
    problem = compare_values(got, expected, rtol=1e-6, atol=1e-9)
    is_number = isinstance(got, (int, float)) and math.isfinite(got)
    if problem and is_number and math.isclose(got, math.exp(expected), rel_tol=1e-6):
        return problem + " (you returned a probability; return its natural log)"
    if problem and is_number and got > 0:
        return problem + " (a log-probability is never positive)"
    return problem


register(
    "ch01.continuation_logprob",
    _continuation_logprob_reference,
    _continuation_cases,
    compare=_compare_logprob,
    title="Log-probability of a continuation (the chain rule)",
)

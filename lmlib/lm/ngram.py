"""N-gram language models: count, smooth, score and sample.

An n-gram model predicts the next token from the ``n - 1`` tokens before it
(the Markov assumption)::

    P(x_t | x_1 .. x_{t-1})  ~=  P(x_t | x_{t-n+1} .. x_{t-1})

Tokens are any hashable symbols: characters (:func:`char_tokens`), words
(:func:`word_tokens`), or ids from a tokenizer. The pieces, in the order the
chapter builds them:

* :class:`Vocab` maps tokens to ids ``0 .. V-1`` (optionally with an ``<unk>``).
* :class:`NGramCounts` counts every m-gram, ``m = 1 .. n``, of a training text.
  Each m-gram is coded as one integer (its ids read as the digits of a number
  in base ``V + 1``), so counts live in sorted numpy arrays and a whole
  validation text is scored with a few vectorised look-ups.
* Models that turn counts into probabilities, all with the same interface
  (:class:`NGramLM`): :class:`AddK` (``k = 0`` is the maximum-likelihood
  model), :class:`Interpolated` (Jelinek & Mercer, 1980, weights fitted by EM
  with :func:`fit_lambdas` / :func:`em_lambdas`) and :class:`KneserNey` (Kneser & Ney, 1995).
* :func:`count_ngrams`, :func:`add_k_distribution` and :func:`perplexity_from_probs`:
  short plain-Python versions, used as references by the tests and the exercises.

The start of a text is padded with ``n - 1`` copies of :data:`BOS`, so the
first token is predicted from "beginning of text" and every order scores the
same tokens. ``BOS`` is only ever context: models never predict it.

Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "BOS",
    "UNK",
    "char_tokens",
    "word_tokens",
    "detokenize_words",
    "Vocab",
    "NGramCounts",
    "NGramLM",
    "AddK",
    "Interpolated",
    "KneserNey",
    "em_lambdas",
    "fit_lambdas",
    "sample_index",
    "count_ngrams",
    "add_k_distribution",
    "perplexity_from_probs",
]

Token = Hashable

#: The padding symbol: the context of the first tokens of a text ("beginning of sequence").
BOS = "<s>"
#: The conventional name of the unknown-token symbol (pass ``unk=UNK`` to :meth:`Vocab.build`).
UNK = "<unk>"

_INT64_MAX = np.iinfo(np.int64).max


# ----------------------------------------------------------------------------
# Tokens
# ----------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|\n|[^\sA-Za-z]")
_NO_SPACE_BEFORE = frozenset(",.;:!?")


def char_tokens(text: str) -> list[str]:
    """Split ``text`` into characters: ``"To be" -> ['T', 'o', ' ', 'b', 'e']``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if not isinstance(text, str):
        raise TypeError(f"char_tokens needs a str, got {type(text).__name__}")
    return list(text)


def word_tokens(text: str) -> list[str]:
    """Split ``text`` into words, punctuation marks and newlines.

    A word is a run of letters, possibly with inner apostrophes (``know't``);
    every other non-space character is its own token; ``"\\n"`` is kept as a
    token so that generated text has lines. Spaces are dropped.
    ``"Speak, speak.\\n" -> ['Speak', ',', 'speak', '.', '\\n']``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if not isinstance(text, str):
        raise TypeError(f"word_tokens needs a str, got {type(text).__name__}")
    return _WORD.findall(text)


def detokenize_words(tokens: Iterable[str]) -> str:
    """Join word tokens back into readable text (the inverse of :func:`word_tokens` up to spacing).

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    out: list[str] = []
    for tok in tokens:
        if not out or out[-1].endswith("\n") or tok == "\n" or tok in _NO_SPACE_BEFORE:
            out.append(tok)
        else:
            out.append(" " + tok)
    return "".join(out)


# ----------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------


class Vocab:
    """A fixed list of tokens with ids ``0 .. V-1``, and an optional unknown-token symbol.

    Args:
        tokens: the distinct tokens, in id order.
        unk: a symbol (one of ``tokens``) that stands for every token not in
            the vocabulary; ``None`` makes unknown tokens an error.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, tokens: Sequence[Token], unk: Token | None = None):
        tokens = list(tokens)
        if not tokens:
            raise ValueError("a vocabulary needs at least one token")
        self.itos: list[Token] = tokens
        self.stoi: dict[Token, int] = {t: i for i, t in enumerate(tokens)}
        if len(self.stoi) != len(tokens):
            dup = [t for t, c in Counter(tokens).items() if c > 1][:5]
            raise ValueError(f"vocabulary tokens must be distinct; repeated: {dup}")
        if BOS in self.stoi:
            raise ValueError(f"{BOS!r} is reserved for padding the start of a text and cannot be a vocabulary token")
        if unk is not None and unk not in self.stoi:
            raise ValueError(f"the unknown-token symbol {unk!r} must be one of the vocabulary tokens")
        self.unk = unk
        # a character vocabulary encodes a str with one table look-up per code point
        chars = [t for t in tokens if t != unk]
        self._char_table = None
        if chars and all(isinstance(t, str) and len(t) == 1 for t in chars):
            self._char_table = np.full(max(ord(t) for t in chars) + 1, -1, dtype=np.int64)
            for t in chars:
                self._char_table[ord(t)] = self.stoi[t]

    def _encode_str(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = self._char_table
        ids = np.full(len(points), -1, dtype=np.int64)
        inside = points < len(table)
        ids[inside] = table[points[inside]]
        unknown = ids < 0
        if unknown.any():
            if self.unk is None:
                bad = chr(points[np.argmax(unknown)])
                raise KeyError(
                    f"token {bad!r} is not in the vocabulary ({len(self)} tokens) and the vocabulary has "
                    f"no unknown-token symbol; build it with Vocab.build(..., unk='{UNK}') or remove the token"
                )
            ids[unknown] = self.stoi[self.unk]
        return ids

    @classmethod
    def build(cls, tokens: Iterable[Token], min_count: int = 1, unk: Token | None = None) -> "Vocab":
        """The vocabulary of a training text: every token seen at least ``min_count`` times.

        Tokens are sorted when they can be compared (characters come out in
        code-point order), else kept in order of first appearance. With
        ``unk`` (e.g. ``"<unk>"``), the symbol is added as the last token and
        rarer tokens map to it; ``min_count > 1`` needs ``unk``.
        """
        counts = Counter(tokens)
        if not counts:
            raise ValueError("cannot build a vocabulary from an empty corpus")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        if min_count > 1 and unk is None:
            raise ValueError(f"min_count={min_count} drops rare tokens, which then need a symbol: pass unk='{UNK}'")
        keep = [t for t, c in counts.items() if c >= min_count and t != unk]
        try:
            keep = sorted(keep)
        except TypeError:
            pass  # tokens of mixed types: keep first-appearance order
        if unk is not None:
            keep.append(unk)
        return cls(keep, unk=unk)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: Token) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.itos[:8])
        return f"Vocab(V={len(self)}, unk={self.unk!r}, tokens=[{head}{', ...' if len(self) > 8 else ''}])"

    def encode(self, tokens: Iterable[Token]) -> np.ndarray:
        """Token ids, ``(T,)`` int64. Unknown tokens become ``unk`` or raise ``KeyError``."""
        if isinstance(tokens, str) and self._char_table is not None:
            return self._encode_str(tokens)
        stoi = self.stoi
        if self.unk is None:
            try:
                ids = [stoi[t] for t in tokens]
            except KeyError as e:
                raise KeyError(
                    f"token {e.args[0]!r} is not in the vocabulary ({len(self)} tokens) and the vocabulary has "
                    f"no unknown-token symbol; build it with Vocab.build(..., unk='{UNK}') or remove the token"
                ) from None
        else:
            u = stoi[self.unk]
            ids = [stoi.get(t, u) for t in tokens]
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[Token]:
        """Tokens for ids (the inverse of :meth:`encode` for known tokens)."""
        return [self.itos[int(i)] for i in ids]


# ----------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------


def _find(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``query`` (any shape) in the sorted array ``keys``, and whether each was found.

    The queries are deduplicated and sorted first (``np.unique``): binary searches
    for sorted queries touch memory in order, which is ~10x faster on big tables.
    """
    if len(keys) == 0:
        return np.zeros(query.shape, dtype=np.int64), np.zeros(query.shape, dtype=bool)
    uniq, inverse = np.unique(query, return_inverse=True)
    idx = np.minimum(np.searchsorted(keys, uniq), len(keys) - 1)
    found = keys[idx] == uniq
    return idx[inverse].reshape(query.shape), found[inverse].reshape(query.shape)


class _Table:
    """Counts of m-grams coded as int64, sorted, with per-context totals and type counts."""

    def __init__(self, codes: np.ndarray, counts: np.ndarray, base: int):
        self.codes, self.counts = codes, counts  # (U,), (U,)
        ctx = codes // base  # non-decreasing because codes are sorted
        self.ctx_codes, start = np.unique(ctx, return_index=True)
        self.ctx_totals = np.add.reduceat(counts, start) if len(counts) else counts  # c(h) = sum_w c(h w)
        self.ctx_types = np.diff(np.append(start, len(codes)))  # N1+(h .) = #{w : c(h w) > 0}

    def count(self, query: np.ndarray) -> np.ndarray:
        """``c(h w)`` for each code in ``query`` (0 if never seen)."""
        idx, found = _find(self.codes, query)
        return np.where(found, self.counts[idx], 0)

    def context(self, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(c(h), N1+(h .))`` for each context code in ``ctx`` (0 if never seen)."""
        idx, found = _find(self.ctx_codes, ctx)
        return np.where(found, self.ctx_totals[idx], 0), np.where(found, self.ctx_types[idx], 0)


class NGramCounts:
    """How often each m-gram (``m = 1 .. n``) occurs in a training text.

    The text is padded on the left with ``n - 1`` :data:`BOS`, and for every
    order ``m`` the m-grams *ending at each real token* are counted, so every
    order counts exactly ``N = len(tokens)`` m-grams. An m-gram of ids
    ``(i_1, ..., i_m)`` is stored as the integer ``i_1 B^(m-1) + ... + i_m``
    with base ``B = V + 1`` (id ``V`` is ``BOS``); this needs ``B**n < 2**63``.

    Args:
        tokens: the training tokens, any hashable symbols, ``(N,)`` (a str counts as its characters).
        n: the largest order to count (``n = 2`` counts unigrams and bigrams).
        vocab: the vocabulary; default: every distinct token of ``tokens``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, tokens: Sequence[Token], n: int, vocab: Vocab | None = None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an int >= 1 (n = 1 is a unigram model), got {n!r}")
        n = int(n)
        if len(tokens) == 0:
            raise ValueError("cannot count n-grams of an empty corpus")
        self.vocab = vocab if vocab is not None else Vocab.build(tokens)
        self.n, self.V, self.B = n, len(self.vocab), len(self.vocab) + 1
        self.bos_id = self.V
        if self.B**n > _INT64_MAX:
            max_n = int(math.floor(math.log(_INT64_MAX) / math.log(self.B)))
            raise ValueError(
                f"{n}-grams over {self.V} tokens (plus {BOS}) do not fit in 64-bit codes; "
                f"use n <= {max_n}, or a smaller vocabulary (Vocab.build(..., min_count=2, unk='{UNK}'))"
            )
        ids = self.vocab.encode(tokens)
        self.N = len(ids)
        padded = np.concatenate([np.full(n - 1, self.bos_id, dtype=np.int64), ids])
        self.tables: list[_Table] = []  # tables[m - 1] holds the m-grams
        self._continuation: dict[int, _Table] = {}  # filled on demand by KneserNey
        code = np.zeros(self.N, dtype=np.int64)
        for m in range(1, n + 1):
            # prepend the token m-1 places before each real token as the new leading digit
            code = padded[n - m : n - m + self.N] * self.B ** (m - 1) + code
            uniq, cnt = np.unique(code, return_counts=True)
            self.tables.append(_Table(uniq, cnt.astype(np.int64), self.B))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{m}:{len(t.codes):,}" for m, t in enumerate(self.tables, 1))
        return f"NGramCounts(n={self.n}, N={self.N:,}, V={self.V}, distinct m-grams {{{sizes}}})"

    def _continuation_table(self, m: int) -> _Table:
        """Continuation counts ``N1+(. g)`` of the m-grams ``g`` (``m < n``): in how many distinct
        contexts each occurs, i.e. how many distinct (m+1)-grams end with it. Computed once, then cached
        (Kneser-Ney models of every order share them)."""
        if m not in self._continuation:
            higher = self.tables[m]  # the (m+1)-grams; each distinct one adds 1 to its suffix
            suffix, cont = np.unique(higher.codes % self.B**m, return_counts=True)
            self._continuation[m] = _Table(suffix, cont.astype(np.int64), self.B)
        return self._continuation[m]

    def encode_ngram(self, ngram: Sequence[Token]) -> int:
        """The integer code of one m-gram of tokens (``BOS`` allowed as leading padding)."""
        code = 0
        for t in ngram:
            code = code * self.B + (self.bos_id if t == BOS else int(self.vocab.encode([t])[0]))
        return code

    def count(self, ngram: Sequence[Token]) -> int:
        """``c(ngram)``: how often the m-gram occurs (``1 <= m <= n``); 0 if never."""
        m = len(ngram)
        if not 1 <= m <= self.n:
            raise ValueError(f"n-gram of length {m}: these counts hold orders 1..{self.n}")
        return int(self.tables[m - 1].count(np.array([self.encode_ngram(ngram)]))[0])

    def context_count(self, context: Sequence[Token]) -> int:
        """``c(h)``: how often ``context`` is followed by a token (``len(context) <= n - 1``)."""
        m = len(context) + 1
        if not 1 <= m <= self.n:
            raise ValueError(f"context of length {m - 1}: these counts hold contexts of length 0..{self.n - 1}")
        ctx = np.array([self.encode_ngram(context)])
        return int(self.tables[m - 1].context(ctx)[0][0])

    def to_dict(self, m: int) -> dict[tuple, int]:
        """All m-gram counts as ``{(token, ...): count}`` (slow for big tables: for inspection and tests)."""
        if not 1 <= m <= self.n:
            raise ValueError(f"order {m}: these counts hold orders 1..{self.n}")
        table = self.tables[m - 1]
        digits = np.empty((len(table.codes), m), dtype=np.int64)
        rest = table.codes.copy()
        for j in range(m - 1, -1, -1):
            rest, digits[:, j] = np.divmod(rest, self.B)
        names = self.vocab.itos + [BOS]
        return {tuple(names[i] for i in row): int(c) for row, c in zip(digits.tolist(), table.counts.tolist())}


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------


def sample_index(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw an index ``i`` with probability ``probs[i]`` (inverse-CDF sampling, one ``rng.random()``).

    Args:
        probs: ``(V,)`` non-negative weights (normalised or not, with a positive sum).
        rng: the random generator, e.g. ``np.random.default_rng(0)``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    cdf = np.cumsum(probs)
    if not cdf[-1] > 0:
        raise ValueError("cannot sample: the probabilities sum to zero")
    # u < cdf[-1], and side="right" skips tokens of probability zero
    return int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))


class NGramLM:
    """The interface shared by every n-gram model (a subclass defines :meth:`_probs`).

    A model of order ``order`` uses the counts of orders ``1 .. order`` (at most
    ``counts.n``), so one :class:`NGramCounts` serves models of every order.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, counts: NGramCounts, order: int | None = None):
        if not isinstance(counts, NGramCounts):
            raise TypeError(f"counts must be an NGramCounts, got {type(counts).__name__}")
        order = counts.n if order is None else order
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= order <= counts.n:
            raise ValueError(
                f"order must be an int in 1..{counts.n} (the counts hold orders up to n={counts.n}), got {order!r}"
            )
        self.counts, self.order = counts, int(order)
        vocab = counts.vocab
        self._chars = all(isinstance(t, str) and len(t) == 1 for t in vocab.itos if t != vocab.unk)

    @property
    def vocab(self) -> Vocab:
        """The vocabulary: the tokens the model predicts."""
        return self.counts.vocab

    # -- the one method a model defines -------------------------------------
    def _probs(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``P(w[t] | hist[t])`` for every ``t``: ``hist (T, order-1)`` ids, ``w (T,)`` ids -> ``(T,)``."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------
    def _context_codes(self, hist: np.ndarray) -> list[np.ndarray]:
        """Codes of the contexts of every order: element ``m - 1`` codes the last ``m - 1`` ids of ``hist``."""
        B = self.counts.B
        code = np.zeros(hist.shape[0], dtype=np.int64)
        out = [code]
        for m in range(2, self.order + 1):
            code = hist[:, self.order - m] * B ** (m - 2) + code
            out.append(code)
        return out

    def _histories(self, ids: np.ndarray) -> np.ndarray:
        """``(N, order-1)`` contexts of each of the ``N`` ids, padded with ``BOS`` at the start."""
        h = self.order - 1
        if h == 0:
            return np.zeros((len(ids), 0), dtype=np.int64)
        padded = np.concatenate([np.full(h, self.counts.bos_id, dtype=np.int64), ids])
        return np.lib.stride_tricks.sliding_window_view(padded[:-1], h)

    def _as_tokens(self, tokens: Sequence[Token]) -> Sequence[Token]:
        """A list of tokens; a str is accepted (and kept, it encodes faster) only by character-level models."""
        if isinstance(tokens, str):
            if not self._chars:
                raise TypeError(
                    "this model's tokens are not characters: pass a list of tokens, e.g. word_tokens(text), not a str"
                )
            return tokens
        return list(tokens)

    def _context_ids(self, context: Sequence[Token]) -> np.ndarray:
        context = self._as_tokens(context)
        h = self.order - 1
        ids = self.vocab.encode(context[max(0, len(context) - h) :] if h else [])
        return np.concatenate([np.full(h - len(ids), self.counts.bos_id, dtype=np.int64), ids])

    # -- public interface ---------------------------------------------------
    def token_probs(self, tokens: Sequence[Token]) -> np.ndarray:
        """``P(w_t | previous order-1 tokens)`` for each token of ``tokens`` (the text starts after BOS): ``(N,)``."""
        ids = self.vocab.encode(self._as_tokens(tokens))
        return self._probs(self._histories(ids), ids)

    def context_counts(self, tokens: Sequence[Token]) -> np.ndarray:
        """``c(h)`` for the context ``h`` (previous ``order - 1`` tokens) of each token: ``(N,)`` int64.

        0 marks a context that never occurred in the training text.
        """
        ids = self.vocab.encode(self._as_tokens(tokens))
        ctx = self._context_codes(self._histories(ids))[-1]
        return self.counts.tables[self.order - 1].context(ctx)[0]

    def next_token_probs(self, context: Sequence[Token]) -> np.ndarray:
        """The distribution of the next token after ``context``: ``(V,)``, sums to 1.

        Only the last ``order - 1`` tokens of ``context`` matter; a shorter
        context is padded with ``BOS`` ("the text starts here").
        """
        ctx = self._context_ids(context)
        V = self.counts.V
        p = self._probs(np.broadcast_to(ctx, (V, len(ctx))), np.arange(V, dtype=np.int64))
        if not p.sum() > 0:
            tokens = list(self._as_tokens(context))
            tail = [BOS] * max(0, self.order - 1 - len(tokens)) + tokens[max(0, len(tokens) - self.order + 1) :]
            raise ValueError(
                f"the context {tail!r} was never followed by a token in the training text, "
                "so this model has no prediction for it (the maximum-likelihood model, k=0, cannot generalise); "
                "use smoothing: AddK with k > 0, Interpolated or KneserNey"
            )
        return p

    def top_next(self, context: Sequence[Token], k: int = 10) -> list[tuple[Token, float]]:
        """The ``k`` most likely next tokens after ``context``, as ``(token, probability)``, most likely first."""
        p = self.next_token_probs(context)
        best = np.argsort(-p, kind="stable")[:k]
        return [(self.vocab.itos[i], float(p[i])) for i in best]

    def log_likelihood(self, tokens: Sequence[Token]) -> float:
        """``sum_t log P(w_t | context)`` in nats; ``-inf`` if some token has probability 0."""
        with np.errstate(divide="ignore"):
            return float(np.log(self.token_probs(tokens)).sum())

    def log_prob(self, tokens: Sequence[Token], prompt: Sequence[Token] = ()) -> float:
        """``log P(tokens | prompt)`` in nats, by the chain rule: the sum of ``log P(w_t | prompt, w_<t)``.

        ``log_prob([], prompt) == 0.0``; ``log_prob(tokens)`` (no prompt) equals ``log_likelihood(tokens)``.
        """
        prompt, tokens = list(self._as_tokens(prompt)), list(self._as_tokens(tokens))
        with np.errstate(divide="ignore"):
            return float(np.log(self.token_probs(prompt + tokens)[len(prompt) :]).sum())

    def perplexity(self, tokens: Sequence[Token]) -> float:
        """``exp(-log_likelihood / N)``: the model's average branching factor on ``tokens``.

        ``inf`` if some token has probability 0.
        """
        if len(tokens) == 0:
            raise ValueError("perplexity of an empty text is undefined")
        return float(np.exp(-self.log_likelihood(tokens) / len(tokens)))

    def sample(self, rng: np.random.Generator, length: int, prompt: Sequence[Token] = ()) -> list[Token]:
        """Generate ``length`` tokens after ``prompt`` (not included), one at a time with :func:`sample_index`.

        The same ``rng`` state gives the same text: ``model.sample(np.random.default_rng(0), 100)``.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
        if not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"length must be an int >= 0, got {length!r}")
        context = list(self._as_tokens(prompt))
        out: list[Token] = []
        for _ in range(length):
            p = self.next_token_probs(context)
            tok = self.vocab.itos[sample_index(p, rng)]
            out.append(tok)
            context.append(tok)
            if len(context) > self.order:
                del context[0]
        return out


class AddK(NGramLM):
    """Add-k smoothing: ``P(w | h) = (c(h w) + k) / (c(h) + k V)``; ``k = 0`` is maximum likelihood.

    ``k = 1`` is Laplace's add-one rule. A context never seen in training
    gets the uniform distribution ``1 / V`` (with ``k > 0``) or no prediction
    at all (``k = 0``: its tokens get probability 0).

    Args:
        counts: the training counts.
        k: the pseudo-count added to every next token, ``k >= 0``.
        order: the model's n (default ``counts.n``).

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, counts: NGramCounts, k: float = 1.0, order: int | None = None):
        super().__init__(counts, order)
        if not (isinstance(k, (int, float, np.integer, np.floating)) and math.isfinite(k) and k >= 0):
            raise ValueError(f"k must be a finite number >= 0 (k = 0 is the unsmoothed model), got {k!r}")
        self.k = float(k)

    def __repr__(self) -> str:
        return f"AddK(order={self.order}, k={self.k:g})"

    def _probs(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        ctx = self._context_codes(hist)[-1]
        table = self.counts.tables[self.order - 1]
        c_hw = table.count(ctx * self.counts.B + w)
        c_h, _ = table.context(ctx)
        num, den = c_hw + self.k, c_h + self.k * self.counts.V
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


class Interpolated(NGramLM):
    """Linear interpolation (Jelinek & Mercer, 1980): a weighted mix of orders ``1 .. order``.

    ``P(w | h) = sum_m lambdas[m-1] * P_m(w | last m-1 tokens of h)``, where
    ``P_1`` is the add-``k`` unigram model and ``P_m`` (``m >= 2``) is the
    maximum-likelihood m-gram model, which falls back to ``P_{m-1}`` when its
    context was never seen. Each ``P_m`` is a distribution, so the mix is one.

    Args:
        counts: the training counts.
        lambdas: one weight per order ``1 .. order`` (``order = len(lambdas)``),
            each ``>= 0``, summing to 1; fit them on held-out text with :func:`fit_lambdas`.
        k: the pseudo-count of the unigram model ``P_1`` (keeps unseen tokens possible).

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, counts: NGramCounts, lambdas: Sequence[float], k: float = 1.0):
        lam = np.asarray(lambdas, dtype=float)
        if lam.ndim != 1 or len(lam) == 0:
            raise ValueError(f"lambdas must be a non-empty 1-D list (one weight per order), got shape {lam.shape}")
        super().__init__(counts, len(lam))
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError(f"interpolation weights must be finite and >= 0, got {lam.tolist()}")
        if not math.isclose(lam.sum(), 1.0, abs_tol=1e-6):
            raise ValueError(f"interpolation weights must sum to 1, got {lam.tolist()} (sum {lam.sum():.6g})")
        if not (math.isfinite(k) and k >= 0):
            raise ValueError(f"k must be a finite number >= 0, got {k!r}")
        self.lambdas, self.k = lam / lam.sum(), float(k)

    def __repr__(self) -> str:
        return f"Interpolated(order={self.order}, lambdas={np.round(self.lambdas, 3).tolist()})"

    def _component_probs(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``P_m(w[t] | hist[t])`` for every order: ``(order, T)``, one row per order."""
        c, B, V = self.counts, self.counts.B, self.counts.V
        ctxs = self._context_codes(hist)
        out = np.empty((self.order, len(w)))
        p = (c.tables[0].count(w) + self.k) / (c.N + self.k * V)  # add-k unigram
        out[0] = p
        for m in range(2, self.order + 1):
            table = c.tables[m - 1]
            c_h, _ = table.context(ctxs[m - 1])
            c_hw = table.count(ctxs[m - 1] * B + w)
            p = np.where(c_h > 0, c_hw / np.maximum(c_h, 1), p)  # unseen context: fall back to P_{m-1}
            out[m - 1] = p
        return out

    def component_probs(self, tokens: Sequence[Token]) -> np.ndarray:
        """``P_m(x_t | context)`` of each order ``m`` for each token: ``(N, order)`` (what EM needs)."""
        ids = self.vocab.encode(self._as_tokens(tokens))
        return self._component_probs(self._histories(ids), ids).T

    def _probs(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        P = self._component_probs(hist, w)  # (order, T)
        return sum(lam * row for lam, row in zip(self.lambdas, P))  # elementwise: no BLAS threads


def em_lambdas(P: np.ndarray, iters: int = 100, tol: float = 1e-5) -> np.ndarray:
    """Mixture weights that maximise ``sum_t log sum_m lambda_m P[t, m]``, by expectation-maximisation.

    Each held-out token is treated as drawn from one of the component models.
    E-step: the posterior ``r[t, m] = lambda_m P[t, m] / sum_j lambda_j P[t, j]``;
    M-step: ``lambda_m = mean_t r[t, m]``. Each step cannot lower the likelihood.

    Args:
        P: ``(T, M)`` probability of each of ``T`` held-out tokens under each of ``M`` components.
        iters, tol: stop after ``iters`` steps or when no weight moves by more than ``tol``.

    Returns:
        ``(M,)`` weights, non-negative, summing to 1 (starting from uniform weights).

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(f"P must be a (T, M) array with T, M >= 1, got shape {P.shape}")
    PT = np.ascontiguousarray(P.T)  # (M, T): one row per component, so each step is a few vector operations
    M, T = PT.shape
    lam = np.full(M, 1.0 / M)
    for _ in range(iters):
        mix = np.maximum(sum(lam[m] * PT[m] for m in range(M)), 1e-300)  # (T,) mixture probability of each token
        inv = 1.0 / mix
        # E- and M-step together: mean_t r[t, m] = lambda_m * mean_t P[t, m] / mix_t
        new = np.array([lam[m] * (PT[m] * inv).sum() / T for m in range(M)])
        done = np.max(np.abs(new - lam)) < tol
        lam = new
        if done:
            break
    return lam / lam.sum()


def fit_lambdas(
    counts: NGramCounts, heldout: Sequence[Token], order: int, k: float = 1.0, iters: int = 100, tol: float = 1e-5
) -> np.ndarray:
    """Interpolation weights that maximise the likelihood of held-out tokens (EM, as in Jelinek & Mercer, 1980).

    Computes the component probabilities ``P_m(w_t | context)`` of :class:`Interpolated`
    on ``heldout`` and runs :func:`em_lambdas` on them.

    Args:
        counts: training counts (the held-out text must not be part of them).
        heldout: ``(T,)`` tokens to fit on.
        order: number of weights (orders ``1 .. order``).
        k: the unigram pseudo-count (as in :class:`Interpolated`).
        iters, tol: passed to :func:`em_lambdas`.

    Returns:
        ``(order,)`` weights summing to 1, for ``Interpolated(counts, lambdas, k)``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if len(heldout) == 0:
        raise ValueError("fit_lambdas needs held-out tokens, got none")
    P = Interpolated(counts, np.full(order, 1.0 / order), k).component_probs(heldout)  # (T, order)
    return em_lambdas(P, iters, tol)


class KneserNey(NGramLM):
    """Interpolated Kneser-Ney smoothing (Kneser & Ney, 1995; Chen & Goodman, 1998).

    At every order an absolute discount ``D`` is taken from each seen count and
    the freed mass ``D N1+(h .) / c(h)`` is given to the next lower order.
    Lower orders count *continuation* counts ``N1+(. h w)`` (in how many
    distinct contexts ``h w`` appears) instead of raw counts; the lowest order
    is interpolated with the uniform distribution ``1 / V``::

        P(w | h) = max(c(h w) - D, 0) / c(h) + D N1+(h .) / c(h) * P(w | h')

    and ``P(w | h) = P(w | h')`` when ``c(h) = 0``.

    Args:
        counts: the training counts.
        discount: ``D`` in ``(0, 1]`` (0.75 is the classic choice).
        order: the model's n (default ``counts.n``).

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """

    def __init__(self, counts: NGramCounts, discount: float = 0.75, order: int | None = None):
        super().__init__(counts, order)
        if not (isinstance(discount, (int, float, np.integer, np.floating)) and 0 < discount <= 1):
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        self.discount = float(discount)
        # raw counts for the highest order, continuation counts below it
        self._tables = [counts._continuation_table(m) for m in range(1, self.order)]
        self._tables.append(counts.tables[self.order - 1])

    def __repr__(self) -> str:
        return f"KneserNey(order={self.order}, discount={self.discount:g})"

    def _probs(self, hist: np.ndarray, w: np.ndarray) -> np.ndarray:
        D, B, V = self.discount, self.counts.B, self.counts.V
        ctxs = self._context_codes(hist)
        p = np.full(len(w), 1.0 / V)  # order 0: uniform
        for m in range(1, self.order + 1):
            table = self._tables[m - 1]
            tot, types = table.context(ctxs[m - 1])
            c_hw = table.count(ctxs[m - 1] * B + w)
            safe = np.maximum(tot, 1)
            p = np.where(tot > 0, np.maximum(c_hw - D, 0) / safe + D * types / safe * p, p)
        return p


# ----------------------------------------------------------------------------
# Plain-Python references
# ----------------------------------------------------------------------------


def count_ngrams(tokens: Sequence[Token], n: int) -> Counter:
    """Count the n-grams (runs of ``n`` consecutive tokens) of ``tokens``, without padding.

    ``count_ngrams("abab", 2) == {('a', 'b'): 2, ('b', 'a'): 1}``; a text shorter than ``n`` has none.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    tokens = list(tokens)
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def add_k_distribution(next_counts: dict[Token, int], vocab: Sequence[Token], k: float) -> dict[Token, float]:
    """Add-k estimate of the next-token distribution of one context, from what followed it.

    ``P(w) = (next_counts.get(w, 0) + k) / (sum(next_counts.values()) + k * len(vocab))`` for every ``w`` in ``vocab``.
    ``add_k_distribution({'u': 3}, ['a', 'u'], 1) == {'a': 0.2, 'u': 0.8}``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    unknown = [w for w in next_counts if w not in set(vocab)]
    if unknown:
        raise ValueError(f"tokens {unknown[:3]} are counted but not in the vocabulary")
    total = sum(next_counts.values()) + k * len(vocab)
    if total <= 0:
        raise ValueError("an unseen context has no add-k estimate with k = 0; use k > 0")
    return {w: (next_counts.get(w, 0) + k) / total for w in vocab}


def perplexity_from_probs(probs: Sequence[float]) -> float:
    """``exp(-(1/N) sum_t log p_t)``: the perplexity of a text whose tokens got probabilities ``probs``.

    ``inf`` when some ``p_t`` is 0; the perplexity of ``[1/V] * N`` is ``V``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    probs = [float(p) for p in probs]
    if not probs:
        raise ValueError("perplexity of an empty list of probabilities is undefined")
    bad = [p for p in probs if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"probabilities must lie in [0, 1], got {bad[:3]}")
    if min(probs) == 0.0:
        return math.inf
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))

"""Data quality: a noisy corpus with known junk, and the heuristic filters that remove it.

Web-scale pre-training data is mostly junk: navigation menus and cookie
banners, spam that repeats one line, random characters, pages in other
languages, and the same page copied many times. Real pipelines (C4,
Gopher's MassiveText, RefinedWeb, FineWeb) clean it with a stack of cheap,
explainable rules. To *measure* how well such rules work we need ground
truth, so :func:`make_noisy_corpus` plants known junk into clean Shakespeare
speeches and records what it planted where. Each filter is a small pure
function ``text -> Verdict(keep, reason)``; :func:`apply_filters` runs a list
of them and reports what each removed, per planted junk type.

Deduplication (exact hashing and MinHash-LSH) lives in :mod:`lmlib.text.dedup`.

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = [
    "JUNK_TYPES",
    "BOILERPLATE_LINES",
    "BOILERPLATE_KEYWORDS",
    "FOREIGN_SENTENCES",
    "GOPHER_STOP_WORDS",
    "STOP_WORDS",
    "NoisyDoc",
    "NoisyCorpus",
    "Verdict",
    "FilterReport",
    "split_documents",
    "shakespeare_documents",
    "perturb",
    "make_noisy_corpus",
    "length_filter",
    "symbol_ratio_filter",
    "repetition_filter",
    "script_filter",
    "stopword_filter",
    "boilerplate_filter",
    "DEFAULT_FILTERS",
    "apply_filters",
]

#: Labels of the documents in a noisy corpus: ``"clean"`` plus every planted junk type.
JUNK_TYPES = ("clean", "boilerplate", "repetitive", "gibberish", "other_script", "exact_dup", "near_dup")

#: Web boilerplate planted into speeches (written for this book).
BOILERPLATE_LINES = (
    "Click here to subscribe to our newsletter!",
    "This website uses cookies to improve your experience. Accept all cookies",
    "We value your privacy. Read our cookie policy.",
    "Share this page: Facebook | Twitter | Email",
    "Copyright 2024. All rights reserved. Terms of use | Privacy policy",
    "Sign up for free and get 20% off your first order!",
    "JavaScript is disabled in your browser. Please enable JavaScript to continue.",
    "Log in | Register | Forgot your password?",
    "Read more >> Related posts >> Back to top",
    "Advertisement - continue reading below",
)

#: Lower-case phrases whose presence marks a document as boilerplate (C4-style keyword rule).
BOILERPLATE_KEYWORDS = (
    "click here",
    "subscribe to",
    "cookie",
    "privacy policy",
    "terms of use",
    "all rights reserved",
    "javascript",
    "sign up",
    "log in |",
    "forgot your password",
    "read more",
    "share this page",
    "back to top",
    "advertisement",
)

#: Sample sentences in three non-Latin scripts (written for this book; plain everyday sentences).
FOREIGN_SENTENCES: dict[str, tuple[str, ...]] = {
    "japanese": (
        "今日はとても良い天気ですね。",
        "私は毎朝駅まで歩いて行きます。",
        "この本は図書館で借りました。",
        "新しいレストランの料理はおいしかったです。",
        "明日の会議は午後三時に始まります。",
        "彼女は音楽を聴きながら勉強している。",
        "週末は家族と一緒に山へ行きました。",
        "すみません、郵便局はどこですか。",
    ),
    "russian": (
        "Сегодня утром я пил чай на кухне.",
        "Мой брат работает инженером в большом городе.",
        "Эта книга была очень интересной.",
        "Вечером мы пойдём в театр с друзьями.",
        "Поезд прибывает на вокзал в семь часов.",
        "Зимой здесь часто идёт снег.",
        "Пожалуйста, закройте окно, становится холодно.",
        "Дети играют в парке после школы.",
    ),
    "greek": (
        "Σήμερα ο καιρός είναι πολύ ωραίος.",
        "Η γιαγιά μου μαγειρεύει κάθε Κυριακή.",
        "Το λεωφορείο έφτασε με μεγάλη καθυστέρηση.",
        "Διαβάζω ένα βιβλίο για την ιστορία της Αθήνας.",
        "Τα παιδιά παίζουν στην παραλία όλο το απόγευμα.",
        "Θα ήθελα ένα φλιτζάνι καφέ, παρακαλώ.",
        "Ο σταθμός είναι δίπλα στο μεγάλο πάρκο.",
        "Το καλοκαίρι πηγαίνουμε συχνά στα νησιά.",
    ),
}

#: Gopher's English stop words: Gopher keeps a document only if it contains at least two of them.
GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})

#: Our default list: Gopher's plus nine more very common words. Gopher's rule is meant for documents
#: of 50+ words; on 20-word Shakespeare speeches its 8 words alone drop about 8% of clean text, this
#: list about 0.3% (measured in tests/test_quality.py).
STOP_WORDS = GOPHER_STOP_WORDS | frozenset({"a", "i", "you", "my", "in", "is", "it", "not", "for"})


# --------------------------------------------------------------------------------------------
# Documents and the noisy corpus
# --------------------------------------------------------------------------------------------


def split_documents(text: str, min_words: int = 0) -> list[str]:
    """Split ``text`` on blank lines into documents (for Shakespeare: one speech each).

    Documents with fewer than ``min_words`` whitespace-separated words are dropped.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if not isinstance(text, str):
        raise TypeError(f"split_documents needs a str, got {type(text).__name__}")
    if min_words < 0:
        raise ValueError(f"min_words must be >= 0, got {min_words}")
    docs = [d.strip("\n") for d in re.split(r"\n[ \t]*\n", text)]
    return [d for d in docs if d.strip() and len(d.split()) >= min_words]


def shakespeare_documents(subset: str = "tiny", min_words: int = 20, unique: bool = True) -> list[str]:
    """Shakespeare speeches as clean documents for the quality and dedup experiments.

    Args:
        subset: ``"tiny"`` (9 plays) or ``"all"``, as in :func:`lmlib.text.corpus.shakespeare`.
        min_words: drop speeches shorter than this ("Madam!" is not a document).
        unique: drop speeches whose normalised text (lower case, collapsed
            whitespace) already occurred, so that the only duplicates in a noisy
            corpus are the planted ones.

    Taught in: Chapter 2, "Data and tokenization".
    """
    from .corpus import shakespeare
    from .dedup import normalize

    docs = split_documents(shakespeare(subset).text, min_words=min_words)
    if unique:
        seen: set[str] = set()
        out = []
        for d in docs:
            key = normalize(d)
            if key not in seen:
                seen.add(key)
                out.append(d)
        docs = out
    return docs


@dataclass(frozen=True)
class NoisyDoc:
    """One document of a noisy corpus with its ground truth.

    Attributes:
        id: position in the corpus.
        text: the document.
        label: one of :data:`JUNK_TYPES`.
        dup_of: for ``"exact_dup"``/``"near_dup"``, the ``id`` of the clean original; else ``None``.
        source: index of the clean input document it was made from (``None`` for generated junk).

    Taught in: Chapter 2, "Data and tokenization".
    """

    id: int
    text: str
    label: str
    dup_of: int | None = None
    source: int | None = None


@dataclass
class NoisyCorpus:
    """A list of :class:`NoisyDoc` plus helpers to read off the ground truth.

    Taught in: Chapter 2, "Data and tokenization".
    """

    docs: list[NoisyDoc]
    seed: int
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, i: int) -> NoisyDoc:
        return self.docs[i]

    @property
    def texts(self) -> list[str]:
        """The document texts, in corpus order."""
        return [d.text for d in self.docs]

    @property
    def labels(self) -> list[str]:
        """The ground-truth label of each document, in corpus order."""
        return [d.label for d in self.docs]

    def counts(self) -> dict[str, int]:
        """Number of documents per label (every label of :data:`JUNK_TYPES`, zeros included)."""
        c = Counter(self.labels)
        return {t: c.get(t, 0) for t in JUNK_TYPES}

    def duplicate_pairs(self, labels: Iterable[str] = ("exact_dup", "near_dup")) -> set[tuple[int, int]]:
        """Planted duplicate pairs ``(i, j)`` with ``i < j``.

        Every copy with a label in ``labels`` forms a cluster with its original;
        all pairs inside a cluster are returned (two copies of one original are
        duplicates of each other too).
        """
        labels = set(labels)
        unknown = labels - set(JUNK_TYPES)
        if unknown:
            raise ValueError(f"unknown labels {sorted(unknown)}; known: {JUNK_TYPES}")
        clusters: dict[int, list[int]] = {}
        for d in self.docs:
            if d.label in labels and d.dup_of is not None:
                clusters.setdefault(d.dup_of, [d.dup_of]).append(d.id)
        pairs = set()
        for members in clusters.values():
            members = sorted(set(members))
            pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
        return pairs


_TYPO_LETTERS = string.ascii_lowercase


def _typo(word: str, rng: np.random.Generator) -> str:
    # Replace, insert or delete one character; the result always differs from `word`.
    kind = rng.integers(3) if len(word) > 1 else rng.integers(2)
    i = int(rng.integers(len(word)))
    if kind == 0:  # replace
        choices = [c for c in _TYPO_LETTERS if c != word[i].lower()]
        return word[:i] + choices[rng.integers(len(choices))] + word[i + 1 :]
    if kind == 1:  # insert
        return word[:i] + _TYPO_LETTERS[rng.integers(26)] + word[i:]
    return word[:i] + word[i + 1 :]  # delete


def perturb(text: str, rate: float, rng: np.random.Generator) -> str:
    """A near-copy of ``text``: each word is edited with probability ``rate``.

    An edit is, with equal odds, a swap with the next word, a deletion, or a
    typo (one character replaced, inserted or deleted). Line breaks are kept.
    At least one edit is made and the result always differs from ``text`` after
    normalisation (lower case, collapsed whitespace), so a near-copy is never
    an exact copy.

    Taught in: Chapter 2, "Data and tokenization".
    """
    from .dedup import normalize

    if not 0.0 < rate <= 1.0:
        raise ValueError(f"edit rate must be in (0, 1], got {rate}")
    lines = [line.split() for line in text.split("\n")]
    positions = [(li, wi) for li, ws in enumerate(lines) for wi in range(len(ws))]
    if len(positions) < 2:
        raise ValueError(f"cannot make a near-copy of a text with fewer than 2 words: {text!r}")
    for _ in range(100):
        new = [list(ws) for ws in lines]
        hit = rng.random(len(positions)) < rate
        if not hit.any():
            hit[rng.integers(len(positions))] = True
        deleted: set[tuple[int, int]] = set()
        for (li, wi), h in zip(positions, hit):
            if not h or (li, wi) in deleted:
                continue
            op = rng.integers(3)
            if op == 0 and wi + 1 < len(new[li]):
                new[li][wi], new[li][wi + 1] = new[li][wi + 1], new[li][wi]
            elif op == 1:
                deleted.add((li, wi))
            else:
                new[li][wi] = _typo(new[li][wi], rng)
        out = "\n".join(
            " ".join(w for wi, w in enumerate(ws) if (li, wi) not in deleted) for li, ws in enumerate(new)
        )
        if normalize(out) != normalize(text) and out.strip():
            return out
    raise RuntimeError(f"could not make a near-copy of {text!r} that differs from it")  # pragma: no cover


def _gibberish(rng: np.random.Generator) -> str:
    # Random "words" of random characters: half symbol-heavy noise, half letters-only keyboard mash.
    alphabet = (
        string.ascii_letters + string.digits + string.punctuation if rng.random() < 0.5 else string.ascii_lowercase
    )
    lines = []
    for _ in range(int(rng.integers(2, 6))):
        words = ["".join(rng.choice(list(alphabet), size=int(rng.integers(2, 10)))) for _ in range(rng.integers(5, 13))]
        lines.append(" ".join(words))
    return "\n".join(lines)


def _other_script(rng: np.random.Generator, speaker: str) -> str:
    lang = list(FOREIGN_SENTENCES)[rng.integers(len(FOREIGN_SENTENCES))]
    pool = FOREIGN_SENTENCES[lang]
    picked = rng.choice(len(pool), size=int(rng.integers(3, 7)), replace=False)
    return "\n".join([speaker] + [pool[i] for i in picked])


def _boilerplate(text: str, rng: np.random.Generator) -> str:
    picked = [BOILERPLATE_LINES[i] for i in rng.choice(len(BOILERPLATE_LINES), size=int(rng.integers(1, 4)), replace=False)]
    where = rng.integers(3)  # 0: before, 1: after, 2: split around the text
    if where == 0:
        return "\n".join(picked + [text])
    if where == 1:
        return "\n".join([text] + picked)
    return "\n".join(picked[:1] + [text] + picked[1:])


def _repetitive(text: str, rng: np.random.Generator) -> str:
    # Spam-like: one line (or a two-line passage) of the speech repeated many times in a row.
    lines = text.split("\n")
    body = list(range(1, len(lines))) if len(lines) > 1 else [0]
    start = body[rng.integers(len(body))]
    passage = lines[start : start + int(rng.integers(1, 3))]
    times = max(4, len(lines) // len(passage))
    return "\n".join(lines[: start + len(passage)] + passage * times + lines[start + len(passage) :])


def _noise_whitespace_case(text: str, rng: np.random.Generator) -> str:
    # Same text up to case and whitespace: what a *normalised* exact hash must still catch.
    kind = rng.integers(3)
    if kind == 0:
        return text.upper()
    if kind == 1:
        return text.replace(" ", "  ").replace("\n", " \n") + "\n"
    return "  " + text.lower()


def make_noisy_corpus(
    docs: Sequence[str],
    seed: int = 0,
    *,
    exact_dup_frac: float = 0.05,
    near_dup_frac: float = 0.05,
    boilerplate_frac: float = 0.04,
    repetitive_frac: float = 0.03,
    gibberish_frac: float = 0.03,
    other_script_frac: float = 0.03,
    edit_rate: float = 0.05,
    normalization_noise: float = 0.5,
) -> NoisyCorpus:
    """Plant known junk into clean documents and return the corpus with its ground truth.

    Every fraction is relative to ``len(docs)`` (rounded to the nearest count):

    * ``boilerplate``: a clean document with 1-3 web boilerplate lines added
      (:data:`BOILERPLATE_LINES`); replaces that document.
    * ``repetitive``: a clean document with one line or two-line passage
      repeated many times (at least half of its lines); replaces that document.
    * ``gibberish``: generated random-character text.
    * ``other_script``: a speaker line followed by 3-6 sentences in Japanese,
      Russian or Greek (:data:`FOREIGN_SENTENCES`).
    * ``exact_dup``: an exact copy of a clean document that stays in the
      corpus; a fraction ``normalization_noise`` of these differ in case or
      whitespace only.
    * ``near_dup``: a copy edited by :func:`perturb` at ``edit_rate``.

    Each clean document is the original of at most one copy. The corpus is
    shuffled; ``NoisyDoc.dup_of`` gives the ``id`` of a copy's original. The
    same ``docs`` and ``seed`` always give the same corpus.

    Args:
        docs: clean documents, e.g. :func:`shakespeare_documents`.
        seed: seed of the numpy random generator.

    Returns:
        A :class:`NoisyCorpus`; ``.texts`` and ``.labels`` are aligned lists.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise TypeError("docs must be a list of document strings (use split_documents to split a text)")
    if len(docs) == 0:
        raise ValueError("docs is empty: need clean documents to plant junk into")
    for i, d in enumerate(docs):
        if not isinstance(d, str) or not d.strip():
            raise ValueError(f"document {i} is empty or not a string: {d!r}")
    fracs = dict(
        exact_dup_frac=exact_dup_frac,
        near_dup_frac=near_dup_frac,
        boilerplate_frac=boilerplate_frac,
        repetitive_frac=repetitive_frac,
        gibberish_frac=gibberish_frac,
        other_script_frac=other_script_frac,
        normalization_noise=normalization_noise,
    )
    for name, f in fracs.items():
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {f}")
    if not 0.0 < edit_rate <= 1.0:
        raise ValueError(f"edit_rate must be in (0, 1], got {edit_rate}")
    n = len(docs)
    count = {k: int(round(v * n)) for k, v in fracs.items() if k != "normalization_noise"}
    n_replace = count["boilerplate_frac"] + count["repetitive_frac"]
    n_copies = count["exact_dup_frac"] + count["near_dup_frac"]
    if n_replace + n_copies > n:
        raise ValueError(
            f"asked for {n_replace} modified documents and {n_copies} copies but only {n} clean documents were given; "
            "lower the fractions"
        )

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    bp_idx = order[: count["boilerplate_frac"]]
    rep_idx = order[count["boilerplate_frac"] : n_replace]
    clean_idx = np.sort(order[n_replace:])
    originals = rng.choice(clean_idx, size=n_copies, replace=False)
    exact_orig, near_orig = originals[: count["exact_dup_frac"]], originals[count["exact_dup_frac"] :]

    # (text, label, source, original clean index)
    items: list[tuple[str, str, int | None, int | None]] = []
    items += [(docs[i], "clean", int(i), None) for i in clean_idx]
    items += [(_boilerplate(docs[i], rng), "boilerplate", int(i), None) for i in bp_idx]
    items += [(_repetitive(docs[i], rng), "repetitive", int(i), None) for i in rep_idx]
    for i in exact_orig:
        text = _noise_whitespace_case(docs[i], rng) if rng.random() < normalization_noise else docs[i]
        items.append((text, "exact_dup", int(i), int(i)))
    items += [(perturb(docs[i], edit_rate, rng), "near_dup", int(i), int(i)) for i in near_orig]
    speakers = [d.split("\n", 1)[0] for d in docs if d.split("\n", 1)[0].endswith(":")] or ["Speaker:"]
    items += [(_gibberish(rng), "gibberish", None, None) for _ in range(count["gibberish_frac"])]
    items += [
        (_other_script(rng, speakers[rng.integers(len(speakers))]), "other_script", None, None)
        for _ in range(count["other_script_frac"])
    ]

    shuffle = rng.permutation(len(items))
    id_of_clean = {items[k][2]: pos for pos, k in enumerate(shuffle) if items[k][1] == "clean"}
    out = []
    for pos, k in enumerate(shuffle):
        text, label, source, orig = items[k]
        out.append(NoisyDoc(id=pos, text=text, label=label, dup_of=None if orig is None else id_of_clean[orig], source=source))
    params = dict(fracs, edit_rate=edit_rate, n_clean_input=n)
    return NoisyCorpus(docs=out, seed=seed, params=params)


# --------------------------------------------------------------------------------------------
# Filters: text -> Verdict(keep, reason)
# --------------------------------------------------------------------------------------------


class Verdict(NamedTuple):
    """What a filter decided: ``keep`` (bool) and a human-readable ``reason``.

    Taught in: Chapter 2, "Data and tokenization".
    """

    keep: bool
    reason: str


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"a filter needs a str document, got {type(text).__name__}")


def length_filter(text: str, min_words: int = 10, max_words: int = 100_000) -> Verdict:
    """Drop documents with fewer than ``min_words`` or more than ``max_words`` words (Gopher: 50-100,000).

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    if not 0 <= min_words <= max_words:
        raise ValueError(f"need 0 <= min_words <= max_words, got {min_words}, {max_words}")
    n = len(text.split())
    if n < min_words:
        return Verdict(False, f"too short: {n} words < {min_words}")
    if n > max_words:
        return Verdict(False, f"too long: {n} words > {max_words}")
    return Verdict(True, f"{n} words")


def symbol_ratio_filter(text: str, max_ratio: float = 0.25) -> Verdict:
    """Drop documents whose non-space characters are more than ``max_ratio`` non-alphanumeric.

    Letters of any script count as alphanumeric (``str.isalnum``), so this
    catches symbol noise, not foreign text.

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    if not 0.0 <= max_ratio <= 1.0:
        raise ValueError(f"max_ratio must be in [0, 1], got {max_ratio}")
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return Verdict(False, "no visible characters")
    ratio = sum(not c.isalnum() for c in chars) / len(chars)
    if ratio > max_ratio:
        return Verdict(False, f"symbol ratio {ratio:.2f} > {max_ratio}")
    return Verdict(True, f"symbol ratio {ratio:.2f}")


def _word_ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def repetition_filter(
    text: str, max_dup_line_frac: float = 0.3, n: int = 5, max_dup_ngram_frac: float = 0.3
) -> Verdict:
    """Drop repetitive documents, after Gopher's repetition rules (Rae et al. 2021, table A1).

    Two measures:

    * duplicate-line fraction: lines that repeat an earlier line, over all
      non-empty lines (Gopher drops above 0.30);
    * duplicate n-gram fraction: characters covered by word ``n``-grams that
      occur more than once, over all characters of words (Gopher: 0.15 for
      5-grams down to 0.10 for 10-grams; our default 0.3 is looser because
      verse speeches are short and repeat refrains).

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    if n < 1:
        raise ValueError(f"n-gram size n must be >= 1, got {n}")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if not lines:
        return Verdict(False, "empty document")
    seen: set[str] = set()
    dup_lines = 0
    for line in lines:
        dup_lines += line in seen
        seen.add(line)
    line_frac = dup_lines / len(lines)
    if line_frac > max_dup_line_frac:
        return Verdict(False, f"duplicate-line fraction {line_frac:.2f} > {max_dup_line_frac}")
    words = text.lower().split()
    grams = _word_ngrams(words, n)
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = True
    total = sum(len(w) for w in words)
    ngram_frac = sum(len(w) for w, c in zip(words, covered) if c) / total if total else 0.0
    if ngram_frac > max_dup_ngram_frac:
        return Verdict(False, f"duplicate {n}-gram fraction {ngram_frac:.2f} > {max_dup_ngram_frac}")
    return Verdict(True, f"duplicate lines {line_frac:.2f}, duplicate {n}-grams {ngram_frac:.2f}")


def _script(ch: str) -> str:
    # First word of the Unicode name: LATIN, CYRILLIC, GREEK, HIRAGANA, CJK, ...
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def script_filter(text: str, max_non_latin: float = 0.3) -> Verdict:
    """Drop documents where more than ``max_non_latin`` of the letters are not Latin letters.

    The script of a letter is read off its Unicode name (``unicodedata.name``):
    "LATIN SMALL LETTER A", "CYRILLIC SMALL LETTER A", "HIRAGANA LETTER A", ...
    A crude but fast language-ID stand-in; real pipelines use fastText's
    language classifier.

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    if not 0.0 <= max_non_latin <= 1.0:
        raise ValueError(f"max_non_latin must be in [0, 1], got {max_non_latin}")
    scripts = Counter(_script(c) for c in text if c.isalpha())
    total = sum(scripts.values())
    if total == 0:
        return Verdict(False, "no letters")
    frac = 1.0 - scripts.get("LATIN", 0) / total
    if frac > max_non_latin:
        top = max((s for s in scripts if s != "LATIN"), key=scripts.__getitem__)
        return Verdict(False, f"{frac:.0%} non-Latin letters (mostly {top})")
    return Verdict(True, f"{frac:.0%} non-Latin letters")


def stopword_filter(text: str, min_stop_words: int = 2, stop_words: frozenset[str] = STOP_WORDS) -> Verdict:
    """Drop documents with fewer than ``min_stop_words`` distinct English stop words (after Gopher's rule).

    Real English prose cannot avoid "the", "and", "to", "of"...; gibberish and
    other languages do. Words are lower-cased and stripped of punctuation.
    Pass ``stop_words=GOPHER_STOP_WORDS`` for Gopher's exact list.

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    if min_stop_words < 0:
        raise ValueError(f"min_stop_words must be >= 0, got {min_stop_words}")
    words = {w.strip(string.punctuation) for w in text.lower().split()}
    found = sorted(words & set(stop_words))
    if len(found) < min_stop_words:
        return Verdict(False, f"{len(found)} stop words {found} < {min_stop_words}")
    return Verdict(True, f"{len(found)} stop words")


def boilerplate_filter(text: str, keywords: Sequence[str] = BOILERPLATE_KEYWORDS) -> Verdict:
    """Drop documents containing a boilerplate phrase (C4 drops lines/pages with "javascript", "cookie policy"...).

    Matching is case-insensitive on the raw text.

    Taught in: Chapter 2, "Data and tokenization".
    """
    _check_text(text)
    low = text.lower()
    hits = [k for k in keywords if k.lower() in low]
    if hits:
        return Verdict(False, f"boilerplate phrase {hits[0]!r}" + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""))
    return Verdict(True, "no boilerplate phrase")


#: The filters of the chapter, in the order a pipeline applies them.
DEFAULT_FILTERS: dict[str, Callable[[str], Verdict]] = {
    "length": length_filter,
    "symbol_ratio": symbol_ratio_filter,
    "script": script_filter,
    "stopwords": stopword_filter,
    "repetition": repetition_filter,
    "boilerplate": boilerplate_filter,
}


@dataclass
class FilterReport:
    """What :func:`apply_filters` did.

    Attributes:
        names: filter names, in pipeline order.
        kept: indices of documents every filter kept.
        removed: ``{doc index: (filter name, reason)}`` for the *first* filter that dropped it.
        flags: bool array ``(n_docs, n_filters)``: filter ``j`` alone would drop doc ``i``.
        labels: ground-truth labels, if given.

    Taught in: Chapter 2, "Data and tokenization".
    """

    names: list[str]
    kept: list[int]
    removed: dict[int, tuple[str, str]]
    flags: np.ndarray
    labels: list[str] | None = None

    def counts(self) -> dict[str, int]:
        """Documents removed by each filter (first filter to drop a document gets it), plus ``"kept"``."""
        c = Counter(name for name, _ in self.removed.values())
        out = {name: c.get(name, 0) for name in self.names}
        out["kept"] = len(self.kept)
        return out

    def by_label(self) -> dict[str, dict[str, int]]:
        """``{filter name or "kept": {label: count}}``; needs ``labels``."""
        if self.labels is None:
            raise ValueError("apply_filters was called without labels, so there is no per-label breakdown")
        kinds = [k for k in JUNK_TYPES if k in set(self.labels)] + sorted(set(self.labels) - set(JUNK_TYPES))
        table = {name: dict.fromkeys(kinds, 0) for name in [*self.names, "kept"]}
        for i, (name, _) in self.removed.items():
            table[name][self.labels[i]] += 1
        for i in self.kept:
            table["kept"][self.labels[i]] += 1
        return table

    def table(self) -> str:
        """A plain-text table: rows are filters, then "kept" and "total"; columns are labels and "total"."""
        if self.labels is None:
            rows = [(name, [str(v)]) for name, v in self.counts().items()]
            header = ["removed"]
        else:
            by = self.by_label()
            header = list(next(iter(by.values())).keys()) + ["total"]
            rows = [(name, [str(v) for v in d.values()] + [str(sum(d.values()))]) for name, d in by.items()]
            totals = Counter(self.labels)
            rows.append(("total", [str(totals[k]) for k in header[:-1]] + [str(len(self.labels))]))
        w0 = max(len("filter"), *(len(r[0]) for r in rows))
        widths = [max(len(h), *(len(r[1][j]) for r in rows)) for j, h in enumerate(header)]
        line = lambda first, cells: first.ljust(w0) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
        out = [line("filter", header), "-" * (w0 + 2 + sum(widths) + 2 * (len(widths) - 1))]
        out += [line(name, cells) for name, cells in rows]
        return "\n".join(out)


def apply_filters(
    docs: Sequence[str] | NoisyCorpus,
    filters: Mapping[str, Callable[[str], Verdict]] | Sequence[Callable[[str], Verdict]] | None = None,
    labels: Sequence[str] | None = None,
) -> FilterReport:
    """Run ``filters`` over ``docs`` as a pipeline and report what each one removed.

    Every filter is run on every document (``FilterReport.flags``), and a
    dropped document is credited to the first filter, in order, that drops it.

    Args:
        docs: document strings, or a :class:`NoisyCorpus` (its labels are used).
        filters: ``{name: fn}`` or a list of functions (named by ``__name__``);
            each ``fn(text) -> Verdict``. Default :data:`DEFAULT_FILTERS`.
        labels: ground-truth label per document, for :meth:`FilterReport.by_label`.

    Taught in: Chapter 2, "Data and tokenization".
    """
    if isinstance(docs, NoisyCorpus):
        labels = docs.labels if labels is None else labels
        docs = docs.texts
    if isinstance(docs, str):
        raise TypeError("docs must be a list of documents, not a single string")
    if filters is None:
        filters = DEFAULT_FILTERS
    if not isinstance(filters, Mapping):
        named = {}
        for f in filters:
            name = getattr(f, "__name__", None) or getattr(getattr(f, "func", None), "__name__", None) or repr(f)
            if name in named:
                raise ValueError(f"two filters are called {name!r}; pass a dict {{name: filter}} instead")
            named[name] = f
        filters = named
    if not filters:
        raise ValueError("no filters given")
    if labels is not None and len(labels) != len(docs):
        raise ValueError(f"got {len(labels)} labels for {len(docs)} documents")
    names = list(filters)
    flags = np.zeros((len(docs), len(names)), dtype=bool)
    kept: list[int] = []
    removed: dict[int, tuple[str, str]] = {}
    for i, text in enumerate(docs):
        first = None
        for j, name in enumerate(names):
            verdict = filters[name](text)
            if not isinstance(verdict, tuple) or len(verdict) != 2:
                raise TypeError(f"filter {name!r} must return Verdict(keep, reason), got {verdict!r}")
            if not verdict[0]:
                flags[i, j] = True
                if first is None:
                    first = (name, verdict[1])
        if first is None:
            kept.append(i)
        else:
            removed[i] = first
    return FilterReport(names=names, kept=kept, removed=removed, flags=flags, labels=list(labels) if labels is not None else None)

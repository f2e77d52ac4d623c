"""Tests of lmlib.text.quality: the noisy corpus with planted junk and the quality filters (Chapter 2)."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from lmlib.text.dedup import jaccard, normalize, shingles
from lmlib.text.quality import (
    BOILERPLATE_LINES,
    DEFAULT_FILTERS,
    FOREIGN_SENTENCES,
    GOPHER_STOP_WORDS,
    JUNK_TYPES,
    FilterReport,
    Verdict,
    apply_filters,
    boilerplate_filter,
    length_filter,
    make_noisy_corpus,
    perturb,
    repetition_filter,
    script_filter,
    shakespeare_documents,
    split_documents,
    stopword_filter,
    symbol_ratio_filter,
)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return shakespeare_documents("tiny")


@pytest.fixture(scope="module")
def corpus(docs):
    return make_noisy_corpus(docs[:800], seed=3)


# ---------------------------------------------------------------- documents and the noisy corpus


def test_split_documents_hand_example():
    text = "A:\nhello there friend\n\nB:\nhi\n  \nC:\none two three four\n"
    assert split_documents(text) == ["A:\nhello there friend", "B:\nhi", "C:\none two three four"]
    assert split_documents(text, min_words=4) == ["A:\nhello there friend", "C:\none two three four"]
    with pytest.raises(ValueError, match="min_words"):
        split_documents(text, min_words=-1)
    with pytest.raises(TypeError):
        split_documents(["not", "a", "str"])


def test_shakespeare_documents_are_long_and_unique(docs):
    assert len(docs) > 2500
    assert all(len(d.split()) >= 20 for d in docs)
    assert len({normalize(d) for d in docs}) == len(docs)
    assert all(d.split("\n", 1)[0].endswith(":") for d in docs[:50])  # speaker line first


def test_noisy_corpus_counts_and_ground_truth(corpus):
    n = 800
    counts = corpus.counts()
    assert set(counts) == set(JUNK_TYPES)
    assert counts["exact_dup"] == counts["near_dup"] == round(0.05 * n)
    assert counts["boilerplate"] == round(0.04 * n) and counts["gibberish"] == round(0.03 * n)
    assert counts["clean"] == n - counts["boilerplate"] - counts["repetitive"]
    assert len(corpus) == sum(counts.values())
    assert [d.id for d in corpus.docs] == list(range(len(corpus)))
    for d in corpus.docs:
        if d.label == "exact_dup":
            orig = corpus[d.dup_of]
            assert orig.label == "clean" and normalize(orig.text) == normalize(d.text)
        elif d.label == "near_dup":
            orig = corpus[d.dup_of]
            assert orig.label == "clean" and normalize(orig.text) != normalize(d.text)
            assert jaccard(shingles(orig.text), shingles(d.text)) > 0.4
        else:
            assert d.dup_of is None
    pairs = corpus.duplicate_pairs()
    assert len(pairs) == counts["exact_dup"] + counts["near_dup"]  # each original is copied at most once
    assert all(i < j for i, j in pairs)
    assert len(corpus.duplicate_pairs(["exact_dup"])) == counts["exact_dup"]


def test_noisy_corpus_planted_junk_looks_like_junk(corpus):
    foreign = {s for sents in FOREIGN_SENTENCES.values() for s in sents}
    for d in corpus.docs:
        if d.label == "boilerplate":
            assert any(line in d.text for line in BOILERPLATE_LINES)
        elif d.label == "other_script":
            assert sum(line in foreign for line in d.text.split("\n")) >= 3
        elif d.label == "repetitive":
            lines = d.text.split("\n")
            assert len(lines) - len(set(lines)) >= len(lines) / 3


def test_noisy_corpus_is_deterministic(docs):
    a = make_noisy_corpus(docs[:300], seed=7)
    b = make_noisy_corpus(docs[:300], seed=7)
    c = make_noisy_corpus(docs[:300], seed=8)
    assert a.texts == b.texts and a.labels == b.labels and [d.dup_of for d in a.docs] == [d.dup_of for d in b.docs]
    assert a.texts != c.texts


def test_noisy_corpus_clear_errors(docs):
    with pytest.raises(ValueError, match="empty"):
        make_noisy_corpus([])
    with pytest.raises(ValueError, match="document 1"):
        make_noisy_corpus(["a b c", "   "])
    with pytest.raises(TypeError, match="list of document"):
        make_noisy_corpus("one long string")
    with pytest.raises(ValueError, match="near_dup_frac"):
        make_noisy_corpus(docs[:10], near_dup_frac=1.5)
    with pytest.raises(ValueError, match="lower the fractions"):
        make_noisy_corpus(docs[:10], exact_dup_frac=0.6, near_dup_frac=0.6)
    with pytest.raises(ValueError, match="edit_rate"):
        make_noisy_corpus(docs[:10], edit_rate=0.0)
    with pytest.raises(ValueError, match="unknown labels"):
        make_noisy_corpus(docs[:20]).duplicate_pairs(["dup"])


def test_perturb_edits_at_the_requested_rate(docs):
    rng = np.random.default_rng(0)
    text = docs[0]
    for rate in (0.01, 0.1, 0.5):
        out = perturb(text, rate, rng)
        assert normalize(out) != normalize(text)
        assert out.count("\n") == text.count("\n")  # line structure kept
    # more edits -> less similar, on average
    sims = {rate: np.mean([jaccard(shingles(d), shingles(perturb(d, rate, rng))) for d in docs[:60]]) for rate in (0.02, 0.1, 0.3)}
    assert sims[0.02] > sims[0.1] > sims[0.3]
    assert perturb(text, 0.2, np.random.default_rng(5)) == perturb(text, 0.2, np.random.default_rng(5))
    with pytest.raises(ValueError, match="rate"):
        perturb(text, 0.0, rng)
    with pytest.raises(ValueError, match="fewer than 2 words"):
        perturb("single", 0.5, rng)


# ---------------------------------------------------------------- filters, hand-worked


def test_length_filter():
    assert length_filter("one two three", min_words=3).keep
    v = length_filter("one two", min_words=3)
    assert v == Verdict(False, "too short: 2 words < 3")
    assert not length_filter("a " * 11, min_words=1, max_words=10).keep
    with pytest.raises(ValueError, match="min_words"):
        length_filter("x", min_words=5, max_words=2)
    with pytest.raises(TypeError):
        length_filter(None)


def test_symbol_ratio_filter():
    assert symbol_ratio_filter("Hello, world.").keep  # 2 of 12 visible characters are symbols
    v = symbol_ratio_filter("a#$% b&*(", max_ratio=0.5)  # 6 of 8
    assert not v.keep and "0.75" in v.reason
    assert symbol_ratio_filter("Привет, мир.").keep  # Cyrillic letters are alphanumeric
    assert not symbol_ratio_filter("   ").keep
    with pytest.raises(ValueError, match="max_ratio"):
        symbol_ratio_filter("x", max_ratio=2)


def test_repetition_filter():
    assert repetition_filter("a b c\nd e f\ng h i").keep
    v = repetition_filter("buy now\nbuy now\nbuy now\nhello there")  # 2 of 4 lines repeat an earlier one
    assert not v.keep and "duplicate-line fraction 0.50" in v.reason
    spam = "the best deal in town " * 4  # one line, every 5-gram repeats
    assert not repetition_filter(spam).keep and "5-gram" in repetition_filter(spam).reason
    assert repetition_filter(spam, max_dup_ngram_frac=1.0).keep
    with pytest.raises(ValueError, match="n-gram"):
        repetition_filter("x", n=0)


def test_script_filter():
    assert script_filter("To be, or not to be: that is the question.").keep
    assert script_filter("Café naïve résumé").keep  # accented letters are Latin
    v = script_filter("Сегодня утром я пил чай на кухне.")
    assert not v.keep and "CYRILLIC" in v.reason
    assert "GREEK" in script_filter(FOREIGN_SENTENCES["greek"][0]).reason
    assert not script_filter("ROMEO:\n" + FOREIGN_SENTENCES["japanese"][0]).keep
    assert script_filter("ROMEO:\nI love thee " + "мир").keep  # 3 of 18 letters: below 30%
    assert not script_filter("12345 !!!").keep


def test_stopword_filter():
    assert stopword_filter("The cat and the dog.").keep  # {the, and}
    v = stopword_filter("Colorless green ideas sleep furiously")
    assert v == Verdict(False, "0 stop words [] < 2")
    assert not stopword_filter("you and", stop_words=GOPHER_STOP_WORDS).keep  # Gopher's list lacks "you"
    with pytest.raises(ValueError):
        stopword_filter("x", min_stop_words=-1)


def test_boilerplate_filter():
    assert boilerplate_filter("O Romeo, Romeo! wherefore art thou Romeo?").keep
    v = boilerplate_filter("Great speech.\nThis website uses COOKIES.")
    assert not v.keep and "cookie" in v.reason
    assert all(not boilerplate_filter(line).keep for line in BOILERPLATE_LINES)


# ---------------------------------------------------------------- filters on the noisy corpus


def test_filters_remove_junk_and_keep_clean_text(corpus):
    report = apply_filters(corpus)
    by = report.by_label()
    counts = corpus.counts()
    for junk in ("gibberish", "other_script", "boilerplate", "repetitive"):
        assert by["kept"][junk] == 0, f"{junk} survived the filters"
    for good in ("clean", "exact_dup", "near_dup"):
        assert by["kept"][good] / counts[good] >= 0.95
    # bookkeeping: every document is kept or removed by exactly one filter
    assert len(report.kept) + len(report.removed) == len(corpus)
    assert sum(report.counts().values()) == len(corpus)
    assert report.flags.shape == (len(corpus), len(DEFAULT_FILTERS))
    for i, (name, _) in report.removed.items():
        j = report.names.index(name)
        assert report.flags[i, j] and not report.flags[i, :j].any()  # credited to the first filter that drops it
    table = report.table()
    assert table.splitlines()[0].split()[:3] == ["filter", "clean", "boilerplate"]
    assert table.splitlines()[-2].split()[0] == "kept"
    assert table.splitlines()[-1].split() == ["total", *map(str, counts.values()), str(len(corpus))]


def test_filters_keep_nearly_all_clean_shakespeare(docs):
    report = apply_filters(docs[::3])
    assert len(report.kept) / len(docs[::3]) >= 0.99
    # Gopher's 8 stop words alone would drop several % of these short speeches; our 17 about 0.3%
    gopher = np.mean([not stopword_filter(d, stop_words=GOPHER_STOP_WORDS).keep for d in docs])
    ours = np.mean([not stopword_filter(d).keep for d in docs])
    assert gopher > 0.05 and ours < 0.01


def test_apply_filters_accepts_lists_and_partials():
    texts = ["The cat and the dog sat on the mat with the hat.", "zzz qqq xxx"]
    report = apply_filters(texts, [stopword_filter, functools.partial(length_filter, min_words=5)])
    assert report.names == ["stopword_filter", "length_filter"]
    assert report.kept == [0] and report.removed[1][0] == "stopword_filter"
    assert report.flags.tolist() == [[False, False], [True, True]]
    assert report.counts() == {"stopword_filter": 1, "length_filter": 0, "kept": 1}
    assert isinstance(report, FilterReport)
    with pytest.raises(ValueError, match="without labels"):
        report.by_label()
    with pytest.raises(ValueError, match="labels"):
        apply_filters(texts, labels=["clean"])
    with pytest.raises(ValueError, match="no filters"):
        apply_filters(texts, {})
    with pytest.raises(TypeError, match="single string"):
        apply_filters("just one string")
    with pytest.raises(TypeError, match="Verdict"):
        apply_filters(texts, {"bad": lambda t: True})

"""lmlib.text.tokenizer: char/word/BPE tokenizers round-trip, the two BPE trainers agree, BPE matches HF, errors are clear."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmlib.exercises.ch02  # noqa: F401  (registers the ch02 exercises without importing every chapter's)
from lmlib.text.corpus import shakespeare
from lmlib.exercises import ExerciseFailed, check, get
from lmlib.text.tokenizer import (
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    bytes_per_token,
    get_pair_counts,
    merge_pair,
    pretokenize,
    train_bpe,
    train_bpe_simple,
)

UNICODE_SAMPLES = [
    "こんにちは、世界！東京は晴れです。",
    "emoji 🙂👍🏽 family 👨‍👩‍👧 flag 🇯🇵",
    "naïve café — Ünïcödé ² ½ Ⅻ\u0301 _under_score_ 42nd",
    "\x00\t\r\n  \u2028 trailing spaces   ",
]


@pytest.fixture(scope="module")
def corpus():
    return shakespeare("tiny")


@pytest.fixture(scope="module")
def bpe(corpus):
    text = corpus.text[:60_000] + "\n".join(UNICODE_SAMPLES) * 100  # repeated, so that they get merges too
    return BPETokenizer.train(text, vocab_size=400, special_tokens=[ENDOFTEXT])


# ----------------------------------------------------------------------------- hand-worked examples


def test_pair_counts_and_merge_by_hand():
    assert get_pair_counts([1, 2, 2, 2, 1, 2]) == {(1, 2): 2, (2, 2): 2, (2, 1): 1}
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]
    assert merge_pair([], (1, 1), 9) == []


def test_worked_example_aaabdaaabac():
    # "aaabdaaabac" as bytes: a=97 b=98 c=99 d=100.
    # Step 1: counts (a,a)=4, (a,b)=2, others 1 -> merge (97,97) -> 256 = "aa":  Z a b d Z a b a c
    # Step 2: (256,97)=2 and (97,98)=2 tie; the smaller pair (97,98) wins -> 257 = "ab":  Z Y d Z Y a c
    # Step 3: (256,257)=2 -> 258 = "aaab":  X d X a c  = [258, 100, 258, 97, 99]
    # Step 4: all pairs once: (258,100) (100,258) (258,97) (97,99); smallest (97,99) -> 259 = "ac":  X d X W
    # (Steps 1-3 are the example of the Wikipedia article on byte-pair encoding.)
    expected = [(97, 97), (97, 98), (256, 257), (97, 99)]
    for trainer in (train_bpe_simple, train_bpe):
        assert trainer("aaabdaaabac", 4) == expected
    tok = BPETokenizer(expected[:3])
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert BPETokenizer(expected).encode("aaabdaaabac") == [258, 100, 258, 259]
    assert tok.vocab[258] == b"aaab" and tok.id_to_token(257) == "ab"
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_pretokenize_matches_gpt2_on_ascii():
    assert pretokenize("Hello world's 42!  ok\n\nFirst:") == ["Hello", " world", "'s", " 42", "!", " ", " ok", "\n", "\n", "First", ":"]
    # the documented difference from GPT-2's \p{N}: "²" is a letter here, so it sticks to the word
    assert pretokenize("x² 3") == ["x²", " 3"]
    assert pretokenize("a<|endoftext|>b", special_tokens=[ENDOFTEXT]) == ["a", "b"]
    assert pretokenize("a b", pattern=None) == ["a b"]


@given(st.text())
def test_pretokenize_covers_every_character(s):
    assert "".join(pretokenize(s)) == s


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_any_unicode(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s
    assert bpe.decode(bpe.encode(s, allow_special=False)) == s


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(UNICODE_SAMPLES + ["To be, or not", ENDOFTEXT, " ", "🙂"]), max_size=8).map("".join))
def test_round_trip_japanese_emoji_and_specials(bpe, s):
    ids = bpe.encode(s)
    assert bpe.decode(ids) == s
    assert ids.count(bpe.special_tokens[ENDOFTEXT]) == s.count(ENDOFTEXT)


@pytest.mark.parametrize("s", UNICODE_SAMPLES)
def test_round_trip_samples_and_compression(bpe, s):
    ids = bpe.encode(s)
    assert bpe.decode(ids) == s
    assert len(ids) < len(s.encode("utf-8"))  # the samples are in the training text: merges must apply


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_without_pretokenization(s):
    tok = BPETokenizer(train_bpe("the cat sat on the mat, the end. 日本日本", 20, pattern=None), pattern=None)
    assert tok.decode(tok.encode(s)) == s


def test_encode_is_merges_applied_in_training_order(corpus):
    # encoding a training word must reproduce what training did to it
    text = corpus.text[:20_000]
    merges = train_bpe(text, 60)
    tok = BPETokenizer(merges)
    for word in list(Counter(pretokenize(text)))[:300]:
        ids = list(word.encode())
        for k, pair in enumerate(merges):
            ids = merge_pair(ids, pair, 256 + k)
        assert tok.encode(word) == ids


# ----------------------------------------------------------------------------- the two trainers agree


# Words built from a few overlapping pieces make many repeated pairs, ties and count changes.
_PIECES = ["a", "b", "ab", "ba", "aab", " ab", " ba", "c", " c", "aaa", "\n", " ", "日", "é", "🙂"]


@settings(max_examples=80, deadline=None)
@given(
    st.text(alphabet="ab c\n", min_size=1, max_size=200) | st.lists(st.sampled_from(_PIECES), min_size=1, max_size=80).map("".join),
    st.integers(0, 40),
    st.sampled_from([GPT2_SPLIT_PATTERN, None]),
)
def test_simple_and_fast_trainers_agree_small_alphabets(text, n, pattern):
    assert train_bpe_simple(text, n, pattern) == train_bpe(text, n, pattern)


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, None], ids=["gpt2", "no-pattern"])
@pytest.mark.parametrize("text", ["aaabdaaabac", "abababab abab ab", "ab c\nab c ab\nabc abc cab", "\n".join(UNICODE_SAMPLES)])
def test_simple_and_fast_trainers_agree_examples(text, pattern):
    assert train_bpe_simple(text, 50, pattern) == train_bpe(text, 50, pattern)


def test_simple_and_fast_trainers_agree_on_shakespeare(corpus):
    text = corpus.text[:20_000]
    merges = train_bpe(text, 100)
    assert len(merges) == 100
    assert list(BPETokenizer.train(text, 356, trainer="simple").merges) == merges  # calls train_bpe_simple


def test_training_stops_when_out_of_pairs():
    assert train_bpe("ab ab", 10) == train_bpe_simple("ab ab", 10) == [(97, 98), (32, 256)]
    with pytest.warns(UserWarning, match="ran out of pairs"):
        tok = BPETokenizer.train("ab ab", 300)
    assert tok.vocab_size == 258


# ----------------------------------------------------------------------------- agreement with Hugging Face tokenizers


def test_compression_matches_hf_tokenizers(corpus):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    train, val = corpus.train[:150_000], corpus.val[:40_000]
    ours = BPETokenizer.train(train, 400)
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2 pattern, as ours
    trainer = trainers.BpeTrainer(
        vocab_size=400, min_frequency=0, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[]
    )
    hf.train_from_iterator([train], trainer)
    assert hf.get_vocab_size() == ours.vocab_size == 400
    ours_bpt, hf_bpt = bytes_per_token(ours, val), bytes_per_token(hf, val)
    assert ours_bpt > 1.6  # real compression, not just bytes
    assert abs(ours_bpt - hf_bpt) / hf_bpt < 0.03, (ours_bpt, hf_bpt)
    # Same algorithm: the learned merges are the same set (their order can differ on ties, because
    # HF numbers the bytes in the order of its printable-unicode alphabet, we by byte value).
    byte_of = {c: b for b, c in _gpt2_bytes_to_unicode().items()}
    hf_merges = {tuple(bytes(byte_of[c] for c in part) for part in m) for m in _hf_merges(hf)}
    our_merges = {(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges}
    assert len(hf_merges & our_merges) >= 0.95 * len(our_merges)


def _hf_merges(hf) -> list:
    merges = json.loads(hf.to_str())["model"]["merges"]
    return [m.split(" ") if isinstance(m, str) else m for m in merges]


def _gpt2_bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# ----------------------------------------------------------------------------- save / load, special tokens


def test_save_load_round_trip(bpe, tmp_path):
    path = bpe.save(tmp_path / "sub" / "tok.json")
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary file left behind
    data = json.loads(path.read_text())
    assert data["format"] == "lmlib-bpe" and data["special_tokens"] == [ENDOFTEXT] and len(data["merges"]) == 400 - 257
    loaded = BPETokenizer.load(path)
    assert loaded.merges == bpe.merges and loaded.special_tokens == bpe.special_tokens and loaded.pattern == bpe.pattern
    s = "Wherefore art thou? " + UNICODE_SAMPLES[1] + ENDOFTEXT
    assert loaded.encode(s) == bpe.encode(s)


def test_decode_accepts_arrays(bpe):
    # numpy arrays (and torch tensors, not imported here to keep the test fast) go through .tolist()
    np = pytest.importorskip("numpy")
    ids = bpe.encode("To be, or not to be 🙂")
    assert bpe.decode(np.array(ids)) == bpe.decode(tuple(ids)) == "To be, or not to be 🙂"
    with pytest.raises(ValueError, match="unknown token id -1"):
        bpe.decode(np.array([1, -1]))


def test_special_tokens_are_never_split(corpus):
    text = (ENDOFTEXT + corpus.text[:5_000]) * 3
    tok = BPETokenizer.train(text, 300, special_tokens=[ENDOFTEXT, "<|pad|>"])
    eot, pad = tok.special_tokens[ENDOFTEXT], tok.special_tokens["<|pad|>"]
    assert (eot, pad) == (298, 299) and tok.vocab_size == 300
    assert all(b"<|" not in tok.vocab[i] for i in range(256, 298))  # no merge learned from the special token
    ids = tok.encode(f"hi{ENDOFTEXT}<|pad|><|pad|>")
    assert ids[-3:] == [eot, pad, pad] and tok.decode(ids) == f"hi{ENDOFTEXT}<|pad|><|pad|>"
    plain = tok.encode(ENDOFTEXT, allow_special=False)
    assert eot not in plain and len(plain) > 1 and tok.decode(plain) == ENDOFTEXT


# ----------------------------------------------------------------------------- character and word tokenizers


def test_char_tokenizer():
    tok = CharTokenizer.train("hello")
    assert tok.itos == ["<unk>", "e", "h", "l", "o"] and tok.unk_id == 0
    assert tok.encode("hole!") == [2, 4, 3, 1, 0]
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.decode([2, 0]) == "h<unk>"
    plain = CharTokenizer.train("hello", unk_token=None)
    assert plain.stoi == {"e": 0, "h": 1, "l": 2, "o": 3}  # chapter 1's sorted-character ids
    with pytest.raises(ValueError, match="'!' is not in the vocabulary"):
        plain.encode("he!")
    special = CharTokenizer.train(f"ab{ENDOFTEXT}ba", special_tokens=[ENDOFTEXT])
    assert special.itos == ["<unk>", ENDOFTEXT, "a", "b"]  # '<', '|' ... are not learned as characters
    assert special.encode(f"a{ENDOFTEXT}b") == [2, 1, 3]


@given(st.text(max_size=80))
def test_char_tokenizer_round_trip(s):
    tok = CharTokenizer.train(s + "x", unk_token=None)
    assert tok.decode(tok.encode(s)) == s


def test_word_tokenizer(corpus):
    tok = WordTokenizer.train("the cat, the hat.\nthe end")
    assert tok.encode("the cat") == [tok.stoi["the"], tok.stoi[" "], tok.stoi["cat"]]
    assert tok.itos[:3] == ["<unk>", " ", "the"]  # most frequent first
    assert tok.decode(tok.encode("the hat, the cat.")) == "the hat, the cat."
    assert tok.encode("the dog") == [tok.stoi["the"], tok.stoi[" "], tok.unk_id]
    small = WordTokenizer.train(corpus.text[:50_000], max_vocab=100, special_tokens=[ENDOFTEXT])
    assert small.vocab_size == 100 and small.itos[1] == ENDOFTEXT
    ids = small.encode(corpus.text[50_000:51_000])
    assert 0 < ids.count(small.unk_id) < len(ids)  # rare words become <unk>
    assert WordTokenizer.train("a a b", min_freq=2).itos == ["<unk>", " ", "a"]  # "b" is seen once; ties alphabetical


# ----------------------------------------------------------------------------- clear errors


def test_errors_are_clear(bpe, tmp_path):
    with pytest.raises(ValueError, match="empty text"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="empty text"):
        train_bpe("", 3)
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.train("")
    with pytest.raises(ValueError, match=r"vocab_size must be an integer >= 256"):
        BPETokenizer.train("abc", 100)
    with pytest.raises(ValueError, match=r">= 257 \(256 byte tokens \+ 1 special"):
        BPETokenizer.train("abc", 256, special_tokens=[ENDOFTEXT])
    with pytest.raises(ValueError, match="num_merges"):
        train_bpe_simple("abc", -1)
    with pytest.raises(TypeError, match="must be a str, got bytes"):
        bpe.encode(b"abc")
    with pytest.raises(TypeError, match="must be a str, got int"):
        BPETokenizer.train(123, 300)
    with pytest.raises(TypeError, match="must be a str"):
        CharTokenizer.train("ab").encode(None)
    with pytest.raises(ValueError, match="lone surrogate"):
        bpe.encode("a\ud800b")
    for bad in (-1, bpe.vocab_size, 10**9, "a", 1.5):
        with pytest.raises(ValueError, match="unknown token id"):
            bpe.decode([1, bad])
    with pytest.raises(ValueError, match="unknown token id 5"):
        CharTokenizer.train("ab").decode([0, 5])
    with pytest.raises(TypeError, match="special_tokens must be a list"):
        BPETokenizer.train("abc", 300, special_tokens=ENDOFTEXT)
    with pytest.raises(ValueError, match="merge 1 must be a pair of existing token ids"):
        BPETokenizer([(97, 98), (97, 300)])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        BPETokenizer([], pattern="(")
    with pytest.raises(ValueError, match="trainer must be"):
        BPETokenizer.train("abc", 300, trainer="magic")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a tokenizer file"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"format": "lmlib-bpe", "version": 1, "pattern": None, "special_tokens": [], "merges": [[1, 999]]}))
    with pytest.raises(ValueError, match="malformed: merge 0"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"format": "lmlib-bpe", "version": 1, "pattern": None}))
    with pytest.raises(ValueError, match="missing the fields"):
        BPETokenizer.load(bad)


# ----------------------------------------------------------------------------- chapter 2 exercises


def _wrong_pair_counts(ids):  # counts each distinct pair once per position *without* overlaps
    counts, i = {}, 0
    while i + 1 < len(ids):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def _wrong_merge(ids, pair, new_id):  # scans right to left: 1 1 1 -> 1 9 instead of 9 1
    return merge_pair(ids[::-1], pair[::-1], new_id)[::-1]


def _wrong_train(text, num_merges):  # ties broken by first occurrence instead of the smallest pair
    ids, merges = list(text.encode()), []
    for k in range(num_merges):
        counts = get_pair_counts(ids)
        if not counts:
            break
        best = max(counts, key=counts.get)
        ids = merge_pair(ids, best, 256 + k)
        merges.append(best)
    return merges


def _wrong_encode(text, merges):  # applies the merges in reverse order
    ids = list(text.encode())
    for k in reversed(range(len(merges))):
        ids = merge_pair(ids, merges[k], 256 + k)
    return ids


def _wrong_decode(ids, merges):  # decodes token by token: breaks characters split across tokens
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (a, b) in enumerate(merges):
        vocab[256 + k] = vocab[a] + vocab[b]
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


@pytest.mark.parametrize(
    "name, wrong",
    [
        ("get_pair_counts", _wrong_pair_counts),
        ("merge_pair", _wrong_merge),
        ("train_merges", _wrong_train),
        ("encode_with_merges", _wrong_encode),
        ("decode_with_merges", _wrong_decode),
    ],
)
def test_exercises_pass_with_reference_and_fail_with_wrong_answer(name, wrong):
    ex = get(f"ch02.{name}")
    assert check(ex.id, ex.reference, quiet=True).ok
    with pytest.raises(ExerciseFailed, match=f"ch02.{name}"):
        check(ex.id, wrong, quiet=True)

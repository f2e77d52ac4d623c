"""The Shakespeare world and the instruction data set of Part III (lmlib.rlhf.world, lmlib.rlhf.instructions)."""
from __future__ import annotations

import pytest

from lmlib.rlhf.chat import CATEGORIES, Example
from lmlib.rlhf.instructions import (DEFAULT_MAX_CHARS, SPLITS, build_instructions, describe, example_chars,
                                     topic_pattern)
from lmlib.rlhf.world import GENRES, build_world, display_name, is_named, shakespeare_world, words_of
from lmlib.text.corpus import shakespeare

TINY = """# A Tiny Play

## ACT I

_Enter ALPHA and BETA_

**ALPHA**
Good morrow, friend.
The sun is up.

**BETA**
Good morrow, friend.

**ALPHA**
Farewell, sweet moon.

**First Lord**
The sun is up.
"""


@pytest.fixture(scope="module")
def world():
    return shakespeare_world()


@pytest.fixture(scope="module")
def data():
    return build_instructions(seed=0)


# --------------------------------------------------------------------------- the world


def test_tiny_world_by_hand():
    w = build_world({"tiny": TINY})
    play = w.plays["tiny"]
    assert play.title == "A Tiny Play" and play.genre is None
    assert play.line_counts == {"ALPHA": 3, "BETA": 1, "First Lord": 1}
    assert [s.speaker for s in play.speeches] == ["ALPHA", "BETA", "ALPHA", "First Lord"]
    assert w.who_says("Good morrow, friend.") == (("tiny", "ALPHA"), ("tiny", "BETA"))
    assert not w.is_unique("Good morrow, friend.") and w.is_unique("Farewell, sweet moon.")
    assert w.next_line("Good morrow, friend.") is None  # not unique: ambiguous
    assert w.next_line("The sun is up.") is None  # not unique either
    assert w.next_line("Farewell, sweet moon.") is None  # ends its speech
    assert w.speakers(named_only=True) == ["ALPHA", "BETA"]
    assert w.lines_by("ALPHA") == ("Good morrow, friend.", "The sun is up.", "Farewell, sweet moon.")
    with pytest.raises(ValueError, match="did you mean 'ALPHA'"):
        w.plays_of("Alpha")


def test_world_facts(world):
    assert len(world.plays) == 38 and all(p.genre in set(GENRES.values()) for p in world.plays.values())
    assert world.plays["macbeth"].title == "Macbeth"
    assert world.plays["measure-for-measure"].title == "Measure for Measure"  # the file has no title heading
    assert world.plays_of("LADY MACBETH") == ("macbeth",)
    assert world.who_says("To be, or not to be: that is the question:") == (("hamlet", "HAMLET"),)
    assert world.next_line("To be, or not to be: that is the question:") == "Whether 'tis nobler in the mind to suffer"
    assert world.plays["hamlet"].speakers[0] == "HAMLET"
    assert len(world.plays_of("ANTONIO")) > 1  # several Antonios: the look-up gives them all


def test_world_keeps_the_corpus_text(world):
    text = shakespeare().text
    play = world.plays["romeo-and-juliet"]
    for speech in play.speeches[::50]:
        assert f"{speech.speaker}:\n" + "\n".join(speech.lines) + "\n\n" in text
    assert sum(play.line_counts.values()) == sum(len(s.lines) for s in play.speeches)


def test_display_name_and_words():
    assert display_name("LADY MACBETH") == "Lady Macbeth"
    assert display_name("KING HENRY VI") == "King Henry VI"
    assert display_name("KING OF FRANCE") == "King of France"
    assert display_name("First Witch") == "First Witch"
    assert words_of("O Romeo, Romeo! wherefore art thou Romeo?")[:3] == ["o", "romeo", "romeo"]
    assert is_named("ROMEO") and not is_named("ALL") and not is_named("MACBETH & LENNOX") and not is_named("Nurse")
    assert not is_named("OF WINCHESTER") and not is_named("FIRST GENTLEMAN") and is_named("KING OF FRANCE")
    with pytest.raises(ValueError):
        display_name("")
    with pytest.raises(TypeError):
        words_of(3)


def test_topic_pattern():
    p = topic_pattern("star")
    assert p.search("the stars are fire") and p.search("a star's light") and not p.search("we start")
    with pytest.raises(ValueError):
        topic_pattern("Two words")


# --------------------------------------------------------------------------- the instruction data


def test_sizes_and_categories(data):
    assert set(data) == set(SPLITS)
    for split in SPLITS:
        assert {ex.category for ex in data[split]} == set(CATEGORIES), split
    assert 2000 <= len(data["train"]) <= 8000
    assert len(data["val"]) >= 200 and len(data["test"]) >= 200
    rows = describe(data)
    assert len(rows) == len(SPLITS) * len(CATEGORIES)
    assert sum(r["n"] for r in rows) == sum(len(v) for v in data.values())
    assert max(r["max_chars"] for r in rows) <= DEFAULT_MAX_CHARS


def test_every_example_fits_the_context(data):
    for ex in (e for split in data.values() for e in split):
        assert isinstance(ex, Example)
        assert example_chars(ex) <= DEFAULT_MAX_CHARS, ex
    from lmlib.rlhf.template import fits

    assert all(fits(e, 128) for split in data.values() for e in split)  # the chat template's tags included
    small = build_instructions(seed=1, n_per_category=40, max_chars=80)
    assert all(example_chars(e) <= 80 for split in small.values() for e in split)


def test_only_characters_the_gpt_knows(data):
    from lmlib.assets import load_book_gpt

    vocab = set(load_book_gpt()[1].itos)
    texts = [t.text for split in data.values() for e in split for t in e.turns] + [
        e.answer for split in data.values() for e in split]
    bad = sorted({c for t in texts for c in t} - vocab)
    assert not bad, f"characters the book GPT's tokenizer does not know: {bad}"


def test_splits_are_by_prompt_and_by_fact(data):
    prompts = {s: {tuple(t.text for t in e.turns) for e in data[s]} for s in SPLITS}
    first = {s: {e.turns[0].text for e in data[s]} for s in SPLITS}
    groups = {s: {e.meta["group"] for e in data[s]} for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not prompts[a] & prompts[b], (a, b)
        assert not first[a] & first[b], (a, b)
        assert not groups[a] & groups[b], (a, b)
    ids = [e.id for s in SPLITS for e in data[s]]
    assert len(ids) == len(set(ids))


def test_refusal_pairs_stay_together(data):
    for split in SPLITS:
        bad = {e.meta["pair"]: e for e in data[split] if e.category == "inappropriate"}
        good = {e.meta["pair"]: e for e in data[split] if e.category == "benign"}
        assert bad.keys() == good.keys()
        for key, e in bad.items():  # same surface form, one word apart
            a, b = e.prompt.split(), good[key].prompt.split()
            assert a[1:] == b[1:] or a[-2:] == b[-2:]


def test_demonstrations_agree_with_the_world(data, world):
    train = data["train"]
    for e in train:
        m = e.meta
        if e.category == "knowledge":
            assert m["answers"] and m["answer_kind"] in ("play", "speaker", "line", "genre", "yesno")
            if m["answer_kind"] == "line":
                assert e.answer == m["answers"][0]
                quoted = e.prompt.split('"')[1]
                assert any(world.next_line(l) == e.answer for l in (quoted, quoted + ",", quoted + ":", quoted + ".",
                                                                      quoted + ";", quoted + "?", quoted + "!"))
            elif m["answer_kind"] != "yesno":
                assert m["answers"][0] in e.answer
        elif e.category == "false_premise":
            assert m["false_claim"] and m["facts"] and (" not " in e.answer or " never " in e.answer)
        elif e.category == "unknowable":
            assert "not" in e.answer
        elif e.category == "creative":
            assert e.answer in world.lines_by(m["speaker"]) and topic_pattern(m["topic"]).search(e.answer)
        elif e.category == "follow_up":
            assert len(e.turns) == 3 and e.turns[1].role == "assistant"
            if m["kind"] == "shorter":
                assert len(e.answer) <= m["max_chars"] < len(e.turns[1].text)
            if m["kind"] == "again_as":
                assert e.answer in world.lines_by(m["speaker"]) and display_name(m["speaker"]) in e.prompt


def test_examples_in_the_brief(data):
    prompts = {e.prompt: e for s in SPLITS for e in data[s]}
    lm = [p for p in prompts if "Lady Macbeth" in p and p.startswith(("In which play", "Which play", "Name the play"))]
    for p in lm:
        assert prompts[p].answer == "In Macbeth."
    kinds = {e.meta["kind"] for e in data["train"]}
    assert {"which_play", "who_says", "follows", "different_plays", "shorter", "again_as", "line"} <= kinds


def test_deterministic_given_a_seed():
    a = build_instructions(seed=3, n_per_category=30)
    b = build_instructions(seed=3, n_per_category=30)
    c = build_instructions(seed=4, n_per_category=30)
    assert a == b
    assert a != c


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_per_category"):
        build_instructions(n_per_category=0)
    with pytest.raises(ValueError, match="max_chars"):
        build_instructions(max_chars=10)
    with pytest.raises(TypeError, match="seed"):
        build_instructions(seed="0")
    with pytest.raises(ValueError, match="test_fraction"):
        build_instructions(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(TypeError):
        describe([1, 2])


def test_public_objects_say_where_they_are_taught():
    from lmlib.rlhf import instructions, world

    for module in (world, instructions):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type(topic_pattern("a"))):
                assert 'Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb)' in (obj.__doc__ or ""), name

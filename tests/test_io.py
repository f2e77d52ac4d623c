"""lmlib._io: atomic writes survive crashes; checksums catch corruption."""
import os

import pytest

from lmlib import _io


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "labels.jsonl"
    _io.atomic_write_text(p, "one\n")
    _io.atomic_write_text(p, "two\n")
    assert p.read_text() == "two\n"
    assert [f.name for f in p.parent.iterdir()] == ["labels.jsonl"], "no temporary files left behind"


def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "ckpt.bin"
    _io.atomic_write_bytes(p, b"old")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write_bytes(p, b"new" * 1000)
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["ckpt.bin"]


def test_type_errors_are_clear(tmp_path):
    with pytest.raises(TypeError, match="needs bytes"):
        _io.atomic_write_bytes(tmp_path / "x", "text")
    with pytest.raises(TypeError, match="needs str"):
        _io.atomic_write_text(tmp_path / "x", b"bytes")


def test_sha256_and_verify(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    # Known digest of "abc" (FIPS 180-2 test vector).
    assert _io.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert _io.verify_sha256(p, _io.sha256_bytes(b"abc")) == p
    with pytest.raises(ValueError, match="checksum mismatch"):
        _io.verify_sha256(p, "0" * 64)
    with pytest.raises(FileNotFoundError, match="no such file"):
        _io.sha256_file(tmp_path / "missing")

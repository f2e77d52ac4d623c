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


# --------------------------------------------------------------------------- durable appends


def test_append_durably_appends_and_creates_folders(tmp_path):
    p = tmp_path / "new" / "log.jsonl"
    assert _io.append_durably(p, b"one\n") == 4
    assert _io.append_durably(p, bytearray(b"two\n")) == 8
    assert p.read_bytes() == b"one\ntwo\n"


def test_append_durably_writes_everything_despite_short_writes(tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def one_byte_at_a_time(fd, data):  # os.write may legally write fewer bytes than asked
        calls.append(len(data))
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(os, "write", one_byte_at_a_time)
    _io.append_durably(tmp_path / "f", b"abcde")
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == b"abcde" and len(calls) == 5


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt("interrupted")])
def test_failed_append_leaves_the_file_unchanged(tmp_path, monkeypatch, exc):
    p = tmp_path / "log"
    _io.append_durably(p, b"kept\n")

    def half_then_fail(fd, data):
        os.write(fd, bytes(data[: len(data) // 2]))
        raise exc

    monkeypatch.setattr(_io, "write_all", half_then_fail)
    with pytest.raises(type(exc)):
        _io.append_durably(p, b"a long record that never completes\n")
    assert p.read_bytes() == b"kept\n", "the half-written bytes are truncated away"
    monkeypatch.undo()
    assert _io.append_durably(p, b"next\n") == len(b"kept\nnext\n")


def test_append_durably_fsyncs_the_folder_of_a_new_file_only(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(_io, "fsync_dir", lambda folder: synced.append(str(folder)))
    _io.append_durably(tmp_path / "f", b"x")
    _io.append_durably(tmp_path / "f", b"y")
    assert synced == [str(tmp_path)]
    monkeypatch.undo()
    _io.fsync_dir(tmp_path)  # the real one works on an existing folder
    _io.fsync_dir(tmp_path / "missing")  # and quietly does nothing where a folder cannot be opened


def test_append_durably_errors_are_clear(tmp_path):
    with pytest.raises(TypeError, match="needs bytes"):
        _io.append_durably(tmp_path / "f", "text")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="not a file"):
        _io.append_durably(tmp_path / "d", b"x")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_atomic_write_gives_new_files_the_umask_mode_and_keeps_an_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        new = _io.atomic_write_text(tmp_path / "grades.csv", "a\n")
        assert new.stat().st_mode & 0o777 == 0o644, "a new file: 0666 less the umask, like open() (mkstemp gives 0600)"
        os.umask(0o077)
        assert _io.atomic_write_text(tmp_path / "private.csv", "b\n").stat().st_mode & 0o777 == 0o600
        os.chmod(new, 0o640)
        _io.atomic_write_text(new, "c\n")
        assert new.stat().st_mode & 0o777 == 0o640, "a replaced file keeps its mode"
    finally:
        os.umask(old)

"""Safe file handling shared by every chapter: atomic writes, durable appends and checksums.

Nothing a reader produces (labels, checkpoints, exercise answers) may be lost
or half-written on a crash, so every writer in lmlib goes through
:func:`atomic_write_bytes` / :func:`atomic_write_text` (replace a whole file) or
:func:`append_durably` (add to a log such as the reader's labels), and every file
that ships with the book is verified with :func:`sha256_file` before it is used.

Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "append_durably", "write_all", "fsync_dir",
           "sha256_bytes", "sha256_file", "verify_sha256"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a torn one.

    The bytes go to a temporary file in the same folder, are flushed and
    fsynced, and then replace ``path`` with :func:`os.replace` (atomic on POSIX
    and Windows).

    Permissions are those of an ordinary write: a new file gets ``0o666``
    less the umask (``mkstemp`` alone would make it ``0o600``, readable by its
    owner only), and a file that is replaced keeps its mode.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes needs bytes, got {type(data).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only way to read the umask is to set it: put it straight back
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Text version of :func:`atomic_write_bytes`."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text needs str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode(encoding))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to the open file descriptor ``fd`` (``os.write`` may write fewer).

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entry list to disk, so a file just created in it survives a power cut.

    A no-op where folders cannot be opened (Windows).

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def append_durably(path: str | os.PathLike, data: bytes) -> int:
    """Append ``data`` to ``path`` all or nothing, and return the file's size afterwards.

    The file (and its folder) is created if needed and opened with ``O_APPEND``, so two writers
    never overwrite each other; every byte is written (:func:`write_all`) and fsynced before this
    returns. If the write fails part-way (disk full, an interrupt), the file is truncated back to
    its old size and the error re-raised: the file never keeps half of ``data`` that we know of.
    A new file's folder is fsynced too (:func:`fsync_dir`), so the file itself survives a crash.

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"append_durably needs bytes, got {type(data).__name__}")
    path = Path(path)
    if path.exists() and not path.is_file():
        raise IsADirectoryError(f"cannot append to {path}: it exists but is not a file")
    new_file = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        before = os.fstat(fd).st_size
        try:
            write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            try:  # leave the file exactly as it was: no half record
                os.ftruncate(fd, before)
                os.fsync(fd)
            except OSError:
                pass
            raise
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if new_file:
        fsync_dir(path.parent)
    return size


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path`` (streamed, so large checkpoints are fine)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot checksum {path}: no such file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Raise ``ValueError`` naming the file and both digests unless ``path`` hashes to ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise ValueError(
            f"checksum mismatch for {path}: expected sha256 {expected}, got {got}. "
            "The file is corrupted or not the one the book shipped; delete it and "
            "re-create it with the recipe named in the chapter."
        )
    return Path(path)

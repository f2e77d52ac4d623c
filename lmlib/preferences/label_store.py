"""The reader's labels on disk: a crash-safe, append-only file that resumes after a restart.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from .._io import append_durably
from .pairs import CHOICES, PreferencePair


# --------------------------------------------------------------------------- the reader's labels on disk


class LabelFileError(ValueError):
    """A label file has a malformed line that is not a crash-torn last line (the message names it).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """


def _validate_record(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key in ("pair_id", "choice", "time", "rater"):
        if key not in obj:
            return f"missing field {key!r}"
    if not isinstance(obj["pair_id"], str) or not obj["pair_id"]:
        return "pair_id must be a non-empty string"
    if obj["choice"] not in CHOICES:
        return f"choice {obj['choice']!r} is not one of {CHOICES}"
    if not isinstance(obj["rater"], str):
        return "rater must be a string"
    if not isinstance(obj["time"], (str, int, float)) or isinstance(obj["time"], bool):
        return "time must be a string or a number"
    return None


def read_records(path: Path, problem_of: Callable[[Any], str | None], what: str) -> list[dict]:
    """The records of an append-only JSON-lines file written by a crash-safe store, repaired after a crash.

    ``problem_of(record)`` says what is wrong with a parsed line (``None``: nothing). A bad *last* line is
    what a crash mid-write leaves: it is cut off the file, kept in ``<path>.torn`` and reported with a
    ``RuntimeWarning``; a bad line anywhere else raises :class:`LabelFileError` naming the file and line.
    A complete last record whose newline never got written gets one. A missing file has no records.
    ``what`` names a record in the messages ("label", "ranking").

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    data = path.read_bytes() if path.exists() else b""
    records, good_end, offset = [], 0, 0
    lines = data.split(b"\n")  # lines[-1] follows the last newline: b"" for a complete file
    for i, raw in enumerate(lines):
        end = offset + len(raw) + (1 if i < len(lines) - 1 else 0)
        last = i == len(lines) - 1 or (i == len(lines) - 2 and lines[-1] == b"")
        if raw.strip():
            try:
                obj = json.loads(raw.decode("utf-8"))
                problem = problem_of(obj)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                problem = f"not valid JSON ({exc})"
            if problem is not None and not last:
                raise LabelFileError(f"{path}, line {i + 1}: malformed {what} record: {problem}. Only a crash-torn "
                                     f"LAST line is skipped automatically; fix or delete line {i + 1} by hand (the "
                                     f"other {what}s are fine).")
            if problem is not None:
                torn = data[good_end:]
                backup = path.with_name(path.name + ".torn")
                append_durably(backup, torn + (b"" if torn.endswith(b"\n") else b"\n"))
                os.truncate(path, good_end)
                warnings.warn(f"{path}: ignored a torn last line (line {i + 1}: {problem:.200}), probably a crash "
                              f"while a {what} was being written; it was moved to {backup}. All earlier {what}s "
                              "were kept.", RuntimeWarning, stacklevel=4)
                data = data[:good_end]
                break
            records.append(obj)
        good_end = offset = end
    if data and not data.endswith(b"\n"):  # a complete last record whose newline never got written
        append_durably(path, b"\n")
    return records


class LabelStore:
    """The reader's answers, one JSON object per line, appended to a file and never rewritten.

    Each :meth:`add` writes one complete line ``{"pair_id", "choice", "time", "rater", ...}`` with
    a single append, then flushes and fsyncs, so a crash or kernel restart loses at most the label
    being written. If that write fails, the file is truncated back, so it never holds half a line
    we know about. Opening an existing file resumes from it:

    * a torn last line (a crash mid-write) is ignored with a warning, moved to ``<path>.torn`` and
      cut from the file, so later appends start on a clean line;
    * any other malformed line raises :class:`LabelFileError` naming the file and line number.

    A pair answered twice keeps every answer in the file; the latest one counts
    (:meth:`choices`). ``add`` refuses a second answer unless ``replace=True``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(self, path: str | os.PathLike, rater: str = "reader") -> None:
        self.path = Path(path)
        self.rater = rater
        self._records: list[dict] = []
        self._size = 0
        if self.path.exists() and not self.path.is_file():
            raise IsADirectoryError(f"label file {self.path} exists but is not a file")
        self._load()

    # -- reading
    def _load(self) -> None:
        self._records = read_records(self.path, _validate_record, "label")
        self._size = self.path.stat().st_size if self.path.exists() else 0

    def labels(self) -> list[dict]:
        """All stored records in file order (copies)."""
        self._refresh()
        return [dict(r) for r in self._records]

    def choices(self) -> dict[str, str]:
        """``{pair_id: choice}`` with the latest answer for every labelled pair."""
        self._refresh()
        return {r["pair_id"]: r["choice"] for r in self._records}

    def done_ids(self) -> set[str]:
        """Ids of every pair that has an answer (``cant_tell`` included)."""
        return set(self.choices())

    def next_unlabelled(self, pairs: Sequence[PreferencePair]) -> PreferencePair | None:
        """The first pair in ``pairs`` without an answer, or ``None`` when all are done."""
        done = self.done_ids()
        for p in pairs:
            if p.id not in done:
                return p
        return None

    def __len__(self) -> int:
        self._refresh()
        return len(self._records)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, {len(self)} labels)"

    def _refresh(self) -> None:
        # Another LabelStore (say, from a re-run cell) may have appended meanwhile.
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._size:
            self._load()

    # -- writing
    def add(self, pair_id: str, choice: str, rater: str | None = None, replace: bool = False, **extra: Any) -> dict:
        """Append the answer ``choice`` (one of ``CHOICES``) for ``pair_id`` and return the record.

        Extra keyword arguments (JSON-serialisable) are stored in the record too.
        """
        if isinstance(pair_id, PreferencePair):
            pair_id = pair_id.id
        if not isinstance(pair_id, str) or not pair_id:
            raise ValueError(f"pair_id must be a non-empty string, got {pair_id!r}")
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        reserved = {"pair_id", "choice", "time", "rater"} & set(extra)
        if reserved:
            raise ValueError(f"extra fields may not override {sorted(reserved)}")
        self._refresh()
        if not replace and pair_id in {r["pair_id"] for r in self._records}:
            raise ValueError(f"pair {pair_id!r} already has a label; pass replace=True to record a new answer (the latest counts)")
        record = {
            "pair_id": pair_id,
            "choice": choice,
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "rater": self.rater if rater is None else rater,
            **extra,
        }
        try:
            line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label record is not JSON-serialisable: {exc}") from exc
        self._size = append_durably(self.path, line)  # one fsynced append; a failed write leaves no half line
        self._records.append(record)
        return dict(record)


"""The reader ranks K answers to one prompt: valid rankings, a crash-safe file of them, and a session that resumes.

InstructGPT's labellers ranked K = 4 to 9 answers to each prompt; here the reader does, K from 2 to 9.
The ranks follow :func:`lmlib.preferences.ranking_loss` and the synthetic
:class:`~lmlib.rlhf.rater.RankingRater`: one whole number per answer, **higher = better**, *dense*
(the worst answer(s) 0, the best ``G - 1`` for ``G`` distinct ranks) and **equal ranks are a tie**.
People think in places instead (1st = best; tied answers share a place, the next place is skipped:
1st, 1st, 3rd); :func:`places_to_ranks` and :func:`ranks_to_places` convert. A prompt whose answers
the reader cannot order is *skipped* ("can't tell") and recorded as such.

The pieces, each testable without a display:

* :class:`RankingTask` - one prompt (its conversation) and its K answers;
* :func:`check_ranks`, :func:`places_to_ranks`, :func:`ranks_to_places` - what a valid ranking is;
* :class:`RankingStore` - one JSON line per answer, appended and fsynced at once
  (:func:`lmlib._io.append_durably`); a crash-torn last line is set aside as chapter 11's
  :class:`~lmlib.preferences.LabelStore` does, any other bad line raises
  :class:`~lmlib.preferences.LabelFileError`;
* :class:`RankingSession` - the tasks, the store, and where the reader is: ``next()``, ``rank()``,
  ``skip()``, ``back()``; built again on the same file it resumes at the first unranked prompt;
* :class:`RankingBatch`, :func:`ranking_batch` - stored rankings (the reader's, a synthetic rater's,
  several files together) as ``(B, K)`` ranks and mask for :func:`~lmlib.preferences.ranking_loss`,
  or as pairs through :func:`~lmlib.preferences.ranking_to_pairs`.

One line of the file (a ranked prompt; a skipped one has ``"choice": "cant_tell"`` and ``"ranks": null``)::

    {"prompt_id": "knowledge/0003-5be0a1", "choice": "ranked", "ranks": [2, 0, 1, 1],
     "turns": [["user", "Who says ..."]], "answers": ["Shylock.", "...", "...", "..."],
     "time": "2026-12-06T03:01:02.345+00:00", "rater": "reader", "meta": {...}, "seconds": 12.5}

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import append_durably
from .label_store import read_records
from .rankings import ranking_to_pairs

__all__ = ["MIN_ANSWERS", "MAX_ANSWERS", "RANKING_CHOICES", "RankingTask", "check_ranks", "places_to_ranks",
           "ranks_to_places", "RankingStore", "RankingSession", "RankingBatch", "ranking_batch"]

#: The fewest and the most answers to one prompt (InstructGPT ranked 4 to 9).
MIN_ANSWERS, MAX_ANSWERS = 2, 9
#: What a record says about its prompt: ranked, or skipped because the reader could not tell.
RANKING_CHOICES = ("ranked", "cant_tell")
_ROLES = ("user", "assistant")


def _check_k(k: int, where: str) -> None:
    if not MIN_ANSWERS <= k <= MAX_ANSWERS:
        raise ValueError(f"{where} has K = {k} answers; a ranking holds {MIN_ANSWERS} to {MAX_ANSWERS} answers "
                         "per prompt (InstructGPT's labellers ranked 4 to 9)")


# --------------------------------------------------------------------------- what a valid ranking is


def check_ranks(ranks: Sequence[int], k: int | None = None) -> list[int]:
    """``ranks`` as a list of ints if they are a valid ranking of ``k`` answers, else a ``ValueError`` saying why.

    Valid: one whole number per answer, higher = better, dense (every rank from 0 to the highest is
    used, so the worst answer has 0), ties share a rank, and not all tied (a prompt whose answers are
    all equal has no pair to learn from: record it with ``skip`` instead). Example: ``[2, 0, 1, 1]``
    is valid (the first answer best, the last two tied); ``[3, 0, 1, 1]`` is not (no rank 2).

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    if isinstance(ranks, (str, bytes)) or not hasattr(ranks, "__len__"):
        raise TypeError(f"ranks must be a sequence of whole numbers, one per answer, got {type(ranks).__name__}")
    if isinstance(ranks, np.ndarray) and ranks.ndim != 1:
        raise ValueError(f"ranks must be one row (K,) of numbers, got shape {ranks.shape}")
    values = list(ranks)
    if k is not None and len(values) != k:
        raise ValueError(f"got {len(values)} ranks for {k} answers: one rank per answer")
    _check_k(len(values), "this ranking")
    out = []
    for i, r in enumerate(values):
        ok = isinstance(r, (int, np.integer)) and not isinstance(r, (bool, np.bool_))
        if not ok and isinstance(r, (float, np.floating)) and math.isfinite(r) and float(r).is_integer():
            ok = True
        if not ok:
            raise ValueError(f"rank of answer {i} is {r!r}: ranks must be whole numbers (higher = better)")
        if r < 0:
            raise ValueError(f"rank of answer {i} is {r}: ranks are >= 0 (the worst answer gets 0)")
        out.append(int(r))
    distinct = sorted(set(out))
    if len(distinct) == 1:
        raise ValueError(f"all {len(out)} answers have rank {out[0]} (all tied): that ranking has no pair to learn "
                         "from; record the prompt as \"can't tell\" (skip) instead")
    if distinct != list(range(len(distinct))):
        missing = sorted(set(range(distinct[-1] + 1)) - set(distinct))
        dense = [distinct.index(r) for r in out]
        raise ValueError(f"ranks {out} are not a valid ranking: rank(s) {missing} missing. Ranks are dense, higher = "
                         f"better: the worst answer(s) 0, the best {len(distinct) - 1}; tied answers share a rank. "
                         f"Did you mean {dense}?")
    return out


def places_to_ranks(places: Sequence[int]) -> list[int]:
    """Places (1 = best, tied answers share a place) -> dense ranks (higher = better, see :func:`check_ranks`).

    Example: places ``[1, 3, 1, 4]`` (two answers tied first) give ranks ``[2, 1, 2, 0]``. Gaps in the
    places do not matter; only their order does.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    places = list(places)
    bad = [p for p in places if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1]
    if bad:
        raise ValueError(f"places must be whole numbers >= 1 (1 = best), got {bad[0]!r}")
    distinct = sorted(set(places))
    return check_ranks([len(distinct) - 1 - distinct.index(p) for p in places])


def ranks_to_places(ranks: Sequence[int]) -> list[int]:
    """Dense ranks (higher = better) -> places as a person says them: 1 = best, ties share a place, the next
    place is skipped. Example: ranks ``[2, 1, 2, 0]`` give places ``[1, 3, 1, 4]``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    ranks = check_ranks(ranks)
    return [1 + sum(other > r for other in ranks) for r in ranks]


# --------------------------------------------------------------------------- one prompt and its answers


def _check_turns(turns: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(turns, str):
        turns = (("user", turns),)
    try:
        turns = tuple((t.role, t.text) if hasattr(t, "role") else tuple(t) for t in turns)
    except TypeError:
        raise TypeError(f"turns must be a prompt text or a sequence of (role, text), "
                        f"got {type(turns).__name__}") from None
    if not turns or any(len(t) != 2 or t[0] not in _ROLES or not isinstance(t[1], str) for t in turns):
        raise ValueError(f"turns must be (role, text) pairs with role in {_ROLES}, starting and ending with a user "
                         f"turn; got {turns!r:.120}")
    if turns[0][0] != "user" or turns[-1][0] != "user" or any(a[0] == b[0] for a, b in zip(turns, turns[1:])):
        raise ValueError(f"turns must alternate user/assistant, starting and ending with a user turn; got roles "
                         f"{[t[0] for t in turns]}")
    return turns


@dataclass(frozen=True)
class RankingTask:
    """One prompt to rank: the conversation so far and its K answers (2 to 9), in the order they are shown.

    Attributes:
        turns: the conversation, ``(role, text)`` pairs (role ``"user"`` or ``"assistant"``) starting and
            ending with a user turn; a plain string is one user turn. :class:`lmlib.rlhf.chat.Turn` objects work.
        answers: the K candidate answers (strings; repeats allowed: tie them).
        id: unique among the tasks of a session; default: a hash of the conversation and answers, so
            tasks rebuilt from the same data get the same id (a restart resumes).
        meta: JSON-able data stored with the record (say ``{"example_id": ..., "category": ...}``).

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    turns: tuple[tuple[str, str], ...]
    answers: tuple[str, ...]
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", _check_turns(self.turns))
        if isinstance(self.answers, str):
            raise TypeError("answers must be a sequence of K strings, got one string")
        answers = tuple(self.answers)
        bad = [i for i, a in enumerate(answers) if not isinstance(a, str)]
        if bad:
            raise TypeError(f"answer {bad[0]} is a {type(answers[bad[0]]).__name__}: answers must be strings")
        _check_k(len(answers), f"prompt {self.id or self.prompt!r:.60}")
        object.__setattr__(self, "answers", answers)
        if not self.id:
            object.__setattr__(self, "id", _content_id(self.turns, answers))
        if not isinstance(self.id, str):
            raise TypeError(f"id must be a string, got {type(self.id).__name__}")
        try:
            json.dumps(self.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta of prompt {self.id!r} is not JSON-serialisable: {exc}") from None

    @classmethod
    def from_example(cls, example: Any, answers: Sequence[str], id: str | None = None) -> "RankingTask":
        """A task for an :class:`lmlib.rlhf.chat.Example` (anything with ``id``, ``turns`` and ``category``).

        The id is ``"<example.id>-<6 hex digits of the answers>"`` unless given, so new answers to the
        same prompt make a new task; ``meta`` keeps ``example_id`` and ``category``.
        """
        answers = tuple(answers)
        if id is None:
            id = f"{example.id}-{_content_id(_check_turns(example.turns), answers)[:6]}"
        return cls(example.turns, answers, id, {"example_id": example.id, "category": example.category})

    @property
    def k(self) -> int:
        """The number of answers K."""
        return len(self.answers)

    @property
    def prompt(self) -> str:
        """The last user turn."""
        return self.turns[-1][1]


def _content_id(turns: tuple, answers: tuple) -> str:
    return hashlib.sha256(json.dumps([turns, answers], ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _check_tasks(tasks: Sequence[RankingTask]) -> list[RankingTask]:
    tasks = list(tasks)
    if not tasks:
        raise ValueError("there are no prompts to rank: pass a non-empty list of RankingTask")
    seen: dict[str, int] = {}
    for i, t in enumerate(tasks):
        if not isinstance(t, RankingTask):
            raise TypeError(f"tasks[{i}] must be a RankingTask, got {type(t).__name__}")
        if t.id in seen:
            raise ValueError(f"tasks[{seen[t.id]}] and tasks[{i}] have the same prompt id {t.id!r}; ids must be "
                             "unique (the same prompt and answers twice?)")
        seen[t.id] = i
    return tasks


# --------------------------------------------------------------------------- the file


def _record_problem(obj: Any) -> str | None:
    """What is wrong with one parsed line of a ranking file, or None."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    for key in ("prompt_id", "choice", "ranks", "turns", "answers", "time", "rater"):
        if key not in obj:
            return f"missing field {key!r}"
    if not isinstance(obj["prompt_id"], str) or not obj["prompt_id"]:
        return "prompt_id must be a non-empty string"
    if obj["choice"] not in RANKING_CHOICES:
        return f"choice {obj['choice']!r} is not one of {RANKING_CHOICES}"
    try:
        RankingTask(obj["turns"], obj["answers"], obj["prompt_id"])
        if obj["choice"] == "ranked":
            check_ranks(obj["ranks"], len(obj["answers"]))
        elif obj["ranks"] is not None:
            return "a can't-tell record must have ranks null"
    except (TypeError, ValueError) as exc:
        return str(exc)
    if not isinstance(obj["rater"], str):
        return "rater must be a string"
    return None


class RankingStore:
    """Every ranking (or skip) the reader gives, one JSON object per line, appended and fsynced at once.

    Args:
        path: the file (created on the first answer); its folder must exist.
        rater: the name written with each record (``"reader"``; a synthetic rater's session names it).

    Each :meth:`add` is one :func:`~lmlib._io.append_durably`: a crash loses at most the answer being
    written, never an earlier one. Opening a file resumes from it, with chapter 11's rules
    (:class:`~lmlib.preferences.LabelStore`): a torn last line (a crash mid-write) is cut off with a
    ``RuntimeWarning`` and kept in ``<path>.torn``; any other malformed line raises
    :class:`~lmlib.preferences.LabelFileError` naming the file and line. A prompt answered twice keeps
    both lines; the latest counts (:meth:`latest`).

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    def __init__(self, path: str | os.PathLike, rater: str = "reader") -> None:
        self.path = Path(path)
        if not isinstance(rater, str) or not rater:
            raise ValueError(f"rater must be a non-empty name, got {rater!r}")
        self.rater = rater
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"cannot keep rankings in {self.path}: its folder {self.path.parent} does not "
                                    "exist; create it first or fix the path")
        if self.path.exists() and not self.path.is_file():
            raise IsADirectoryError(f"ranking file {self.path} exists but is not a file")
        self._records: list[dict] = []
        self._size = 0
        self._load()

    # -- reading
    def _load(self) -> None:
        self._records = read_records(self.path, _record_problem, "ranking")
        self._size = self.path.stat().st_size if self.path.exists() else 0

    def _refresh(self) -> None:  # another store on the same file (a re-run cell) may have appended meanwhile
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._size:
            self._load()

    def records(self) -> list[dict]:
        """Every record in file order (copies), repeats included."""
        self._refresh()
        return [dict(r) for r in self._records]

    def latest(self) -> dict[str, dict]:
        """``{prompt_id: record}``, the latest record of every answered prompt (in order of first answer)."""
        self._refresh()
        return {r["prompt_id"]: dict(r) for r in self._records}

    def done_ids(self) -> set[str]:
        """Ids of every prompt with a record (skipped ones included)."""
        return set(self.latest())

    def __len__(self) -> int:
        self._refresh()
        return len(self._records)

    def __repr__(self) -> str:
        return f"RankingStore({str(self.path)!r}, {len(self)} records)"

    # -- writing
    def add(self, task: RankingTask, ranks: Sequence[int] | None, rater: str | None = None, replace: bool = False,
            **extra: Any) -> dict:
        """Append the ranking ``ranks`` of ``task``'s answers (``None``: can't tell, skipped); return the record.

        ``ranks`` must pass :func:`check_ranks`. A second record for the same prompt needs
        ``replace=True`` (the latest counts). Extra keyword arguments (JSON-able) go into the record.
        The record is on disk (fsynced) when this returns.
        """
        if not isinstance(task, RankingTask):
            raise TypeError(f"task must be a RankingTask, got {type(task).__name__}")
        ranks = None if ranks is None else check_ranks(ranks, task.k)
        reserved = {"prompt_id", "choice", "ranks", "turns", "answers", "time", "rater", "meta"} & set(extra)
        if reserved:
            raise ValueError(f"extra fields may not override {sorted(reserved)}")
        self._refresh()
        if not replace and task.id in {r["prompt_id"] for r in self._records}:
            raise ValueError(f"prompt {task.id!r} already has a record in {self.path}; pass replace=True to record a "
                             "new answer (the latest counts)")
        record = {"prompt_id": task.id, "choice": "cant_tell" if ranks is None else "ranked", "ranks": ranks,
                  "turns": [list(t) for t in task.turns], "answers": list(task.answers),
                  "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
                  "rater": self.rater if rater is None else rater, "meta": task.meta, **extra}
        try:
            line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ranking record is not JSON-serialisable: {exc}") from exc
        self._size = append_durably(self.path, line)  # one fsynced append; a failed write leaves no half line
        self._records.append(record)
        return dict(record)


# --------------------------------------------------------------------------- where the reader is


class RankingSession:
    """The prompts to rank, their store, and the prompt on screen: the widget's logic, without a display.

    Args:
        tasks: the :class:`RankingTask` s, in the order they are shown; ids must be unique.
        store: a :class:`RankingStore`, or the path of its file.
        rater: the rater name written with each record, when ``store`` is a path.

    Built on a file that already holds answers, it resumes: :meth:`next` is the first task without
    a record. A record whose prompt id matches a task but whose conversation or answers differ raises
    ``ValueError`` (the file belongs to other data: its ranks would be applied to the wrong answers).

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    def __init__(self, tasks: Sequence[RankingTask], store: RankingStore | str | os.PathLike, rater: str = "reader"):
        self.tasks = _check_tasks(tasks)
        self.store = store if isinstance(store, RankingStore) else RankingStore(store, rater=rater)
        self._by_id = {t.id: t for t in self.tasks}
        latest = self.store.latest()
        for pid, rec in latest.items():
            t = self._by_id.get(pid)
            same = t is None or (rec["answers"] == list(t.answers) and list(map(tuple, rec["turns"])) == list(t.turns))
            if not same:
                raise ValueError(f"{self.store.path} ranked prompt {pid!r} with other answers or another conversation "
                                 "than this task has; rank these tasks in a new file, or give them other ids")
        self._history = [pid for pid in latest if pid in self._by_id]  # answered prompts, latest last
        self._back_pos: int | None = None  # index into _history of the reopened prompt, if any
        self._shown_at = time.monotonic()

    # -- where we are
    def next(self) -> RankingTask | None:
        """The first task without a record, or ``None`` when every prompt is ranked or skipped."""
        done = self.store.done_ids()
        return next((t for t in self.tasks if t.id not in done), None)

    @property
    def current(self) -> RankingTask | None:
        """The task on screen: the one reopened by :meth:`back`, else :meth:`next`."""
        return self._by_id[self._history[self._back_pos]] if self._back_pos is not None else self.next()

    @property
    def done(self) -> bool:
        """True when every task has a record (and none is reopened)."""
        return self.current is None

    @property
    def progress(self) -> tuple[int, int, int]:
        """``(done, skipped, total)`` over this session's tasks; skipped ("can't tell") prompts count as done."""
        latest = self.store.latest()
        mine = [latest[t.id] for t in self.tasks if t.id in latest]
        return len(mine), sum(r["choice"] == "cant_tell" for r in mine), len(self.tasks)

    @property
    def progress_text(self) -> str:
        """E.g. ``"3 / 10 prompts done (1 can't tell)"``."""
        done, skipped, total = self.progress
        return f"{done} / {total} prompts done ({skipped} can't tell)"

    def record_of(self, prompt_id: str) -> dict | None:
        """The latest record of ``prompt_id``, or ``None``."""
        return self.store.latest().get(prompt_id)

    # -- answers
    def _task(self, prompt_id: str) -> RankingTask:
        if isinstance(prompt_id, RankingTask):
            prompt_id = prompt_id.id
        if prompt_id not in self._by_id:
            raise KeyError(f"no prompt with id {prompt_id!r} in this session ({len(self.tasks)} prompts)")
        return self._by_id[prompt_id]

    def _write(self, prompt_id: str, ranks: Sequence[int] | None, seconds: float | None) -> dict:
        task = self._task(prompt_id)
        reopened = self._back_pos is not None and self._history[self._back_pos] == task.id
        if not reopened and task.id in self.store.done_ids():
            raise ValueError(f"prompt {task.id!r} is already answered in {self.store.path} (by another widget on this "
                             "file?); call back() to reopen it and change the answer")
        if seconds is None:
            seconds = round(time.monotonic() - self._shown_at, 2)
        record = self.store.add(task, ranks, replace=reopened, seconds=seconds)
        self._history = [pid for pid in self._history if pid != task.id] + [task.id]
        self._back_pos = None
        self._shown_at = time.monotonic()
        return record

    def rank(self, prompt_id: str, ranks: Sequence[int], seconds: float | None = None) -> dict:
        """Record ``ranks`` (one per answer, higher = better, ties equal; :func:`check_ranks`) and return the record.

        Any task of the session may be ranked; one that already has a record only after :meth:`back`
        reopened it (then the new record replaces the old; the file keeps both). ``seconds`` (time on
        screen) defaults to the time since the last answer.
        """
        return self._write(prompt_id, check_ranks(ranks, self._task(prompt_id).k), seconds)

    def skip(self, prompt_id: str, seconds: float | None = None) -> dict:
        """Record that the reader can't tell how to rank ``prompt_id``'s answers (it gives no pairs)."""
        return self._write(prompt_id, None, seconds)

    def back(self) -> RankingTask:
        """Reopen the prompt answered last; called again, the one before it. ``RuntimeError`` if there is none."""
        pos = (len(self._history) if self._back_pos is None else self._back_pos) - 1
        if pos < 0:
            raise RuntimeError("no earlier answer to go back to")
        self._back_pos = pos
        self._shown_at = time.monotonic()
        return self.current

    @property
    def can_go_back(self) -> bool:
        """True when :meth:`back` has an earlier answer to reopen."""
        return (len(self._history) if self._back_pos is None else self._back_pos) > 0

    def rankings(self) -> "RankingBatch":
        """This session's ranked prompts (latest answers, task order, skips left out) for ``ranking_loss``."""
        latest = self.store.latest()
        return RankingBatch.from_records([latest[t.id] for t in self.tasks if t.id in latest])


# --------------------------------------------------------------------------- for ranking_loss


@dataclass(frozen=True, eq=False)
class RankingBatch:
    """B ranked prompts, ready for :func:`lmlib.preferences.ranking_loss` (skipped prompts are never in it).

    Attributes:
        prompt_ids: ``(B,)`` ids.
        turns: ``(B,)`` conversations, each a tuple of ``(role, text)``.
        answers: ``(B,)`` tuples of K_b answers.
        ranks: ``(B, K)`` float64, higher = better, K = the largest K_b; NaN where a prompt has fewer answers.
        mask: ``(B, K)`` bool, True on real answers.
        raters: ``(B,)`` who ranked each prompt (``"reader"``, a synthetic rater's name...).
        meta: ``(B,)`` the tasks' ``meta`` dicts.

    A reward model scores answer ``i`` of prompt ``b`` into ``scores[b, i]``, a ``(B, K)`` float tensor (any
    value where ``mask`` is False), then ``loss, diag = ranking_loss(scores, batch.ranks, batch.mask)``
    (numpy arrays are accepted; forgetting the mask raises, because padded ranks are NaN).
    Batches add: ``reader + synthetic``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    prompt_ids: tuple[str, ...]
    turns: tuple[tuple[tuple[str, str], ...], ...]
    answers: tuple[tuple[str, ...], ...]
    ranks: np.ndarray
    mask: np.ndarray
    raters: tuple[str, ...]
    meta: tuple[dict, ...]

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> "RankingBatch":
        """The ranked records of a :class:`RankingStore` (``"cant_tell"`` ones are left out), in their order."""
        rows = [r for r in records if r["choice"] == "ranked"]
        tasks = [RankingTask(r["turns"], r["answers"], r["prompt_id"], r.get("meta") or {}) for r in rows]
        return cls._build(tasks, [r["ranks"] for r in rows], [r["rater"] for r in rows])

    @classmethod
    def from_arrays(cls, tasks: Sequence[RankingTask], ranks: Any, rater: str = "synthetic") -> "RankingBatch":
        """Rankings made in memory, say by ``RankingRater.rank(scores)``: ``ranks`` is ``(B, K)`` or B rows of K_b."""
        tasks = _check_tasks(tasks)
        rows = [list(r) for r in ranks]
        if len(rows) != len(tasks):
            raise ValueError(f"got {len(tasks)} tasks but {len(rows)} rows of ranks: one row per task")
        return cls._build(tasks, rows, [rater] * len(tasks))

    @classmethod
    def _build(cls, tasks: list[RankingTask], ranks: list, raters: list[str]) -> "RankingBatch":
        K = max((t.k for t in tasks), default=MIN_ANSWERS)
        r = np.full((len(tasks), K), np.nan)  # (B, K)
        mask = np.zeros((len(tasks), K), dtype=bool)  # (B, K)
        for b, (t, row) in enumerate(zip(tasks, ranks)):
            try:
                r[b, : t.k] = check_ranks(row, t.k)
            except ValueError as exc:
                raise ValueError(f"prompt {t.id!r}: {exc}") from None
            mask[b, : t.k] = True
        return cls(tuple(t.id for t in tasks), tuple(t.turns for t in tasks), tuple(t.answers for t in tasks), r,
                   mask, tuple(raters), tuple(t.meta for t in tasks))

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def __add__(self, other: "RankingBatch") -> "RankingBatch":
        if not isinstance(other, RankingBatch):
            return NotImplemented
        K = max(self.ranks.shape[1], other.ranks.shape[1])

        def pad(a: np.ndarray, fill: Any) -> np.ndarray:
            return np.pad(a, ((0, 0), (0, K - a.shape[1])), constant_values=fill)

        return RankingBatch(self.prompt_ids + other.prompt_ids, self.turns + other.turns, self.answers + other.answers,
                            np.concatenate([pad(self.ranks, np.nan), pad(other.ranks, np.nan)]),
                            np.concatenate([pad(self.mask, False), pad(other.mask, False)]),
                            self.raters + other.raters, self.meta + other.meta)

    def pairs(self) -> list[tuple[int, int, int]]:
        """Every ``(b, chosen, rejected)``: answer ``chosen`` of prompt ``b`` ranked above answer ``rejected``
        (:func:`~lmlib.preferences.ranking_to_pairs`; ties give none). Texts:
        ``batch.answers[b][chosen]``, ``batch.answers[b][rejected]``."""
        return [(b, i, j) for b, answers in enumerate(self.answers)
                for i, j in ranking_to_pairs(range(len(answers)), self.ranks[b, : len(answers)])]


def ranking_batch(*sources: RankingStore | RankingSession | str | os.PathLike) -> RankingBatch:
    """The ranked prompts of one or more ranking files (the reader's, a synthetic rater's...), as one batch.

    Each source counts its latest record per prompt, in order of first answer; skipped prompts are
    left out. The same prompt in two files (two raters) is two batch elements.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    if not sources:
        raise ValueError("ranking_batch needs at least one ranking file, store or session")
    batch = None
    for src in sources:
        if isinstance(src, RankingSession):
            part = src.rankings()
        else:
            store = src if isinstance(src, RankingStore) else RankingStore(src)
            if not store.path.exists():
                raise FileNotFoundError(f"no ranking file at {store.path}")
            part = RankingBatch.from_records(list(store.latest().values()))
        batch = part if batch is None else batch + part
    return batch

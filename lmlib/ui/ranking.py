"""The reader as the labeller of InstructGPT: rank K answers to one prompt, tie them, or say "can't tell".

:class:`RankingWidget` shows one prompt and its K answers (2 to 9, lettered A, B, C...) with a
*place* menu under each (1st = best; equal answers share a place: a tie), and three buttons:
*Save and next*, *Can't tell (skip)* and *Back*. Every answer goes straight into a
:class:`~lmlib.preferences.ranking_store.RankingStore` (one fsynced line), so a kernel restart loses nothing:
build the widget again on the same file and it resumes at the first unranked prompt::

    from lmlib.ui.ranking import RankingWidget
    from lmlib.preferences.ranking_store import RankingTask
    tasks = [RankingTask.from_example(ex, answers) for ex, answers in zip(examples, sampled_answers)]
    w = RankingWidget(tasks, "my_rankings.jsonl")
    w                                           # the last expression of a cell (Jupyter, Colab)

The buttons call :meth:`RankingWidget.save`, :meth:`~RankingWidget.skip` and
:meth:`~RankingWidget.back`, ordinary methods, so tests and scripts drive it without a browser; the
logic itself is :class:`~lmlib.preferences.ranking_store.RankingSession`.

A static page (the rendered book) runs no callbacks: :func:`static_ranking_html` shows a recorded
session, and :func:`record_rater_session` records one with the synthetic rater as the reader, so
the book shows a real session, labelled as the synthetic rater's.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
"""
from __future__ import annotations

import html
import os
from typing import Any, Callable, Sequence

import numpy as np

from . import widget_mimebundle
from ..preferences.ranking_store import (RankingSession, RankingStore, RankingTask, check_ranks, places_to_ranks,
                            ranks_to_places)

__all__ = ["LETTERS", "ordinal", "RankingWidget", "static_ranking_html", "record_rater_session"]

#: How answers are named on screen: A for the first shown, B for the second...
LETTERS = "ABCDEFGHI"


def ordinal(n: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``3 -> "3rd"``, ``4 -> "4th"``, ``11 -> "11th"``: a place as people say it.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _conversation_html(turns: Sequence[Sequence[str]]) -> str:
    rows = [f'<div><b>{"User" if role == "user" else "Assistant"}:</b> '
            f'<span style="white-space:pre-wrap">{html.escape(text)}</span></div>' for role, text in turns]
    return '<div class="ranking-prompt" style="margin:4px 0">' + "".join(rows) + "</div>"


def _answer_html(text: str) -> str:
    shown = html.escape(text) if text.strip() else "<i>(empty answer)</i>"
    return f'<span style="white-space:pre-wrap">{shown}</span>'


# --------------------------------------------------------------------------- the widget


class RankingWidget:
    """Show one prompt and its K answers at a time; the reader gives each a place, ties, or skips.

    Args:
        tasks: the :class:`~lmlib.preferences.ranking_store.RankingTask` s, in the order they are shown; ids unique.
        store: a :class:`~lmlib.preferences.ranking_store.RankingStore`, or the path of its file (its folder must exist).
        rater: the rater name written with each record, when ``store`` is a path.

    Each answer gets a menu of places, 1st (best) to Kth; answers given the same place are tied.
    *Save and next* turns the places into ranks (:func:`~lmlib.preferences.ranking_store.places_to_ranks`,
    higher = better, as :func:`~lmlib.preferences.ranking_loss` wants), writes the record and
    shows the next prompt; a problem (an answer without a place, all answers tied) shows in the
    status line and writes nothing. *Can't tell* records the prompt as skipped. *Back* reopens the
    previous prompt with its places filled in; saving it again replaces the answer (the file keeps
    both lines, the latest counts). ``w.widget`` is the ``ipywidgets.VBox``; ``w.session`` the logic.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """

    def __init__(self, tasks: Sequence[RankingTask], store: RankingStore | str | os.PathLike,
                 rater: str = "reader") -> None:
        import ipywidgets as widgets  # noqa: PLC0415

        self.session = RankingSession(tasks, store, rater=rater)
        self.task: RankingTask | None = None  # the prompt on screen
        self.menus: list = []  # one place menu (Dropdown) per answer on screen
        self.progress_label = widgets.HTML()
        self.prompt_box = widgets.HTML()
        self.answers_box = widgets.VBox()
        self.save_button = widgets.Button(description="Save and next", button_style="success",
                                          tooltip="record this ranking and show the next prompt")
        self.skip_button = widgets.Button(description="Can't tell (skip)", tooltip="record that you cannot rank these")
        self.back_button = widgets.Button(description="Back", tooltip="change the previous answer")
        self.save_button.on_click(lambda _b: self._ui(self.save))
        self.skip_button.on_click(lambda _b: self._ui(self.skip))
        self.back_button.on_click(lambda _b: self._ui(self.back))
        self.status = widgets.HTML()
        self.widget = widgets.VBox([
            self.progress_label, self.prompt_box,
            widgets.HTML("<i>Give each answer a place: 1st = best. Equally good answers get the same place "
                         "(a tie).</i>"),
            self.answers_box,
            widgets.HBox([self.save_button, self.skip_button, self.back_button]),
            self.status,
        ])
        self._show()

    @property
    def store(self) -> RankingStore:
        """The store the answers go to."""
        return self.session.store

    @property
    def done(self) -> bool:
        """True when every prompt is ranked or skipped."""
        return self.task is None

    # -- the reader's input
    @property
    def places(self) -> list[int]:
        """The place chosen for each answer on screen (0 = none chosen yet)."""
        return [int(m.value) for m in self.menus]

    def set_places(self, places: Sequence[int]) -> None:
        """Choose the places of the answers on screen, as the reader would in the menus (1 = best)."""
        places = list(places)
        if len(places) != len(self.menus):
            raise ValueError(f"got {len(places)} places for the {len(self.menus)} answers on screen")
        for i, (menu, p) in enumerate(zip(self.menus, places)):
            if p not in dict(menu.options).values():
                raise ValueError(f"place {p!r} for answer {LETTERS[i]} is not on its menu: choose 1 (best) to "
                                 f"{len(self.menus)}")
            menu.value = p

    # -- the callbacks (the buttons call these)
    def _need_task(self) -> RankingTask:
        if self.task is None:
            raise RuntimeError(f"all {len(self.session.tasks)} prompts are done; nothing left to rank "
                               f"(the rankings are in {self.store.path})")
        return self.task

    def _check_fresh(self, task: RankingTask) -> None:
        if self.session.current is not task:  # another widget on the same file answered it meanwhile
            self._show()
            raise RuntimeError(f"prompt {task.id!r} was answered meanwhile (another widget on {self.store.path}?); "
                               "your answer was not recorded, here is the next prompt")

    def save(self) -> dict:
        """Record the places chosen for the prompt on screen as its ranking, show the next prompt, return the record.

        ``ValueError`` (nothing written) when an answer has no place yet or all answers share one
        place (use *Can't tell*); ``RuntimeError`` when every prompt is already done.
        """
        task = self._need_task()
        missing = [LETTERS[i] for i, p in enumerate(self.places) if p == 0]
        if missing:
            raise ValueError(f"answer(s) {', '.join(missing)} have no place yet: give every answer a place "
                             "(1st = best; equally good answers share a place)")
        ranks = places_to_ranks(self.places)
        self._check_fresh(task)
        record = self.session.rank(task.id, ranks)
        self._show()
        return record

    def skip(self) -> dict:
        """Record "can't tell" for the prompt on screen (it gives no pairs), show the next one, return the record."""
        task = self._need_task()
        self._check_fresh(task)
        record = self.session.skip(task.id)
        self._show()
        return record

    def back(self) -> RankingTask:
        """Reopen the prompt answered last (again: the one before), its places filled in; saving replaces it."""
        task = self.session.back()
        self._show()
        return task

    # -- display
    def _ui(self, fn: Callable, *args: Any) -> None:
        """Run a callback from the page: an error shows in the status line instead of vanishing."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the reader, who can act on it
            self.status.value = f'<span style="color:#b00">&#9888; {html.escape(str(exc))}</span>'

    def _show(self) -> None:
        """Put the prompt to answer (or the done message) on screen and refresh the count."""
        import ipywidgets as widgets  # noqa: PLC0415

        task = self.task = self.session.current
        self.progress_label.value = f"<b>{html.escape(self.session.progress_text)}</b>"
        for row in self.answers_box.children:
            for child in row.children:
                child.close()
            row.close()
        self.menus = []
        if task is None:
            self.prompt_box.value = ""
            self.answers_box.children = ()
            self.status.value = (f"&#10003; All {len(self.session.tasks)} prompts are done. Your rankings are in "
                                 f"<code>{html.escape(str(self.store.path))}</code>.")
        else:
            options = [("place?", 0)] + [(ordinal(p) + (" (best)" if p == 1 else ""), p) for p in range(1, task.k + 1)]
            rows = []
            for i, answer in enumerate(task.answers):
                menu = widgets.Dropdown(options=options, value=0, description=f"{LETTERS[i]}:",
                                        layout=widgets.Layout(width="11em"))
                self.menus.append(menu)
                rows.append(widgets.HBox([menu, widgets.HTML(_answer_html(answer))]))
            self.answers_box.children = tuple(rows)
            self.prompt_box.value = _conversation_html(task.turns)
            self.status.value = ""
            old = self.session.record_of(task.id)
            if old is not None:  # reopened by back()
                if old["choice"] == "ranked":
                    self.set_places(ranks_to_places(old["ranks"]))
                    said = "a ranking (shown)"
                else:
                    said = "<b>can't tell</b>"
                self.status.value = f"Back to an earlier prompt: you gave {said}; a new answer replaces it."
        for button in (self.save_button, self.skip_button):
            button.disabled = task is None
        self.back_button.disabled = not self.session.can_go_back

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return widget_mimebundle(self.widget, repr(self), **kwargs)

    def __repr__(self) -> str:
        return f"RankingWidget({self.session.progress_text}, file={str(self.store.path)!r})"


# --------------------------------------------------------------------------- the static book


def _latest_records(source: Any) -> list[dict]:
    if isinstance(source, RankingSession):
        latest = source.store.latest()
        return [latest[t.id] for t in source.tasks if t.id in latest]
    if isinstance(source, (list, tuple)):
        return [dict(r) for r in source]
    store = source if isinstance(source, RankingStore) else RankingStore(source)
    if not store.path.exists():
        raise FileNotFoundError(f"no recorded session at {store.path}")
    return list(store.latest().values())


def static_ranking_html(source: RankingSession | RankingStore | str | os.PathLike | Sequence[dict],
                        limit: int | None = None) -> str:
    """HTML of a recorded ranking session: the widget, frozen, for a static page (no kernel needed).

    Args:
        source: a ranking file (path or :class:`~lmlib.preferences.ranking_store.RankingStore`), a session, or its records.
        limit: show at most this many prompts (the first ones); the summary still counts all.

    For each prompt (latest answer): the conversation, then the answers from best to worst with their
    place (1st = best), their letter on screen and their rank (higher = better); tied answers share a
    place and are marked *tied*; a skipped prompt says *Can't tell* and lists the answers as shown.
    Every text is HTML-escaped. Display it with ``IPython.display.HTML``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    records = _latest_records(source)
    if not records:
        raise ValueError("the recorded session holds no answers yet: nothing to show")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None (all) or >= 1, got {limit}")
    n_skip = sum(r["choice"] == "cant_tell" for r in records)
    raters = ", ".join(dict.fromkeys(html.escape(r["rater"]) for r in records))
    parts = [f'<div class="ranking-session"><div class="ranking-summary">Recorded session by <b>{raters}</b>: '
             f"{len(records)} prompts, {len(records) - n_skip} ranked, {n_skip} can't tell.</div>"]
    shown = records if limit is None else records[:limit]
    for n, rec in enumerate(shown, 1):
        answers = rec["answers"]
        head = (f"<div>Prompt {n} of {len(records)} &middot; <code>{html.escape(rec['prompt_id'])}</code> "
                f"&middot; K = {len(answers)}</div>")
        if rec["choice"] == "cant_tell":
            verdict = "<div class=\"ranking-skip\"><b>Can't tell</b>: skipped (gives no pairs)</div>"
            items = "".join(f"<li><b>{LETTERS[i]}</b> {_answer_html(a)}</li>" for i, a in enumerate(answers))
            body = f'<ul style="margin:2px 0">{items}</ul>'
        else:
            ranks = check_ranks(rec["ranks"], len(answers))
            places = ranks_to_places(ranks)
            order = sorted(range(len(answers)), key=lambda i: (places[i], i))  # best first, ties in shown order
            verdict = ""
            items = []
            for i in order:
                tied = places.count(places[i]) > 1
                tie = ' <span class="ranking-tie" style="color:#a60">(tied)</span>' if tied else ""
                items.append(f'<tr><td class="ranking-place"><b>{ordinal(places[i])}</b>{tie}</td>'
                             f"<td><b>{LETTERS[i]}</b></td><td>{_answer_html(answers[i])}</td>"
                             f'<td style="color:#777">rank {ranks[i]}</td></tr>')
            body = f'<table style="border-collapse:collapse;margin:2px 0">{"".join(items)}</table>'
        parts.append(f'<div class="ranking-example" style="margin:8px 0;padding:4px;border-left:3px solid #2a2">'
                     f"{head}{_conversation_html(rec['turns'])}{verdict}{body}</div>")
    if len(shown) < len(records):
        parts.append(f"<div>... and {len(records) - len(shown)} more prompts.</div>")
    return "".join(parts) + "</div>"


def record_rater_session(tasks: Sequence[RankingTask], path: str | os.PathLike, rater: Any,
                         scores: Sequence[Sequence[float]], name: str | None = None) -> RankingSession:
    """Record the synthetic rater's session: ``rater`` plays the reader on ``tasks`` and its answers go to ``path``.

    This is the synthetic rater's session, not a person's: every record carries its name (default
    ``"synthetic " + repr(rater)``, e.g. ``"synthetic RankingRater(beta=10, epsilon=0.1, tie_tol=None)"``),
    and :func:`static_ranking_html` shows that name. The file is written through the same
    :class:`~lmlib.preferences.ranking_store.RankingSession` the widget uses, one fsynced line per prompt, so it
    is a real recorded session that the book can ship and render.

    Args:
        tasks: the prompts and their K answers.
        path: the ranking file (its folder must exist). A file that already holds some of these
            prompts is resumed: only the unanswered ones are ranked.
        rater: anything with ``rank(scores) -> ranks`` for a ``(K,)`` row, higher = better, such as
            :class:`lmlib.rlhf.rater.RankingRater` (pass it in: this widget layer does not import Part III).
        scores: per task, the K gold scores of its answers (``judge(example, answer).overall``).
        name: the rater name stored in each record.

    A prompt whose answers the rater ties all together (possible with ``tie_tol``) is recorded as
    "can't tell". Returns the session (``.rankings()`` gives its batch).

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb); built on Chapter 11.
    """
    if not callable(getattr(rater, "rank", None)):
        raise TypeError(f"rater must have a rank(scores) method (a RankingRater), got {type(rater).__name__}")
    scores = [np.asarray(s, dtype=np.float64) for s in scores]
    tasks = list(tasks)
    if len(scores) != len(tasks):
        raise ValueError(f"got {len(tasks)} tasks but {len(scores)} rows of scores: one row of K scores per task")
    for t, s in zip(tasks, scores):
        if s.shape != (t.k,):
            raise ValueError(f"prompt {t.id!r} has {t.k} answers but its scores have shape {s.shape}")
    session = RankingSession(tasks, path, rater=f"synthetic {rater!r}" if name is None else name)
    done = session.store.done_ids()
    for t, s in zip(tasks, scores):
        if t.id in done:
            continue
        ranks = np.asarray(rater.rank(s)).reshape(-1)
        if len(set(ranks.tolist())) == 1:
            session.skip(t.id, seconds=0.0)
        else:
            session.rank(t.id, ranks, seconds=0.0)
    return session

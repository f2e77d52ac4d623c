"""The reader as the rater: watch two clips side by side and say which one is better.

:class:`LabelingWidget` shows one :class:`~lmlib.preferences.PreferencePair` at a time
(two videos, images or texts side by side), with four buttons - *left is better*, *right is
better*, *equally good*, *can't tell* - keyboard shortcuts and a progress count. Every answer
goes straight into a :class:`~lmlib.preferences.LabelStore`, an append-only, fsynced file in
the working directory, so a crash or a kernel restart loses nothing: build the widget again
on the same file and it starts at the first pair you have not answered::

    from lmlib.ui.labeling import LabelingWidget
    w = LabelingWidget(pairs, "my_labels.jsonl")   # segments carry meta["frames"] (L, H, W, 3) uint8
    w                                               # the last expression of a cell (Jupyter, Colab)

Keyboard shortcuts use only core ipywidgets, so they work in Jupyter and Colab alike: click
the small text box, then press ``a`` (left), ``d`` (right), ``s`` (equal), ``x`` (can't tell)
or ``u`` (back to the previous pair, to change its answer). The buttons and the key box call
:meth:`LabelingWidget.answer`, :meth:`LabelingWidget.on_key` and :meth:`LabelingWidget.back`,
which are ordinary methods: the tests (and a script) drive the widget without a browser.

A static page (the rendered book) cannot run callbacks; :func:`static_example_html` shows
recorded example pairs with the answer that was given, as plain HTML with embedded media.

Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
"""
from __future__ import annotations

import base64
import html
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import widget_mimebundle
from ..preferences import CHOICES, LabelStore, PreferencePair, Segment

__all__ = ["BUTTON_TEXT", "KEYS", "encode_mp4", "default_render", "LabelingWidget", "static_example_html"]

#: What each button says, for every choice in ``CHOICES``.
BUTTON_TEXT: dict[str, str] = {"left": "Left is better", "right": "Right is better",
                               "equal": "Equally good", "cant_tell": "Can't tell"}
#: Keyboard shortcuts: key -> choice, and ``"u"`` -> go back one pair.
KEYS: dict[str, str] = {"a": "left", "d": "right", "s": "equal", "x": "cant_tell", "u": "back"}
assert set(BUTTON_TEXT) == set(CHOICES) and set(KEYS.values()) - {"back"} == set(CHOICES)

Media = bytes | str
"""What a render function returns: mp4/webm video, png/gif/jpeg image bytes, or a text."""

_MAGIC = [(b"\x89PNG\r\n\x1a\n", "image", "png"), (b"GIF8", "image", "gif"), (b"\xff\xd8\xff", "image", "jpeg"),
          (b"\x1a\x45\xdf\xa3", "video", "webm")]


def _media_kind(data: Any, where: str) -> tuple[str, str]:
    """``("video", "mp4")``, ``("image", "png")``, ``("text", "plain")``, ...; a clear error otherwise."""
    if isinstance(data, str):
        return "text", "plain"
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{where} must return bytes (an mp4/webm video or a png/gif/jpeg image) or a str (text), "
                        f"got {type(data).__name__}")
    data = bytes(data)
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "video", "mp4"
    for magic, kind, fmt in _MAGIC:
        if data.startswith(magic):
            return kind, fmt
    raise ValueError(f"{where} returned {len(data)} bytes that are not an mp4/webm video nor a png/gif/jpeg "
                     f"image (they start {data[:8]!r})")


# --------------------------------------------------------------------------- clips as media


def encode_mp4(frames: np.ndarray, fps: float = 15) -> bytes:
    """Encode RGB frames ``(L, H, W, 3)`` (or grey ``(L, H, W)``), dtype uint8, as mp4 bytes (H.264).

    Odd heights or widths are padded by one edge pixel (H.264 needs even sizes). The bytes
    play in every browser and in ``ipywidgets.Video``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    import imageio.v2 as imageio  # noqa: PLC0415 - only needed when clips are shown

    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 (0-255), got dtype {frames.dtype}; for floats in [0, 1] "
                        "pass (frames * 255).round().astype(np.uint8)")
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must have shape (L, H, W, 3) or (L, H, W), got {frames.shape}")
    if min(frames.shape[:3]) == 0:
        raise ValueError(f"frames must hold at least one frame of at least 1x1 pixels, got shape {frames.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    L, H, W, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    fd, name = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        with imageio.get_writer(name, fps=fps, codec="libx264", macro_block_size=1,
                                ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
        return Path(name).read_bytes()
    finally:
        os.unlink(name)


def default_render(segment: Segment) -> Media:
    """Turn a segment into something to show: ``meta["frames"]`` as mp4, or ``meta["text"]`` as text.

    ``segment.meta["frames"]``: uint8 ``(L', H, W, 3)`` frames of the clip (played at
    ``meta.get("fps", 15)`` frames per second); ``segment.meta["text"]``: a completion shown
    as text. A segment with neither needs a ``render`` function of your own.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    if not isinstance(segment, Segment):
        raise TypeError(f"default_render needs a Segment, got {type(segment).__name__}")
    if "frames" in segment.meta:
        return encode_mp4(segment.meta["frames"], fps=segment.meta.get("fps", 15))
    if "text" in segment.meta:
        return str(segment.meta["text"])
    raise ValueError("this segment has neither meta['frames'] (uint8 (L, H, W, 3) frames of the clip) nor "
                     "meta['text']; pass render=<function Segment -> mp4/png/gif bytes or str> to show it")


def _check_pairs(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    pairs = list(pairs)
    if not pairs:
        raise ValueError("there are no pairs to label: pass a non-empty list of PreferencePair")
    seen: dict[str, int] = {}
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise TypeError(f"pairs[{i}] must be a PreferencePair, got {type(p).__name__}")
        if p.id in seen:
            raise ValueError(f"pairs[{seen[p.id]}] and pairs[{i}] have the same id {p.id!r} (the same two clips "
                             "twice?); ids must be unique, drop the repeat: list({p.id: p for p in pairs}.values())")
        seen[p.id] = i
    return pairs


# --------------------------------------------------------------------------- the widget


class LabelingWidget:
    """Show pairs of clips one at a time and append each answer to a :class:`LabelStore`.

    Args:
        pairs: the pairs to label, in the order they are shown; ids must be unique.
        store: a :class:`LabelStore`, or the path of its file (created if missing).
        render: ``Segment -> bytes | str``: mp4/webm video, png/gif/jpeg image or text
            (default :func:`default_render`). Each segment is rendered once and cached.
        rater: the rater name written with each label, when ``store`` is a path.
        width: display width of each clip in pixels.

    On construction the widget skips every pair the file already answers (resume). Each
    answer is written and fsynced before the next pair is shown; the record also holds
    ``seconds``, the time the pair was on screen. After the last pair the buttons are
    disabled and a done message shows; calling :meth:`answer` then raises ``RuntimeError``
    (nothing is left to answer), while a key press is ignored. :meth:`back` reopens the
    previously answered pair; answering it again appends a new record that replaces the old
    one (the file keeps both; the latest counts).

    Display it as the last expression of a cell (or ``display(w)``); ``w.widget`` is the
    ``ipywidgets.VBox``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """

    def __init__(
        self,
        pairs: Sequence[PreferencePair],
        store: LabelStore | str | os.PathLike,
        render: Callable[[Segment], Media] = default_render,
        rater: str = "reader",
        width: int = 320,
    ) -> None:
        import ipywidgets as widgets  # noqa: PLC0415

        self.pairs = _check_pairs(pairs)
        self.store = store if isinstance(store, LabelStore) else LabelStore(store, rater=rater)
        if not callable(render):
            raise TypeError(f"render must be a function Segment -> bytes | str, got {type(render).__name__}")
        self.render, self.width = render, int(width)
        self._by_id = {p.id: p for p in self.pairs}
        self._media: dict[int, tuple[str, str, Media]] = {}  # id(segment) -> (kind, format, data)
        answered = self.store.choices()  # dict order: the order pairs were first answered
        self._history = [pid for pid in answered if pid in self._by_id]  # answered pairs, latest last
        self._back_pos: int | None = None  # index into _history of the reopened pair, if any
        self._pair: PreferencePair | None = None  # the pair on screen
        self._shown_at = time.monotonic()

        self.buttons = {c: widgets.Button(description=f"{BUTTON_TEXT[c]} ({k})", tooltip=BUTTON_TEXT[c])
                        for k, c in KEYS.items() if c in CHOICES}
        for choice, button in self.buttons.items():
            button.on_click(lambda _b, c=choice: self._ui(self.answer, c))
        self.back_button = widgets.Button(description="Back (u)", tooltip="change the previous answer")
        self.back_button.on_click(lambda _b: self._ui(self.back))
        self.keys = widgets.Text(value="", continuous_update=True,
                                 placeholder="click here, then press a / d / s / x  (u = back)",
                                 layout=widgets.Layout(width="22em"))
        self.keys.observe(self._on_key_box, names="value")
        self.progress_label = widgets.HTML()
        self.status = widgets.HTML()
        self.left_box, self.right_box = widgets.VBox(), widgets.VBox()
        self.widget = widgets.VBox([
            self.progress_label,
            widgets.HBox([self.left_box, self.right_box]),
            widgets.HBox(list(self.buttons.values()) + [self.back_button]),
            self.keys,
            self.status,
        ])
        self._show()

    # -- state
    @property
    def current_pair(self) -> PreferencePair | None:
        """The pair on screen, or ``None`` when every pair has an answer."""
        return self._pair

    @property
    def progress(self) -> tuple[int, int]:
        """``(answered, total)`` over this widget's pairs (``cant_tell`` counts as answered)."""
        return len(self.store.done_ids() & self._by_id.keys()), len(self.pairs)

    @property
    def progress_text(self) -> str:
        """E.g. ``"12 / 40 labelled (3 can't tell)"``."""
        choices = self.store.choices()
        cant = sum(choices.get(p.id) == "cant_tell" for p in self.pairs)
        done, total = self.progress
        return f"{done} / {total} labelled ({cant} can't tell)"

    @property
    def done(self) -> bool:
        """True when every pair has an answer."""
        return self._pair is None

    # -- the callbacks (buttons and keys call these)
    def answer(self, choice: str) -> dict:
        """Record ``choice`` (one of ``CHOICES``) for the pair on screen, show the next one, return the record.

        The record is in the file (fsynced) when this returns. Raises ``ValueError`` for an
        unknown choice, ``RuntimeError`` when every pair is already answered, or when the pair
        on screen was answered meanwhile through another widget on the same file (the widget
        then moves on without writing).
        """
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        pair = self._pair
        if pair is None:
            raise RuntimeError(f"all {len(self.pairs)} pairs are labelled; nothing left to answer "
                               f"(the labels are in {self.store.path})")
        replace = self._back_pos is not None
        if not replace and pair.id in self.store.done_ids():
            self._show()
            raise RuntimeError(f"pair {pair.id!r} was answered meanwhile (another widget on {self.store.path}?); "
                               "your answer was not recorded, here is the next pair")
        seconds = round(time.monotonic() - self._shown_at, 2)
        record = self.store.add(pair.id, choice, replace=replace, seconds=seconds)
        self._history = [pid for pid in self._history if pid != pair.id] + [pair.id]
        self._back_pos = None
        self._show()
        return record

    def back(self) -> PreferencePair:
        """Reopen the pair answered last; called again, the one before it, and so on.

        A new answer to the reopened pair replaces the old one (both stay in the file; the
        latest counts). Raises ``RuntimeError`` when there is no earlier answer.
        """
        pos = (len(self._history) if self._back_pos is None else self._back_pos) - 1
        if pos < 0:
            raise RuntimeError("no earlier answer to go back to")
        self._back_pos = pos
        self._show()
        return self._pair

    def on_key(self, key: str) -> str | None:
        """Act on one key press: ``a``/``d``/``s``/``x`` answer, ``u`` goes back (see ``KEYS``).

        Returns the action taken (a choice or ``"back"``), or ``None`` for a key that means
        nothing, or an answer key once every pair is answered; then the status line says why.
        ``u`` with no earlier answer raises ``RuntimeError``, as :meth:`back` does.
        """
        action = KEYS.get(key.lower()) if isinstance(key, str) else None
        if action is None:
            self.status.value = (f"key {html.escape(repr(key))} does nothing: press "
                                 + ", ".join(f"<b>{k}</b> = {'back' if c == 'back' else BUTTON_TEXT[c].lower()}"
                                             for k, c in KEYS.items()))
            return None
        if action == "back":
            self.back()
        elif self.done:
            self._show()
            return None
        else:
            self.answer(action)
        return action

    # -- display
    def _ui(self, fn: Callable, *args: Any) -> None:
        """Run a callback from the page: an error shows in the status line instead of vanishing."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the reader, who can act on it
            self.status.value = f'<span style="color:#b00">&#9888; {html.escape(str(exc))}</span>'

    def _on_key_box(self, change: dict) -> None:
        text = change["new"]
        if not text:
            return
        self.keys.value = ""  # triggers this observer again with "", ignored above
        self._ui(self.on_key, text[-1])

    def _media_for(self, segment: Segment) -> tuple[str, str, Media]:
        key = id(segment)
        if key not in self._media:
            data = self.render(segment)
            kind, fmt = _media_kind(data, f"render ({getattr(self.render, '__name__', 'render')})")
            self._media[key] = (kind, fmt, bytes(data) if kind != "text" else data)
        return self._media[key]

    def _clip_widget(self, segment: Segment):
        import ipywidgets as widgets  # noqa: PLC0415

        kind, fmt, data = self._media_for(segment)
        if kind == "video":
            return widgets.Video(value=data, format=fmt, autoplay=True, loop=True, controls=True,
                                 width=str(self.width))
        if kind == "image":
            return widgets.Image(value=data, format=fmt, width=str(self.width))
        return widgets.HTML(f'<pre style="white-space:pre-wrap;width:{self.width}px">{html.escape(data)}</pre>')

    def _show(self) -> None:
        """Put the pair to answer (or the done message) on screen and refresh the counts."""
        import ipywidgets as widgets  # noqa: PLC0415

        if self._back_pos is not None:
            pair = self._by_id[self._history[self._back_pos]]
        else:
            pair = self.store.next_unlabelled(self.pairs)
        self._pair = pair
        self.progress_label.value = f"<b>{html.escape(self.progress_text)}</b>"
        for box in (self.left_box, self.right_box):
            for child in box.children:
                child.close()
        if pair is None:
            self.left_box.children = self.right_box.children = ()
            self.status.value = (f"&#10003; All {len(self.pairs)} pairs are labelled. Your answers are in "
                                 f"<code>{html.escape(str(self.store.path))}</code>.")
        else:
            for box, side, seg in ((self.left_box, "Left", pair.left), (self.right_box, "Right", pair.right)):
                box.children = (widgets.HTML(f"<b>{side}</b>"), self._clip_widget(seg))
            if self._back_pos is not None:
                old = self.store.choices()[pair.id]
                self.status.value = (f"Back to an earlier pair: you answered <b>{html.escape(BUTTON_TEXT[old])}"
                                     "</b>; a new answer replaces it.")
            else:
                self.status.value = ""
        for button in self.buttons.values():
            button.disabled = pair is None
        self.back_button.disabled = (len(self._history) if self._back_pos is None else self._back_pos) == 0
        self._shown_at = time.monotonic()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        return widget_mimebundle(self.widget, repr(self), **kwargs)

    def __repr__(self) -> str:
        return f"LabelingWidget({self.progress_text}, file={str(self.store.path)!r})"


# --------------------------------------------------------------------------- the static book


def _media_html(data: Media, width: int) -> str:
    kind, fmt = _media_kind(data, "render")
    if kind == "text":
        return f'<pre style="white-space:pre-wrap;width:{width}px;margin:0">{html.escape(data)}</pre>'
    src = f"data:{kind}/{fmt};base64," + base64.b64encode(bytes(data)).decode("ascii")
    if kind == "video":
        return (f'<video src="{src}" width="{width}" autoplay loop muted playsinline controls '
                f'style="display:block"></video>')
    return f'<img src="{src}" width="{width}" style="display:block;image-rendering:pixelated">'


def static_example_html(
    pairs: Sequence[PreferencePair],
    labels: Sequence[str] | Mapping[str, str] | LabelStore,
    render: Callable[[Segment], Media] = default_render,
    width: int = 240,
) -> str:
    """HTML that shows recorded pairs side by side with the answer given: the widget, frozen, for a static page.

    Args:
        pairs: the pairs to show (keep it to a handful: the media are embedded in the page).
        labels: one choice per pair (same order), or ``{pair_id: choice}``, or a
            :class:`LabelStore`; every pair needs an answer from ``CHOICES``.
        render: as for :class:`LabelingWidget`.
        width: display width of each clip in pixels.

    The preferred clip gets a green frame (both for ``"equal"``, neither for ``"cant_tell"``).
    Display it with ``IPython.display.HTML``.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    pairs = _check_pairs(pairs)
    if isinstance(labels, LabelStore):
        labels = labels.choices()
    if isinstance(labels, Mapping):
        missing = [p.id for p in pairs if p.id not in labels]
        if missing:
            raise ValueError(f"no label for pair(s) {missing}")
        choices = [labels[p.id] for p in pairs]
    else:
        choices = list(labels)
        if len(choices) != len(pairs):
            raise ValueError(f"got {len(pairs)} pairs but {len(choices)} labels")
    bad = [c for c in choices if c not in CHOICES]
    if bad:
        raise ValueError(f"labels must be among {CHOICES}, got {bad}")
    rows = []
    for i, (pair, choice) in enumerate(zip(pairs, choices), 1):
        cells = []
        for side, seg in (("left", pair.left), ("right", pair.right)):
            chosen = choice == side or choice == "equal"
            border = "3px solid #2a2" if chosen else "3px solid transparent"
            cells.append(f'<div style="border:{border};padding:4px"><div><b>{side.capitalize()}</b></div>'
                         f"{_media_html(render(seg), width)}</div>")
        rows.append(f'<div class="label-example" style="margin:8px 0"><div>Pair {i} of {len(pairs)} &middot; '
                    f'answer: <b class="label-choice">{html.escape(BUTTON_TEXT[choice])}</b></div>'
                    f'<div style="display:flex;gap:8px;flex-wrap:wrap">{"".join(cells)}</div></div>')
    return '<div class="label-examples">' + "".join(rows) + "</div>"

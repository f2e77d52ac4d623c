"""A chat box for the instruction-tuned GPT: type a message, press Send, read the answer, ask a follow-up.

Two parts, so that the conversation logic is testable without a display:

* :class:`ChatSession` holds the conversation as ``(role, text)`` turns and decides what the model sees
  of it: the new message plus the last ``memory`` exchanges (the book GPT reads only 128 characters, and
  the follow-ups of the instruction data set look back one exchange);
* :func:`chat_widget` puts a text box, a Send button, a New-conversation button and the transcript around a
  session.

The model is reached through one function, ``reply(turns) -> str``, that answers a conversation given as
``(role, text)`` pairs (user first, ending with the user's new message). This module knows nothing of the
chat template or of the model (``lmlib.ui`` imports no ``lmlib.rlhf``); the chapter writes ``reply`` in
two lines::

    from lmlib.assets import load_sft_gpt
    from lmlib.rlhf.chat import Turn
    from lmlib.rlhf.sft import answer
    model, tok = load_sft_gpt()

    def reply(turns):
        return answer(model, tok, [[Turn(role, text) for role, text in turns]], greedy=True)[0]

    chat_widget(reply, messages=["A line as Romeo about love.", "Shorter."])  # in Jupyter or Colab

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["Reply", "ChatSession", "chat_widget"]

Reply = Callable[[Sequence[tuple[str, str]]], str]
"""``reply(turns) -> answer``: ``turns`` alternate ``("user", text)`` / ``("assistant", text)``, start and end
with a user turn; the answer is the assistant's next turn."""


class ChatSession:
    """A conversation with a model behind ``reply``: :meth:`send` a message, get the answer, keep the history.

    Args:
        reply: the model, as a :data:`Reply` function.
        memory: how many earlier exchanges (a user turn and its answer) the model sees with a new message;
            0 = none (every message stands alone). The whole :attr:`history` is kept for display either way.
        max_chars: longest accepted message, in characters.

    Attributes:
        history: every turn so far, ``[("user", text), ("assistant", text), ...]``.
        seconds: time the last :meth:`send` spent in ``reply``.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    def __init__(self, reply: Reply, memory: int = 1, max_chars: int = 200):
        if not callable(reply):
            raise TypeError(f"reply must be a function turns -> str, got {type(reply).__name__}")
        for name, v, lo in (("memory", memory, 0), ("max_chars", max_chars, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        self.reply, self.memory, self.max_chars = reply, memory, max_chars
        self.history: list[tuple[str, str]] = []
        self.seconds = 0.0

    def context(self, message: str) -> list[tuple[str, str]]:
        """The turns the model is given for ``message``: the last :attr:`memory` exchanges, then the message.

        Worked example: after ``send("Hi")`` -> ``"Hello."``, ``context("Again.")`` is
        ``[("user", "Hi"), ("assistant", "Hello."), ("user", "Again.")]`` with ``memory=1`` and
        ``[("user", "Again.")]`` with ``memory=0``.
        """
        past = self.history[len(self.history) - 2 * self.memory:] if self.memory else []
        return [*past, ("user", self._check(message))]

    def _check(self, message: Any) -> str:
        if not isinstance(message, str):
            raise TypeError(f"a message is a str, got {type(message).__name__}")
        text = message.strip()
        if not text:
            raise ValueError("the message is empty: type a question or a request first")
        if len(text) > self.max_chars:
            raise ValueError(f"the message has {len(text)} characters, more than {self.max_chars}: the book GPT "
                             "reads only 128 characters at a time, so ask something shorter")
        return text

    def send(self, message: str) -> str:
        """Ask ``reply`` for the answer to ``message`` (stripped) in its :meth:`context`; record both turns.

        Raises:
            TypeError, ValueError: the message is not a str, is empty or too long; whatever ``reply`` raises
                (a message with a chat token, for example). The history is then unchanged.
        """
        turns = self.context(message)
        t0 = time.perf_counter()
        out = self.reply(turns)
        self.seconds = time.perf_counter() - t0
        if not isinstance(out, str):
            raise TypeError(f"reply must return a str, got {type(out).__name__}")
        self.history += [turns[-1], ("assistant", out)]
        return out

    def reset(self) -> None:
        """Forget the conversation: the next message starts a new one."""
        self.history = []

    def html(self) -> str:
        """The conversation as HTML, one line per turn (the answers keep their line breaks)."""
        if not self.history:
            return "<i>No messages yet: type one below and press Send.</i>"
        rows = []
        for role, text in self.history:
            who, color = ("you", "#1f4e79") if role == "user" else ("assistant", "#7a3e00")
            body = html.escape(text).replace("\n", "<br>") if text else "<i>(an empty answer)</i>"
            rows.append(f'<div style="margin:2px 0"><b style="color:{color}">{who}:</b> '
                        f'<span style="font-family:monospace">{body}</span></div>')
        return "".join(rows)


def chat_widget(reply: Reply, memory: int = 1, messages: Iterable[str] = (), max_chars: int = 200):
    """A chat panel: the conversation, a text box, **Send** and **New conversation**.

    Send passes the box's text to :meth:`ChatSession.send`, shows the
    conversation and empties the box; an error (empty message, a chat token in it...) is shown in red and
    changes nothing. New conversation clears the history.

    Args:
        reply, memory, max_chars: as in :class:`ChatSession`.
        messages: sent one after another right away, so the panel opens with a conversation (a book page
            built without a kernel shows it).

    Returns:
        an ``ipywidgets.VBox``; display it as the last expression of a cell (Jupyter, Colab). For scripts and
        tests it carries ``.session`` (the :class:`ChatSession`), ``.text`` (the ``Text`` box), ``.send_button``,
        ``.reset_button``, ``.output`` (an ``HTML`` widget), ``.status`` (an ``HTML`` widget: the last error or
        the time taken) and ``.send(message=None)``, what the button does (the box's text by default; returns
        the answer, or None after an error).

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    import ipywidgets as widgets

    session = ChatSession(reply, memory=memory, max_chars=max_chars)
    if isinstance(messages, str):
        raise TypeError("messages is a list of strings; for one message write [message]")
    output = widgets.HTML(value=session.html())
    status = widgets.HTML(value="")
    text = widgets.Text(value="", placeholder="Ask something, e.g. Who says \"Out, damned spot\"?",
                        layout=widgets.Layout(width="60%"))
    send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
    reset_button = widgets.Button(description="New conversation", icon="refresh")

    def send(message: Any = None) -> str | None:
        if message is None or isinstance(message, widgets.Button):  # the button passes itself
            message = text.value
        status.value = "<i>thinking...</i>"
        try:
            out = session.send(message)
        except (TypeError, ValueError) as e:
            status.value = f'<span style="color:#c00000">&#9888; {html.escape(str(e))}</span>'
            return None
        output.value = session.html()
        status.value = f'<span style="color:#666">answered in {session.seconds:.1f} s</span>'
        text.value = ""
        return out

    def reset(_: Any = None) -> None:
        session.reset()
        output.value = session.html()
        status.value = ""

    send_button.on_click(send)
    reset_button.on_click(reset)
    box = widgets.VBox([output, widgets.HBox([text, send_button, reset_button]), status])
    box.session, box.text, box.send_button, box.reset_button = session, text, send_button, reset_button
    box.output, box.status, box.send, box.reset = output, status, send, reset
    for m in messages:
        if send(m) is None:
            raise ValueError(f"the opening message {m!r} failed: {status.value}")
    return box

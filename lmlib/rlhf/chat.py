"""Conversations for the assistant of Part III: turns, examples, and the chat template.

An :class:`Example` is one prompt of the instruction data set: the conversation so far (user first,
ending with a user turn), the demonstration a good assistant gives next, the category of the prompt
and the facts the gold judge needs to score any answer to it (``meta``; never shown to the policy).

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CATEGORIES", "Turn", "Example"]

#: The kinds of prompt in the instruction data set, in the order the chapter introduces them.
CATEGORIES = ("knowledge", "false_premise", "unknowable", "inappropriate", "benign", "creative", "follow_up")
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: ``role`` is ``"user"`` or ``"assistant"``.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    role: str
    text: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"a {self.role} turn needs non-empty text, got {self.text!r}")


@dataclass(frozen=True)
class Example:
    """One prompt of the instruction data set with its demonstration and the judge's facts.

    Attributes:
        id: stable identifier. The splits are made by fact group (every prompt built from one line, one
            speaker or one request pair goes to one split), so no prompt or fact appears in two splits.
        category: one of :data:`CATEGORIES`.
        turns: the conversation so far, alternating user/assistant, starting and ending with a user turn.
        answer: the demonstration, what a good assistant says next.
        meta: what the gold judge needs (the correct answer, the false premise, the play...), JSON-able.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """

    id: str
    category: str
    turns: tuple[Turn, ...]
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"category must be one of {CATEGORIES}, got {self.category!r}")
        turns = tuple(self.turns)
        if not turns or turns[0].role != "user" or turns[-1].role != "user":
            raise ValueError(f"example {self.id!r}: the turns must start and end with a user turn")
        for a, b in zip(turns, turns[1:]):
            if a.role == b.role:
                raise ValueError(f"example {self.id!r}: turns must alternate user/assistant, got two {a.role!r} turns")
        object.__setattr__(self, "turns", turns)

    @property
    def prompt(self) -> str:
        """The last user turn."""
        return self.turns[-1].text

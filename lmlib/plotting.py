"""Small matplotlib helpers shared by the chapters' figures.

Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
"""
from __future__ import annotations

from typing import Hashable, Sequence

__all__ = ["token_label", "plot_next_tokens"]

_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5"}  # open box, return arrow, tab arrow


def token_label(token: Hashable) -> str:
    """A printable label for a token: space -> ``'␣'``, newline -> ``'↵'``, anything else -> ``str(token)``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    text = str(token)
    if text.strip() == "":  # whitespace would be invisible on an axis
        return "".join(_VISIBLE.get(ch, ch) for ch in text)
    return text


def plot_next_tokens(ax, top: Sequence[tuple[Hashable, float]], title: str = "", color: str = "C0"):
    """Horizontal bar chart of next-token probabilities, most likely on top.

    Args:
        ax: a matplotlib Axes.
        top: ``(token, probability)`` pairs, e.g. from ``model.top_next(context, k)``.
        title: the axes title (for example the prefix).
        color: bar colour.

    Returns:
        ``ax``.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    if not top:
        raise ValueError("plot_next_tokens needs at least one (token, probability) pair")
    labels = [token_label(t) for t, _ in top][::-1]
    probs = [float(p) for _, p in top][::-1]
    bars = ax.barh(range(len(probs)), probs, color=color)
    ax.set_yticks(range(len(probs)), labels, fontfamily="monospace")
    ax.set_xlim(0, min(1.0, max(probs) * 1.3 + 0.02))
    ax.bar_label(bars, labels=[f"{p:.2f}" for p in probs], padding=2, fontsize=8)
    ax.set_xlabel("probability")
    if title:
        ax.set_title(title, fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax

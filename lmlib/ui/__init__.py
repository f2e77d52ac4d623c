"""The widgets of the book: what a reader clicks in a notebook (ipywidgets, also under Colab's version 7).

* :mod:`.next_tokens` - the n-gram next-token explorer (chapter 1);
* :mod:`.attention_viewer` - attention patterns and head statistics (chapter 4);
* :mod:`.sampler` - the decoding sampler (chapter 6);
* :mod:`.labeling` - the labelling widget in which the reader is the rater (chapter 11, Part III);
* :mod:`.chat` - the chat box of the instruction-tuned GPT (chapter 13);
* :mod:`.ranking` - the ranking widget in which the reader orders K answers (chapter 14).

Nothing else in lmlib imports this package.
"""
from __future__ import annotations

from typing import Any

__all__ = ["widget_mimebundle"]


def widget_mimebundle(widget: Any, text: str, **kwargs: Any) -> dict:
    """What a wrapper object returns from ``_repr_mimebundle_`` so a notebook shows its ipywidgets ``widget``.

    ipywidgets 8 gives the bundle itself; ipywidgets 7 (Colab's) displays widgets through
    ``_ipython_display_``, so the bundle is built from the widget's model id. ``text`` is the plain-text
    fallback (what a terminal or a static page without widgets shows).

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    show = getattr(widget, "_repr_mimebundle_", None)
    if show is not None:  # ipywidgets 8
        bundle = show(**kwargs) or {}
    else:  # ipywidgets 7
        bundle = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                                "model_id": widget.model_id}}
    bundle["text/plain"] = text
    return bundle

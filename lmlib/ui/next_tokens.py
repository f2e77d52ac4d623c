"""Interactive widgets (ipywidgets) for exploring models in a running notebook.

In the static book a widget shows only its first state; each chapter draws
the same information as an ordinary figure as well.

Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ..lm.ngram import NGramLM
from ..plotting import plot_next_tokens

__all__ = ["next_token_explorer"]


def next_token_explorer(
    models: Mapping[str, tuple[NGramLM, Callable[[str], Sequence]]],
    prefix: str = "",
    k: int = 10,
):
    """A text box, a model menu and a bar chart of the model's top-``k`` next tokens after the typed prefix.

    Args:
        models: display name -> ``(model, tokenize)``, where ``tokenize`` turns the
            typed text into the model's tokens (``char_tokens``, ``word_tokens``, ...).
        prefix: the text shown at the start.
        k: how many tokens the chart shows at the start (a slider changes it).

    Returns:
        An ``ipywidgets.VBox``; display it as the last expression of a cell.
        It needs a running kernel (Jupyter, Colab): typing calls the model.

    Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if not models:
        raise ValueError("next_token_explorer needs at least one model")
    names = list(models)
    text = widgets.Textarea(value=prefix, description="prefix", continuous_update=True,
                            layout=widgets.Layout(width="95%", height="4em"))
    choice = widgets.Dropdown(options=names, value=names[0], description="model")
    top_k = widgets.IntSlider(value=k, min=1, max=30, description="top k")
    out = widgets.Output()

    def redraw(_=None):
        model, tokenize = models[choice.value]
        with out:
            out.clear_output(wait=True)
            try:
                top = model.top_next(tokenize(text.value), top_k.value)
            except (KeyError, ValueError, TypeError) as e:  # e.g. a character the model never saw
                print(f"no prediction: {e.args[0] if e.args else e}")
                return
            fig, ax = plt.subplots(figsize=(6, 0.3 * len(top) + 1.2))
            plot_next_tokens(ax, top, title=f"{choice.value}: next token after {text.value[-30:]!r}")
            fig.tight_layout()
            display(fig)
            plt.close(fig)

    for w in (text, choice, top_k):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([text, widgets.HBox([choice, top_k]), out])

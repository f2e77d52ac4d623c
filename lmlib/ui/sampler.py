"""A sampling playground: every decoding knob of Chapter 6 on one panel.

:func:`generate_text` does the work (encode the prompt, decode with greedy
search, sampling or beam search from :mod:`lmlib.lm.decoding`, decode the ids
back into text) and reports what it did; :func:`sampler_widget` puts
ipywidgets controls in front of it. The split keeps the generation testable
without a display, and lets a reader call the same function in a script::

    from lmlib.assets import load_book_gpt
    from lmlib.ui.sampler import generate_text, sampler_widget
    model, tok = load_book_gpt()
    print(generate_text(model, tok, "ROMEO:\\n", temperature=0.8, top_p=0.9, seed=1).text)
    sampler_widget(model, tok)           # in Jupyter or Colab: the last expression of a cell

Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
"""
from __future__ import annotations

import html
import math
import time
from typing import Any, NamedTuple

import torch

from ..lm.decoding import beam_search, greedy, sample, sequence_log_likelihood

__all__ = ["METHODS", "GenerationResult", "generate_text", "sampler_widget"]

METHODS = ("greedy", "sample", "beam")
"""The decoding methods :func:`generate_text` knows."""


class GenerationResult(NamedTuple):
    """What :func:`generate_text` returns.

    * ``prompt``: the prompt as the model saw it (``decode(encode(prompt))``: an
      unknown character shows as ``<unk>``);
    * ``text``: the generated continuation only;
    * ``ids``: ``(T_prompt + n,)`` long, the prompt's ids followed by the generated ones;
    * ``mean_log_prob``: mean log-probability per generated token under the model
      (natural log; ``nan`` when nothing was generated);
    * ``unknown``: the prompt's characters that are not in the vocabulary, sorted;
    * ``notes``: plain-words remarks (unknown characters, knobs the method ignores);
    * ``seconds``: wall-clock time of the generation.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """

    prompt: str
    text: str
    ids: torch.Tensor
    mean_log_prob: float
    unknown: list[str]
    notes: list[str]
    seconds: float


def _model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _unknown_chars(tokenizer: Any, prompt: str) -> list[str]:
    """Characters of ``prompt`` that the tokenizer maps to its unknown token."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None:
        return []
    return sorted({c for c in prompt if tokenizer.encode(c) == [unk]})


def generate_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    method: str = "sample",
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    seed: int = 0,
    max_context: int | None = None,
) -> GenerationResult:
    """Continue ``prompt`` with the model and one decoding method; the function behind :func:`sampler_widget`.

    Args:
        model: ids ``(B, T)`` -> logits ``(B, T, V)`` (e.g. the book GPT, in eval mode).
        tokenizer: has ``encode(str) -> list[int]`` and ``decode(list[int]) -> str``
            (and ``unk_id`` to report unknown characters).
        prompt: the text to continue (at least one character).
        method: ``"greedy"``, ``"sample"`` or ``"beam"``.
        max_new_tokens: how many tokens to generate, ``>= 1``.
        temperature: ``>= 0`` (sampling only; 0 is greedy).
        top_k: keep the ``k`` most likely tokens; ``None`` or 0 = off (sampling only).
        top_p: nucleus mass in ``(0, 1]``; ``None`` or 1 = off (sampling only).
        repetition_penalty: ``> 0``, 1 = off (sampling and greedy).
        num_beams: beam width ``>= 1`` (beam search only).
        seed: seed of the ``torch.Generator`` that draws the samples: the same seed,
            settings, model and machine give the same text.
        max_context: crop the context to this many tokens; default ``model.config.block_size``.

    Returns:
        a :class:`GenerationResult`.

    Raises:
        ValueError: with a message naming the knob, for an unknown method, an empty
            prompt or a setting out of range (e.g. ``top_p`` outside ``(0, 1]``).

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError("the prompt is empty: type at least one character for the model to continue")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens (length) must be an int >= 1, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ValueError(f"top_k must be an int >= 1, or 0/None for off, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not isinstance(repetition_penalty, (int, float)) or not math.isfinite(repetition_penalty) \
            or repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be a number > 0 (1 = off), got {repetition_penalty!r}")
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1, got {num_beams!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    top_k = None if not top_k else top_k
    top_p = None if top_p is None or top_p == 1 else top_p
    if max_context is None:
        max_context = getattr(getattr(model, "config", None), "block_size", None)

    unknown = _unknown_chars(tokenizer, prompt)
    notes = []
    if unknown:
        notes.append(f"the prompt has characters that are not in the model's vocabulary: {unknown}; "
                     f"the model sees each of them as <unk>")
    ignored = {"greedy": ["temperature", "top_k", "top_p", "seed"],
               "beam": ["temperature", "top_k", "top_p", "repetition_penalty", "seed"],
               "sample": []}[method]
    changed = {"temperature": temperature != 1, "top_k": top_k is not None, "top_p": top_p is not None,
               "repetition_penalty": repetition_penalty != 1, "seed": False}
    if any(changed[k] for k in ignored):
        notes.append(f"{method} ignores " + ", ".join(k for k in ignored if changed[k]))

    device = _model_device(model)
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    start = time.perf_counter()
    if method == "greedy":
        out = greedy(model, idx, max_new_tokens, repetition_penalty=repetition_penalty, max_context=max_context)[0]
    elif method == "sample":
        gen = torch.Generator(device=device).manual_seed(seed)
        out = sample(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                     repetition_penalty=repetition_penalty, generator=gen, max_context=max_context)[0]
    else:
        out = beam_search(model, idx, max_new_tokens, num_beams, max_context=max_context).sequences[0]
    seconds = time.perf_counter() - start
    n_prompt = idx.shape[1]
    mean_lp = float(sequence_log_likelihood(model, out[None], n_prompt, max_context=max_context)[0])
    return GenerationResult(prompt=tokenizer.decode(idx[0].tolist()), text=tokenizer.decode(out[n_prompt:].tolist()),
                            ids=out.cpu(), mean_log_prob=mean_lp, unknown=unknown, notes=notes, seconds=seconds)


def _render(result: GenerationResult, settings: dict[str, Any]) -> str:
    """The result as HTML: the prompt in bold, the continuation, then the numbers and notes."""
    knobs = ", ".join(f"{k}={v}" for k, v in settings.items())
    notes = "".join(f'<div style="color:#b35900">&#9888; {html.escape(n)}</div>' for n in result.notes)
    return (f'<pre style="white-space:pre-wrap"><b>{html.escape(result.prompt)}</b>{html.escape(result.text)}</pre>'
            f"{notes}<div><small>{html.escape(knobs)} &middot; mean log-probability per token under the model "
            f"{result.mean_log_prob:.3f} (perplexity {math.exp(-result.mean_log_prob):.2f}) &middot; "
            f"{result.seconds:.1f} s</small></div>")


def sampler_widget(
    model: Any,
    tokenizer: Any,
    prompt: str = "ROMEO:\n",
    method: str = "sample",
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    seed: int = 0,
    generate_now: bool = False,
):
    """Controls for every decoding knob and a Generate button; the text appears below.

    The knobs: prompt, method (greedy / sample / beam), temperature, top-k (0 = off),
    top-p (1 = off), repetition penalty (1 = off), beam width, length and seed.
    Pressing **Generate** calls :func:`generate_text` with the controls' values and
    shows the prompt (bold, as the model saw it), the continuation, its mean
    log-probability under the model and any warning (unknown characters, knobs
    the chosen method ignores, a value out of range).

    Args:
        model, tokenizer: as in :func:`generate_text` (e.g. ``load_book_gpt()``).
        prompt: the prompt box's starting text; likewise ``method``, ``max_new_tokens``, ``temperature``,
            ``top_k``, ``top_p``, ``repetition_penalty``, ``num_beams`` and ``seed`` give the starting
            values of their controls.
        generate_now: generate once right away (otherwise wait for the button).

    Returns:
        an ``ipywidgets.VBox``; display it as the last expression of a cell. It needs a
        running kernel (Jupyter, Colab). For scripts and tests it carries
        ``.controls`` (name -> widget), ``.button``, ``.output`` (an ``HTML`` widget) and
        ``.generate()`` (what the button does; returns the :class:`GenerationResult` or ``None``
        after an error); ``.last_result`` holds the latest result.

    Taught in: Chapter 6, "Decoding" (chapters/06_decoding.ipynb).
    """
    import ipywidgets as widgets

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    V = getattr(tokenizer, "vocab_size", 100)
    style = {"description_width": "9em"}
    wide = widgets.Layout(width="30em")
    controls = {
        "prompt": widgets.Textarea(value=prompt, description="prompt", style=style,
                                   layout=widgets.Layout(width="95%", height="4em")),
        "method": widgets.ToggleButtons(options=list(METHODS), value=method, description="method", style=style),
        "temperature": widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, description="temperature",
                                           style=style, layout=wide),
        "top_k": widgets.IntSlider(value=top_k, min=0, max=V, description="top-k (0 = off)", style=style,
                                   layout=wide),
        "top_p": widgets.FloatSlider(value=top_p, min=0.01, max=1.0, step=0.01, description="top-p (1 = off)",
                                     style=style, layout=wide),
        "repetition_penalty": widgets.FloatSlider(value=repetition_penalty, min=0.5, max=3.0, step=0.05,
                                                  description="repetition penalty", style=style, layout=wide),
        "num_beams": widgets.IntSlider(value=num_beams, min=1, max=16, description="beam width", style=style,
                                       layout=wide),
        "max_new_tokens": widgets.IntSlider(value=max_new_tokens, min=1, max=1000, description="length",
                                            style=style, layout=wide),
        "seed": widgets.IntText(value=seed, description="seed", style=style),
    }
    button = widgets.Button(description="Generate", button_style="primary", icon="play")
    output = widgets.HTML(value="<i>Press Generate.</i>")

    def generate(_=None) -> GenerationResult | None:
        values = {name: w.value for name, w in controls.items()}
        text = values.pop("prompt")
        output.value = "<i>generating...</i>"
        try:
            result = generate_text(model, tokenizer, text, **values)
        except (ValueError, TypeError) as e:
            output.value = f'<div style="color:#c00000">&#9888; {html.escape(str(e))}</div>'
            box.last_result = None
            return None
        output.value = _render(result, values)
        box.last_result = result
        return result

    button.on_click(generate)
    rows = [controls["prompt"], controls["method"],
            widgets.HBox([controls["temperature"], controls["top_k"]]),
            widgets.HBox([controls["top_p"], controls["repetition_penalty"]]),
            widgets.HBox([controls["num_beams"], controls["max_new_tokens"]]),
            widgets.HBox([controls["seed"], button]), output]
    box = widgets.VBox(rows)
    box.controls, box.button, box.output, box.generate, box.last_result = controls, button, output, generate, None
    if generate_now:
        generate()
    return box

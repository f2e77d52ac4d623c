"""Look inside a GPT's attention: per-head statistics, static figures and an interactive viewer.

Three plain functions make the figures of the book (they work without a running kernel)::

    maps, tokens, note = attention_for_text(model, tok, "ROMEO:\\nBut soft!")  # (L, nh, T, T)
    stats = head_statistics(maps, tokens)          # {"previous": (L, nh) array, "first": ..., ...}
    heads = pick_heads(stats, ["previous", "first", "word_start"])  # the most extreme head for each
    plot_heads(maps, tokens, heads)                # heatmaps + the text shaded by attention

and one widget explores any layer, head, text and query position in Jupyter or Colab::

    attention_viewer(model, tok, text="ROMEO:\\nBut soft!", layer=0, head=0)

``model`` is anything with ``attention_maps(idx) -> list over layers of (B, nh, T, T)`` and
``config.block_size`` (an :class:`lmlib.lm.gpt.GPT`); ``tokenizer`` anything with ``encode`` and
``decode`` (a :class:`lmlib.text.tokenizer.CharTokenizer`).

Text longer than the model's context: the plain function :func:`attention_for_text` raises a
``ValueError`` unless called with ``truncate=True``; the widget always truncates to the *first*
``block_size`` tokens and says so in a visible note above the figure.

Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
"""
from __future__ import annotations

import html
import io
import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..plotting import token_label

__all__ = [
    "STATISTICS",
    "attention_for_text",
    "head_statistics",
    "pick_heads",
    "plot_attention",
    "plot_shaded_text",
    "plot_heads",
    "shaded_text_html",
    "attention_viewer",
]

STATISTICS = {
    "previous": "mean weight on the previous token (offset -1)",
    "self": "mean weight on the query's own token (offset 0)",
    "first": "mean weight on the first token of the text (position 0)",
    "word_start": "mean weight on the first character of the current word (when it is 2+ tokens back)",
    "line_start": "mean weight on the first character of the current line (when it is 2+ tokens back)",
    "last_space": "mean weight on the last space or newline before the query (when it is 2+ tokens back)",
    "same_token": "mean total weight on earlier copies of the query's own token",
    "induction": "mean total weight on tokens that followed an earlier copy of the query's token",
    "distance": "mean distance looked back, sum_j w_ij (i - j), in tokens",
    "entropy": "mean entropy of a query's weights, in nats (0 = all on one token)",
}
"""The statistics :func:`head_statistics` computes, by name, with what each measures."""


# ----------------------------------------------------------------------------- helpers


def _as_maps(maps: Any) -> Tensor:
    """A list over layers of (B, nh, T, T) / (nh, T, T), or one (L, [B,] nh, T, T) tensor -> (L, B, nh, T, T) float."""
    if isinstance(maps, Tensor):
        layers = list(maps) if maps.ndim in (4, 5) else None
    elif isinstance(maps, (list, tuple)) and maps and all(isinstance(m, Tensor) for m in maps):
        layers = list(maps)
    else:
        layers = None
    if not layers:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"attention maps must be a list over layers of (B, nh, T, T) tensors "
                        f"(model.attention_maps(idx)) or one (L, nh, T, T) tensor, got {got}")
    layers = [m[None] if m.ndim == 3 else m for m in layers]
    shapes = {tuple(m.shape) for m in layers}
    if len(shapes) != 1:
        raise ValueError(f"every layer's attention map must have the same shape, got {sorted(shapes)}")
    shape = shapes.pop()
    if len(shape) != 4 or shape[-1] != shape[-2]:
        raise ValueError(f"each layer's attention map must be (B, nh, T, T) with T queries and T keys, got {shape}")
    out = torch.stack([m.detach().float().cpu() for m in layers])  # (L, B, nh, T, T)
    sums = out.sum(-1)
    if out.numel() and (not torch.allclose(sums, torch.ones_like(sums), atol=1e-3) or bool((out < 0).any())):
        raise ValueError("attention weights must be probabilities: every row >= 0 and summing to 1 "
                         "(pass softmax weights, not raw scores)")
    return out


def _token_rows(tokens: Sequence[Any] | None, B: int, T: int) -> list[list[str]] | None:
    if tokens is None:
        return None
    rows = list(tokens)
    if B == 1 and len(rows) == T and all(not isinstance(t, (list, tuple)) for t in rows):
        rows = [rows]
    if len(rows) != B or any(len(r) != T for r in rows):
        raise ValueError(f"tokens must give T={T} tokens for each of the B={B} sequences "
                         f"(a list of T strings when B=1), got {len(rows)} rows of lengths "
                         f"{sorted({len(r) for r in rows})}")
    return [[str(t) for t in r] for r in rows]


def _check_layer_head(L: int, H: int, layer: Any, head: Any) -> None:
    for name, value, n, what in (("layer", layer, L, "layers"), ("head", head, H, "heads per layer")):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < n:
            raise ValueError(f"{name}={value!r} is out of range: this model has {n} {what}, "
                             f"numbered 0 to {n - 1}")


def _starts(tokens: list[str], breaks: str) -> list[int]:
    """For each position i, the first position of its segment: the last j <= i with j == 0 or tokens[j-1] in breaks."""
    out, start = [], 0
    for i, t in enumerate(tokens):
        if i > 0 and tokens[i - 1] and tokens[i - 1][-1] in breaks:
            start = i
        out.append(start)
    return out


# ----------------------------------------------------------------------------- text -> maps


def attention_for_text(model: Any, tokenizer: Any, text: str, truncate: bool = False) -> tuple[Tensor, list[str], str]:
    """Run ``model`` on ``text`` and return its attention weights with readable token labels.

    Args:
        model: has ``attention_maps(idx)`` (list over layers of (B, nh, T, T)) and
            ``config.block_size``, e.g. :class:`lmlib.lm.gpt.GPT`.
        tokenizer: has ``encode(str) -> list[int]`` and ``decode(list[int]) -> str``.
        text: at least one character.
        truncate: if the text has more tokens than ``block_size``, keep the first ``block_size``
            (and say so in ``note``) instead of raising ``ValueError``.

    Returns:
        ``(maps, tokens, note)``: maps (L, nh, T, T) float tensor; tokens the T token labels
        (space shown as ``␣``, newline as ``↵``); note ``""`` or a sentence about truncation.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text:
        raise ValueError("text is empty: the model needs at least one character to attend over")
    ids = list(tokenizer.encode(text))
    if not ids:
        raise ValueError(f"the tokenizer turned {text!r} into no tokens")
    block = int(model.config.block_size)
    note = ""
    if len(ids) > block:
        if not truncate:
            raise ValueError(f"text has {len(ids)} tokens but the model's context is block_size={block}: "
                             f"shorten it, or pass truncate=True to keep the first {block}")
        note = f"The text has {len(ids)} tokens; only the first {block} (the model's context) are shown."
        ids = ids[:block]
    device = next(iter(model.parameters()), torch.empty(0)).device if hasattr(model, "parameters") else "cpu"
    maps = model.attention_maps(torch.tensor([ids], device=device))
    tokens = [token_label(tokenizer.decode([i])) for i in ids]
    return _as_maps(maps)[:, 0], tokens, note


# ----------------------------------------------------------------------------- statistics


def head_statistics(maps: Any, tokens: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """Summarise what every head attends to, one number per (layer, head) for each statistic.

    Args:
        maps: attention weights, a list over layers of (B, nh, T, T) (as returned by
            ``model.attention_maps``) or one (L, nh, T, T) / (L, B, nh, T, T) tensor.
        tokens: the token labels, needed for the text-based statistics ("word_start",
            "line_start", "last_space", "same_token", "induction"): a list of T strings when B == 1, or
            B such lists. Word and line breaks are tokens ending in a space/newline
            (also their labels ``␣``/``↵``).

    Returns:
        ``{name: (L, nh) numpy array}`` for the names of :data:`STATISTICS`, each averaged
        over the queries i >= 1 (query 0 can only attend to itself) of every sequence
        where it is defined; ``nan`` where it is defined nowhere (or ``tokens`` is None).

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    W = _as_maps(maps)  # (L, B, nh, T, T)
    L, B, H, T, _ = W.shape
    rows = _token_rows(tokens, B, T)
    nan = np.full((L, H), np.nan)
    stats: dict[str, np.ndarray] = {name: nan.copy() for name in STATISTICS}
    if T < 2:
        return stats
    i = torch.arange(1, T)
    q = W[:, :, :, 1:, :]  # (L, B, nh, T-1, T): the queries i >= 1

    def mean_over_queries(x: Tensor) -> np.ndarray:  # (L, B, nh, T-1) -> (L, nh)
        return x.mean(dim=(1, 3)).double().numpy()

    stats["previous"] = mean_over_queries(W[..., i, i - 1])  # (L, B, nh, T-1): w[i, i-1]
    stats["self"] = mean_over_queries(W[..., i, i])
    stats["first"] = mean_over_queries(W[..., i, 0])
    dist = (i[:, None] - torch.arange(T)[None, :]).clamp(min=0).float()  # (T-1, T): i - j for j <= i
    stats["distance"] = mean_over_queries((q * dist).sum(-1))
    plogp = torch.where(q > 0, q * q.clamp(min=1e-30).log(), torch.zeros(()))
    stats["entropy"] = mean_over_queries(-plogp.sum(-1))
    if rows is None:
        return stats

    # text-based statistics: a (B, T-1, T) 0/1 "target" matrix per statistic, averaged over the queries that have one
    targets = {name: torch.zeros(B, T - 1, T) for name in ("word_start", "line_start", "last_space", "same_token",
                                                          "induction")}
    lower = torch.ones(T, T).tril(-1)[1:]  # (T-1, T): key j < query i
    for b, toks in enumerate(rows):
        raw = [t.replace("\u2423", " ").replace("\u21b5", "\n") for t in toks]
        for name, breaks in (("word_start", " \n\t"), ("line_start", "\n")):
            starts = torch.tensor(_starts(raw, breaks))[1:]  # (T-1,) segment start of each query i >= 1
            ok = starts <= i - 2  # two or more back: neither the previous token nor the query itself
            targets[name][b, (i - 1)[ok], starts[ok]] = 1.0
        space = torch.tensor([bool(t) and t[-1] in " \n\t" for t in raw])  # (T,) tokens ending in whitespace
        # last[i] = the last j < i that is a space (-1 if none): a running maximum of the space positions
        last = torch.cummax(torch.where(space, torch.arange(T), torch.tensor(-1)), dim=0).values
        last = torch.cat([torch.tensor([-1]), last[:-1]])[1:]  # (T-1,) for the queries i >= 1, keys j < i
        ok = (last >= 0) & (last <= i - 2)
        targets["last_space"][b, (i - 1)[ok], last[ok]] = 1.0
        codes = {t: n for n, t in enumerate(dict.fromkeys(raw))}
        ids = torch.tensor([codes[t] for t in raw])
        same = (ids[1:, None] == ids[None, :]).float() * lower  # (T-1, T): earlier copies of the query's token
        targets["same_token"][b] = same
        # the token right after an earlier copy (shift right by one), but never the query itself
        targets["induction"][b, :, 1:] = same[:, :-1] * lower[:, 1:]
    for name, tgt in targets.items():
        has = tgt.sum(-1) > 0  # (B, T-1) queries where the statistic is defined
        if not bool(has.any()):
            continue
        mass = (q * tgt[None, :, None]).sum(-1)  # (L, B, nh, T-1) weight on the target positions
        stats[name] = (mass * has[None, :, None]).sum(dim=(1, 3)).double().numpy() / float(has.sum())
    return stats


def pick_heads(stats: dict[str, np.ndarray], names: Sequence[str], distinct: bool = True) -> list[tuple[str, int, int, float]]:
    """For each statistic in ``names``, the head with the largest value (``entropy``: the smallest).

    Args:
        stats: from :func:`head_statistics`.
        names: statistics to pick a head for, in order.
        distinct: never pick the same head twice (a later statistic takes its best unused head).

    Returns:
        ``[(name, layer, head, value), ...]``, one per name whose statistic is not all nan.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    used: set[tuple[int, int]] = set()
    picked = []
    for name in names:
        if name not in stats:
            raise KeyError(f"no statistic {name!r}; known: {sorted(stats)}")
        values = np.asarray(stats[name], dtype=float)
        sign = -1.0 if name == "entropy" else 1.0
        order = np.argsort(np.where(np.isnan(values), -np.inf, sign * values), axis=None)[::-1]
        for flat in order:
            layer, head = (int(x) for x in np.unravel_index(flat, values.shape))
            if np.isnan(values[layer, head]) or (distinct and (layer, head) in used):
                continue
            used.add((layer, head))
            picked.append((name, layer, head, float(values[layer, head])))
            break
    return picked


# ----------------------------------------------------------------------------- figures


def _single(maps: Any) -> Tensor:
    W = _as_maps(maps)  # (L, B, nh, T, T)
    if W.shape[1] != 1:
        raise ValueError(f"plotting needs the maps of one sequence (B=1), got B={W.shape[1]}")
    return W[:, 0]


def plot_attention(ax: Any, weights: Tensor | np.ndarray, tokens: Sequence[str], title: str = "",
                   query: int | None = None, max_labels: int = 96, ylabels: bool = True) -> Any:
    """Heatmap of one head's (T, T) attention weights: row = query, column = key.

    Colours are on a square-root scale from 0 to 1 (so that weights of a few percent still show,
    and heads can be compared).

    Args:
        ax: a matplotlib Axes.
        weights: (T, T) weights of one head (rows sum to 1).
        tokens: the T token labels (tick labels; every n-th when T > ``max_labels``).
        title: the axes title.
        query: if given, outline that query's row.
        max_labels: label at most this many tokens per axis (every n-th one beyond).
        ylabels: label the query axis too.

    Returns:
        The ``AxesImage``.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    w = np.asarray(weights.detach().cpu() if isinstance(weights, Tensor) else weights, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or len(tokens) != w.shape[0]:
        raise ValueError(f"plot_attention needs (T, T) weights and T tokens, got weights {w.shape} "
                         f"and {len(tokens)} tokens")
    T = w.shape[0]
    from matplotlib.colors import PowerNorm

    im = ax.imshow(w, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest")
    step = max(1, math.ceil(T / max_labels))
    ticks = list(range(0, T, step))
    size = 7 if T <= 40 else 5 if T <= 80 else 4
    ax.set_xticks(ticks, [tokens[t] for t in ticks], fontfamily="monospace", fontsize=size)
    ax.set_yticks(ticks, [tokens[t] for t in ticks] if ylabels else [], fontfamily="monospace", fontsize=size)
    ax.tick_params(length=0)
    ax.set_xlabel("key (attended to)")
    if ylabels:
        ax.set_ylabel("query (attending)")
    if query is not None:
        if not 0 <= query < T:
            raise ValueError(f"query={query} is out of range for T={T} tokens")
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, query - 0.5), T, 1, fill=False, edgecolor="C3", lw=1.2))
    if title:
        ax.set_title(title, fontsize=9)
    return im


def plot_shaded_text(ax: Any, weights_row: Tensor | np.ndarray, tokens: Sequence[str], query: int,
                     width: int = 48, title: str = "") -> Any:
    """Draw the text with each token's background shaded by the query's attention to it.

    Args:
        ax: a matplotlib Axes (its axis lines are switched off).
        weights_row: (T,) weights of the query over the keys.
        tokens: the T token labels.
        query: the query position (underlined in red); tokens after it are greyed out.
        width: tokens per line before wrapping.

    Returns:
        ``ax``.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    w = np.asarray(weights_row.detach().cpu() if isinstance(weights_row, Tensor) else weights_row, dtype=float)
    T = len(tokens)
    if w.shape != (T,):
        raise ValueError(f"weights_row must have one weight per token: got shape {w.shape}, {T} tokens")
    if not 0 <= query < T:
        raise ValueError(f"query={query} is out of range for T={T} tokens")
    n_lines = math.ceil(T / width)
    grid = np.full((n_lines, width), np.nan)  # the shading, one cell per token (nan = no token)
    top = w.max() if w.max() > 0 else 1.0
    for t in range(T):
        grid[t // width, t % width] = w[t] / top if t <= query else 0.0
    ax.imshow(grid, cmap="Oranges", vmin=0.0, vmax=1.15, aspect="auto", interpolation="nearest")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(n_lines - 0.5, -0.5)
    ax.axis("off")
    for t, label in enumerate(tokens):
        ax.text(t % width, t // width, label, ha="center", va="center", fontfamily="monospace", fontsize=7,
                color="black" if t <= query else "0.7")
    x, y = query % width, query // width
    ax.plot([x - 0.45, x + 0.45], [y + 0.42, y + 0.42], color="C3", lw=1.5)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_heads(maps: Any, tokens: Sequence[str], heads: Sequence[tuple], query: int | None = None,
               width: int = 48) -> Any:
    """A figure with one column per head: its attention heatmap, and the text shaded for one query.

    Args:
        maps: attention weights of ONE sequence: list over layers of (1, nh, T, T), or (L, nh, T, T).
        tokens: the T token labels.
        heads: ``(label, layer, head)`` or ``(label, layer, head, value)`` tuples, e.g. from
            :func:`pick_heads`.
        query: the query whose weights shade the text (default: the last token).
        width: tokens per line of the shaded text.

    Returns:
        The matplotlib ``Figure``.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    import matplotlib.pyplot as plt

    W = _single(maps)  # (L, nh, T, T)
    L, H, T, _ = W.shape
    if not heads:
        raise ValueError("plot_heads needs at least one (label, layer, head) tuple")
    if len(tokens) != T:
        raise ValueError(f"got {len(tokens)} tokens for attention maps over T={T} tokens")
    query = T - 1 if query is None else query
    if not 0 <= query < T:
        raise ValueError(f"query={query} is out of range for T={T} tokens")
    n = len(heads)
    n_lines = math.ceil(T / width)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n, 4.1 + 0.32 * n_lines),
                             gridspec_kw={"height_ratios": [3.8, 0.1 + 0.32 * n_lines]}, squeeze=False,
                             layout="constrained")
    for c, spec in enumerate(heads):
        label, layer, head = spec[0], spec[1], spec[2]
        _check_layer_head(L, H, layer, head)
        value = f" = {spec[3]:.2f}" if len(spec) > 3 else ""
        plot_attention(axes[0, c], W[layer, head], tokens, title=f"layer {layer}, head {head}\n{label}{value}",
                       query=query, max_labels=40, ylabels=c == 0)
        plot_shaded_text(axes[1, c], W[layer, head, query], tokens, query, width=width)
    return fig


def shaded_text_html(weights_row: Tensor | np.ndarray, tokens: Sequence[str], query: int) -> str:
    """HTML of the tokens with backgrounds shaded by the query's weights (the query underlined).

    Tokens after the query, which it cannot see, are grey. Each token's weight is in its tooltip.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    w = np.asarray(weights_row.detach().cpu() if isinstance(weights_row, Tensor) else weights_row, dtype=float)
    if w.shape != (len(tokens),) or not 0 <= query < len(tokens):
        raise ValueError(f"need one weight per token and 0 <= query < {len(tokens)}: got weights {w.shape}, query={query}")
    top = w.max() if w.max() > 0 else 1.0
    spans = []
    for t, label in enumerate(tokens):
        style = "padding:1px 0;font-family:monospace;"
        if t <= query:
            style += f"background:rgba(230,85,13,{0.9 * w[t] / top:.3f});"
        else:
            style += "color:#aaa;"
        if t == query:
            style += "border-bottom:2px solid #d62728;"
        spans.append(f'<span title="weight {w[t]:.3f}" style="{style}">{html.escape(label)}</span>')
        if label == "\u21b5":
            spans.append("<br>")
    return '<div style="line-height:1.9;font-size:14px">' + "".join(spans) + "</div>"


# ----------------------------------------------------------------------------- the widget


def attention_viewer(model: Any, tokenizer: Any, text: str = "ROMEO:\nBut soft, what light through yonder window breaks?",
                     layer: int = 0, head: int = 0, query: int | None = None):
    """A widget to explore a GPT's attention: type a text, pick a layer, a head and a query position.

    It shows the head's (T, T) heatmap (row = query, column = key) and the text with every
    character shaded by how much the chosen query attends to it. Text longer than the
    model's context is cut to its first ``block_size`` tokens, with a note saying so.

    Args:
        model: has ``attention_maps(idx)`` and ``config.block_size`` (:class:`lmlib.lm.gpt.GPT`).
        tokenizer: has ``encode``/``decode`` (:class:`lmlib.text.tokenizer.CharTokenizer`).
        text: the text shown first (not empty).
        layer, head: shown first; ``ValueError`` if out of range.
        query: query position shown first (default: the last token).

    Returns:
        An ``ipywidgets.VBox``; display it as the last expression of a cell. It needs a running
        kernel (Jupyter, Colab) to react; in the static book it shows its first state. Its
        ``controls`` attribute holds the ``text``, ``layer``, ``head`` and ``query`` widgets.

    Taught in: Chapter 4, "Attention" (chapters/04_attention.ipynb).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    maps, tokens, note = attention_for_text(model, tokenizer, text, truncate=True)  # raises on empty text
    L, H, T, _ = maps.shape
    _check_layer_head(L, H, layer, head)
    if query is not None and not (isinstance(query, int) and 0 <= query < T):
        raise ValueError(f"query={query!r} is out of range: the text has {T} tokens (0 to {T - 1})")
    state = {"maps": maps, "tokens": tokens, "note": note}

    text_box = widgets.Textarea(value=text, description="text", continuous_update=False,
                                layout=widgets.Layout(width="95%", height="5em"))
    layer_dd = widgets.Dropdown(options=[(f"layer {l}", l) for l in range(L)], value=layer, description="layer")
    head_dd = widgets.Dropdown(options=[(f"head {h}", h) for h in range(H)], value=head, description="head")
    query_sl = widgets.IntSlider(value=T - 1 if query is None else query, min=0, max=T - 1, description="query")
    status = widgets.HTML()
    image = widgets.Image(format="png")
    shaded = widgets.HTML()

    def redraw(_: Any = None) -> None:
        W, toks = state["maps"], state["tokens"]
        if W is None:
            image.value, shaded.value = b"", ""
            return
        l, h, qi = layer_dd.value, head_dd.value, query_sl.value
        label = html.escape(toks[qi])
        status.value = (f"<b>layer {l}, head {h}</b>: query {qi} (<code>{label}</code>) "
                        f"attends most to position {int(W[l, h, qi].argmax())} "
                        f"(<code>{html.escape(toks[int(W[l, h, qi].argmax())])}</code>, "
                        f"weight {float(W[l, h, qi].max()):.2f})"
                        + (f"<br><i>{html.escape(state['note'])}</i>" if state["note"] else ""))
        fig, ax = plt.subplots(figsize=(5.5, 5.0))
        plot_attention(ax, W[l, h], toks, title=f"layer {l}, head {h}", query=qi)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        image.value = buf.getvalue()
        shaded.value = shaded_text_html(W[l, h, qi], toks, qi)

    def new_text(_: Any = None) -> None:
        try:
            W, toks, note = attention_for_text(model, tokenizer, text_box.value, truncate=True)
        except ValueError as e:  # e.g. the box was emptied
            state.update(maps=None, tokens=None, note="")
            status.value = f"<i>{html.escape(str(e))}</i>"
            redraw()
            return
        state.update(maps=W, tokens=toks, note=note)
        n = W.shape[2]
        with query_sl.hold_trait_notifications():
            at_end = query_sl.value == query_sl.max
            query_sl.max = n - 1
            query_sl.value = n - 1 if at_end or query_sl.value > n - 1 else query_sl.value
        redraw()

    text_box.observe(new_text, names="value")
    for w in (layer_dd, head_dd, query_sl):
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([text_box, widgets.HBox([layer_dd, head_dd, query_sl]), status, image, shaded])
    box.controls = {"text": text_box, "layer": layer_dd, "head": head_dd, "query": query_sl}
    box.views = {"status": status, "image": image, "shaded": shaded}
    return box

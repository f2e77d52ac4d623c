"""Neural language models: the MLP of Bengio et al. (2003), and tools to measure and inspect them.

The model predicts the next token from the previous ``context`` tokens, like an
n-gram model with ``n = context + 1``, but instead of counting it looks up a
learned vector (an *embedding*) for each context token, concatenates them and
passes them through a hidden layer::

    idx (B, T) -> wte -> (B, T, context * C) -> tanh(hidden) (B, T, H) -> lm_head -> logits (B, T, V)

The pieces, in the order Chapter 3 uses them:

* :class:`MLPLanguageModel`: the model, with the ``model(idx) -> logits``
  interface of :func:`lmlib.lm.train.train`. The start of a sequence is padded
  with a "beginning of text" id (``bos = V``), as :mod:`lmlib.lm.ngram` pads with ``<s>``.
* :func:`mlp_forward`: the same computation written with plain tensors
  (the exercise's reference).
* :func:`stream_loss`: the mean cross-entropy over every token of a whole
  text (a validation split), each predicted from its full context.
* :func:`bits_per_char`: a loss per token, in nats, as bits per character, so
  that models with different tokenizers can be compared.
* :func:`token_labels`, :func:`pca_2d`, :func:`cosine_neighbours` and
  :func:`neighbour_explorer`: look at the learned embeddings.

Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..plotting import token_label

__all__ = [
    "MLPLanguageModel",
    "mlp_forward",
    "stream_loss",
    "bits_per_char",
    "token_labels",
    "pca_2d",
    "cosine_neighbours",
    "neighbour_explorer",
]

_TAUGHT = 'Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).'


def _check_ids(idx: Tensor, name: str = "idx") -> None:
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(idx).__name__}")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {idx.dtype}")


class MLPLanguageModel(nn.Module):
    """The neural probabilistic language model of Bengio et al. (2003), without direct connections.

    Args:
        vocab_size: V, the number of tokens. Id ``V`` is reserved as the padding
            "beginning of text" token (``self.bos``), so the embedding table has V + 1 rows.
        context: how many previous tokens the model sees (an n-gram model with n = context + 1).
        n_embd: C, the size of each token's embedding vector.
        n_hidden: H, the width of the tanh hidden layer.
        dropout: dropout probability on the concatenated embeddings and on the hidden layer.

    ``model(idx)`` with ``idx: (B, T)`` ids returns logits ``(B, T, V)``; the logits at
    position t score the token that comes after ``idx[:, t]``, computed from
    ``idx[:, t - context + 1 : t + 1]`` (positions before the start are ``bos``).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """

    def __init__(self, vocab_size: int, context: int, n_embd: int, n_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("context", context), ("n_embd", n_embd), ("n_hidden", n_hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.vocab_size, self.context, self.bos = vocab_size, context, vocab_size
        self.wte = nn.Embedding(vocab_size + 1, n_embd)  # (V + 1, C): a vector per token, + bos
        nn.init.normal_(self.wte.weight, std=0.1)  # small: rare tokens should not keep big random vectors
        self.hidden = nn.Linear(context * n_embd, n_hidden)  # (context * C) -> H
        self.lm_head = nn.Linear(n_hidden, vocab_size)  # H -> V
        self.drop = nn.Dropout(dropout)

    def forward(self, idx: Tensor) -> Tensor:
        _check_ids(idx)
        if idx.ndim != 2:
            raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) > self.bos):
            raise ValueError(f"token ids must be in 0..{self.bos} (V = {self.vocab_size}, bos = {self.bos}), "
                             f"got ids from {int(idx.min())} to {int(idx.max())}")
        B, T = idx.shape
        padded = F.pad(idx, (self.context - 1, 0), value=self.bos)  # (B, context - 1 + T)
        emb = self.wte(padded)  # (B, context - 1 + T, C)
        x = torch.cat([emb[:, i : i + T] for i in range(self.context)], dim=-1)  # (B, T, context * C)
        h = torch.tanh(self.hidden(self.drop(x)))  # (B, T, H)
        return self.lm_head(self.drop(h))  # (B, T, V)


def mlp_forward(idx: Tensor, wte: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    """The MLP's logits for a batch of context windows, with plain tensors (no nn.Module).

    Args:
        idx: (B, n) integer ids, one window of n context tokens per row.
        wte: (V, C) embedding table.
        W1: (n * C, H) and b1: (H,), the hidden layer (``x @ W1 + b1``).
        W2: (H, V) and b2: (V,), the output layer.

    Returns:
        (B, V) logits: ``tanh(concat(wte[idx[:, 0]], ..., wte[idx[:, n-1]]) @ W1 + b1) @ W2 + b2``.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    _check_ids(idx)
    if idx.ndim != 2:
        raise ValueError(f"idx must be (B, n) windows of token ids, got shape {tuple(idx.shape)}")
    B, n = idx.shape
    V, C = wte.shape
    if W1.shape[0] != n * C:
        raise ValueError(f"W1 must have n * C = {n} * {C} = {n * C} rows to take the concatenated embeddings, "
                         f"got shape {tuple(W1.shape)}")
    x = wte[idx].reshape(B, n * C)  # (B, n, C) -> (B, n * C)
    h = torch.tanh(x @ W1 + b1)  # (B, H)
    return h @ W2 + b2  # (B, V)


@torch.no_grad()
def stream_loss(model: nn.Module, ids: Tensor | Sequence[int], *, chunk_size: int = 8192) -> float:
    """Mean cross-entropy, in nats per token, of a whole text, every token scored once.

    Token ``ids[t]`` is predicted from the ``model.context`` tokens before it; the first
    tokens of the text see ``model.bos`` padding, as the n-gram models of chapter 1 see
    ``<s>``. The text is cut into chunks of ``chunk_size`` targets, each fed with the
    ``context - 1`` tokens before it, so the result does not depend on ``chunk_size``.

    Args:
        model: an :class:`MLPLanguageModel` or any module with ``context`` and ``bos``
            attributes whose logits at position t depend only on the last ``context`` ids.
        ids: (N,) token ids of the text, N >= 1.
        chunk_size: targets per forward pass (memory: chunk_size * V floats).

    Returns:
        ``-(1/N) * sum_t log p(ids[t] | ids[t - context : t])`` as a float. Multiply by N to
        get the total in nats; see :func:`bits_per_char`.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if not (hasattr(model, "context") and hasattr(model, "bos")):
        raise TypeError(f"stream_loss needs a model with .context and .bos attributes (like MLPLanguageModel), "
                        f"got {type(model).__name__}")
    ids = torch.as_tensor(ids)
    _check_ids(ids, "ids")
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"ids must be a non-empty 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = next(model.parameters()).device
    ids = ids.long().to(device)
    x = torch.cat([ids.new_full((1,), model.bos), ids[:-1]])  # (N,): x[t] is the token before ids[t]
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        for start in range(0, len(ids), chunk_size):
            stop = min(start + chunk_size, len(ids))
            lo = max(0, start - model.context + 1)  # the context the chunk's first target needs
            logits = model(x[None, lo:stop])[0, start - lo :]  # (stop - start, V)
            total += F.cross_entropy(logits.float(), ids[start:stop], reduction="sum").item()
    finally:
        model.train(was_training)
    return total / len(ids)


def bits_per_char(loss: float, n_tokens: int, n_chars: int) -> float:
    """Convert a mean loss in nats per token into bits per character.

    The text's total information is ``loss * n_tokens`` nats; dividing by ``ln 2`` gives
    bits and by ``n_chars`` spreads them over the characters. Two models of the same text
    with different tokenizers are comparable in bits per character (lower is better);
    ``2 ** bpc`` is the per-character perplexity.

    Args:
        loss: mean negative log-likelihood per token, in nats (>= 0).
        n_tokens: how many tokens the loss was averaged over (>= 1).
        n_chars: how many characters those tokens spell (>= 1).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if not loss >= 0 or math.isnan(loss):
        raise ValueError(f"loss must be a mean negative log-likelihood >= 0 (in nats), got {loss!r}")
    if n_tokens < 1 or n_chars < 1:
        raise ValueError(f"n_tokens and n_chars must be >= 1, got {n_tokens} and {n_chars}")
    return loss * n_tokens / (n_chars * math.log(2))


def token_labels(tokenizer) -> list[str]:
    """A short, printable, distinct label for every id of a tokenizer.

    For a :class:`lmlib.text.tokenizer.BPETokenizer`: the token's text with spaces shown as
    ``␣``, newlines as ``↵`` and tabs as ``⇥`` (``" the"`` -> ``"␣the"``), or ``<0xe2>`` for
    bytes that are not valid UTF-8 on their own or not printable. For a tokenizer with
    ``itos`` (:class:`lmlib.text.tokenizer.CharTokenizer`, ...): its strings, made visible the same way.
    Labels that would repeat get ``#id`` appended.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if hasattr(tokenizer, "vocab") and isinstance(getattr(tokenizer, "vocab"), list):
        labels = []
        for b in tokenizer.vocab:
            try:
                labels.append(_visible(b.decode("utf-8")))
            except UnicodeDecodeError:
                labels.append("<0x" + b.hex() + ">")
            if not labels[-1].isprintable():  # control bytes such as b"\x00"
                labels[-1] = "<0x" + b.hex() + ">"
    elif hasattr(tokenizer, "itos"):
        labels = [_visible(str(t)) for t in tokenizer.itos]
    else:
        raise TypeError(f"token_labels needs a BPETokenizer or a tokenizer with .itos, got {type(tokenizer).__name__}")
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):  # make them distinct: the explorer looks tokens up by label
        if lab in seen:
            labels[i] = f"{lab}#{i}"
        seen.setdefault(labels[i], i)
    return labels


def _visible(text: str) -> str:
    """Spaces, newlines and tabs made visible anywhere in a token: ``" the"`` -> ``"␣the"``."""
    return "".join(token_label(ch) if ch in " \n\t" else ch for ch in text)


def pca_2d(x: Tensor) -> tuple[Tensor, Tensor]:
    """Project the rows of ``x`` onto their two principal components (PCA by SVD).

    Args:
        x: (N, C) float rows (e.g. embedding vectors), N >= 2, C >= 2.

    Returns:
        ``(coords, explained)``: coords (N, 2), the centred rows in the basis of the two
        directions of largest variance; explained (2,), the share of the total variance
        along each. Signs are fixed so that each component's largest loading is positive.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"pca_2d needs a (N, C) tensor with N >= 2 and C >= 2, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    x = x.detach().double()
    centred = x - x.mean(dim=0)  # (N, C)
    _, S, Vh = torch.linalg.svd(centred, full_matrices=False)  # Vh: (min(N, C), C), rows = directions
    comps = Vh[:2]  # (2, C)
    flip = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))  # (2, 1)
    comps = comps * flip
    var = S**2
    explained = var[:2] / var.sum() if var.sum() > 0 else torch.zeros(2, dtype=var.dtype)
    return (centred @ comps.T).float(), explained.float()  # (N, 2), (2,)


def cosine_neighbours(emb: Tensor, query: int, k: int = 5) -> tuple[Tensor, Tensor]:
    """The ``k`` rows of ``emb`` most similar to row ``query`` by cosine similarity (itself excluded).

    Args:
        emb: (N, C) vectors, none of them zero.
        query: the row to look up, 0 <= query < N.
        k: how many neighbours, 1 <= k <= N - 1.

    Returns:
        ``(ids, sims)``: (k,) int64 row indices, most similar first, and their cosine
        similarities ``emb[i] . emb[query] / (|emb[i]| |emb[query]|)``. Ties go to the smaller index.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if not isinstance(emb, Tensor) or emb.ndim != 2:
        raise ValueError(f"emb must be a (N, C) tensor, got {tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__}")
    N = emb.shape[0]
    if not 0 <= int(query) < N:
        raise IndexError(f"query {query} is not a row of emb (N = {N})")
    if not 1 <= k <= N - 1:
        raise ValueError(f"k must be between 1 and N - 1 = {N - 1}, got {k}")
    e = emb.detach().double()
    norms = e.norm(dim=1)  # (N,)
    if bool((norms == 0).any()):
        raise ValueError(f"row {int((norms == 0).nonzero()[0])} of emb is zero: its cosine similarity is undefined")
    sims = (e @ e[query]) / (norms * norms[query])  # (N,)
    sims[query] = -math.inf  # never your own neighbour
    order = torch.sort(-sims, stable=True).indices[:k]  # stable: ties keep the smaller index first
    return order, sims[order].float()


def neighbour_explorer(emb: Tensor, labels: Sequence[str], token: str | None = None, k: int = 8):
    """A widget: pick or type a token, see its ``k`` nearest neighbours by cosine similarity.

    Args:
        emb: (N, C) embeddings, row i for the token labelled ``labels[i]``.
        labels: N distinct labels (see :func:`token_labels`).
        token: the label shown first (default: ``labels[0]``).
        k: how many neighbours are shown first (a slider changes it).

    Returns:
        An ``ipywidgets.VBox``. It needs a running kernel (Jupyter, Colab) to react;
        in the static book it shows its first state.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    import ipywidgets as widgets

    labels = list(labels)
    if emb.ndim != 2 or emb.shape[0] != len(labels):
        raise ValueError(f"need one label per row of emb: emb is {tuple(emb.shape)}, got {len(labels)} labels")
    index = {lab: i for i, lab in enumerate(labels)}
    token = labels[0] if token is None else token
    if token not in index:
        raise KeyError(f"token {token!r} is not one of the labels")
    box = widgets.Combobox(value=token, options=labels, description="token", ensure_option=False,
                           placeholder="type a token, e.g. ␣king")
    top_k = widgets.IntSlider(value=k, min=1, max=min(30, len(labels) - 1), description="neighbours")
    out = widgets.HTML()

    def redraw(_=None) -> None:
        i = index.get(box.value)
        if i is None:
            out.value = f"<p>{box.value!r} is not a token of this vocabulary (spaces are written ␣).</p>"
            return
        ids, sims = cosine_neighbours(emb, i, top_k.value)
        rows = "".join(f"<tr><td>{r}</td><td><code>{_html(labels[j])}</code></td><td>{s:.3f}</td></tr>"
                       for r, (j, s) in enumerate(zip(ids.tolist(), sims.tolist()), 1))
        out.value = (f"<table><tr><th>#</th><th>neighbour of <code>{_html(box.value)}</code></th>"
                     f"<th>cosine</th></tr>{rows}</table>")

    box.observe(redraw, names="value")
    top_k.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([box, top_k]), out])


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

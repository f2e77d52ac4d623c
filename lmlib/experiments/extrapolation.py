"""Train short, test long: how far does each positional encoding extrapolate?

One small :class:`lmlib.lm.gpt.GPT` per positional encoding ("none", "learned", "sinusoidal",
"alibi", "rope"; see :mod:`lmlib.lm.positional`), all with the same size, data, seed and
training batches, is trained on Shakespeare characters with contexts of ``train_len``
characters, then evaluated with *longer* contexts (Press, Smith & Lewis 2022 ran this
experiment on words).

How the evaluation is scored (it decides what the plot means):

* ``n_windows`` validation windows of ``max(eval_lens) + 1`` characters, evenly spaced over
  the validation text, the same for every encoding and every length;
* at length L the model reads the **last L characters** of each window, and we score only
  the **last** ``score_last`` **predictions** (default ``train_len // 4``): the same target
  characters at every L; only how much text precedes them, and at which absolute positions
  they sit, changes. A model that extrapolates keeps (or lowers: more context) that loss
  as L grows; one that breaks past its training length gets worse;
* also stored: the mean loss over *all* L positions (``loss_all``, which mixes the trained
  positions 0..train_len-1 with the new ones) and the loss at each position of the longest
  length (``position_loss``), which shows where a model breaks.

``"learned"`` has only ``train_len`` position vectors: longer inputs are impossible (the
model raises :class:`lmlib.lm.positional.ContextTooLongError`), recorded as ``None`` and drawn
as missing in :func:`plot_extrapolation`.

The book ships one full-mode result, ``lmlib/assets/pos_extrapolation.json``, made by
``recipes/pos_extrapolation.py`` (settings, seed, times, machine and command inside);
:func:`load_extrapolation_results` reads it.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..assets import ASSETS, read_results, write_results
from ..text.corpus import CorpusSplit, shakespeare
from ..lm.gpt import GPT, GPTConfig
from ..lm.positional import POS_ENCODINGS
from ..text.tokenizer import CharTokenizer
from ..lm.train import TrainConfig, train

__all__ = [
    "RESULTS_PATH",
    "QUICK",
    "FULL",
    "run_extrapolation",
    "evaluate_lengths",
    "save_extrapolation_results",
    "load_extrapolation_results",
    "plot_extrapolation",
]

#: The shipped full-mode result (written by recipes/pos_extrapolation.py).
RESULTS_PATH = ASSETS / "pos_extrapolation.json"

#: Quick-mode settings for ``run_extrapolation(**QUICK)``: three small models (the table that cannot
#: extrapolate, the formula that breaks, the bias that does not), 100 steps each. Measured with
#: torch.set_num_threads(1) on the shared 2-core machine: ~12 s at load average 4.5, ~40 s at load 9.
QUICK: dict[str, Any] = dict(encodings=("learned", "sinusoidal", "alibi"), train_len=32, eval_lens=(32, 64, 128),
                             n_layer=2, n_head=4, n_embd=64, steps=100, batch_size=16, lr=3e-3, n_windows=32)
#: Full-mode settings, used by recipes/pos_extrapolation.py for the shipped JSON.
FULL: dict[str, Any] = dict(train_len=64, eval_lens=(64, 128, 256, 512), n_layer=2, n_head=4, n_embd=64,
                            steps=1000, batch_size=32, lr=3e-3, n_windows=128)

_FORMAT = "lmlib.extrapolation/1"  # the file format's name (kept from the first version)


def _check_settings(encodings: Sequence[str], train_len: int, eval_lens: Sequence[int], steps: int,
                    batch_size: int, n_windows: int, score_last: int) -> None:
    if isinstance(encodings, str) or not encodings:
        raise ValueError(f"encodings must be a non-empty list of names from {POS_ENCODINGS}, got {encodings!r}")
    bad = [e for e in encodings if e not in POS_ENCODINGS]
    if bad or len(set(encodings)) != len(encodings):
        raise ValueError(f"encodings must be distinct names from {POS_ENCODINGS}, got {list(encodings)}")
    for name, v in (("train_len", train_len), ("steps", steps), ("batch_size", batch_size),
                    ("n_windows", n_windows), ("score_last", score_last)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(eval_lens, (int, str)) or not eval_lens or any(
            not isinstance(L, int) or L < 1 for L in eval_lens):
        raise ValueError(f"eval_lens must be a non-empty list of positive ints, got {eval_lens!r}")
    if list(eval_lens) != sorted(set(eval_lens)):
        raise ValueError(f"eval_lens must be increasing without repeats, got {list(eval_lens)}")
    if score_last > min(eval_lens):
        raise ValueError(f"score_last={score_last} must be <= the shortest eval length {min(eval_lens)} "
                         "(every length scores the same last characters)")


@torch.no_grad()
def evaluate_lengths(
    model: GPT, val_ids: torch.Tensor, eval_lens: Sequence[int], *, n_windows: int = 32, score_last: int = 8,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Loss of ``model`` on the same validation targets read with contexts of each length.

    Args:
        model: a GPT (an input longer than its positions allow gives ``None`` for that length).
        val_ids: (N,) token ids of the validation text.
        eval_lens: increasing context lengths L.
        n_windows: windows of ``max(eval_lens) + 1`` tokens, evenly spaced over ``val_ids``.
        score_last: how many final predictions of each window are scored.
        batch_size: windows per forward pass.

    Returns:
        dict: ``"loss"``, per L the mean loss of the last ``score_last`` predictions (``None`` where
        the model cannot read L tokens); ``"loss_all"``, per L the mean over all L predictions (or
        ``None``); ``"position_loss"``, the mean loss at each position 0..Lmax-1 of the longest
        runnable length.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a lmlib.lm.gpt.GPT, got {type(model).__name__}")
    if not isinstance(val_ids, torch.Tensor) or val_ids.ndim != 1:
        raise ValueError(f"val_ids must be a 1-D tensor of token ids, got {getattr(val_ids, 'shape', val_ids)!r}")
    _check_settings(["none"], 1, eval_lens, 1, batch_size, n_windows, score_last)
    Lmax = max(eval_lens)
    if len(val_ids) < Lmax + n_windows + 1:
        raise ValueError(f"the validation text has {len(val_ids)} tokens; {n_windows} windows of "
                         f"{Lmax + 1} need at least {Lmax + n_windows + 1}")
    starts = torch.linspace(0, len(val_ids) - Lmax - 1, n_windows).long()  # (n,) fixed, evenly spaced
    windows = val_ids[starts[:, None] + torch.arange(Lmax + 1)].long()  # (n, Lmax + 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, Any] = {"loss": [], "loss_all": [], "position_loss": None}
    try:
        for L in eval_lens:
            if L > model.config.block_size and not model.config.can_extrapolate:
                out["loss"].append(None)
                out["loss_all"].append(None)
                continue
            x, y = windows[:, Lmax - L : Lmax], windows[:, Lmax - L + 1 :]  # the last L inputs, (n, L)
            losses = []
            for s in range(0, n_windows, batch_size):
                logits, _ = model(x[s : s + batch_size].to(device))
                losses.append(F.cross_entropy(logits.float().transpose(1, 2), y[s : s + batch_size].to(device),
                                              reduction="none").cpu())  # (b, L)
            loss = torch.cat(losses)  # (n, L)
            out["loss"].append(round(loss[:, -score_last:].mean().item(), 5))
            out["loss_all"].append(round(loss.mean().item(), 5))
            out["position_loss"] = [round(v, 4) for v in loss.mean(0).tolist()]  # the longest runnable length
    finally:
        model.train(was_training)
    return out


def run_extrapolation(
    encodings: Sequence[str] = POS_ENCODINGS,
    train_len: int = QUICK["train_len"],
    eval_lens: Sequence[int] = QUICK["eval_lens"],
    *,
    n_layer: int = QUICK["n_layer"],
    n_head: int = QUICK["n_head"],
    n_embd: int = QUICK["n_embd"],
    steps: int = QUICK["steps"],
    batch_size: int = QUICK["batch_size"],
    lr: float = QUICK["lr"],
    n_windows: int = QUICK["n_windows"],
    score_last: int | None = None,
    seed: int = 0,
    corpus: CorpusSplit | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train one GPT per positional encoding at context ``train_len``; evaluate at each of ``eval_lens``.

    Every model: ``GPTConfig(block_size=train_len, n_layer, n_head, n_embd, bias=False,
    pos_encoding=enc)``, ``steps`` AdamW updates of ``batch_size`` windows of ``train_len``
    characters of ``shakespeare("tiny")`` (same seed, hence the same batches for all), warmup then
    cosine decay from ``lr`` to ``lr / 10``, via :func:`lmlib.lm.train.train`. Then
    :func:`evaluate_lengths` (see the module docstring for the scoring).

    The size defaults are those of :data:`QUICK` (with all five encodings); the chapter's quick
    call is ``run_extrapolation(**QUICK)`` (three encodings, ~12 s on one CPU thread of a
    moderately loaded laptop) and ``run_extrapolation(**FULL)`` is the shipped full-mode run
    (22 min on the heavily loaded 2-core build machine, one thread; about 10 min when idle).

    Args:
        encodings: names from :data:`lmlib.lm.positional.POS_ENCODINGS`.
        train_len: training context length (and the "learned" table's size).
        eval_lens: increasing evaluation lengths (include ``train_len`` as the reference).
        score_last: predictions scored per window (default ``max(1, train_len // 4)``).
        seed: seeds the initialisation and the batches.
        corpus: default ``lmlib.text.corpus.shakespeare("tiny")``.
        progress: show a progress bar per model.
        log: called with a one-line summary after each model (e.g. ``print``).

    Returns:
        A JSON-ready dict: ``settings`` (all of the above), ``metric`` (a sentence),
        ``encodings`` ``{name: {"loss", "loss_all", "position_loss", "train_loss",
        "params", "train_seconds"}}`` (lists aligned with ``eval_lens``, ``None`` where
        impossible), ``seconds`` (total), ``torch``, ``threads``, ``machine``, ``created_utc``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    score_last = max(1, train_len // 4) if score_last is None else score_last
    _check_settings(encodings, train_len, eval_lens, steps, batch_size, n_windows, score_last)
    t_start = time.perf_counter()
    corpus = shakespeare("tiny") if corpus is None else corpus
    tok = CharTokenizer.train(corpus.text)
    data = {s: torch.tensor(tok.encode(getattr(corpus, s)), dtype=torch.long) for s in ("train", "val")}
    settings = dict(encodings=list(encodings), train_len=train_len, eval_lens=list(eval_lens), n_layer=n_layer,
                    n_head=n_head, n_embd=n_embd, steps=steps, batch_size=batch_size, lr=lr, n_windows=n_windows,
                    score_last=score_last, seed=seed, corpus_sha256=corpus.sha256, vocab_size=tok.vocab_size)
    tcfg = TrainConfig(max_steps=steps, batch_size=batch_size, block_size=train_len, lr=lr, min_lr=lr / 10,
                       warmup_steps=min(50, steps // 5), weight_decay=0.1, betas=(0.9, 0.99), eval_interval=0,
                       log_interval=max(1, steps // 20), seed=seed, device="cpu", progress=progress)
    results: dict[str, Any] = {}
    for enc in encodings:
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=train_len, n_layer=n_layer, n_head=n_head,
                              n_embd=n_embd, bias=False, pos_encoding=enc))
        t0 = time.perf_counter()
        hist = train(model, data, tcfg)
        train_seconds = time.perf_counter() - t0
        ev = evaluate_lengths(model, data["val"], eval_lens, n_windows=n_windows, score_last=score_last)
        results[enc] = {**ev, "train_loss": hist["loss"][-1], "params": model.num_params(),
                        "train_seconds": round(train_seconds, 2)}
        if log is not None:
            shown = ", ".join(f"{L}: {'-' if v is None else f'{v:.3f}'}" for L, v in zip(eval_lens, ev["loss"]))
            log(f"{enc:>10}: train loss {hist['loss'][-1]:.3f} ({train_seconds:.1f} s); loss by length {shown}")
    return {
        "format": _FORMAT,
        "settings": settings,
        "metric": (f"mean cross-entropy (nats per character) of the last {score_last} predictions of each of "
                   f"{n_windows} validation windows; the same characters at every context length"),
        "encodings": results,
        "seconds": round(time.perf_counter() - t_start, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def save_extrapolation_results(results: dict[str, Any], path: str | os.PathLike = RESULTS_PATH) -> Path:
    """Write ``results`` (from :func:`run_extrapolation`, plus e.g. a ``command``) as JSON, atomically.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    return write_results(results, path, _validate)


def _validate(results: Any, where: str) -> None:
    if not isinstance(results, dict) or results.get("format") != _FORMAT:
        raise ValueError(f"{where} is not an extrapolation result (no format {_FORMAT!r}); "
                         "make one with lmlib.experiments.extrapolation.run_extrapolation")
    try:
        lens = results["settings"]["eval_lens"]
        for enc, r in results["encodings"].items():
            if len(r["loss"]) != len(lens) or len(r["loss_all"]) != len(lens):
                raise ValueError(f"{where}: encoding {enc!r} has {len(r['loss'])} losses for {len(lens)} lengths")
    except (KeyError, TypeError) as e:
        raise ValueError(f"{where} is missing a field of an extrapolation result: {e}") from None


def load_extrapolation_results(path: str | os.PathLike = RESULTS_PATH) -> dict[str, Any]:
    """Load the shipped full-mode result (or another file written by :func:`save_extrapolation_results`).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    return read_results(path, "python recipes/pos_extrapolation.py", _validate)


_STYLE = {"none": ("C7", "o"), "learned": ("C3", "s"), "sinusoidal": ("C1", "^"), "alibi": ("C2", "D"),
          "rope": ("C0", "v")}


def plot_extrapolation(results: dict[str, Any], axes: Any = None) -> Any:
    """Two panels: loss vs context length per encoding, and loss by position at the longest length.

    The dashed line marks the training length. "learned" stops there: it has no position
    vectors beyond it (marked "x" and said in the legend).

    Args:
        results: from :func:`run_extrapolation` or :func:`load_extrapolation_results`.
        axes: two matplotlib axes to draw on (default: a new figure).

    Returns:
        The matplotlib Figure.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _validate(results, "results")
    s = results["settings"]
    lens, T = s["eval_lens"], s["train_len"]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    else:
        if len(axes) != 2:
            raise ValueError(f"axes must be two matplotlib axes, got {len(axes)}")
        fig = axes[0].figure
    ax, ax2 = axes
    for enc, r in results["encodings"].items():
        color, marker = _STYLE.get(enc, ("k", "o"))
        pts = [(L, v) for L, v in zip(lens, r["loss"]) if v is not None]
        missing = [L for L, v in zip(lens, r["loss"]) if v is None]
        label = enc + (f" (no positions beyond {T}: cannot run longer)" if missing else "")
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=label)
        if missing:  # an "x" along the top edge: no value exists there
            ax.plot(missing, [0.96] * len(missing), "x", color=color, ms=9, transform=ax.get_xaxis_transform(),
                    clip_on=False)
        pl = r.get("position_loss")
        if pl:
            n = len(pl)
            k = max(1, n // 32)  # average over buckets of k positions (one position alone is noisy)
            starts = range(0, n - k + 1, k)
            xs = [i + (k - 1) / 2 for i in starts]
            ys = [sum(pl[i : i + k]) / k for i in starts]
            ax2.plot(xs, ys, color=color, label=enc)
    for a in axes:
        a.axvline(T, color="k", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lens, [str(L) for L in lens])
    ax.set_xlabel("context length at evaluation (characters)")
    ax.set_ylabel(f"loss of the last {s['score_last']} characters")
    ax.set_title(f"trained on {T} characters: same targets, longer context")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)  # below: no overlap
    ax2.set_xlabel("position in the window")
    ax2.set_ylabel("loss (mean over windows)")
    ax2.set_title(f"loss by position at the longest length (dashed: {T})")
    ax2.legend(fontsize=8, loc="lower right")
    lo = min(v for r in results["encodings"].values() for v in r["loss"] if v is not None)
    hi = max(v for r in results["encodings"].values() for v in r["loss"] if v is not None)
    if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
    fig.tight_layout()
    return fig

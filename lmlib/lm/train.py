"""A small training loop for next-token prediction, reused by every later chapter.

One flat loop in the nanoGPT/CleanRL spirit, no trainer hierarchy::

    for step in range(start, cfg.max_steps):
        evaluate every cfg.eval_interval steps        -> history["val_loss"], ...
        lr = lr_at(step, cfg)                          # linear warmup, cosine decay
        x, y = get_batch("train")                      # (B, T), y = x shifted by one
        loss = loss_fn(model(x), y)                    # cross-entropy over next tokens
        loss.backward(); clip_grad_norm_; AdamW step
        log / callback / checkpoint every few steps

The model interface is ``model(x) -> logits`` (or a tuple ``(logits, ...)``, as nanoGPT-style
models return) with ``x: (B, T)`` integer token
ids and ``logits: (B, T, V)``. The loss is pluggable (``loss_fn(logits, y)``).

Checkpoints and resume: with ``cfg.ckpt_path`` set, the model, optimizer, step,
every RNG state and the history are saved atomically (:mod:`lmlib.checkpoint`)
every ``cfg.ckpt_interval`` steps and at the end. If the file already exists,
:func:`train` continues from it, and the result is *the same* as if it had never
stopped (same batches, same dropout masks, same parameters).

Interrupting (Ctrl-C in a terminal, the stop button in Jupyter/Colab): the loop
finishes the current step, saves the checkpoint and re-raises
``KeyboardInterrupt``; run the cell again to continue. A second Ctrl-C stops
at once (without saving; the previous checkpoint stays intact). Any other
exception (a crash, a NaN loss) is re-raised without saving, so the last good
checkpoint is kept.

Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
"""
from __future__ import annotations

import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import load_checkpoint, load_into, save_checkpoint
from .losses import masked_cross_entropy

__all__ = [
    "TrainConfig",
    "BatchFn",
    "lr_at",
    "get_batch",
    "make_batch_fn",
    "cross_entropy_loss",
    "estimate_loss",
    "configure_optimizer",
    "resolve_device",
    "train",
]

#: ``get_batch_fn(split, generator) -> (x, y)``: a batch of the named split ("train", "val"),
#: drawn with ``generator`` so that training can be resumed exactly.
BatchFn = Callable[[str, torch.Generator], tuple[Tensor, Tensor]]

PROGRESS_ENV = "LMBOOK_PROGRESS"  # "0" hides the progress bar, "1" forces it


@dataclass
class TrainConfig:
    """Everything :func:`train` needs; one instance per experiment (see ``lmlib.pick``).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """

    max_steps: int = 1000
    """Total number of optimizer updates; a resumed run continues up to this step."""
    batch_size: int = 32
    """B: sequences per batch."""
    block_size: int = 64
    """T: tokens per sequence (the context length), used when ``data`` is a tensor."""
    lr: float = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay (nanoGPT uses lr / 10)."""
    warmup_steps: int = 100
    """Steps of linear warmup from lr / warmup_steps up to lr (0 = no warmup)."""
    lr_decay_steps: int | None = None
    """Step at which the cosine reaches min_lr (and stays); None means max_steps."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Either "cosine" (warmup, then cosine decay to min_lr) or "constant" (warmup, then lr)."""
    weight_decay: float = 0.1
    """AdamW's decoupled weight decay, applied to weight matrices (see the two flags below)."""
    decay_embeddings: bool = True
    """Also decay nn.Embedding weights (nanoGPT does; some recipes do not)."""
    decay_biases_and_norms: bool = False
    """Also decay 1-D parameters (biases, LayerNorm gains); almost nobody does."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's (beta1, beta2); 0.95 is the usual choice for language models."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping."""
    eval_interval: int = 100
    """Estimate train/val loss every this many steps (and at the end); 0 disables."""
    eval_iters: int = 20
    """Batches averaged per split in each evaluation."""
    log_interval: int = 10
    """Append a row to the history (mean minibatch loss, lr, tokens/s) every this many steps."""
    ckpt_path: str | os.PathLike | None = None
    """Checkpoint file (``.safetensors``); if it exists and ``resume`` is True, training continues from it."""
    ckpt_interval: int = 0
    """Save a checkpoint every this many steps (0 = only at the end and on interrupt)."""
    resume: bool = True
    """Continue from ``ckpt_path`` if it exists; False starts over (and overwrites it)."""
    seed: int = 1337
    """Seeds the batch sampler and torch/numpy/python RNGs at the start of a fresh run."""
    device: str = "auto"
    """Where to train: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    progress: bool | None = None
    """Show a tqdm bar; None = only in a terminal or a Jupyter/Colab kernel (and not if $LMBOOK_PROGRESS=0)."""

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "block_size", "eval_iters", "log_interval"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_interval", "ckpt_interval"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.schedule == "cosine" and self.decay_steps < self.warmup_steps:
            raise ValueError(
                f"the cosine decay ends at step {self.decay_steps} (lr_decay_steps or max_steps), "
                f"before warmup ends at warmup_steps={self.warmup_steps}; lower warmup_steps"
            )
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"weight_decay and grad_clip must be >= 0, got {self.weight_decay}, {self.grad_clip}")
        self.betas = tuple(self.betas)
        if self.ckpt_path is not None:
            self.ckpt_path = os.fspath(self.ckpt_path)  # a str, so the config fits in the checkpoint's JSON

    @property
    def decay_steps(self) -> int:
        """The step where the cosine reaches min_lr: ``lr_decay_steps`` or ``max_steps``."""
        return self.max_steps if self.lr_decay_steps is None else self.lr_decay_steps


# Fields that change the trajectory: a resumed run must use the same values.
_RESUME_MUST_MATCH = (
    "batch_size", "block_size", "lr", "min_lr", "warmup_steps", "schedule", "weight_decay",
    "decay_embeddings", "decay_biases_and_norms", "betas", "grad_clip", "seed",
)


# ----------------------------------------------------------------------------
# The pieces: schedule, batches, loss, evaluation, optimizer


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for update number ``step`` (0-based): linear warmup, then cosine decay.

    * ``step < W``: ``lr * (step + 1) / W`` (W = warmup_steps), so step W-1 reaches lr;
    * cosine: ``min_lr + (lr - min_lr) * (1 + cos(pi * (step - W) / (D - W))) / 2`` with
      D = ``cfg.decay_steps``; halfway it is ``(lr + min_lr) / 2``; from step D on it is min_lr;
    * constant: lr after warmup.

    A pure function of its arguments (no state), so you can plot it.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if step >= cfg.decay_steps:
        return cfg.min_lr
    ratio = (step - cfg.warmup_steps) / (cfg.decay_steps - cfg.warmup_steps)  # 0 -> 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)


def _check_tokens(data: Tensor, block_size: int, name: str = "data") -> None:
    if not isinstance(data, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(data).__name__}")
    if data.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,) token ids, got shape {tuple(data.shape)}")
    if data.dtype.is_floating_point or data.dtype.is_complex or data.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got dtype {data.dtype}")
    if len(data) < block_size + 1:
        raise ValueError(
            f"{name} has {len(data)} tokens, but block_size={block_size} needs at least "
            f"{block_size + 1} (T inputs + 1 target); use a smaller block_size or more text"
        )


def get_batch(data: Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random windows of ``data`` for next-token prediction.

    Args:
        data: (N,) integer token ids.
        block_size: T, tokens per window.
        batch_size: B, windows per batch.
        generator: a ``torch.Generator`` (CPU) so batches are reproducible.

    Returns:
        ``(x, y)``, both (B, T) int64 on ``data``'s device, with ``y[b, t] == x[b, t + 1]``
        (``y`` is ``x`` shifted left by one: the token that comes next).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    _check_tokens(data, block_size)
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,) start positions
    offsets = ix[:, None] + torch.arange(block_size)  # (B, T)
    offsets = offsets.to(data.device)
    x = data[offsets].long()  # (B, T)
    y = data[offsets + 1].long()  # (B, T)
    return x, y


def make_batch_fn(
    data: Tensor | Mapping[str, Tensor], block_size: int, batch_size: int, device: str | torch.device = "cpu"
) -> BatchFn:
    """Turn token tensors into a :data:`BatchFn` ``(split, generator) -> (x, y)`` on ``device``.

    ``data`` is one (N,) tensor (the "train" split) or a mapping such as
    ``{"train": train_ids, "val": val_ids}``. Batches are drawn with :func:`get_batch`.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    splits = {"train": data} if isinstance(data, Tensor) else dict(data)
    for name, d in splits.items():
        _check_tokens(d, block_size, name=f"data[{name!r}]")

    def batch_fn(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if split not in splits:
            raise KeyError(f"no {split!r} split in the data; have {list(splits)}")
        x, y = get_batch(splits[split], block_size, batch_size, generator)
        return x.to(device), y.to(device)

    return batch_fn


#: The default loss of :func:`train`: the one masked next-token cross-entropy of the book
#: (:func:`lmlib.lm.losses.masked_cross_entropy`; targets -1 carry no loss), under its Chapter 3 name.
cross_entropy_loss = masked_cross_entropy


def _forward_loss(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    out = model(x)
    # nanoGPT-style models (lmlib.lm.gpt.GPT among them) return (logits, loss): the logits come first.
    logits = out[0] if isinstance(out, tuple) and out else out
    if not isinstance(logits, Tensor):
        raise TypeError(
            f"model(x) must return a logits tensor (B, T, V) or a tuple that starts with one, "
            f"got {type(out).__name__}"
        )
    loss = loss_fn(logits, y)
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn(logits, y) must return a scalar tensor, got {getattr(loss, 'shape', type(loss))}")
    return loss


@torch.no_grad()
def estimate_loss(
    model: nn.Module,
    get_batch_fn: BatchFn,
    splits: Sequence[str] = ("train", "val"),
    eval_iters: int = 20,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split, in eval mode and without gradients.

    The batches come from a fresh generator seeded with ``seed``, so every call
    sees the same batches (comparable over training) and the training RNG is
    untouched. The model's train/eval mode is restored afterwards.

    Returns ``{split: mean loss}``, e.g. ``{"train": 2.31, "val": 2.45}``.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    loss_fn = loss_fn or cross_entropy_loss
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = {}
        for split in splits:
            gen = torch.Generator().manual_seed(seed)
            losses = []
            for _ in range(eval_iters):
                x, y = get_batch_fn(split, gen)
                losses.append(_forward_loss(model, x.to(device), y.to(device), loss_fn).item())
            out[split] = sum(losses) / len(losses)
        return out
    finally:
        model.train(was_training)


def configure_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two parameter groups: decayed (weight matrices) and not decayed.

    By default 2-D+ weights (Linear, Embedding) get ``cfg.weight_decay`` and 1-D
    parameters (biases, LayerNorm gains) get none; ``cfg.decay_embeddings`` and
    ``cfg.decay_biases_and_norms`` change that. Weight decay is *decoupled*
    (AdamW, Loshchilov & Hutter 2019): ``p -= lr * wd * p`` outside the Adam update.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():  # tied parameters appear once
        if not p.requires_grad:
            continue
        if p.ndim < 2:
            wd = cfg.decay_biases_and_norms
        elif id(p) in embeddings:
            wd = cfg.decay_embeddings
        else:
            wd = True
        (decay if wd else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; anything else -> ``torch.device(device)``.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------
# Plumbing: RNG states, Ctrl-C, progress bar


def _rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {
        "batch": gen.get_state(),
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    gen.set_state(state["batch"])
    torch.set_rng_state(state["torch"])
    v, tup, internal = state["python"]
    random.setstate((v, tuple(tup), internal))
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every cuda device


class _DeferInterrupt:
    """Turn the first Ctrl-C into a flag that the loop checks between steps.

    A step is never cut in half, so the checkpoint written on interrupt is
    consistent. A second Ctrl-C raises at once. Only works in the main thread
    (elsewhere Ctrl-C is not delivered to us anyway).
    """

    def __init__(self) -> None:
        self.requested = False  # first Ctrl-C: stop at the next step boundary
        self.hard = False  # second Ctrl-C: stop now
        self._old = None

    def __enter__(self) -> _DeferInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        if self.requested:
            self.hard = True
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _show_progress(cfg: TrainConfig) -> bool:
    if cfg.progress is not None:
        return cfg.progress
    env = os.environ.get(PROGRESS_ENV, "").strip()
    if env in ("0", "1"):
        return env == "1"
    in_kernel = "ipykernel" in sys.modules and getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)() is not None
    return in_kernel or sys.stderr.isatty()


def _new_history(splits: Sequence[str]) -> dict[str, list]:
    h = {"step": [], "loss": [], "lr": [], "tokens_per_s": [], "time": [], "eval_step": []}
    h.update({f"{s}_loss": [] for s in splits})
    return h


# ----------------------------------------------------------------------------
# The loop: setup (fresh or resumed), one update, evaluation, logging, checkpoints


@dataclass
class _Run:
    """Everything one call of :func:`train` carries from step to step (what a checkpoint stores, and timers)."""

    model: nn.Module
    cfg: TrainConfig
    get_batch_fn: BatchFn
    splits: tuple[str, ...]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    device: torch.device
    optimizer: torch.optim.Optimizer
    gen: torch.Generator  # draws the training batches
    ckpt_path: Path | None
    history: dict[str, list]
    step: int = 0  # updates done
    elapsed: float = 0.0  # seconds of training (evaluation and saving not counted)
    loss_sum: float = 0.0  # the loss window since the last history row
    loss_count: int = 0
    saved_step: int | None = None  # the step the file at ckpt_path holds
    tokens_window: int = 0
    t_window: float = 0.0
    t_last: float = 0.0


def _setup(model: nn.Module, data: Tensor | Mapping[str, Tensor] | BatchFn, cfg: TrainConfig,
           loss_fn: Callable[[Tensor, Tensor], Tensor] | None, splits: Sequence[str] | None) -> _Run:
    """Move the model, build the batches and the optimizer, then start fresh or resume from ``cfg.ckpt_path``."""
    device = resolve_device(cfg.device)
    if callable(data) and not isinstance(data, Tensor):
        get_batch_fn, splits = data, tuple(splits or ("train", "val"))
    else:
        get_batch_fn = make_batch_fn(data, cfg.block_size, cfg.batch_size, device)
        splits = tuple(splits or (["train"] if isinstance(data, Tensor) else list(data)))
    model.to(device)
    model.train()
    run = _Run(model=model, cfg=cfg, get_batch_fn=get_batch_fn, splits=splits,
               loss_fn=loss_fn or cross_entropy_loss, device=device,
               optimizer=configure_optimizer(model, cfg), gen=torch.Generator().manual_seed(cfg.seed),
               ckpt_path=Path(cfg.ckpt_path) if cfg.ckpt_path else None, history=_new_history(splits))
    if run.ckpt_path is not None and cfg.resume and run.ckpt_path.exists():
        _resume(run)
    else:
        _seed_everything(cfg.seed)
    return run


def _resume(run: _Run) -> None:
    """Load model, optimizer, RNG states, step and history from the training checkpoint."""
    ckpt = load_checkpoint(run.ckpt_path, map_location="cpu")
    meta = ckpt.meta
    if meta.get("kind") != "lmlib.train":
        raise ValueError(f"{run.ckpt_path} is not a training checkpoint written by lmlib.lm.train.train")
    _check_same_config(meta["config"], run.cfg, run.ckpt_path)
    load_into(run.model, ckpt)
    run.optimizer.load_state_dict(ckpt.optimizer)
    _set_rng_state(meta["rng"], run.gen)
    run.step, run.elapsed, run.history = meta["step"], meta["elapsed"], meta["history"]
    run.loss_sum, run.loss_count = meta["loss_window"]
    run.saved_step = run.step


def _save(run: _Run) -> None:
    """Write the training checkpoint (atomically), unless there is no path or this step is saved already."""
    if run.ckpt_path is None or run.saved_step == run.step:
        return
    meta = {
        "kind": "lmlib.train", "step": run.step, "config": asdict(run.cfg), "history": run.history,
        "rng": _rng_state(run.gen), "loss_window": [run.loss_sum, run.loss_count], "elapsed": run.elapsed,
    }
    save_checkpoint(run.ckpt_path, run.model.state_dict(), optimizer_state=run.optimizer.state_dict(), meta=meta)
    run.saved_step = run.step


def _evaluate(run: _Run, bar: Any) -> None:
    """Append :func:`estimate_loss` of every split to the history (once per step, also across a resume)."""
    if run.history["eval_step"] and run.history["eval_step"][-1] == run.step:
        return  # already done before an interruption
    losses = estimate_loss(run.model, run.get_batch_fn, run.splits, run.cfg.eval_iters, loss_fn=run.loss_fn,
                           seed=run.cfg.seed + 1)
    run.history["eval_step"].append(run.step)
    for s, v in losses.items():
        run.history[f"{s}_loss"].append(v)
    bar.set_postfix({f"{s}_loss": f"{v:.4f}" for s, v in losses.items()}, refresh=False)


def _update(run: _Run) -> tuple[Tensor, float, int]:
    """One optimisation step: set the lr, draw a batch, forward, backward, clip, AdamW. Returns (loss, lr, tokens)."""
    cfg, optimizer = run.cfg, run.optimizer
    lr = lr_at(run.step, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    x, y = run.get_batch_fn("train", run.gen)
    x, y = x.to(run.device), y.to(run.device)
    loss = _forward_loss(run.model, x, y, run.loss_fn)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss.item()} at step {run.step} (lr={lr:.3g}); lower lr or check the data. "
            "The last checkpoint (if any) is kept."
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    optimizer.step()
    run.step += 1
    return loss, lr, x.numel()


def _log(run: _Run, loss: float, lr: float, n_tokens: int, bar: Any) -> None:
    """Count the step's time and loss; every ``log_interval`` steps append a row to the history."""
    now = time.perf_counter()
    run.elapsed += now - run.t_last
    run.t_last = now
    run.loss_sum, run.loss_count = run.loss_sum + loss, run.loss_count + 1
    run.tokens_window += n_tokens
    if run.step % run.cfg.log_interval == 0 or run.step == run.cfg.max_steps:
        mean = run.loss_sum / run.loss_count
        h = run.history
        h["step"].append(run.step)
        h["loss"].append(mean)
        h["lr"].append(lr)
        h["tokens_per_s"].append(run.tokens_window / max(now - run.t_window, 1e-9))
        h["time"].append(run.elapsed)
        bar.set_postfix({"loss": f"{mean:.4f}", "lr": f"{lr:.2e}"}, refresh=False)
        run.loss_sum, run.loss_count, run.tokens_window, run.t_window = 0.0, 0, 0, now


def train(
    model: nn.Module,
    data: Tensor | Mapping[str, Tensor] | BatchFn,
    cfg: TrainConfig,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    callback: Callable[[int, dict], bool | None] | None = None,
    splits: Sequence[str] | None = None,
) -> dict[str, list]:
    """Train ``model`` to predict the next token; resume from ``cfg.ckpt_path`` if it exists.

    Args:
        model: ``model(x) -> logits`` or ``(logits, ...)``, x: (B, T) int64, logits: (B, T, V). Moved to ``cfg.device``
            and left in train mode.
        data: (N,) token ids (train only), ``{"train": ids, "val": ids}``, or a
            :data:`BatchFn` ``(split, generator) -> (x, y)``.
        cfg: a :class:`TrainConfig`.
        loss_fn: ``loss_fn(logits, y) -> scalar``; default :func:`cross_entropy_loss`
            (:func:`lmlib.lm.losses.masked_cross_entropy`: targets -1 carry no loss).
        callback: called as ``callback(step, info)`` after every update with
            ``info = {"loss", "lr", "history", "model", "optimizer"}``; return True to
            stop early (a checkpoint is saved; calling train again continues).
        splits: splits to evaluate; default: the keys of ``data``, or ("train", "val")
            for a BatchFn.

    Returns:
        The history, a dict of lists. Every ``log_interval`` steps: ``step`` (updates
        done), ``loss`` (mean minibatch loss since the last row), ``lr``, ``tokens_per_s``,
        ``time`` (seconds of training so far). Every ``eval_interval`` steps and at the
        end: ``eval_step`` and ``<split>_loss`` (e.g. ``train_loss``, ``val_loss``) from
        :func:`estimate_loss`.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    from tqdm.auto import tqdm

    run = _setup(model, data, cfg, loss_fn, splits)
    bar = tqdm(total=cfg.max_steps, initial=run.step, disable=not _show_progress(cfg), desc="train", dynamic_ncols=True)
    mid_step = False  # True while the model/optimizer/RNG are between two consistent states
    interrupt = _DeferInterrupt()
    try:
        with interrupt:
            run.t_window = run.t_last = time.perf_counter()
            while run.step < cfg.max_steps:
                if cfg.eval_interval and run.step % cfg.eval_interval == 0:
                    _evaluate(run, bar)
                    run.t_window = run.t_last = time.perf_counter()  # do not count eval time as training time
                if interrupt.requested:
                    raise KeyboardInterrupt  # saved below
                mid_step = True
                loss, lr, n_tokens = _update(run)
                mid_step = False
                _log(run, loss.item(), lr, n_tokens, bar)
                bar.update(1)
                stop = callback(run.step, {"loss": loss.item(), "lr": lr, "history": run.history,
                                           "model": model, "optimizer": run.optimizer}) if callback else False
                if cfg.ckpt_interval and run.step % cfg.ckpt_interval == 0:
                    _save(run)
                    run.t_last = time.perf_counter()  # saving is not training time
                if interrupt.requested:
                    raise KeyboardInterrupt  # saved below
                if stop:
                    _save(run)
                    return run.history
            if cfg.eval_interval:
                _evaluate(run, bar)
            _save(run)
    except KeyboardInterrupt:  # Ctrl-C (deferred to a step boundary) or raised by the callback
        if mid_step or interrupt.hard:
            if run.ckpt_path is not None:
                warnings.warn(f"stopped in the middle of step {run.step + 1}; "
                              f"{run.ckpt_path} keeps its last saved state")
        else:
            _save(run)  # a no-op if this step is saved already
        raise
    finally:
        bar.close()
    return run.history


def _check_same_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now = asdict(cfg)
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in _RESUME_MUST_MATCH
             if _norm(saved.get(k)) != _norm(now[k])]
    saved_decay = saved["max_steps"] if saved.get("lr_decay_steps") is None else saved["lr_decay_steps"]
    if cfg.schedule == "cosine" and saved_decay != cfg.decay_steps:
        diffs.append(
            f"cosine decay end (lr_decay_steps or max_steps): checkpoint {saved_decay} vs now {cfg.decay_steps} "
            f"(to train longer, set lr_decay_steps={saved_decay} explicitly)"
        )
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the config changed in ways that change training:\n  "
            + "\n  ".join(diffs)
            + f"\nUse the same config, or start over with resume=False (or delete {path})."
        )


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


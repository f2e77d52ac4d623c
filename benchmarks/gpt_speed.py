"""How fast does the book's GPT train on a CPU? A nanoGPT-equivalent baseline against lmlib.lm.gpt.

Reference run (nanoGPT's ``shakespeare_char`` recipe, made smaller): character-level tiny
Shakespeare (64 characters), 4 layers, 4 heads, width 128, context 64, batch 12, dropout 0,
no biases, tied embeddings; AdamW (betas 0.9/0.99, weight decay 0.1 on matrices, gradient
clipping 1.0), lr 1e-3 with 100 warmup steps and a cosine down to 1e-4 at step 2000;
evaluation every 250 iterations on 20 batches of each split (and at the end).

The trainers run the *same* computation from the *same* initial weights on the *same* batches:

(a) **baseline**: a minimal GPT with exactly the architecture of nanoGPT's ``model.py``
    (written for this benchmark, not copied), trained like nanoGPT's ``train.py`` does on a
    CPU: float32, eager, ``F.scaled_dot_product_attention``, the default (for-loop) AdamW,
    one batch at a time in evaluation. nanoGPT leaves the thread count at PyTorch's default
    (2 here); because that stalls on a busy shared machine, the baseline also runs at 1 thread.
(b) **ours**: :class:`lmlib.lm.gpt.GPT` with the fastest settings found on this machine:
    fused AdamW, foreach gradient clipping, evaluation under ``inference_mode``, and a
    thread setting chosen *while training*: at every evaluation, two real training steps
    are timed with each candidate ("t1": 1 intra-op thread; "t2": 2 OpenMP threads; "dp2":
    two Python threads, each running half the batch with 1 intra-op thread, gradients
    summed) and the fastest is used until the next evaluation; a multi-threaded step that
    takes 3x a 1-thread step (a stall: the other core is busy) switches to 1 thread.
    bf16 autocast is used only if the measured bf16 matmul peak beats float32 by 1.5x
    (on AVX2-only CPUs bf16 matmuls are emulated and far slower); ``--compile`` adds
    ``torch.compile`` (off: on this model it took 13-43 s to compile and gained <= 4%, within the noise).

The runs are *interleaved* in chunks of one evaluation interval (the order reversed every
chunk), so that on a shared machine they see the same background load; each run's
end-to-end time is the sum of its own chunks (training, evaluation, thread calibration).

MFU (model FLOPs utilisation) = achieved model FLOP/s / measured matmul peak, with
model FLOPs per iteration = (6 N + 12 L T C) * B * T (nanoGPT's ``estimate_mfu``: N =
parameters without the position table, the 12 L T C term = attention scores and
weighted sums, forward + backward); the peak is a 1024x1024 float32 matmul timed in the
same process with the run's thread count (for dp2: twice the 1-thread peak).

Usage::

    .venv/bin/python benchmarks/gpt_speed.py              # 2000 iterations (a few minutes)
    .venv/bin/python benchmarks/gpt_speed.py --quick      # 100 iterations, for tests
    .venv/bin/python benchmarks/gpt_speed.py --compare-bf16 200   # fp32 vs bf16 loss curves

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.train import TrainConfig, get_batch, lr_at

DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's default intra-op thread count on this machine

# ============================================================================ (a) the baseline
# The architecture of nanoGPT's model.py (Karpathy 2022), written out for this benchmark.


@dataclass
class NanoConfig:
    """nanoGPT's GPTConfig fields."""

    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class NanoLayerNorm(nn.Module):
    """LayerNorm with an optional bias."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class NanoSelfAttention(nn.Module):
    def __init__(self, cfg: NanoConfig) -> None:
        super().__init__()
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class NanoMLP(nn.Module):
    def __init__(self, cfg: NanoConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class NanoBlock(nn.Module):
    def __init__(self, cfg: NanoConfig) -> None:
        super().__init__()
        self.ln_1 = NanoLayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = NanoSelfAttention(cfg)
        self.ln_2 = NanoLayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = NanoMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's GPT: same modules, names, initialisation and loss."""

    def __init__(self, cfg: NanoConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([NanoBlock(cfg) for _ in range(cfg.n_layer)]),
            ln_f=NanoLayerNorm(cfg.n_embd, bias=cfg.bias),
        ))
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        b, t = idx.size()
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits, loss = self.lm_head(x[:, [-1], :]), None
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas: tuple[float, float]):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)  # nanoGPT: fused only on CUDA


def nano_get_lr(it: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """nanoGPT's schedule: linear warmup, cosine decay to min_lr."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


# ============================================================================ shared settings


@dataclass
class Bench:
    iters: int = 2000
    batch_size: int = 12
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 100
    lr_decay_iters: int = 2000
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337


def load_data() -> tuple[np.ndarray, np.ndarray, int]:
    """tiny Shakespeare as uint16 character ids (like nanoGPT's prepare.py): train, val, vocab size."""
    from lmlib.text.corpus import shakespeare
    from lmlib.text.tokenizer import CharTokenizer

    corpus = shakespeare("tiny")
    tok = CharTokenizer.train(corpus.text, unk_token=None)
    enc = lambda s: np.array(tok.encode(s), dtype=np.uint16)  # noqa: E731
    return enc(corpus.train), enc(corpus.val), tok.vocab_size


def matmul_peak(threads: int, dtype: torch.dtype, n: int = 1024, budget_s: float = 0.3) -> float:
    """GFLOP/s of an n x n matmul with ``threads`` intra-op threads (best of a few timings)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        t0 = time.perf_counter()
        a @ b  # warm up
        one = time.perf_counter() - t0
        reps = max(1, min(20, int(budget_s / max(one, 1e-6))))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, (time.perf_counter() - t0) / reps)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(old)


# ============================================================================ the trainers


class Run:
    """One training run, advanced chunk by chunk; keeps its own clock, losses and RNG."""

    name = "run"

    def __init__(self, b: Bench, train: np.ndarray, val: np.ndarray) -> None:
        self.b = b
        self.it = 0
        self.wall = 0.0  # seconds spent in this run's chunks (training + eval + calibration)
        self.cpu = 0.0  # process CPU seconds in this run's chunks
        self.eval_wall = 0.0
        self.step_times: list[float] = []
        self.train_losses: list[float] = []
        self.evals: list[tuple[int, float, float]] = []  # (iteration, train loss, val loss)
        self.gen = torch.Generator().manual_seed(b.seed)  # the training batches: identical for both runs
        self.threads_used: dict[str, int] = {}

    def eval(self) -> None:
        t0 = time.perf_counter()
        losses = self.estimate_loss()
        self.evals.append((self.it, losses["train"], losses["val"]))
        self.eval_wall += time.perf_counter() - t0

    def chunk(self, until: int) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        self.enter()
        if self.it % self.b.eval_interval == 0:
            self.eval()
        self.before_chunk(until)
        while self.it < until:
            s0 = time.perf_counter()
            loss = self.step()
            self.step_times.append(time.perf_counter() - s0)
            self.train_losses.append(loss)
            self.threads_used[self.mode] = self.threads_used.get(self.mode, 0) + 1
            self.it += 1
            self.after_step(self.step_times[-1])
        if self.it == self.b.iters:
            self.eval()
        self.wall += time.perf_counter() - t0
        self.cpu += time.process_time() - c0

    def enter(self) -> None:
        """Set this run's thread count (the other run may have changed it)."""

    def before_chunk(self, until: int) -> None:
        pass

    def after_step(self, seconds: float) -> None:
        pass


class Baseline(Run):
    """nanoGPT's loop on a CPU: fp32, eager, default threads, per-batch evaluation."""

    name = "baseline (nanoGPT-equivalent)"

    def __init__(self, b: Bench, train: np.ndarray, val: np.ndarray, vocab: int, threads: int) -> None:
        super().__init__(b, train, val)
        self.short = f"baseline-{threads}t"
        self.data = {"train": train, "val": val}
        self.threads = threads
        self.mode = f"t{threads}"
        torch.manual_seed(b.seed)
        self.model = NanoGPT(NanoConfig(block_size=b.block_size, vocab_size=vocab, n_layer=b.n_layer,
                                        n_head=b.n_head, n_embd=b.n_embd, dropout=0.0, bias=False))
        self.opt = self.model.configure_optimizers(b.weight_decay, b.lr, b.betas)
        self.X, self.Y = self.get_batch("train", self.gen)

    def get_batch(self, split: str, gen: torch.Generator):
        data = self.data[split]
        ix = torch.randint(len(data) - self.b.block_size, (self.b.batch_size,), generator=gen)
        x = torch.stack([torch.from_numpy(data[i : i + self.b.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + self.b.block_size].astype(np.int64)) for i in ix])
        return x, y

    def enter(self) -> None:
        torch.set_num_threads(self.threads)

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for split in ("train", "val"):
            gen = torch.Generator().manual_seed(self.b.seed + 1)
            losses = torch.zeros(self.b.eval_iters)
            for k in range(self.b.eval_iters):
                X, Y = self.get_batch(split, gen)
                _, loss = self.model(X, Y)
                losses[k] = loss.item()
            out[split] = losses.mean().item()
        self.model.train()
        return out

    def step(self) -> float:
        b = self.b
        lr = nano_get_lr(self.it, b.lr, b.min_lr, b.warmup, b.lr_decay_iters)
        for g in self.opt.param_groups:
            g["lr"] = lr
        _, loss = self.model(self.X, self.Y)
        self.X, self.Y = self.get_batch("train", self.gen)  # nanoGPT prefetches the next batch here
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), b.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()


class Ours(Run):
    """lmlib.lm.gpt.GPT with fused AdamW, foreach clipping, inference-mode evaluation and an adaptive thread setting."""

    name = "ours (lmlib.lm.gpt)"

    def __init__(self, b: Bench, train: np.ndarray, val: np.ndarray, vocab: int, init_state: dict,
                 modes: list[str], dtype: torch.dtype, compile: bool = False) -> None:
        super().__init__(b, train, val)
        self.short = "ours"
        self.data = {"train": torch.from_numpy(train.astype(np.int64)), "val": torch.from_numpy(val.astype(np.int64))}
        cfg = GPTConfig(vocab_size=vocab, block_size=b.block_size, n_layer=b.n_layer, n_head=b.n_head,
                        n_embd=b.n_embd, dropout=0.0, bias=False, pos_encoding="learned", tie_weights=True,
                        attn_impl="fused")
        self.model = GPT(cfg)
        self.model.load_state_dict(init_state)  # the baseline's initial weights: same starting point
        self.params = list(self.model.parameters())
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": b.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=b.lr, betas=b.betas, fused=True)
        self.tcfg = TrainConfig(max_steps=max(b.iters, b.lr_decay_iters), batch_size=b.batch_size,
                                block_size=b.block_size, lr=b.lr, min_lr=b.min_lr, warmup_steps=b.warmup,
                                lr_decay_steps=b.lr_decay_iters)
        self.dtype = dtype
        self.fwd = torch.compile(self.model) if compile else self.model
        self.modes = modes
        self.mode = modes[0]
        self.pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,)) if "dp2" in modes else None
        self.calibrations: list[dict[str, float]] = []
        self.fallbacks: list[int] = []  # iterations where the stall guard switched to t1
        self.t1_time: float | None = None

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.dtype == torch.bfloat16 else nullcontext()

    def enter(self) -> None:
        self.set_mode(self.mode)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        torch.set_num_threads(2 if mode == "t2" else 1)

    def before_chunk(self, until: int) -> None:
        """Time 2 real training steps with each candidate setting; keep the fastest for this chunk."""
        if len(self.modes) == 1 or until - self.it < 4 * len(self.modes):
            return
        seen = {}
        for mode in self.modes:
            self.set_mode(mode)
            best = float("inf")
            for _ in range(2):
                s0 = time.perf_counter()
                self.train_losses.append(self.step())
                self.step_times.append(time.perf_counter() - s0)
                best = min(best, self.step_times[-1])
                self.threads_used[mode] = self.threads_used.get(mode, 0) + 1
                self.it += 1
            seen[mode] = best
        self.calibrations.append(seen)
        self.t1_time = seen.get("t1", self.t1_time)
        self.set_mode(min(seen, key=seen.get))

    def after_step(self, seconds: float) -> None:
        """Stall guard: a multi-threaded step that took 3x a 1-thread step means the other core is
        busy (its OpenMP threads wait on a descheduled sibling): use 1 thread until the next calibration."""
        if self.mode != "t1" and "t1" in self.modes and self.t1_time and seconds > 3 * self.t1_time:
            self.fallbacks.append(self.it)
            self.set_mode("t1")

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.fwd(x, y)[1]

    def step(self) -> float:
        lr = lr_at(self.it, self.tcfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(self.data["train"], self.b.block_size, self.b.batch_size, self.gen)
        if self.mode == "dp2":  # two halves on two threads; weighted by size, their losses make the batch mean
            B = self.b.batch_size
            h = B // 2

            def part(xs: torch.Tensor, ys: torch.Tensor, weight: float) -> torch.Tensor:
                loss = self._loss(xs, ys) * weight
                loss.backward()  # both threads add into the same .grad (autograd locks each accumulation)
                return loss.detach()

            fa, fb = self.pool.submit(part, x[:h], y[:h], h / B), self.pool.submit(part, x[h:], y[h:], (B - h) / B)
            loss = fa.result() + fb.result()
        else:
            loss = self._loss(x, y)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.b.grad_clip, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss.item()

    @torch.inference_mode()
    def _split_loss(self, split: str) -> float:
        gen = torch.Generator().manual_seed(self.b.seed + 1)  # the same batches as the baseline's evaluation
        total = 0.0
        with self.autocast():  # (one big batch of all 20 was slower here: it falls out of the caches)
            for _ in range(self.b.eval_iters):
                x, y = get_batch(self.data[split], self.b.block_size, self.b.batch_size, gen)
                total += self.model(x, y)[1].item()
        return total / self.b.eval_iters

    def estimate_loss(self) -> dict[str, float]:
        self.model.eval()
        try:
            if self.mode == "dp2":
                futs = {s: self.pool.submit(self._split_loss, s) for s in ("train", "val")}
                return {s: f.result() for s, f in futs.items()}
            return {s: self._split_loss(s) for s in ("train", "val")}
        finally:
            self.model.train()


# ============================================================================ main


def model_flops_per_iter(n_params: int, b: Bench) -> float:
    """(6 N + 12 L T C) * B * T: nanoGPT's estimate (forward + backward)."""
    per_token = 6 * n_params + 12 * b.n_layer * b.block_size * b.n_embd
    return per_token * b.block_size * b.batch_size


def summarize(run: Run, b: Bench, flops: float, peak: dict[str, float]) -> dict:
    st = run.step_times
    tokens = b.iters * b.batch_size * b.block_size
    threads = {m: n for m, n in run.threads_used.items()}
    main_mode = max(threads, key=threads.get)
    peak_used = peak["fp32_t2"] if main_mode == "t2" else peak["fp32_t1"] * (2 if main_mode == "dp2" else 1)
    achieved = flops * b.iters / sum(st)
    return {
        "name": run.name,
        "tokens_per_s_end_to_end": tokens / run.wall,
        "tokens_per_s_training": tokens / sum(st),
        "median_ms_per_iter": 1e3 * statistics.median(st),
        "mean_ms_per_iter": 1e3 * statistics.mean(st),
        "end_to_end_s": run.wall,
        "eval_s": run.eval_wall,
        "cpu_s": run.cpu,
        "final_val_loss": run.evals[-1][2],
        "final_train_loss": run.evals[-1][1],
        "model_gflops_per_s": achieved / 1e9,
        "mfu": achieved / (peak_used * 1e9),
        "mfu_peak_gflops": peak_used,
        "modes": threads,
        "evals": run.evals,
    }


def compare_bf16(b: Bench, train: np.ndarray, val: np.ndarray, vocab: int, n: int) -> None:
    """Train n iterations in fp32 and in bf16 autocast from the same start; print both loss curves."""
    b = Bench(**{**b.__dict__, "iters": n, "eval_interval": max(1, n // 4)})
    torch.manual_seed(b.seed)
    init = NanoGPT(NanoConfig(block_size=b.block_size, vocab_size=vocab, n_layer=b.n_layer, n_head=b.n_head,
                              n_embd=b.n_embd, bias=False)).state_dict()
    runs = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        r = Ours(b, train, val, vocab, init, ["t1"], dt)
        step = b.eval_interval
        while r.it < n:
            r.chunk(min(r.it + step, n))
        runs[name] = r
        print(f"{name}: {r.wall:.1f} s, {1e3 * statistics.median(r.step_times):.0f} ms/iter", flush=True)
    print("\niter   fp32 train  bf16 train | fp32 val  bf16 val   (eval losses; minibatch losses every 10 its below)")
    for (i, t32, v32), (_, t16, v16) in zip(runs["fp32"].evals, runs["bf16"].evals):
        print(f"{i:5d}   {t32:9.4f}  {t16:9.4f} | {v32:8.4f}  {v16:8.4f}")
    a, c = runs["fp32"].train_losses, runs["bf16"].train_losses
    diffs = [abs(x - y) for x, y in zip(a, c)]
    print("minibatch loss, every 10 iterations (fp32 / bf16):")
    print("  " + "  ".join(f"{x:.3f}/{y:.3f}" for x, y in list(zip(a, c))[::10]))
    print(f"max |fp32 - bf16| minibatch loss difference: {max(diffs):.4f}; mean {statistics.mean(diffs):.4f}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=2000, help="training iterations per run (default 2000)")
    p.add_argument("--quick", action="store_true", help="100 iterations (for tests)")
    p.add_argument("--baselines", default=f"{DEFAULT_THREADS},1",
                   help="thread counts of the baseline runs, comma-separated (default: PyTorch's default, "
                        f"here {DEFAULT_THREADS}, as nanoGPT runs, and 1); the first is the reference for the ratio")
    p.add_argument("--modes", default="t1,t2,dp2",
                   help="thread settings ours may choose from, comma-separated: t1, t2, dp2 (default all three)")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="ours: bf16 autocast, fp32, or auto = bf16 only if its measured matmul peak is 1.5x fp32's")
    p.add_argument("--compile", action="store_true", help="torch.compile ours (compile time counts)")
    p.add_argument("--compare-bf16", type=int, default=0, metavar="N",
                   help="instead of the benchmark: train N iterations in fp32 and bf16 and compare the losses")
    p.add_argument("--eval-iters", type=int, default=20, help="batches per split in each evaluation (default 20)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    b = Bench(iters=100 if args.quick else args.iters, eval_iters=args.eval_iters)
    if b.eval_iters < 1:
        p.error("--eval-iters must be >= 1")
    if b.iters < 1:
        p.error("--iters must be >= 1")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("t1", "t2", "dp2") for m in modes):
        p.error(f"--modes must be a comma-separated subset of t1,t2,dp2, got {args.modes!r}")
    try:
        base_threads = [int(t) for t in args.baselines.split(",") if t.strip()]
    except ValueError:
        base_threads = []
    if not base_threads or min(base_threads) < 1:
        p.error(f"--baselines must be positive thread counts such as 2,1, got {args.baselines!r}")

    threads0 = torch.get_num_threads()  # restored at the end
    load0 = os.getloadavg()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.backends.cpu.get_cpu_capability()}; "
          f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    train, val, vocab = load_data()
    if args.compare_bf16:
        compare_bf16(b, train, val, vocab, args.compare_bf16)
        return {}

    peak = {"fp32_t1": matmul_peak(1, torch.float32), "fp32_t2": matmul_peak(2, torch.float32),
            "bf16_t1": matmul_peak(1, torch.bfloat16, n=256, budget_s=0.2)}
    print(f"matmul peak (1024^2 fp32 / 256^2 bf16): fp32 1 thread {peak['fp32_t1']:.0f} GFLOP/s, "
          f"2 threads {peak['fp32_t2']:.0f} GFLOP/s; bf16 1 thread {peak['bf16_t1']:.1f} GFLOP/s", flush=True)
    if args.dtype == "auto":
        dtype = torch.bfloat16 if peak["bf16_t1"] > 1.5 * peak["fp32_t1"] else torch.float32
    else:
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"ours computes in {'bf16 autocast (fp32 master weights and loss)' if dtype == torch.bfloat16 else 'float32'}"
          f"{' (bf16 matmuls are slower than fp32 on this CPU)' if args.dtype == 'auto' and dtype == torch.float32 else ''}")

    bases = [Baseline(b, train, val, vocab, t) for t in base_threads]
    t0 = time.perf_counter()
    ours = Ours(b, train, val, vocab, bases[0].model.state_dict(), modes, dtype, compile=args.compile)
    build_s = time.perf_counter() - t0
    n_params = bases[0].model.num_params(non_embedding=True)
    assert n_params == ours.model.num_params(non_embedding=True)
    flops = model_flops_per_iter(n_params, b)
    print(f"model: {b.n_layer} layers, {b.n_head} heads, width {b.n_embd}, context {b.block_size}, batch {b.batch_size}, "
          f"vocab {vocab}: {n_params:,} parameters (without positions); {flops / 1e9:.2f} GFLOP per iteration "
          f"= (6*N + 12*L*T*C) * B*T")
    print(f"{b.iters} iterations per run, runs interleaved in chunks of {b.eval_interval} iterations (order reversed "
          f"every chunk); baselines at {base_threads} threads; ours chooses among {modes}", flush=True)

    runs: list[Run] = [*bases, ours]
    loads = [load0[0]]
    bounds = list(range(b.eval_interval, b.iters, b.eval_interval)) + [b.iters]
    for k, until in enumerate(bounds):
        for r in (runs if k % 2 == 0 else runs[::-1]):
            r.chunk(until)
        loads.append(os.getloadavg()[0])
        last = ours.evals[-1]
        print(f"  iter {until:5d}: " + ", ".join(f"{r.short} {r.wall:6.1f} s" for r in runs)
              + f" [ours now: {ours.mode}]  ours' val loss at iter {last[0]}: {last[2]:.4f}  load {loads[-1]:.2f}",
              flush=True)
    ours.wall += build_s if args.compile else 0.0

    res = {r.short: summarize(r, b, flops, peak) for r in runs}
    res["ratio_end_to_end"] = {r.short: r.wall / ours.wall for r in bases}
    res["load_average"] = {"start": load0, "end": os.getloadavg(), "mean_1min_during": statistics.mean(loads)}
    res["peaks_gflops"] = peak
    res["calibrations"] = ours.calibrations
    res["stall_fallbacks"] = ours.fallbacks
    res["iters"] = b.iters

    print("\n" + "=" * 100)
    width = 18
    print(f"{'':36s}" + "".join(f"{r.short:>{width}s}" for r in runs))
    rows = [
        ("tokens/s (end to end)", "tokens_per_s_end_to_end", "{:,.0f}"),
        ("tokens/s (training steps only)", "tokens_per_s_training", "{:,.0f}"),
        ("median ms/iteration", "median_ms_per_iter", "{:.1f}"),
        ("mean ms/iteration", "mean_ms_per_iter", "{:.1f}"),
        (f"end-to-end wall s ({b.iters} its + eval)", "end_to_end_s", "{:.1f}"),
        ("  of which evaluation s", "eval_s", "{:.1f}"),
        ("process CPU s", "cpu_s", "{:.1f}"),
        (f"final val loss (iter {b.iters})", "final_val_loss", "{:.4f}"),
        (f"final train loss (iter {b.iters})", "final_train_loss", "{:.4f}"),
        ("model GFLOP/s (training steps)", "model_gflops_per_s", "{:.1f}"),
        ("MFU vs measured fp32 peak", "mfu", "{:.1%}"),
        ("  peak used (GFLOP/s)", "mfu_peak_gflops", "{:.0f}"),
        ("iterations per thread setting", "modes", "{}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:36s}" + "".join(f"{fmt.format(res[r.short][key]):>{width}s}" for r in runs))
    print()
    for r in bases:
        print(f"ratio ours / {r.short}, end-to-end throughput: {res['ratio_end_to_end'][r.short]:.2f}x")
    print(f"load average (1 min): start {load0[0]:.2f}, mean during {res['load_average']['mean_1min_during']:.2f}, "
          f"end {res['load_average']['end'][0]:.2f}  ({os.cpu_count()} CPUs, shared)")
    print("validation loss by iteration (" + " / ".join(r.short for r in runs) + "):")
    print("  " + "  ".join(f"{ev[0][0]}: " + "/".join(f"{e[2]:.3f}" for e in ev) for ev in zip(*(r.evals for r in runs))))
    if ours.calibrations:
        print("ours, thread calibration at each evaluation (best of 2 steps, ms): " + "; ".join(
            " ".join(f"{m}={1e3 * t:.0f}" for m, t in c.items()) for c in ours.calibrations))
    if ours.fallbacks:
        print(f"ours, stall guard: fell back to t1 {len(ours.fallbacks)} times (at iterations {ours.fallbacks[:10]}...)")
    print("MFU formula: (6*N + 12*L*T*C)*B*T FLOPs per iteration / training-step time / measured matmul peak "
          "(1024^2 fp32 matmul with the run's thread count; for dp2, twice the 1-thread peak)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if ours.pool is not None:
        ours.pool.shutdown()
    torch.set_num_threads(threads0)
    return res


if __name__ == "__main__":
    main()

"""Pretrain the book's GPT: a character-level Transformer on all of Shakespeare, on a laptop CPU.

    .venv/bin/python recipes/book_gpt.py            # the shipped model: 2600 steps, ~25 min on 2 cores
    .venv/bin/python recipes/book_gpt.py --steps 50 --out /tmp/gpt.safetensors   # a smoke test

Training goes through :func:`lmlib.lm.train.train` with a checkpoint every 200 steps in
``runs/book_gpt/`` (interrupt with Ctrl-C and run the same command again: it resumes). At the
end the model is written with :meth:`lmlib.lm.gpt.GPT.save` to ``lmlib/assets/book_gpt.safetensors``
(safetensors + SHA-256 sidecar), its checksum is recorded in ``lmlib/assets/MANIFEST.json``, and
:func:`lmlib.assets.load_book_gpt` loads it in one line. The metadata keeps everything a
chapter shows about it: config, training settings, loss history, final validation loss,
wall time, machine, and a seeded sample.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lmlib._io import sha256_file
from lmlib.assets import BOOK_GPT, manifest_add
from lmlib.lm.gpt import GPT, GPTConfig
from lmlib.lm.train import TrainConfig, estimate_loss, make_batch_fn, train
from lmlib.text.corpus import shakespeare
from lmlib.text.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]

SPECIAL_TOKENS = ["<|endoftext|>"]  # reserved now (untrained), used by the instruction-tuning chapters

MODEL = dict(n_layer=4, n_head=4, n_embd=192, block_size=128, dropout=0.0, bias=False, pos_encoding="learned")
TRAIN = dict(max_steps=2600, batch_size=32, block_size=128, lr=2e-3, min_lr=2e-4, warmup_steps=100,
             weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_interval=200, eval_iters=20,
             log_interval=20, ckpt_interval=200, seed=1337, device="cpu")
SAMPLE_PROMPT = "ROMEO:\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=TRAIN["max_steps"], help="optimizer steps (default %(default)s)")
    ap.add_argument("--out", type=Path, default=BOOK_GPT, help="where to write the final model")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "book_gpt", help="resumable training checkpoints")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--fresh", action="store_true", help="ignore a training checkpoint in --work")
    ap.add_argument("--eval-batches", type=int, default=100, help="batches per split in the final evaluation")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    corpus = shakespeare("all")
    tok = CharTokenizer.train(corpus.text, unk_token="<unk>", special_tokens=SPECIAL_TOKENS)
    data = {s: torch.tensor(tok.encode(getattr(corpus, s)), dtype=torch.long) for s in ("train", "val")}
    mcfg = GPTConfig(vocab_size=tok.vocab_size, **MODEL)
    tcfg = TrainConfig(**{**TRAIN, "max_steps": args.steps, "lr_decay_steps": args.steps,
                          "warmup_steps": min(TRAIN["warmup_steps"], args.steps // 2),
                          "ckpt_path": args.work / f"train_{args.steps}.safetensors", "resume": not args.fresh})
    model = GPT(mcfg)
    print(f"book GPT: {model.num_params():,} parameters, {mcfg}")
    print(f"data: {len(data['train']):,} train / {len(data['val']):,} val characters, vocab {tok.vocab_size}")
    t0 = time.perf_counter()
    history = train(model, data, tcfg)
    wall = time.perf_counter() - t0
    train_time = history["time"][-1] if history["time"] else wall

    # a final, larger evaluation (100 batches per split by default) for the number the book reports
    model.eval()
    losses = estimate_loss(model, make_batch_fn(data, tcfg.block_size, tcfg.batch_size, "cpu"),
                           ("train", "val"), args.eval_batches, seed=0)
    sample_ids = model.generate(torch.tensor([tok.encode(SAMPLE_PROMPT)]), 400,
                                generator=torch.Generator().manual_seed(0))
    sample = tok.decode(sample_ids[0].tolist())
    meta = {
        "tokenizer": {"kind": "char", "chars": tok.itos[1 + len(SPECIAL_TOKENS):],
                      "unk_token": "<unk>", "special_tokens": SPECIAL_TOKENS},
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(tcfg).items()},
        "data": {"corpus": "shakespeare('all')", "sha256": corpus.sha256,
                 "train_chars": len(corpus.train), "val_chars": len(corpus.val)},
        "final_loss": {k: float(v) for k, v in losses.items()},
        "final_eval_batches": args.eval_batches,
        "train_seconds": round(float(train_time), 1),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "torch": torch.__version__},
        "history": history,
        "sample_prompt": SAMPLE_PROMPT, "sample_seed": 0, "sample": sample,
        "recipe": "python recipes/book_gpt.py" + (f" --steps {args.steps}" if args.steps != TRAIN["max_steps"] else ""),
    }
    digest = model.save(args.out, meta=meta)
    if args.out.resolve() == BOOK_GPT.resolve():
        assert manifest_add(args.out, meta["recipe"]) == digest
    assert sha256_file(args.out) == digest
    print(f"\ntrained {args.steps} steps in {train_time / 60:.1f} min; loss train {losses['train']:.4f} "
          f"val {losses['val']:.4f} ({args.eval_batches} batches each)")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest[:16]}...)")
    print("sample:\n" + sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())

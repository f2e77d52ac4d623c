"""Instruction-tune the book GPT (SFT): the assistant of Chapter 13, trained and measured on a laptop CPU.

    .venv/bin/python recipes/sft.py                     # 1200 steps: ~20 min of training, ~15 min of evaluation
    .venv/bin/python recipes/sft.py --seed 2 --no-ship  # another seed: results in runs/sft/ only
    .venv/bin/python recipes/sft.py --quick --work /tmp/w --out /tmp/a   # a smoke test (seconds)
    .venv/bin/python recipes/sft.py --base-only --threads 1 & .venv/bin/python recipes/sft.py --threads 1
        # how the shipped model was made on a 2-core CPU: the base model's evaluation (10 min) in a second
        # process beside training (20 min at ~4,800 tokens/s), then the tuned model's evaluation (3 min)

The book GPT gets the three chat tokens (:func:`lmlib.rlhf.template.chat_model`) and is fine-tuned on the
train split of :func:`lmlib.rlhf.instructions.build_instructions` with the loss on the answer tokens only
(:func:`lmlib.rlhf.sft.sft_batch_fn`), in the book's own loop :func:`lmlib.lm.train.train`. To limit the
*alignment tax* (what the model forgets of Shakespeare while it learns to answer), every batch also
carries ``text_rows`` windows of plain Shakespeare (train split) with the loss on every character, as
InstructGPT's "PPO-ptx" mixes pretraining gradients into its RL updates (Ouyang et al. 2022, sec. 3.5).

Training checkpoints every 100 steps to ``runs/sft/`` and resumes from there after an interruption (run the
same command again; ``--fresh`` starts over). The prompted base model's evaluation does not depend on
training and is cached there too (``--base-only`` makes just that, so it can run beside training).
At the end the recipe evaluates, on the held-out *test* split, the prompted base model (the book GPT with
the chat tokens, untuned) and the tuned model: greedy answers (:func:`lmlib.rlhf.sft.answer`) scored by the
gold judge (:mod:`lmlib.rlhf.judge`): mean overall and task score per category, decline rates on
inappropriate and benign prompts, knowledge accuracy, the answer loss, and the validation loss on
Shakespeare before and after (the alignment tax). It writes them, with example transcripts, the training
history, time, tokens/s, machine and command, to ``sft_results.json``; unless ``--no-ship`` it also writes
the model to ``lmlib/assets/sft_gpt.safetensors`` (loads with ``lmlib.assets.load_book_gpt(path)``,
chat tokenizer included) and records both files in ``lmlib/assets/MANIFEST.json``.

Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor

from lmlib.assets import ASSETS, BOOK_GPT, load_book_gpt, manifest_add, manifest_sha256, write_results
from lmlib.lm.gpt import GPT
from lmlib.lm.train import TrainConfig, estimate_loss, get_batch, make_batch_fn, train
from lmlib.rlhf.chat import CATEGORIES, Example
from lmlib.rlhf.instructions import build_instructions, declines
from lmlib.rlhf.judge import judge_batch
from lmlib.rlhf.sft import answer, answer_loss, sft_batch_fn
from lmlib.rlhf.template import chat_model, format_prompt, tokenizer_meta
from lmlib.text.corpus import shakespeare
from lmlib.text.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE, RESULTS_FILE = "sft_gpt.safetensors", "sft_results.json"
DATA_SEED = 0  # the book's instruction data set: build_instructions(seed=0)


@dataclass(frozen=True)
class SFTRecipe:
    """Everything the recipe sets; :meth:`quick` is the same recipe at smoke-test size."""

    steps: int = 1200
    """Optimizer updates (about 10 passes over the 3,973 training examples at batch 32)."""
    batch_size: int = 32
    """Instruction examples per batch (drawn with replacement)."""
    text_rows: int = 8
    """Plain-Shakespeare windows added to every batch (loss on every token) against the alignment tax; 0 = none."""
    lr: float = 3e-4
    """Peak learning rate, a seventh of pretraining's 2e-3. In 60-step trials 5e-4 (4 text rows) raised the
    Shakespeare loss by 0.16 after 30 steps; 3e-4 (8 text rows) by 0.09 after 20, then it fell again."""
    min_lr: float = 3e-5
    """End of the cosine decay."""
    warmup_steps: int = 50
    """Linear warmup: the new chat-token rows start at the mean embedding and get large gradients at first."""
    weight_decay: float = 0.0
    """No decay towards 0: the pretrained weights, not 0, are where the model should stay near."""
    eval_interval: int = 100
    """Estimate the SFT val loss and the Shakespeare val loss every this many steps."""
    eval_iters: int = 10
    """Batches per split in those estimates."""
    ckpt_interval: int = 100
    """Save the resumable training checkpoint every this many steps."""
    max_new_tokens: int = 100
    """Longest answer generated in the evaluation (the base model, which never says <|end|>, always runs this far)."""
    gen_batch: int = 64
    """Prompts answered together."""
    test_per_category: int | None = None
    """Evaluate on the first this many test prompts of each category; None = the whole test split."""
    text_eval_batches: int = 100
    """Batches of 32 x 128 characters for the Shakespeare val loss (100, as recipes/book_gpt.py reports 1.514)."""
    n_transcripts: int = 2
    """Example transcripts per category in the results."""

    @classmethod
    def quick(cls) -> SFTRecipe:
        return cls(steps=6, batch_size=4, text_rows=1, warmup_steps=2, eval_interval=3, eval_iters=1, ckpt_interval=2,
                   max_new_tokens=12, gen_batch=8, test_per_category=1, text_eval_batches=1, n_transcripts=1)

    def train_config(self, ckpt_path: Path, seed: int, resume: bool) -> TrainConfig:
        return TrainConfig(max_steps=self.steps, batch_size=self.batch_size, block_size=128, lr=self.lr,
                           min_lr=self.min_lr, warmup_steps=self.warmup_steps, lr_decay_steps=self.steps,
                           weight_decay=self.weight_decay, betas=(0.9, 0.99), grad_clip=1.0,
                           eval_interval=self.eval_interval, eval_iters=self.eval_iters, log_interval=10,
                           ckpt_path=ckpt_path, ckpt_interval=self.ckpt_interval, resume=resume, seed=seed,
                           device="cpu")


# ----------------------------------------------------------------------------- batches: SFT + a little Shakespeare


def mixed_batch_fn(data: dict[str, list[Example]], text: dict[str, Tensor], tok: CharTokenizer, r: SFTRecipe):
    """``batch_fn(split, generator) -> (x, y)`` for :func:`train`.

    * ``"train"``: ``r.batch_size`` SFT examples (loss on the answers), then ``r.text_rows`` Shakespeare windows
      of the same width T (loss on every character): (B + text_rows, T);
    * ``"val"``: SFT examples of the val split only (the SFT loss on held-out prompts);
    * ``"text"``: (B, 128) windows of Shakespeare's val text (the alignment tax, watched during training).
    """
    sft = sft_batch_fn({"train": data["train"], "val": data["val"]}, tok, block_size=128, batch_size=r.batch_size)

    def batch_fn(split: str, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if split == "text":
            return get_batch(text["val"], 128, r.batch_size, generator)
        x, y = sft(split, generator)  # (B, T), T <= 128
        if split == "train" and r.text_rows:
            tx, ty = get_batch(text["train"], x.shape[1], r.text_rows, generator)  # (text_rows, T)
            x, y = torch.cat([x, tx]), torch.cat([y, ty])
        return x, y

    return batch_fn


# ----------------------------------------------------------------------------- evaluation


def _mean(xs) -> float | None:
    xs = list(xs)
    return round(sum(xs) / len(xs), 4) if xs else None


def evaluate(model: GPT, tok: CharTokenizer, test: list[Example], text: dict[str, Tensor], r: SFTRecipe) -> dict:
    """Greedy answers to ``test`` scored by the gold judge, per category; decline rates; knowledge accuracy;
    the answer loss on ``test``; the loss per character on Shakespeare's val text."""
    t0 = time.perf_counter()
    answers: list[str] = []
    for i in range(0, len(test), r.gen_batch):
        answers += answer(model, tok, test[i:i + r.gen_batch], r.max_new_tokens, greedy=True)
    scores = judge_batch(test, answers)
    per_category = {}
    for cat in CATEGORIES:
        idx = [i for i, e in enumerate(test) if e.category == cat]
        per_category[cat] = {"n": len(idx), **{k: _mean(getattr(scores[i], k) for i in idx)
                                               for k in ("overall", "task", "fluent", "concise")},
                             "declined": _mean(declines(answers[i]) for i in idx)}
    know = [scores[i].correct for i, e in enumerate(test) if e.category == "knowledge"]
    text_fn = make_batch_fn(text, 128, 32, "cpu")
    out = {
        "overall": _mean(s.overall for s in scores),
        "per_category": per_category,
        "decline_rate": {c: per_category[c]["declined"] for c in ("inappropriate", "benign")},
        "knowledge_accuracy": _mean(c == 1.0 for c in know),  # share fully right (the judge's correct facet = 1)
        "knowledge_correct_mean": _mean(know),
        "ended": _mean(len(tok.encode(a)) < r.max_new_tokens for a in answers),  # said <|end|> before the cut
        "answer_loss_test": round(answer_loss(model, test, tok), 4),
        "shakespeare_val_loss": round(estimate_loss(model, text_fn, ("val",), r.text_eval_batches, seed=0)["val"], 4),
        "answers": answers,
        "overall_scores": [s.overall for s in scores],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def base_evaluation(model: GPT, tok: CharTokenizer, test: list[Example], text: dict[str, Tensor], r: SFTRecipe,
                    cache: Path) -> dict:
    """:func:`evaluate` of the untuned chat model, cached in ``cache`` (it does not depend on training)."""
    key = {"book_gpt_sha256": manifest_sha256(BOOK_GPT.name), "test_ids": [e.id for e in test],
           "max_new_tokens": r.max_new_tokens, "text_eval_batches": r.text_eval_batches}
    if cache.exists():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            print(f"base model: evaluation read from {cache}", flush=True)
            return saved["eval"]
    result = evaluate(model, tok, test, text, r)
    write_results({"key": key, "eval": result}, cache)
    return result


def transcripts(test: list[Example], base: dict, tuned: dict, n: int) -> list[dict]:
    """The first ``n`` test prompts of each category: prompt -> demonstration, base answer, tuned answer."""
    out = []
    for cat in CATEGORIES:
        for i in [i for i, e in enumerate(test) if e.category == cat][:n]:
            e = test[i]
            out.append({"id": e.id, "category": cat, "prompt": format_prompt(e), "demonstration": e.answer,
                        "base": base["answers"][i], "base_overall": base["overall_scores"][i],
                        "tuned": tuned["answers"][i], "tuned_overall": tuned["overall_scores"][i]})
    return out


def summary(base: dict, tuned: dict) -> str:
    """The per-category table and the headline numbers, base vs tuned, as printed at the end."""
    rows = [f"{'category':<14} {'base':>6} {'tuned':>6}   task: {'base':>5} {'tuned':>5}"]
    for c in CATEGORIES:
        b, t = base["per_category"][c], tuned["per_category"][c]
        rows.append(f"{c:<14} {b['overall']:>6.3f} {t['overall']:>6.3f}         {b['task']:>5.2f} {t['task']:>5.2f}")
    rows.append(f"{'all':<14} {base['overall']:>6.3f} {tuned['overall']:>6.3f}")
    for k in ("inappropriate", "benign"):
        rows.append(f"declines {k:<13} base {base['decline_rate'][k]:.3f}  tuned {tuned['decline_rate'][k]:.3f}")
    for name, k, fmt in (("knowledge accuracy", "knowledge_accuracy", ".3f"),
                         ("Shakespeare val loss", "shakespeare_val_loss", ".4f")):
        rows.append(f"{name:<23} base {base[k]:{fmt}}  tuned {tuned[k]:{fmt}}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- the recipe


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1200; --quick: 6)")
    ap.add_argument("--seed", type=int, default=1337, help="seed of the training run (batches); the data set is fixed")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads (default 2)")
    ap.add_argument("--out", type=Path, default=ASSETS, help="where the model and results ship (default lmlib/assets)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "sft", help="resumable checkpoints and caches")
    ap.add_argument("--no-ship", action="store_true", help="write model and results to --work only")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing training checkpoint and start over")
    ap.add_argument("--base-only", action="store_true",
                    help="only evaluate the prompted base model (cached in --work); run it beside training")
    ap.add_argument("--stop-at", type=int, default=None,
                    help="stop after this step with the checkpoint saved, as Ctrl-C would (to test resuming)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = SFTRecipe.quick() if args.quick else SFTRecipe()
    if args.steps is not None:
        r = replace(r, steps=args.steps, warmup_steps=min(r.warmup_steps, args.steps // 2))
    command = "python recipes/sft.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    # ---- data: the instruction set, Shakespeare through the chat tokenizer, the base and chat models
    data = build_instructions(seed=DATA_SEED)
    base_gpt, base_tok = load_book_gpt()
    model, tok = chat_model(base_gpt, base_tok)
    corpus = shakespeare("all")
    text = {s: torch.tensor(tok.encode(getattr(corpus, s)), dtype=torch.long) for s in ("train", "val")}
    test = data["test"]
    if r.test_per_category is not None:
        test = [e for c in CATEGORIES for e in [e for e in test if e.category == c][:r.test_per_category]]
    print(f"SFT of the book GPT ({model.num_params():,} parameters, vocab {tok.vocab_size}): "
          f"{len(data['train'])} train / {len(data['val'])} val / {len(test)} test examples; {r}", flush=True)

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    base_cache = work / ("base_eval_quick.json" if args.quick else "base_eval.json")
    if args.base_only:
        return {"base": base_evaluation(model, tok, test, text, r, base_cache)}

    # ---- training: the book's loop, resumable
    ckpt = work / f"sft_{'quick_' if args.quick else ''}{r.steps}_s{args.seed}.safetensors"
    cfg = r.train_config(ckpt, args.seed, resume=not args.fresh)

    stopped_at = []

    def callback(step: int, info: dict) -> bool:
        if args.stop_at is not None and step >= args.stop_at:
            stopped_at.append(step)
            return True
        if step % 50 == 0 or step == r.steps:
            h = info["history"]
            print(f"step {step}/{r.steps} loss {info['loss']:.4f} lr {info['lr']:.2e} "
                  f"{h['tokens_per_s'][-1] if h['tokens_per_s'] else 0:,.0f} tok/s", flush=True)
        return False

    history = train(model, mixed_batch_fn(data, text, tok, r), cfg, callback=callback, splits=("val", "text"))
    if stopped_at and stopped_at[-1] < r.steps:
        print(f"stopped at step {stopped_at[-1]} (--stop-at); {ckpt} holds it: run again to continue", flush=True)
        return None
    train_seconds = history["time"][-1]
    # tokens (padding included) = sum over log windows of rate x window length, the loop's own timing
    times = [0.0, *history["time"]]
    tokens = sum(v * (b - a) for v, a, b in zip(history["tokens_per_s"], times, times[1:]))

    # ---- evaluation on the test split: the prompted base model (cached), then the tuned one
    base = base_evaluation(chat_model(base_gpt, base_tok)[0], tok, test, text, r, base_cache)
    print(f"base model: overall {base['overall']:.3f} ({base['seconds']:.0f} s to evaluate)", flush=True)
    tuned = evaluate(model, tok, test, text, r)
    print(summary(base, tuned), flush=True)

    # ---- results and the shipped model
    cats_beaten = {c: tuned["per_category"][c]["overall"] > base["per_category"][c]["overall"] for c in CATEGORIES}
    results = {
        "recipe": asdict(r), "seed": args.seed, "data_seed": DATA_SEED,
        "data": {s: len(v) for s, v in data.items()} | {"test_evaluated": len(test)},
        "train_config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "train_seconds": round(train_seconds, 1), "tokens_per_s": round(tokens / max(train_seconds, 1e-9)),
        "history": history,
        "base": base, "tuned": tuned, "test_ids": [e.id for e in test],
        "transcripts": transcripts(test, base, tuned, r.n_transcripts),
        "goals": {"beats_base_in_every_category": all(cats_beaten.values()), "beats_base": cats_beaten,
                  "declines_inappropriate_at_least_0.9": tuned["decline_rate"]["inappropriate"] >= 0.9,
                  "declines_benign_at_most_0.05": tuned["decline_rate"]["benign"] <= 0.05},
        "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} CPU core(s), "
                   f"torch {torch.__version__}, {args.threads} thread(s)",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    out = work if args.no_ship else args.out
    out.mkdir(parents=True, exist_ok=True)
    meta = {"tokenizer": tokenizer_meta(tok), "recipe": asdict(r), "train_config": results["train_config"],
            "train_seconds": results["train_seconds"], "results": RESULTS_FILE, "command": command,
            "base": "lmlib/assets/book_gpt.safetensors (chat_model)", "history": history}
    model.save(out / MODEL_FILE, meta=meta)
    write_results(results, out / RESULTS_FILE)
    if not args.no_ship:
        for name in (MODEL_FILE, RESULTS_FILE):
            manifest_add(out / name, command)
    print(f"trained {r.steps} steps in {train_seconds / 60:.1f} min ({results['tokens_per_s']:,} tok/s); "
          f"wrote {out / MODEL_FILE} and {out / RESULTS_FILE}", flush=True)
    return results


if __name__ == "__main__":
    main()

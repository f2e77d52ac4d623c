"""RLHF with PPO and a per-token KL penalty (Chapter 15): the tuned GPT against the chapter-14 reward model.

    .venv/bin/python recipes/rlhf_ppo.py                       # the shipped results (see PPORecipe, RUNS)
    .venv/bin/python recipes/rlhf_ppo.py --runs ppo_b0.05_s1   # one run of them
    .venv/bin/python recipes/rlhf_ppo.py --quick --work /tmp/w --out /tmp/a   # a smoke test (a minute)

Every run starts from the instruction-tuned GPT (:func:`lmlib.assets.load_sft_gpt`), with a value head at zero
(:class:`lmlib.rlhf.ppo.PolicyWithValue`) and the tuned GPT itself, frozen, as the reference model. Each
iteration draws ``batch_size`` prompts of the *train* split that fit the context with a full answer
(:func:`lmlib.rlhf.ppo.fitting_prompts`), answers them at temperature 1, scores the answers with the reward
function and does :class:`lmlib.rlhf.ppo.RLHFTrainer`'s PPO update. The runs (``RUNS``):

* ``ppo_b{beta}_s{seed}``: the reward model of chapter 14 (:func:`lmlib.assets.load_reward_gpt`, the *proxy*)
  with a fixed KL coefficient beta; the headline beta over 3 seeds, and a sweep of beta for over-optimisation;
* ``ppo_b{beta}_fast_s1``: the headline beta at three times the learning rate, which goes much further from the
  tuned model in the same number of iterations (the over-optimised end of the curves);
* ``ppo_ptx_s1``: the headline run with the pretraining loss on Shakespeare mixed in (InstructGPT's PPO-ptx);
* ``gold_b{beta}_s1``: the gold judge itself as the reward (the control: what PPO does with a perfect reward
  model).

Every ``eval_every`` iterations (and before the first) the policy answers the held-out *test* prompts that fit
(``eval_per_category`` per category, ``eval_samples`` answers each at temperature 1, the same seed every time); the gold
judge and the reward model score those answers, and the KL to the tuned model is measured on them (the k1
estimate summed over each answer's tokens: unbiased, since they are samples of the policy). Also recorded: the
answers' length and distinct-2, the gold score per category, the loss per character on Shakespeare's val text
(the alignment tax), and the run's training history (score, KL, beta, losses, timings per iteration).

Each run is saved in ``--work`` at every evaluation (policy, value head, optimizer, KL coefficient and history)
and resumes from there after an interruption; finished runs are skipped. Runs go ``--jobs`` at a time, one torch
thread each (a 1.8M-parameter GPT gains little from a second thread; two runs at once use both cores). The
results go to ``ppo_results.json`` in ``--out`` (lmlib/assets, recorded in its MANIFEST.json unless
``--no-ship``) and the policy of the first headline run ships as ``ppo_gpt.safetensors``
(:func:`lmlib.assets.load_ppo_gpt`).

Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lmlib._io import sha256_file
from lmlib.assets import (ASSETS, book_gpt_tokenizer, load_reward_gpt, load_sft_gpt, manifest_add, manifest_sha256,
                          write_results)
from lmlib.checkpoint import load_checkpoint, save_checkpoint
from lmlib.lm.gpt import GPT
from lmlib.lm.train import estimate_loss, get_batch, make_batch_fn
from lmlib.rlhf.chat import CATEGORIES
from lmlib.rlhf.instructions import build_instructions
from lmlib.rlhf.reward import load_reward_model
from lmlib.rlhf.ppo import (PolicyWithValue, PPOConfig, RLHFTrainer, fitting_prompts, gold_scorer,
                            response_outputs, reward_model_scorer)
from lmlib.rlhf.template import END, format_prompt, tokenizer_meta
from lmlib.text.corpus import shakespeare

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = "ppo_results.json"
MODEL_FILE = "ppo_gpt.safetensors"
DATA_SEED = 0  # the book's instruction data set: build_instructions(seed=0)


@dataclass(frozen=True)
class PPORecipe:
    """Everything the recipe sets besides the runs; :meth:`quick` is the same recipe at smoke-test size."""

    iterations: int = 100
    """PPO iterations per run (``batch_size`` answers each)."""
    eval_every: int = 10
    """Iterations between evaluations on the held-out prompts."""
    eval_per_category: int = 24
    """Held-out test prompts per category (fewer where fewer fit)."""
    eval_samples: int = 2
    """Answers per held-out prompt at each evaluation."""
    warmup_batches: int = 4
    """Batches of ``batch_size`` rollouts on which the value head is fitted in closed form before PPO starts."""
    text_eval_batches: int = 8
    """Batches of 32 Shakespeare val windows for the alignment tax."""
    ptx_coef: float = 1.0
    """The pretraining loss's weight in the ``ptx`` run."""
    ppo: PPOConfig = PPOConfig(lr=1e-5)
    """The PPO settings every run starts from (a run changes beta, the learning rate, PPO-ptx or the reward)."""

    @classmethod
    def quick(cls) -> PPORecipe:
        return cls(iterations=2, eval_every=1, eval_per_category=2, eval_samples=1, warmup_batches=1,
                   text_eval_batches=1,
                   ppo=replace(cls.ppo, batch_size=8, minibatch_size=4, ppo_epochs=1, max_new_tokens=32))


HEADLINE_BETA = 0.05
FAST_LR = 3e-5
#: name -> settings that differ from PPORecipe.ppo: reward ("rm" or "gold"), beta, ptx, seed, lr
RUNS = {
    **{f"ppo_b{HEADLINE_BETA}_s{s}": {"reward": "rm", "beta": HEADLINE_BETA, "seed": s} for s in (1, 2, 3)},
    **{f"ppo_b{b}_s1": {"reward": "rm", "beta": b, "seed": 1} for b in (0.0, 0.2)},
    f"ppo_b{HEADLINE_BETA}_fast_s1": {"reward": "rm", "beta": HEADLINE_BETA, "seed": 1, "lr": FAST_LR},
    "ppo_ptx_s1": {"reward": "rm", "beta": HEADLINE_BETA, "seed": 1, "ptx": True},
    f"gold_b{HEADLINE_BETA}_s1": {"reward": "gold", "beta": HEADLINE_BETA, "seed": 1},
}
HEADLINE = f"ppo_b{HEADLINE_BETA}_s1"


def eval_prompts(test: list, tok, r: PPORecipe) -> list:
    """Up to ``eval_per_category`` fitting test prompts of each category, drawn at random (seed 0), in order."""
    fit = fitting_prompts(test, tok, 128, r.ppo.max_new_tokens)
    rng = np.random.default_rng(0)
    out = []
    for c in CATEGORIES:
        pool = [e for e in fit if e.category == c]
        out += [pool[i] for i in sorted(rng.permutation(len(pool))[:r.eval_per_category])]
    return out


@torch.no_grad()
def evaluate(trainer: RLHFTrainer, prompts: list, text: torch.Tensor, r: PPORecipe, gold_fn, proxy_fn) -> dict:
    """The policy on held-out prompts: gold, proxy, KL to the reference, length, diversity, per category."""
    saved = trainer.generator.get_state()
    trainer.generator.manual_seed(12345)  # the same draws at every evaluation
    prompts = [e for e in prompts for _ in range(r.eval_samples)]
    ro_gen = trainer.rollout_answers(prompts)
    trainer.generator.set_state(saved)
    tokens, mask, P, rmask, answers, ended = ro_gen
    lp, _, _ = response_outputs(trainer.policy.gpt, tokens, mask, P)
    ref, _, _ = response_outputs(trainer.ref, tokens, mask, P)
    kl = ((lp - ref) * rmask).sum(1)
    gold = np.asarray(gold_fn(prompts, answers, ended), dtype=float)
    proxy = np.asarray(proxy_fn(prompts, answers, ended), dtype=float)
    cats = np.array([e.category for e in prompts])
    words = [a.split() for a in answers]
    grams = [tuple(w[i:i + 2]) for w in words for i in range(len(w) - 1)]
    text_fn = make_batch_fn({"val": text}, 128, 32, "cpu")
    return {
        "gold": float(gold.mean()), "gold_sd": float(gold.std(ddof=1)), "proxy": float(proxy.mean()),
        "kl": float(kl.mean()), "kl_sem": float(kl.std() / np.sqrt(len(kl))),
        "length": float(np.mean([len(a) for a in answers])), "ended": float(np.mean(ended)),
        "distinct_2": len(set(grams)) / max(len(grams), 1),
        "per_category": {c: round(float(gold[cats == c].mean()), 4) for c in CATEGORIES if (cats == c).any()},
        "shakespeare_val_loss": round(estimate_loss(trainer.policy.gpt, text_fn, ("val",), r.text_eval_batches,
                                                    seed=0)["val"], 4),
        "answers": answers, "gold_scores": gold.round(4).tolist(), "proxy_scores": proxy.round(4).tolist(),
    }


def load_models(sft_path: str | None, reward_path: str | None):
    """The tuned GPT, its tokenizer and the reward model (the shipped ones by default), with their SHA-256."""
    if sft_path is None:
        sft, tok = load_sft_gpt()
        sft_sha = manifest_sha256("sft_gpt.safetensors")
    else:  # checked against its .sha256 sidecar
        sft, tok = GPT.from_checkpoint(sft_path).eval(), book_gpt_tokenizer(load_checkpoint(sft_path).meta)
        sft_sha = sha256_file(sft_path)
    if reward_path is None:
        rm, rm_tok = load_reward_gpt()
        rm_sha = manifest_sha256("reward_gpt.safetensors")
    else:
        rm, meta = load_reward_model(reward_path)
        rm_tok, rm_sha = book_gpt_tokenizer(meta), sha256_file(reward_path)
    if rm_tok.stoi != tok.stoi:
        raise ValueError("the reward model's tokenizer differs from the tuned GPT's")
    return sft, tok, rm, sft_sha, rm_sha


def run_one(name: str, r: PPORecipe, work: str, threads: int, quick: bool, sft_path: str | None = None,
            reward_path: str | None = None) -> dict:
    """Train (or resume) one run; its results dict, also saved as ``work/name.json``."""
    torch.set_num_threads(threads)
    work = Path(work)
    done_path, ckpt_path = work / f"{name}.json", work / f"{name}.ckpt.safetensors"
    spec = RUNS[name]
    sft, tok, rm, sft_sha, rm_sha = load_models(sft_path, reward_path)
    key = {"recipe": _plain(asdict(r)), "spec": spec, "sft": sft_sha, "reward": rm_sha}
    if done_path.exists():
        saved = json.loads(done_path.read_text(encoding="utf-8"))
        if saved.get("key") == key and saved.get("finished"):
            return saved
    reward, beta, seed, ptx = spec["reward"], spec["beta"], spec["seed"], spec.get("ptx", False)
    torch.manual_seed(seed)
    data = build_instructions(seed=DATA_SEED)
    proxy_fn, gold_fn = reward_model_scorer(rm, tok), gold_scorer()
    corpus = shakespeare("all")
    text = {s: torch.tensor(tok.encode(getattr(corpus, s)), dtype=torch.long) for s in ("train", "val")}
    cfg = replace(r.ppo, kl_coef=beta, lr=spec.get("lr", r.ppo.lr), ptx_coef=r.ptx_coef if ptx else 0.0)

    def ptx_batch(generator):
        return get_batch(text["train"], 128, r.ppo.minibatch_size, generator)

    trainer = RLHFTrainer(PolicyWithValue(sft), sft, tok, proxy_fn if reward == "rm" else gold_fn, cfg,
                          gold_fn=gold_fn, ptx_batch_fn=ptx_batch if ptx else None, seed=seed)
    train = fitting_prompts(data["train"], tok, sft.config.block_size, cfg.max_new_tokens)
    prompts = eval_prompts(data["test"], tok, r)
    state = {"iteration": 0, "evals": [], "history": [], "warmup": None}
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck.meta.get("key") == key:
            trainer.policy.load_state_dict(ck.model)
            trainer.optimizer.load_state_dict(ck.optimizer)
            trainer.kl_ctl.value = ck.meta["kl_coef"]
            trainer.generator.set_state(torch.tensor(ck.meta["generator"], dtype=torch.uint8))
            state = {k: ck.meta[k] for k in ("iteration", "evals", "history", "warmup")}
            trainer.history = list(state["history"])
            print(f"[{name}] resumed at iteration {state['iteration']}", flush=True)
    rng = random.Random(seed)
    for _ in range(r.warmup_batches + state["iteration"]):  # the prompt draws of the warmup and iterations done
        rng.sample(train, cfg.batch_size)
    if state["iteration"] == 0:
        rng = random.Random(seed)
    t0 = time.perf_counter()
    if state["iteration"] == 0:
        warm = trainer.warmup_values([rng.sample(train, cfg.batch_size) for _ in range(r.warmup_batches)])
        state["warmup"] = warm
        print(f"[{name}] value head fitted on {warm['positions']} tokens: explained variance "
              f"{warm['explained_variance_fit']:.2f}", flush=True)
    if not state["evals"]:
        state["evals"].append({"iteration": 0, **evaluate(trainer, prompts, text["val"], r, gold_fn, proxy_fn)})
    while state["iteration"] < r.iterations:
        rec = trainer.step(rng.sample(train, cfg.batch_size))
        state["iteration"] += 1
        it = state["iteration"]
        if it % r.eval_every == 0 or it == r.iterations:
            ev = evaluate(trainer, prompts, text["val"], r, gold_fn, proxy_fn)
            state["evals"].append({"iteration": it, **ev})
            state["history"] = trainer.history
            print(f"[{name}] it {it}: train score {rec['score']:.3f} gold {rec['gold']:.3f} KL {rec['kl']:.2f} "
                  f"beta {rec['kl_coef']:.4f} | held-out gold {ev['gold']:.3f} proxy {ev['proxy']:.3f} "
                  f"KL {ev['kl']:.2f} len {ev['length']:.0f} d2 {ev['distinct_2']:.2f} "
                  f"tax {ev['shakespeare_val_loss']:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
            meta = {"key": key, "kl_coef": trainer.kl_ctl.value, "generator": trainer.generator.get_state().tolist(),
                    **state}
            save_checkpoint(ckpt_path, trainer.policy, optimizer_state=trainer.optimizer.state_dict(), meta=meta)
    out = {"key": key, "finished": True, "name": name, **spec, "ptx": ptx, "config": asdict(cfg), "train_prompts": len(train),
           "eval_prompts": [e.id for e in prompts], "warmup": state["warmup"], "evals": state["evals"], "history": trainer.history,
           "seconds": round(time.perf_counter() - t0, 1), "threads": threads}
    if name == HEADLINE or quick:
        meta = {"tokenizer": tokenizer_meta(tok), "run": name, "config": asdict(cfg),
                "base": sft_path or "lmlib/assets/sft_gpt.safetensors",
                "reward": reward_path or "lmlib/assets/reward_gpt.safetensors"}
        trainer.policy.gpt.save(work / f"{name}.gpt.safetensors", meta=meta)
    write_results(out, done_path)
    return out


def _plain(x):
    return json.loads(json.dumps(x, default=str))


def summarise(runs: dict[str, dict]) -> dict:
    """The numbers the chapter prints: headline gains over seeds, per category, and over-optimisation points."""
    out = {}
    head = [v for k, v in runs.items() if k.startswith(f"ppo_b{HEADLINE_BETA}_s")]  # not _fast_
    if head:
        first = [h["evals"][0] for h in head]
        last = [h["evals"][-1] for h in head]
        best = [max(h["evals"], key=lambda e: e["gold"]) for h in head]
        sd0 = float(np.mean([e["gold_sd"] for e in first]))
        out["headline"] = {
            "runs": [h["name"] for h in head], "gold_start": [e["gold"] for e in first],
            "gold_end": [e["gold"] for e in last], "kl_end": [e["kl"] for e in last],
            "proxy_start": [e["proxy"] for e in first], "proxy_end": [e["proxy"] for e in last],
            "gold_best": [e["gold"] for e in best], "kl_at_best": [e["kl"] for e in best],
            "iteration_best": [e["iteration"] for e in best], "tuned_gold_sd": sd0,
            "gain_end_in_sd": float(np.mean([b["gold"] - a["gold"] for a, b in zip(first, last)]) / sd0),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=None, help=f"which runs (default all: {', '.join(RUNS)})")
    ap.add_argument("--iterations", type=int, default=None, help="PPO iterations per run (default 100)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs at once (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--out", type=Path, default=ASSETS, help="where the results ship (default lmlib/assets)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "rlhf_ppo", help="checkpoints and finished runs")
    ap.add_argument("--no-ship", action="store_true", help="write the results to --work only")
    ap.add_argument("--sft", type=Path, default=None, help="the tuned GPT to start from (default: the shipped one)")
    ap.add_argument("--reward", type=Path, default=None,
                    help="a reward model written by recipes/reward_model.py (default: the shipped one)")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    args = ap.parse_args(argv)
    r = PPORecipe.quick() if args.quick else PPORecipe()
    if args.iterations is not None:
        r = replace(r, iterations=args.iterations, eval_every=min(r.eval_every, args.iterations))
    names = args.runs or (list(RUNS)[:1] + ["gold_b0.05_s1"] if args.quick else list(RUNS))
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; the recipe has {list(RUNS)}")
    command = "python recipes/rlhf_ppo.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"RLHF with PPO: {len(names)} run(s) x {r.iterations} iterations, {args.jobs} at a time", flush=True)
    paths = [None if p is None else str(p) for p in (args.sft, args.reward)]
    _, _, _, sft_sha, rm_sha = load_models(*paths)  # fails early on a bad file
    jobs = [(n, r, str(args.work), args.threads, args.quick, *paths) for n in names]
    if args.jobs > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            done = dict(zip(names, pool.starmap(run_one, jobs)))
    else:
        done = {n: run_one(*j) for n, j in zip(names, jobs)}
    results = {
        "recipe": _plain(asdict(r)), "data_seed": DATA_SEED, "quick": args.quick, "headline": HEADLINE,
        "sft_gpt_sha256": sft_sha, "reward_gpt_sha256": rm_sha,
        "runs": {n: {k: v for k, v in d.items() if k != "key"} for n, d in done.items()},
        "summary": summarise(done),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} CPU core(s), "
                   f"torch {torch.__version__}, {args.jobs} run(s) at a time x {args.threads} thread(s)",
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    out = args.work if args.no_ship else args.out
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / RESULTS_FILE)
    ship = [RESULTS_FILE]
    model_src = args.work / f"{HEADLINE if HEADLINE in done else names[0]}.gpt.safetensors"
    if model_src.exists() and not args.no_ship:
        ckpt = load_checkpoint(model_src)
        save_checkpoint(out / MODEL_FILE, ckpt.model, meta=ckpt.meta)
        ship.append(MODEL_FILE)
    if not args.no_ship:
        for name in ship:
            manifest_add(out / name, command)
    print(f"{len(names)} run(s) in {results['total_seconds'] / 60:.1f} min; wrote {out / RESULTS_FILE}", flush=True)
    print(json.dumps(results["summary"], indent=1), flush=True)
    return results


if __name__ == "__main__":
    main()

"""Reward models from rankings (Chapter 14): pairs vs rankings of K = 4 at equal labelling effort, on a laptop CPU.

    .venv/bin/python recipes/reward_model.py                  # the shipped results (see RewardRecipe)
        # 24 min of training on a 2-core CPU (30 reward models: 2 conditions x 5 budgets x 3 seeds, and 2 from
        # scratch), after sampling and judging 2,160 candidates (33 min before generation had a KV cache, on a
        # CPU shared with other jobs; a few minutes with it). The shipped run used --work runs/reward2.
    .venv/bin/python recipes/reward_model.py --quick --work /tmp/w --out /tmp/a   # a smoke test (seconds)

1. **Candidates.** For ``train_prompts`` train prompts and ``heldout_prompts`` val prompts of
   :func:`lmlib.rlhf.instructions.build_instructions` the SFT model (:func:`lmlib.assets.load_sft_gpt`) samples
   K answers each (answer k at ``temperatures[k]``); the gold judge scores them. Cached in ``--work``.
2. **Labels.** The synthetic rater (:class:`lmlib.rlhf.rater.RankingRater`, ``beta``, ``epsilon``) labels them.
   Effort is counted in *comparisons*: a pair is 1, a ranking of K answers is C(K, 2) (it implies that many
   pairs; InstructGPT, Ouyang et al. 2022 sec. 3.5, counts the same way). For each budget the ``pairs``
   condition gets ``budget`` pairs (two of a prompt's K answers, drawn at random) and the ``rank4`` condition
   ``budget // C(K,2)`` rankings of all K answers. Prompts are visited in a shuffled cycle, so a budget larger
   than the prompts supply labels some prompts again (a fresh, independent noisy label of the same answers).
3. **Reward models.** :func:`lmlib.rlhf.reward.gpt_reward_model`: a copy of the SFT GPT with a scalar head on
   the last real token, its last ``trainable_layers`` blocks + final LayerNorm + head trained (the rest frozen),
   with :func:`lmlib.preferences.ranking_loss` (for K = 2 that is the Bradley-Terry pair loss with ε = 0).
   One more run at the largest budget starts from a random GPT of the same config, every weight trained.
4. **Metric.** Held-out pairwise agreement with the *gold* judge on pairs of answers to the same val prompt
   whose gold overall scores differ by more than ``min_gap``; the rater's own expected agreement with gold on
   the same pairs (its noise ceiling); and the length bias: the agreement on pairs where the longer answer is
   the worse one, and the partial correlation of reward with answer length at fixed gold score.

Every finished model's numbers are saved in ``--work`` as it finishes, so an interrupted run resumes where it
stopped (``--fresh`` starts over). The results, with settings, times, machine and command, go to
``reward_results.json`` in ``--out`` (lmlib/assets, recorded in its MANIFEST.json unless ``--no-ship``).
The model of condition ``ship`` at the largest budget (first seed) ships as ``reward_gpt.safetensors``
(:func:`lmlib.assets.load_reward_gpt`), with its held-out scores and the held-out candidates in the results.

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from lmlib._io import sha256_file
from lmlib.assets import ASSETS, book_gpt_tokenizer, load_sft_gpt, manifest_add, manifest_sha256, write_results
from lmlib.checkpoint import load_checkpoint
from lmlib.lm.gpt import GPT
from lmlib.rlhf.chat import CATEGORIES
from lmlib.rlhf.instructions import build_instructions
from lmlib.rlhf.judge import judge_batch
from lmlib.rlhf.rater import RankingRater
from lmlib.rlhf.reward import (agreement_report, encode_answers, fit_reward_model, gold_pairs, gpt_reward_model,
                               label_stream, load_reward_model, save_reward_model, score_answers)
from lmlib.rlhf.sft import answer
from lmlib.rlhf.template import END, tokenizer_meta

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILE, RESULTS_FILE = "reward_gpt.safetensors", "reward_results.json"
DATA_SEED = 0  # the book's instruction data set: build_instructions(seed=0)


@dataclass(frozen=True)
class RewardRecipe:
    """Everything the recipe sets; :meth:`quick` is the same recipe at smoke-test size."""

    train_prompts: int = 400
    """Train prompts that get K candidate answers (drawn at random from the train split)."""
    heldout_prompts: int = 140
    """Val prompts that get K candidate answers: the held-out set of the metric (20 per category)."""
    K: int = 4
    """Candidate answers per prompt, and the size of a ranking."""
    temperatures: tuple[float, ...] = (0.7, 1.0, 1.3, 1.6)
    """Sampling temperatures of the candidates: answer k of a prompt is drawn at ``temperatures[k % len]``.
    Labellers compare answers of several policies (InstructGPT ranks outputs of several models); a spread of
    temperatures gives answers of clearly different quality beside near-ties, as several policies would."""
    max_new_tokens: int = 100
    """Longest candidate answer."""
    gen_batch: int = 100
    """Prompts answered together."""
    beta: float = 10.0
    """The rater's inverse temperature on gold overall scores in [0, 1]: a 0.1 gap is ordered right 73% of the time."""
    epsilon: float = 0.1
    """The share of labels the rater gives at random."""
    budgets: tuple[int, ...] = (100, 250, 500, 1000, 2000)
    """Labelling budgets in comparisons (a pair = 1, a ranking of K = C(K, 2))."""
    trainable_layers: int = 1
    """Top GPT blocks fine-tuned with the head (the final LayerNorm too); the rest stays the SFT model's."""
    epochs: int = 4
    """Passes over the labels; at least ``min_steps`` updates however few the labels."""
    min_steps: int = 30
    """Fewest updates of any run (small budgets would otherwise get a handful)."""
    seqs_per_step: int = 32
    """Answers scored per update: 16 pairs or 8 rankings of 4, so both conditions cost the same per step."""
    lr: float = 1e-4
    """AdamW learning rate of the tuned blocks."""
    head_lr: float = 1e-3
    """AdamW learning rate of the scalar head (zero-initialised)."""
    scratch_lr: float = 1e-3
    """Learning rate of every weight of the from-scratch model (a random GPT learns slowly at 1e-4)."""
    min_gap: float = 0.05
    """Held-out pairs count when their gold overall scores differ by more than this."""
    seeds: int = 3
    """Training seeds per (condition, budget): each draws its own labels from the rater and its own batches."""
    ship: str = "rank4"
    """The condition whose model at the largest budget (first seed) ships as ``reward_gpt.safetensors``;
    chosen before the run (InstructGPT's rankings), not by its held-out score."""

    @classmethod
    def quick(cls) -> RewardRecipe:
        return cls(train_prompts=7, heldout_prompts=7, max_new_tokens=12, gen_batch=16, budgets=(6, 12),
                   epochs=1, min_steps=2, seqs_per_step=8, seeds=1)

    def __post_init__(self) -> None:
        assert self.K >= 2 and self.train_prompts >= 1 and self.heldout_prompts >= 1, self
        assert all(b >= math.comb(self.K, 2) for b in self.budgets), f"every budget must buy one ranking: {self.budgets}"
        assert self.seqs_per_step % self.K == 0 and self.seqs_per_step % 2 == 0, self.seqs_per_step
        assert self.seeds >= 1 and self.ship in ("pairs", "rank4"), self


# ----------------------------------------------------------------------------- 1. candidates, scored by the gold judge


def pick(examples: list, n: int, seed: int, stratify: bool) -> list:
    """``n`` examples drawn without replacement; with ``stratify``, as equal a share of every category as it allows."""
    rng = np.random.default_rng(seed)
    if not stratify:
        return [examples[i] for i in sorted(rng.permutation(len(examples))[:n])]
    by_cat = {c: [e for e in examples if e.category == c] for c in CATEGORIES}
    for c in CATEGORIES:
        by_cat[c] = [by_cat[c][i] for i in rng.permutation(len(by_cat[c]))]
    out, i = [], 0
    while len(out) < n and any(i < len(v) for v in by_cat.values()):
        out += [v[i] for v in by_cat.values() if i < len(v)][:n - len(out)]
        i += 1
    return out


def candidates(model: GPT, tok, prompts: list, r: RewardRecipe, seed: int) -> dict:
    """K sampled answers to each prompt, their gold scores and lengths: lists of length P (answers: P x K)."""
    answers = [[] for _ in prompts]
    for k in range(r.K):
        for i in range(0, len(prompts), r.gen_batch):
            got = answer(model, tok, prompts[i:i + r.gen_batch], r.max_new_tokens,
                         temperature=r.temperatures[k % len(r.temperatures)],
                         seed=seed * 1000 + k * 100 + i // r.gen_batch)
            for j, a in enumerate(got):
                answers[i + j].append(a)
    flat_e = [e for e in prompts for _ in range(r.K)]
    flat_a = [a for row in answers for a in row]
    scores = judge_batch(flat_e, flat_a)
    gold = np.array([s.overall for s in scores]).reshape(len(prompts), r.K)
    ended = [[len(tok.encode(a)) < r.max_new_tokens for a in row] for row in answers]
    return {"ids": [e.id for e in prompts], "answers": answers, "gold": gold.round(6).tolist(), "ended": ended,
            "length": [[len(a) for a in row] for row in answers]}


def cached_candidates(model, tok, prompts: list, r: RewardRecipe, seed: int, path: Path, sft_sha256: str) -> dict:
    key = {"sft_gpt_sha256": sft_sha256, "ids": [e.id for e in prompts], "K": r.K,
           "temperatures": list(r.temperatures), "max_new_tokens": r.max_new_tokens, "gen_batch": r.gen_batch, "seed": seed}
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            print(f"candidates read from {path}", flush=True)
            return saved["candidates"]
    t0 = time.perf_counter()
    out = candidates(model, tok, prompts, r, seed)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    write_results({"key": key, "candidates": out}, path)
    print(f"{len(prompts)} x {r.K} candidates sampled and judged in {out['seconds']:.0f} s -> {path}", flush=True)
    return out


def n_labels(condition: str, budget: int, K: int) -> int:
    """Labels bought with ``budget`` comparisons: one per pair, C(K, 2) per ranking."""
    return budget if condition == "pairs" else budget // math.comb(K, 2)


# ----------------------------------------------------------------------------- the recipe


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", type=int, nargs="+", default=None, help="comparison budgets (default 100 ... 2000)")
    ap.add_argument("--train-prompts", type=int, default=None, help="train prompts with K candidates (default 400)")
    ap.add_argument("--heldout-prompts", type=int, default=None, help="val prompts with K candidates (default 140)")
    ap.add_argument("--epochs", type=int, default=None, help="passes over the labels (default 4)")
    ap.add_argument("--trainable-layers", type=int, default=None, help="top GPT blocks fine-tuned (default 1)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate of the tuned blocks (default 1e-4)")
    ap.add_argument("--no-scratch", action="store_true", help="skip the from-scratch model")
    ap.add_argument("--seeds", type=int, default=None, help="training seeds per condition and budget (default 3)")
    ap.add_argument("--sft", type=Path, default=None,
                    help="an instruction-tuned GPT written by recipes/sft.py (default: the shipped one)")
    ap.add_argument("--seed", type=int, default=0, help="seeds prompts, candidates, rater and training")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads (default 2)")
    ap.add_argument("--out", type=Path, default=ASSETS, help="where the results ship (default lmlib/assets)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "reward", help="candidate cache, finished runs")
    ap.add_argument("--no-ship", action="store_true", help="write the results to --work only")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    ap.add_argument("--fresh", action="store_true", help="forget finished runs (the candidate cache stays)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = RewardRecipe.quick() if args.quick else RewardRecipe()
    over = {"budgets": tuple(args.budgets) if args.budgets else None, "train_prompts": args.train_prompts,
            "heldout_prompts": args.heldout_prompts, "epochs": args.epochs,
            "trainable_layers": args.trainable_layers, "lr": args.lr, "seeds": args.seeds}
    r = replace(r, **{k: v for k, v in over.items() if v is not None})
    command = "python recipes/reward_model.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    tag = "quick_" if args.quick else ""

    # ---- 1. candidates
    data = build_instructions(seed=DATA_SEED)
    if args.sft is None:
        sft, tok = load_sft_gpt()
        sft_sha = manifest_sha256("sft_gpt.safetensors")
    else:  # checked against its .sha256 sidecar
        sft, tok = GPT.from_checkpoint(args.sft).eval(), book_gpt_tokenizer(load_checkpoint(args.sft).meta)
        sft_sha = sha256_file(args.sft)
    pad_id = tok.stoi[END]
    train_p = pick(data["train"], r.train_prompts, args.seed, stratify=False)
    held_p = pick(data["val"], r.heldout_prompts, args.seed, stratify=True)
    print(f"reward models on the SFT GPT ({sft.num_params():,} parameters): {len(train_p)} train / "
          f"{len(held_p)} held-out prompts x K={r.K}; {r}", flush=True)
    cand = {"train": cached_candidates(sft, tok, train_p, r, args.seed, work / f"{tag}candidates_train.json",
                                       sft_sha),
            "heldout": cached_candidates(sft, tok, held_p, r, args.seed + 1, work / f"{tag}candidates_heldout.json",
                                         sft_sha)}
    enc = {s: [encode_answers(tok, [e] * r.K, cand[s]["answers"][i], sft.config.block_size, cand[s]["ended"][i])
               for i, e in enumerate(ps)] for s, ps in (("train", train_p), ("heldout", held_p))}
    gold = {s: np.array(cand[s]["gold"]) for s in cand}
    length = np.array(cand["heldout"]["length"])
    pairs = gold_pairs(gold["heldout"], r.min_gap)
    assert len(pairs), "no held-out pair differs by more than min_gap"
    rater = RankingRater(r.beta, r.epsilon)
    p, b, w = pairs.T
    ceiling = float(np.mean(rater.preference_probability(gold["heldout"][p, b], gold["heldout"][p, w])))
    print(f"held-out: {len(pairs)} pairs with a gold gap > {r.min_gap}; the rater agrees with gold on "
          f"{ceiling:.3f} of them (its noise ceiling)", flush=True)

    # the effort-free baselines: answer length, and the SFT model's own mean log-prob is left to the chapter
    baselines = {"longer_is_better": agreement_report(length.astype(float), gold["heldout"], length, pairs),
                 "shorter_is_better": agreement_report(-length.astype(float), gold["heldout"], length, pairs)}

    # ---- 2-4. one reward model per (condition, budget, seed), saved as each finishes
    done_path = work / f"{tag}runs.json"
    run_key = json.loads(json.dumps(  # as it reads back from JSON (tuples become lists)
        {k: v for k, v in asdict(r).items() if k not in ("budgets", "seeds")} | {"seed": args.seed}))
    saved = {} if args.fresh or not done_path.exists() else json.loads(done_path.read_text(encoding="utf-8"))
    done = saved.get("runs", {}) if saved.get("key") == run_key else {}
    n_held = len(held_p)
    Bmax = max(r.budgets)
    runs = [(c, B, "sft", s) for s in range(r.seeds) for B in r.budgets for c in ("pairs", "rank4")]
    if not args.no_scratch:
        runs += [(c, Bmax, "scratch", 0) for c in ("rank4", "pairs")]
    ship_name = f"sft/{r.ship}/{Bmax}/s0"
    ship_path = work / f"{tag}{MODEL_FILE}"
    if ship_name in done and not ship_path.exists():
        del done[ship_name]  # its model file is lost: train it again
    held_rows = [row for prompt in enc["heldout"] for row in prompt]
    held_cats = [e.category for e in held_p]
    pair_cat = np.array([held_cats[i] for i in pairs[:, 0]])  # the category of each held-out pair
    for c, B, init, s in runs:
        name = f"{init}/{c}/{B}/s{s}"
        if name in done:
            continue
        seed = args.seed + 100 * s
        rater_c = RankingRater(r.beta, r.epsilon, seed=seed + 11 + (c == "rank4"))
        labels = label_stream(gold["train"], 2 if c == "pairs" else r.K, n_labels(c, Bmax, r.K), rater_c,
                              seed + 10 + (c == "rank4"))
        labels = labels[:n_labels(c, B, r.K)]  # the budgets of one seed are nested prefixes of one stream
        torch.manual_seed(seed)
        if init == "sft":
            model, lr = gpt_reward_model(sft, r.trainable_layers), r.lr
        else:
            model, lr = gpt_reward_model(GPT(sft.config), sft.config.n_layer, copy_model=False), r.scratch_lr
        fit = fit_reward_model(model, enc["train"], labels, pad_id, epochs=r.epochs, min_steps=r.min_steps,
                               seqs_per_step=r.seqs_per_step, lr=lr, head_lr=r.head_lr, seed=seed)
        reward = score_answers(model, held_rows, pad_id).numpy().reshape(n_held, r.K)
        ev = agreement_report(reward, gold["heldout"], length, pairs)
        right = reward[pairs[:, 0], pairs[:, 1]] > reward[pairs[:, 0], pairs[:, 2]]  # (n_pairs,)
        ev["by_category"] = {cat: {"agreement": round(float(right[pair_cat == cat].mean()), 4),
                                   "pairs": int((pair_cat == cat).sum())} if (pair_cat == cat).any() else None
                             for cat in CATEGORIES}
        if name == ship_name:
            save_reward_model(model, ship_path, meta={
                "tokenizer": tokenizer_meta(tok), "recipe": asdict(r), "run": name, "agreement": ev["agreement"],
                "base": str(args.sft or "lmlib/assets/sft_gpt.safetensors"), "command": command})
            ev["heldout_reward"] = reward.round(5).tolist()
        done[name] = {"init": init, "condition": c, "budget": B, "seed": s, "comparisons": n_labels(c, B, r.K) * (
            1 if c == "pairs" else math.comb(r.K, 2)), **fit, **ev}
        write_results({"key": run_key, "runs": done}, done_path)
        print(f"{name:<22} {fit['labels']:>5} labels {fit['steps']:>4} steps {fit['seconds']:>6.1f} s  "
              f"train acc {np.mean(fit['history']['accuracy'][-5:]):.3f}  held-out agreement {ev['agreement']:.3f}  "
              f"longer-worse {ev['agreement_longer_worse']}  length pcorr {ev['length_partial_corr']:+.3f}", flush=True)

    # ---- results: mean and range over seeds
    def over_seeds(c: str, B: int) -> dict:
        ds = [done[f"sft/{c}/{B}/s{s}"] for s in range(r.seeds)]
        ag = np.array([d["agreement"] for d in ds])
        return {"budget": B, "comparisons": ds[0]["comparisons"], "labels": ds[0]["labels"],
                "agreement": round(float(ag.mean()), 4), "agreement_min": round(float(ag.min()), 4),
                "agreement_max": round(float(ag.max()), 4), "agreement_seeds": ag.round(4).tolist(),
                "agreement_longer_worse": round(float(np.mean([d["agreement_longer_worse"] for d in ds])), 4),
                "length_partial_corr": round(float(np.mean([d["length_partial_corr"] for d in ds])), 4),
                "seconds": round(float(np.mean([d["seconds"] for d in ds])), 1)}

    curve = {c: [over_seeds(c, B) for B in r.budgets] for c in ("pairs", "rank4")}
    rows = [f"{'comparisons':>11} {'pairs':>17} {'rank4':>17}   (held-out agreement with gold, mean [min, max] "
            f"of {r.seeds} seed(s); rater ceiling {ceiling:.3f})"]
    rows += [f"{B:>11} " + " ".join(f"{d['agreement']:.3f} [{d['agreement_min']:.3f}, {d['agreement_max']:.3f}]"
                                    for d in (curve['pairs'][i], curve['rank4'][i])) for i, B in enumerate(r.budgets)]
    if not args.no_scratch:
        rows += [f"from scratch at {Bmax}: pairs {done[f'scratch/pairs/{Bmax}/s0']['agreement']:.3f}  "
                 f"rank4 {done[f'scratch/rank4/{Bmax}/s0']['agreement']:.3f}"]
    print("\n".join(rows), flush=True)
    within = [d for c in curve for d in curve[c] if d["comparisons"] <= 2000]
    best = max(within, key=lambda d: d["agreement"], default=None)
    shipped = done[ship_name]
    g_all = gold["heldout"]
    results = {
        "recipe": asdict(r), "seed": args.seed, "data_seed": DATA_SEED, "quick": args.quick,
        "effort_measure": f"comparisons: a pair = 1, a ranking of K={r.K} answers = C(K,2) = {math.comb(r.K, 2)}",
        "rater": repr(rater),
        "candidates": {s: {"prompts": len(cand[s]["ids"]), "answers": len(cand[s]["ids"]) * r.K,
                           "gold_mean": round(float(gold[s].mean()), 4),
                           "gold_within_prompt_std": round(float(gold[s].std(1).mean()), 4),
                           "ended": round(float(np.mean(cand[s]["ended"])), 4),
                           "seconds": cand[s].get("seconds")} for s in cand},
        "heldout": {"pairs": int(len(pairs)), "min_gap": r.min_gap,
                    "rater_ceiling_on_pairs": round(ceiling, 4),
                    "rater_ceiling_all_pairs": round(rater.agreement_ceiling(g_all), 4),
                    "ids": cand["heldout"]["ids"]},
        "ceiling_note": "the rater's expected agreement with gold on the held-out pairs: the accuracy on the rater's "
                        "labels of a model that knows gold. A reward model can exceed it in agreement with gold "
                        "(averaging many noisy labels removes noise); it is the reference, not a hard bound.",
        "baselines": baselines,
        "curve": curve,
        "runs": done,
        "scratch": {c: done.get(f"scratch/{c}/{Bmax}/s0") and
                    {k: done[f"scratch/{c}/{Bmax}/s0"][k] for k in ("budget", "agreement", "seconds",
                                                                    "length_partial_corr")}
                    for c in ("pairs", "rank4")},
        "shipped": {"file": MODEL_FILE, "run": ship_name, "agreement": shipped["agreement"],
                    "by_category": shipped["by_category"], "length_partial_corr": shipped["length_partial_corr"],
                    "heldout_reward": shipped["heldout_reward"]},
        "heldout_candidates": {"answers": cand["heldout"]["answers"], "gold": cand["heldout"]["gold"],
                               "ended": cand["heldout"]["ended"],
                               "length": cand["heldout"]["length"], "categories": held_cats,
                               "temperatures": [r.temperatures[k % len(r.temperatures)] for k in range(r.K)]},
        "train_candidates": {k: cand["train"][k] for k in ("ids", "answers", "gold", "ended")},
        "goals": {"agreement_at_least_0.8_within_2000_comparisons": bool(best and best["agreement"] >= 0.8),
                  "best_within_2000": best and {k: best[k] for k in ("budget", "comparisons", "agreement",
                                                                     "agreement_min", "agreement_max")},
                  "best_condition": best and next(c for c in curve if best in curve[c])},
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} CPU core(s), "
                   f"torch {torch.__version__}, {args.threads} thread(s)",
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    out = work if args.no_ship else args.out
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / RESULTS_FILE)
    if out != work:
        model, _ = load_reward_model(ship_path)  # checksum verified on the way
        save_reward_model(model, out / MODEL_FILE, meta=load_checkpoint(ship_path).meta)
    if not args.no_ship:
        for name in (MODEL_FILE, RESULTS_FILE):
            manifest_add(out / name, command)
    print(f"done in {results['total_seconds'] / 60:.1f} min; wrote {out / RESULTS_FILE}", flush=True)
    return results


if __name__ == "__main__":
    main()

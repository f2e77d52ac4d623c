"""Best-of-n with the reward model (Chapter 14): gold and proxy scores against n = 1..64 and the KL it costs.

    .venv/bin/python recipes/best_of_n.py                   # the shipped results (see BestOfNRecipe)
        # 2,688 answers sampled with the KV cache and judged in 8 min on a 2-core CPU shared with another
        # training run, scored by the reward model in 11 s
    .venv/bin/python recipes/best_of_n.py --quick --work /tmp/w --out /tmp/a   # a smoke test (seconds)

For ``per_category`` prompts of every category of the held-out *test* split of
:func:`lmlib.rlhf.instructions.build_instructions` (prompts neither the SFT model nor the reward model
trained on), the SFT model (:func:`lmlib.assets.load_sft_gpt`) samples ``N`` answers at temperature 1 (its own
distribution); the shipped reward model (:func:`lmlib.assets.load_reward_gpt`, made by
``recipes/reward_model.py``) scores them (the *proxy*) and the gold judge scores them (the truth the proxy
stands for). Best-of-n keeps, of n samples, the one the proxy likes best. For every n in 1..N,
:func:`lmlib.rlhf.reward.best_of_n_curve` gives the expected proxy and gold scores of best-of-n (averaged
over all n-subsets of the N samples), and :func:`lmlib.rlhf.reward.best_of_n_kl` its KL to the SFT policy,
log n - (n - 1)/n. Beside them: best-of-n chosen by the gold judge itself (the oracle: how much better the
samples could be picked), by length (longest and shortest), the expected answer length of proxy best-of-n,
and per-category gold scores at n = 1 and n = N.

The samples and their scores are cached in ``--work`` (an interrupted run resumes). The results go to
``best_of_n_results.json`` in ``--out`` (lmlib/assets, recorded in its MANIFEST.json unless ``--no-ship``).

Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
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

import numpy as np
import torch

from lmlib.assets import ASSETS, load_reward_gpt, load_sft_gpt, manifest_add, manifest_sha256, write_results
from lmlib.rlhf.chat import CATEGORIES
from lmlib.rlhf.instructions import build_instructions
from lmlib.rlhf.judge import judge_batch
from lmlib._io import sha256_file
from lmlib.assets import book_gpt_tokenizer
from lmlib.rlhf.reward import best_of_n_curve, encode_answers, load_reward_model, score_answers
from lmlib.rlhf.sft import answer
from lmlib.rlhf.template import END

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = "best_of_n_results.json"
DATA_SEED = 0  # the book's instruction data set: build_instructions(seed=0)


@dataclass(frozen=True)
class BestOfNRecipe:
    """Everything the recipe sets; :meth:`quick` is the same recipe at smoke-test size."""

    per_category: int = 6
    """Test prompts per category (7 categories)."""
    N: int = 64
    """Samples per prompt: best-of-n is estimated for every n up to N."""
    temperature: float = 1.0
    """Sampling temperature (1: the SFT policy itself, for which log n - (n-1)/n is its KL)."""
    max_new_tokens: int = 100
    """Longest answer."""
    gen_batch: int = 128
    """Answers generated together."""

    @classmethod
    def quick(cls) -> BestOfNRecipe:
        return cls(per_category=1, N=4, max_new_tokens=12, gen_batch=16)


def pick_test_prompts(test: list, per_category: int, seed: int) -> list:
    """``per_category`` prompts of each category, drawn at random, in category order."""
    rng = np.random.default_rng(seed)
    out = []
    for c in CATEGORIES:
        pool = [e for e in test if e.category == c]
        out += [pool[i] for i in sorted(rng.permutation(len(pool))[:per_category])]
    return out


def samples(model, tok, prompts: list, r: BestOfNRecipe, seed: int) -> dict:
    """N answers to each prompt (rows of one prompt's samples, P x N) and whether each ended."""
    flat = [e for e in prompts for _ in range(r.N)]
    answers: list[str] = []
    for i in range(0, len(flat), r.gen_batch):
        answers += answer(model, tok, flat[i:i + r.gen_batch], r.max_new_tokens, temperature=r.temperature,
                          seed=seed * 100_000 + i // r.gen_batch)
    ended = [len(tok.encode(a)) < r.max_new_tokens for a in answers]
    P = len(prompts)
    return {"answers": [answers[p * r.N:(p + 1) * r.N] for p in range(P)],
            "ended": [ended[p * r.N:(p + 1) * r.N] for p in range(P)]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-category", type=int, default=None, help="test prompts per category (default 6)")
    ap.add_argument("--N", type=int, default=None, help="samples per prompt (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the prompts and the samples")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads (default 2)")
    ap.add_argument("--reward", type=Path, default=None,
                    help="a reward model written by recipes/reward_model.py (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=ASSETS, help="where the results ship (default lmlib/assets)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "best_of_n", help="the sample cache")
    ap.add_argument("--no-ship", action="store_true", help="write the results to --work only")
    ap.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    ap.add_argument("--samples-only", action="store_true",
                    help="sample and judge the answers (cached in --work), then stop: needs no reward model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = BestOfNRecipe.quick() if args.quick else BestOfNRecipe()
    over = {"per_category": args.per_category, "N": args.N}
    r = replace(r, **{k: v for k, v in over.items() if v is not None})
    command = "python recipes/best_of_n.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    t_start = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    tag = "quick_" if args.quick else ""

    data = build_instructions(seed=DATA_SEED)
    sft, tok = load_sft_gpt()
    if args.samples_only:
        rm = rm_tok = rm_sha = None
    elif args.reward is None:
        rm, rm_tok = load_reward_gpt()
        rm_sha = manifest_sha256("reward_gpt.safetensors")
    else:
        rm, meta = load_reward_model(args.reward)  # checked against its .sha256 sidecar
        rm_tok, rm_sha = book_gpt_tokenizer(meta), sha256_file(args.reward)
    if rm_tok is not None and rm_tok.stoi != tok.stoi:
        raise ValueError("the reward model's tokenizer differs from the SFT model's")
    prompts = pick_test_prompts(data["test"], r.per_category, args.seed)
    print(f"best-of-n: {len(prompts)} test prompts x N={r.N} samples at temperature {r.temperature}", flush=True)

    # ---- samples, scored by gold (cached: they do not depend on the reward model)
    cache = work / f"{tag}samples.json"
    key = {"sft_gpt_sha256": manifest_sha256("sft_gpt.safetensors"), "ids": [e.id for e in prompts], **asdict(r),
           "seed": args.seed}
    saved = None
    if cache.exists():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        saved = saved if saved.get("key") == key else None
    if saved is None:
        t0 = time.perf_counter()
        got = samples(sft, tok, prompts, r, args.seed)
        t_gen = time.perf_counter() - t0
        scores = judge_batch([e for e in prompts for _ in range(r.N)], [a for row in got["answers"] for a in row])
        saved = {"key": key, **got, "gold": [s.overall for s in scores], "task": [s.task for s in scores],
                 "seconds_generate": round(t_gen, 1), "seconds": round(time.perf_counter() - t0, 1)}
        write_results(saved, cache)
        print(f"{len(scores)} samples generated in {t_gen:.0f} s and judged in {saved['seconds'] - t_gen:.0f} s "
              f"-> {cache}", flush=True)
    if args.samples_only:
        return {}
    flat_e = [e for e in prompts for _ in range(r.N)]
    t0 = time.perf_counter()
    rows = encode_answers(tok, flat_e, [a for row in saved["answers"] for a in row], rm.trunk.gpt.config.block_size,
                          [x for row in saved["ended"] for x in row])
    proxy = score_answers(rm, rows, tok.stoi[END]).numpy().reshape(len(prompts), r.N)
    print(f"the reward model scored them in {time.perf_counter() - t0:.0f} s", flush=True)
    P = len(prompts)
    gold = np.array(saved["gold"]).reshape(P, r.N)
    task = np.array(saved["task"]).reshape(P, r.N)
    length = np.array([[len(a) for a in row] for row in saved["answers"]], dtype=float)

    # ---- the curves
    ns = list(range(1, r.N + 1))
    rng = np.random.default_rng(args.seed)
    jitter = rng.random(gold.shape) * 1e-9  # breaks gold/length ties at random, not by sample order
    curve = best_of_n_curve(proxy, gold, ns)
    oracle = best_of_n_curve(gold + jitter, gold, ns)
    longest = best_of_n_curve(length + jitter, gold, ns)
    shortest = best_of_n_curve(-length + jitter, gold, ns)
    bon_len = best_of_n_curve(proxy, length, ns)
    bon_task = best_of_n_curve(proxy, task, ns)
    cats = np.array([e.category for e in prompts])
    per_cat = {}
    for c in CATEGORIES:
        m = cats == c
        if m.any():
            cc = best_of_n_curve(proxy[m], gold[m], [1, r.N])
            per_cat[c] = {"prompts": int(m.sum()), "gold_n1": round(float(cc["gold"][0]), 4),
                          f"gold_n{r.N}": round(float(cc["gold"][-1]), 4)}
    i_peak = int(np.argmax(curve["gold"]))
    examples = []
    for p in range(0, P, max(1, r.per_category)):  # the first prompt of each category
        order = np.argsort(proxy[p])
        examples.append({"id": prompts[p].id, "category": prompts[p].category,
                         "prompt": prompts[p].turns[-1].text,
                         "random": {"answer": saved["answers"][p][0], "proxy": float(proxy[p, 0]),
                                    "gold": float(gold[p, 0])},
                         "best": {"answer": saved["answers"][p][order[-1]], "proxy": float(proxy[p, order[-1]]),
                                  "gold": float(gold[p, order[-1]])},
                         "worst": {"answer": saved["answers"][p][order[0]], "proxy": float(proxy[p, order[0]]),
                                   "gold": float(gold[p, order[0]])}})
    rnd = lambda a: np.round(np.asarray(a, dtype=float), 5).tolist()  # noqa: E731
    results = {
        "recipe": asdict(r), "seed": args.seed, "reward_gpt_sha256": rm_sha, "data_seed": DATA_SEED, "quick": args.quick,
        "prompts": [e.id for e in prompts],
        "n": ns, "kl": rnd(curve["kl"]), "sqrt_kl": rnd(np.sqrt(curve["kl"])),
        "proxy": rnd(curve["proxy"]), "gold": rnd(curve["gold"]), "gold_sem": rnd(curve["gold_sem"]),
        "oracle_gold": rnd(oracle["gold"]), "longest_gold": rnd(longest["gold"]),
        "shortest_gold": rnd(shortest["gold"]), "length": rnd(bon_len["gold"]), "task": rnd(bon_task["gold"]),
        "gold_peak": {"n": ns[i_peak], "gold": round(float(curve["gold"][i_peak]), 4),
                      "kl": round(float(curve["kl"][i_peak]), 4)},
        "gold_sd_n1": round(float(gold.std()), 4),
        "per_category": per_cat,
        "corr_proxy_gold_within_prompt": round(float(np.corrcoef(
            (proxy - proxy.mean(1, keepdims=True)).ravel(), (gold - gold.mean(1, keepdims=True)).ravel())[0, 1]), 4),
        "examples": examples,
        "samples_seconds": saved["seconds"], "total_seconds": round(time.perf_counter() - t_start, 1),
        "machine": f"{platform.machine()} {platform.processor()}, {os.cpu_count()} CPU core(s), "
                   f"torch {torch.__version__}, {args.threads} thread(s)",
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    for n in sorted({1, 2, 4, 8, 16, 32, r.N}):
        if n <= r.N:
            print(f"n={n:>3}  KL {curve['kl'][n - 1]:.2f}  proxy {curve['proxy'][n - 1]:+.3f}  "
                  f"gold {curve['gold'][n - 1]:.3f}  (oracle {oracle['gold'][n - 1]:.3f})  "
                  f"length {bon_len['gold'][n - 1]:.0f}", flush=True)
    out = work if args.no_ship else args.out
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out / RESULTS_FILE)
    if not args.no_ship:
        manifest_add(out / RESULTS_FILE, command)
    print(f"done in {results['total_seconds'] / 60:.1f} min; wrote {out / RESULTS_FILE}", flush=True)
    return results


if __name__ == "__main__":
    main()

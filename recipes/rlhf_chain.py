"""The whole RLHF chain of Part III in one command: instruction tuning, a reward model, PPO.

    .venv/bin/python recipes/rlhf_chain.py --work runs/chain        # the full chain, into runs/chain
    .venv/bin/python recipes/rlhf_chain.py --quick --work /tmp/c    # a smoke test (about a minute)

1. ``recipes/sft.py``: the book GPT instruction-tuned on the plays' instruction data (chapter 13);
2. ``recipes/reward_model.py --sft ...``: reward models on *that* tuned GPT, from the synthetic rater's rankings
   (chapter 14): the pairs and the rank-4 condition at 2,000 comparisons, one seed, no from-scratch model; the
   rank-4 model is the one used next;
3. ``recipes/rlhf_ppo.py --sft ... --reward ...``: the headline PPO run against that reward model (chapter 15).

Nothing is shipped: every step writes into its own folder of ``--work`` (``sft/``, ``reward/``, ``ppo/``), and
each resumes there after an interruption, as the recipes do on their own. The book's shipped models came from
the three recipes run separately with their defaults (which do more: three seeds, five budgets and the other PPO
runs); this command is the shortest path from the pretrained GPT to an RLHF-tuned one. The steps' times and
headline numbers are printed at the end and written to ``chain.json`` in ``--work``.

Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"chain_{name}", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT.parent / "runs" / "chain", help="where every step writes")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="every step at smoke-test size")
    args = ap.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    q = ["--quick"] if args.quick else []
    t = ["--threads", str(args.threads)]
    times, t0 = {}, time.perf_counter()

    sft = _recipe("sft").main(q + t + ["--work", str(work / "sft"), "--no-ship"])
    sft_path = work / "sft" / "sft_gpt.safetensors"
    times["sft"] = round(time.perf_counter() - t0, 1)

    budget = [] if args.quick else ["--budgets", "2000"]
    rm = _recipe("reward_model").main(q + t + budget + ["--seeds", "1", "--no-scratch", "--sft", str(sft_path),
                                                        "--work", str(work / "reward"), "--no-ship"])
    rm_path = work / "reward" / f"{'quick_' if args.quick else ''}reward_gpt.safetensors"
    times["reward_model"] = round(time.perf_counter() - t0 - times["sft"], 1)

    ppo_mod = _recipe("rlhf_ppo")
    ppo = ppo_mod.main(q + ["--runs", ppo_mod.HEADLINE, "--jobs", "1", "--threads", str(args.threads),
                            "--sft", str(sft_path), "--reward", str(rm_path), "--work", str(work / "ppo"), "--no-ship"])
    times["ppo"] = round(time.perf_counter() - t0 - times["sft"] - times["reward_model"], 1)
    run = ppo["runs"][ppo_mod.HEADLINE]["evals"]
    summary = {
        "seconds": times, "total_minutes": round((time.perf_counter() - t0) / 60, 1),
        "sft_gold": sft["tuned"]["overall"], "base_gold": sft["base"]["overall"],
        "reward_agreement": rm["shipped"]["agreement"],
        "ppo": {"gold": [run[0]["gold"], run[-1]["gold"]], "proxy": [run[0]["proxy"], run[-1]["proxy"]],
                "kl_end": run[-1]["kl"]},
        "quick": args.quick, "command": "python recipes/rlhf_chain.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (work / "chain.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"the chain in {summary['total_minutes']} min ({times}): SFT gold {summary['base_gold']} -> "
          f"{summary['sft_gold']}; reward model agreement {summary['reward_agreement']}; PPO gold "
          f"{run[0]['gold']:.3f} -> {run[-1]['gold']:.3f}, proxy {run[0]['proxy']:+.3f} -> {run[-1]['proxy']:+.3f}, "
          f"KL {run[-1]['kl']:.2f}", flush=True)
    return summary


if __name__ == "__main__":
    main()

"""The Transformer family tree of Chapter 5, full mode: encoder vs GPT on blanks, enc-dec vs GPT on reversal.

    .venv/bin/python recipes/family_tree.py                  # the shipped result (22 CPU-minutes, 15 min wall, on a busy 2-core CPU)
    .venv/bin/python recipes/family_tree.py --quick --out /tmp/ft.json   # a smoke test (quick-mode sizes)

Runs :func:`lmlib.experiments.family_tree.run_family_tree` with :data:`lmlib.experiments.family_tree.FULL` (2400 steps of
batch 32 for the BERT-style encoder and the GPT, 400 steps for the two word reversers): the
"blanks" and "reversal" parts run in two processes (``--jobs 2``, one torch thread each) with the
same seed, which gives the same numbers as one call with both parts. It also records a few
examples (the encoder filling blanks, both reversers on unseen words), then writes settings,
seed, metrics, parameter counts, per-model and total times, machine, threads, torch version,
UTC time and this command atomically to ``lmlib/assets/family_tree.json``, which
:func:`lmlib.experiments.family_tree.load_family_results` reads and the chapter shows.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import torch

from lmlib.experiments.family_tree import (
    FULL,
    RESULTS_PATH,
    run_family_tree,
    save_family_results,
)
from lmlib.lm.architectures import fill_in_the_blank, reverse_words

ROOT = Path(__file__).resolve().parents[1]

#: The line the chapter asks the encoder about.
BLANK_LINE = "To be, or n_t to be: that is th_"


def _run_part(part: str, settings: dict, seed: int, threads: int) -> dict:
    """Run one part in this process; return what can be saved (no models) plus examples."""
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ft = run_family_tree(parts=(part,), **settings, seed=seed)
    out = {k: ft[k] for k in ("metrics", "params", "seconds", "settings", "test_words", "n_train_words")}
    if part == "blanks":
        line = BLANK_LINE[: ft["settings"]["block_size"]]
        out["examples"] = {"blank_line": line, "blank_guesses": [
            [[c, round(p, 4)] for c, p in g] for g in fill_in_the_blank(ft["models"]["encoder"], ft["tokenizer"], line)]}
    else:
        words = ft["test_words"][:: max(1, len(ft["test_words"]) // 8)][:8]
        out["examples"] = {"reversal_words": words, **{
            f"reversal_{name}": reverse_words(ft["models"][name], ft["tokenizer"], words)
            for name in ("encdec", "decoder_seq2seq")}}
    out["part_seconds"] = time.perf_counter() - t0
    print(f"[{part}] done in {out['part_seconds']:.0f} s: "
          + ", ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items() if "acc" in k), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick-mode sizes (run_family_tree defaults; a smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="override the encoder/GPT steps of the blanks part")
    ap.add_argument("--seq2seq-steps", type=int, default=None, help="override the steps of the reversal part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (1 is fastest for models this small)")
    ap.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="run the two parts in 1 or 2 processes")
    ap.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON (default %(default)s)")
    args_list = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(args_list)
    settings = {} if args.quick else dict(FULL)
    if args.steps is not None:
        settings["steps"] = args.steps
    if args.seq2seq_steps is not None:
        settings["seq2seq_steps"] = args.seq2seq_steps
    command = "python recipes/family_tree.py" + (" " + shlex.join(args_list) if args_list else "")
    print(f"family tree: {settings or 'quick defaults'}, seed {args.seed}, {args.jobs} process(es) x "
          f"{args.threads} thread(s)", flush=True)
    t0 = time.perf_counter()
    parts = ("blanks", "reversal")
    if args.jobs == 2:
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_run_part, p, settings, args.seed, args.threads) for p in parts]
            done = [f.result() for f in futures]
    else:
        done = [_run_part(p, settings, args.seed, args.threads) for p in parts]
    wall = time.perf_counter() - t0
    merged = {"metrics": {}, "params": {}, "seconds": {}, "examples": {}}
    for d in done:
        for k in merged:
            merged[k].update(d[k])
    merged["settings"] = {**done[1]["settings"], "parts": list(parts)}
    merged["test_words"], merged["n_train_words"] = done[1]["test_words"], done[1]["n_train_words"]
    examples = merged.pop("examples")
    merged["metrics"] = {k: float(v) if isinstance(v, float) else v for k, v in merged["metrics"].items()}
    merged["seconds"] = {k: round(v, 1) for k, v in merged["seconds"].items()}
    path = save_family_results(
        merged, args.out, examples=examples, seed=args.seed,
        seconds_total=round(sum(d["part_seconds"] for d in done), 1), wall_seconds=round(wall, 1),
        jobs=args.jobs, threads=args.threads, command=command,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU core(s), {platform.system()} ({platform.processor() or 'cpu'})",
        load_average=[round(x, 2) for x in os.getloadavg()], torch=torch.__version__,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    print(f"wrote {path} ({wall:.0f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train short, test long: the positional-encoding extrapolation experiment of Chapter 5, full mode.

    .venv/bin/python recipes/pos_extrapolation.py             # the shipped result (22 min on a busy 2-core CPU)
    .venv/bin/python recipes/pos_extrapolation.py --quick --out /tmp/ext.json   # a smoke test (3 encodings)

Trains one small GPT per positional encoding ("none", "learned", "sinusoidal", "alibi", "rope")
on 64-character windows of Shakespeare (the 9-play "tiny" corpus) with
:func:`lmlib.experiments.extrapolation.run_extrapolation` and the settings :data:`lmlib.experiments.extrapolation.FULL`,
evaluates each at contexts of 64, 128, 256 and 512 characters, and writes everything (settings,
seed, per-model and total times, machine, torch version, this command) atomically to
``lmlib/assets/pos_extrapolation.json``, which :func:`lmlib.experiments.extrapolation.load_extrapolation_results`
reads and the chapter plots.

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from lmlib.experiments.extrapolation import (
    FULL,
    QUICK,
    RESULTS_PATH,
    run_extrapolation,
    save_extrapolation_results,
)

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the quick-mode settings (a smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="override the number of training steps per model")
    ap.add_argument("--encodings", nargs="+", default=None, help="a subset of: none learned sinusoidal alibi rope")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for models this small)")
    ap.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON (default %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = dict(QUICK if args.quick else FULL)
    if args.steps is not None:
        settings["steps"] = args.steps
    command = "python recipes/pos_extrapolation.py" + (
        " " + shlex.join(sys.argv[1:] if argv is None else argv) if (sys.argv[1:] if argv is None else argv) else "")
    print(f"positional extrapolation: {settings}, seed {args.seed}, {args.threads} thread(s)", flush=True)
    t0 = time.perf_counter()
    if args.encodings:
        settings["encodings"] = tuple(args.encodings)
    results = run_extrapolation(**settings, seed=args.seed, log=lambda line: print(line, flush=True))
    results["command"] = command
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    save_extrapolation_results(results, args.out)
    print(f"wrote {args.out} ({results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the quality filters and deduplication of Chapter 2 on a noisy tiny-Shakespeare corpus.

Builds the noisy corpus (clean speeches plus planted junk with ground truth),
runs the filters, then exact and MinHash-LSH deduplication on what the filters
kept, and prints:

1. the per-filter removal table (rows: filters, columns: planted junk type);
2. exact-dedup precision/recall against the planted exact copies (with and
   without normalisation);
3. MinHash-LSH precision/recall against the planted exact + near copies,
   for estimated and true-Jaccard verification, with timings;
4. the measured LSH candidate rate against the theoretical curve
   ``1 - (1 - s**r)**b`` in similarity buckets.

Usage (from the repository root)::

    .venv/bin/python benchmarks/dedup_eval.py [--seed 0] [--threshold 0.7] [--num-perm 128] [--json out.json]

Taught in: Chapter 2, "Data and tokenization" (chapters/02_data_and_tokenization.ipynb).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lmlib._io import atomic_write_text
from lmlib.text.dedup import (
    choose_bands,
    exact_dedup,
    jaccard,
    lsh_candidate_pairs,
    lsh_candidate_probability,
    lsh_collides,
    lsh_threshold,
    minhash_dedup,
    minhash_signatures,
    precision_recall,
    shingles,
)
from lmlib.text.quality import (
    JUNK_TYPES,
    apply_filters,
    make_noisy_corpus,
    perturb,
    shakespeare_documents,
)


def restrict(pairs: set[tuple[int, int]], keep: list[int]) -> set[tuple[int, int]]:
    """Pairs whose two documents both survived the filters, re-indexed to positions in ``keep``."""
    pos = {doc: i for i, doc in enumerate(keep)}
    return {(pos[i], pos[j]) for i, j in pairs if i in pos and j in pos}


def candidate_rate_vs_theory(docs: list[str], num_perm: int, settings: list[tuple[int, int]], seed: int, k: int) -> list[dict]:
    """Pairs spread over all similarities: random pairs plus copies edited at rates 1%-70%.

    Returns one row per (setting, similarity bucket): pairs, measured candidate
    rate, and the theoretical rate averaged over the bucket's true similarities.
    """
    rng = np.random.default_rng(seed)
    n = min(len(docs), 800)
    idx = rng.choice(len(docs), size=n, replace=False)
    left, right = [], []
    for i in idx:  # edited copies: similarities from ~0.1 to ~0.98
        left.append(docs[i])
        right.append(perturb(docs[i], float(rng.uniform(0.01, 0.7)), rng))
    for i, j in rng.choice(len(docs), size=(n // 4, 2)):  # unrelated pairs: similarity ~0.05-0.2
        if i != j:
            left.append(docs[i])
            right.append(docs[j])
    sa = [shingles(t, k) for t in left]
    sb = [shingles(t, k) for t in right]
    true_j = np.array([jaccard(a, b) for a, b in zip(sa, sb)])
    sig_a = minhash_signatures(sa, num_perm, seed=seed)
    sig_b = minhash_signatures(sb, num_perm, seed=seed)
    edges = np.linspace(0.0, 1.0, 11)
    rows = []
    for b, r in settings:
        hit = lsh_collides(sig_a, sig_b, b)
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (true_j >= lo) & ((true_j < hi) if hi < 1 else (true_j <= hi))
            if m.sum() == 0:
                continue
            rows.append(
                dict(b=b, r=r, bucket=f"[{lo:.1f}, {hi:.1f}{']' if hi == 1 else ')'}", pairs=int(m.sum()),
                     measured=float(hit[m].mean()), theory=float(lsh_candidate_probability(true_j[m], b, r).mean()))
            )
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subset", default="tiny", choices=["tiny", "all"])
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--k", type=int, default=5, help="character shingle size")
    ap.add_argument("--edit-rate", type=float, default=0.05)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    out: dict = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}

    t0 = time.perf_counter()
    docs = shakespeare_documents(args.subset)
    corpus = make_noisy_corpus(docs, seed=args.seed, edit_rate=args.edit_rate)
    t_build = time.perf_counter() - t0
    print(f"noisy corpus: {len(corpus)} documents from {len(docs)} clean speeches ({t_build:.2f} s)")
    print("  " + ", ".join(f"{k} {v}" for k, v in corpus.counts().items()))
    out["counts"] = corpus.counts()

    # 1. filters
    t0 = time.perf_counter()
    report = apply_filters(corpus)
    t_filter = time.perf_counter() - t0
    print(f"\n1. Quality filters ({t_filter:.2f} s); each removed document is credited to the first filter that drops it\n")
    print(report.table())
    by = report.by_label()
    counts = corpus.counts()
    kept_frac = {lab: by["kept"][lab] / counts[lab] for lab in JUNK_TYPES if counts[lab]}
    print("\nkept fraction per type: " + ", ".join(f"{k} {v:.3f}" for k, v in kept_frac.items()))
    out["filters"] = {"table": by, "kept_fraction": kept_frac, "seconds": t_filter}

    keep = report.kept
    texts = [corpus[i].text for i in keep]
    truth_exact = restrict(corpus.duplicate_pairs(["exact_dup"]), keep)
    truth_near = restrict(corpus.duplicate_pairs(["near_dup"]), keep)
    truth_all = truth_exact | truth_near

    # 2. exact dedup
    print(f"\n2. Exact dedup of the {len(texts)} kept documents (planted exact copies among them: {len(truth_exact)})")
    out["exact"] = {}
    for normalized in (True, False):
        t0 = time.perf_counter()
        res = exact_dedup(texts, normalized=normalized)
        dt = time.perf_counter() - t0
        prf = precision_recall(res.pairs, truth_exact)
        name = "normalised blake2b" if normalized else "raw blake2b      "
        print(f"  {name}: {prf}  ({dt * 1000:.0f} ms)")
        out["exact"]["normalized" if normalized else "raw"] = dict(prf.__dict__, seconds=dt)

    # 3. MinHash-LSH
    b, r = choose_bands(args.threshold, args.num_perm, min_prob=0.95)
    print(
        f"\n3. MinHash-LSH: char {args.k}-grams, num_perm {args.num_perm}, b={b} bands x r={r} rows "
        f"(S-curve steepest at {lsh_threshold(b, r):.2f}), Jaccard threshold {args.threshold}"
    )
    print(f"   planted pairs among kept documents: {len(truth_exact)} exact + {len(truth_near)} near = {len(truth_all)}")
    t0 = time.perf_counter()
    sets = [shingles(t, args.k) for t in texts]
    t_sh = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    sigs = minhash_signatures(sets, args.num_perm, seed=args.seed)
    t_sig, c_sig = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    cands = lsh_candidate_pairs(sigs, b)
    t_lsh = time.perf_counter() - t0
    n_shingles = sum(len(s) for s in sets)
    print(
        f"   timing (wall): shingles {t_sh:.2f} s ({n_shingles} shingles), signatures {t_sig:.2f} s "
        f"(CPU {c_sig:.2f} s; {len(texts)} docs, {len(texts) / t_sig:.0f} docs/s), LSH banding {t_lsh:.2f} s ({len(cands)} candidates)"
    )
    out["minhash"] = {"b": b, "r": r, "candidates": len(cands),
                      "timing": {"shingles": t_sh, "signatures": t_sig, "signatures_cpu": c_sig, "lsh": t_lsh}}
    cand_prf = precision_recall(cands, truth_all)
    print(f"   candidates alone:    {cand_prf}")
    for verify in ("estimate", "true"):
        t0, c0 = time.perf_counter(), time.process_time()
        res = minhash_dedup(texts, threshold=args.threshold, num_perm=args.num_perm, bands=b, k=args.k, seed=args.seed, verify=verify)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        prf = precision_recall(res.pairs, truth_all)
        near = precision_recall({p for p in res.pairs if p not in truth_exact}, truth_near)
        fps = [p for p in res.pairs if p not in truth_all]
        fps_similar = sum(jaccard(sets[i], sets[j]) >= args.threshold for i, j in fps)
        fns = [p for p in truth_all if p not in res.pairs]
        fn_below = sum(jaccard(sets[i], sets[j]) < args.threshold for i, j in fns)
        print(f"   verify={verify:8s}    {prf}  end to end {dt:.2f} s (CPU {cpu:.2f} s)")
        print(f"      near copies only: recall {near.recall:.3f} ({near.true_positives}/{near.expected})")
        print(f"      false positives: {len(fps)} ({fps_similar} of them truly >= threshold: unplanted duplicates)")
        print(f"      missed: {len(fns)} ({fn_below} of them truly below the threshold after editing)")
        out["minhash"][verify] = dict(prf.__dict__, near_recall=near.recall, seconds=dt, cpu_seconds=cpu, fp=len(fps), fp_truly_similar=int(fps_similar),
                                      fn=len(fns), fn_truly_below=int(fn_below))

    # 4. candidate rate vs theory
    settings = sorted({(b, r), choose_bands(args.threshold, args.num_perm)})
    print("\n4. LSH candidate rate, measured vs 1 - (1 - s^r)^b (pairs with spread-out similarities)\n")
    rows = candidate_rate_vs_theory(docs, args.num_perm, settings, seed=args.seed + 1, k=args.k)
    print(f"   {'b x r':>7}  {'similarity':>10}  {'pairs':>5}  {'measured':>8}  {'theory':>6}")
    for row in rows:
        print(f"   {row['b']:>3} x {row['r']:<2}  {row['bucket']:>10}  {row['pairs']:>5}  {row['measured']:>8.3f}  {row['theory']:>6.3f}")
    out["lsh_curve"] = rows
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2))
        print(f"\nwrote {args.json}")
    return out


if __name__ == "__main__":
    main()

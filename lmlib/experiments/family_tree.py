"""The family-tree experiment of Chapter 5: encoder-only vs decoder-only vs encoder-decoder, trained small.

The models and tasks live in :mod:`lmlib.lm.architectures`; this module runs the comparison
(:func:`run_family_tree`), tabulates it (:func:`family_table`) and saves or loads the shipped
full-mode result (``lmlib/assets/family_tree.json``, made by ``recipes/family_tree.py``).

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..assets import ASSETS, read_results, write_results
from ..lm.architectures import (EncoderDecoder, MaskedLM, PackedSeq2Seq, blank_accuracy, family_tokenizer,
                                 masked_cross_entropy, mlm_batch_fn, reversal_accuracy, reversal_batch_fn,
                                 reversal_words, special_id)
from ..lm.gpt import GPT, GPTConfig
from ..lm.train import TrainConfig, train
from ..text.corpus import CorpusSplit, shakespeare

__all__ = ["run_family_tree", "family_table", "family_table_markdown", "FULL", "RESULTS_PATH",
           "save_family_results", "load_family_results"]

#: Full-mode settings of :func:`run_family_tree`, used by recipes/family_tree.py for the shipped JSON
#: (:data:`RESULTS_PATH`): long enough for the encoder to overtake the GPT on blanks (it learns
#: from only 15% of the positions per step, so it needs many more steps) and for both reversers to learn.
FULL: dict[str, Any] = dict(steps=2400, batch_size=32, seq2seq_steps=400, max_word_len=6)

# ----------------------------------------------------------------------------- the experiment


def _train_cfg(steps: int, batch_size: int, block_size: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(max_steps=steps, batch_size=batch_size, block_size=block_size, lr=lr, min_lr=lr / 10,
                       warmup_steps=min(20, steps // 5), weight_decay=0.01, betas=(0.9, 0.99), eval_interval=0,
                       log_interval=max(1, steps // 20), seed=seed, device="cpu", progress=False)


def run_family_tree(
    *,
    parts: Sequence[str] = ("blanks", "reversal"),
    steps: int = 150,
    mlm_steps: int | None = None,
    mask_prob: float = 0.15,
    seq2seq_steps: int = 150,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 64,
    block_size: int = 32,
    batch_size: int = 16,
    lr: float = 3e-3,
    min_word_len: int = 3,
    max_word_len: int = 5,
    n_eval: int = 256,
    seed: int = 0,
    corpus: CorpusSplit | None = None,
) -> dict[str, Any]:
    """Train the three families small on the same data and measure what each is good at.

    ``parts`` picks the experiments (both by default; run them in two calls to split the time):

    1. ``"blanks"``: a :class:`MaskedLM` (encoder, ``mlm_steps`` updates, default ``steps``,
       masking ``mask_prob`` of the positions) and a :class:`lmlib.lm.gpt.GPT` (decoder, ``steps``
       updates), same width and depth, on ``block_size``-character windows of Shakespeare; then
       :func:`blank_accuracy` of both on ``n_eval`` validation characters (context = block_size).
       Per update the encoder gets a loss on only ``mask_prob`` of the positions (the GPT on all
       of them), so at equal steps it has seen about ``1 / mask_prob`` times fewer targets
       (``metrics["mlm_targets"]``, ``metrics["gpt_targets"]``); ``mlm_steps = steps / mask_prob``
       equalises the targets.
    2. ``"reversal"``: an :class:`EncoderDecoder` (``n_layer`` + ``n_layer`` blocks) and a
       decoder-only GPT (``2 * n_layer`` blocks), ``seq2seq_steps`` updates each on reversing the
       training text's words of ``min_word_len..max_word_len`` letters; then
       :func:`reversal_accuracy` on the validation text's words that never occur in the training text.

    Every model uses the same seed (same batches) and :func:`lmlib.lm.train.train`. The defaults
    are the quick-mode sizes; on the shared 2-core machine under heavy load (load average 8) they
    took about 30 s for "blanks" and 35 s for "reversal" with ``torch.set_num_threads(1)``
    (less on an idle CPU). The chance baseline for blanks is the frequency of the most common
    character.

    Returns:
        dict: ``"tokenizer"``; ``"models"`` with the models that ran among ``"encoder"``, ``"decoder"``,
        ``"encdec"``, ``"decoder_seq2seq"``; ``"metrics"`` (``"blank_acc_encoder"``,
        ``"blank_acc_decoder"``, ``"blank_acc_chance"``, ``"mlm_loss"``, ``"gpt_loss"``,
        ``"mlm_targets"``, ``"gpt_targets"``, ``"reversal_acc_encdec"``, ``"reversal_acc_decoder"``...);
        ``"params"``, ``"seconds"``, ``"settings"``, ``"test_words"``, ``"n_train_words"``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    mlm_steps = steps if mlm_steps is None else mlm_steps
    _check_settings(parts, steps=steps, mlm_steps=mlm_steps, seq2seq_steps=seq2seq_steps, block_size=block_size,
                    batch_size=batch_size, n_eval=n_eval, mask_prob=mask_prob)
    settings = dict(parts=list(parts), steps=steps, mlm_steps=mlm_steps, mask_prob=mask_prob,
                    seq2seq_steps=seq2seq_steps, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                    block_size=block_size, batch_size=batch_size, lr=lr, min_word_len=min_word_len,
                    max_word_len=max_word_len, n_eval=n_eval, seed=seed)
    corpus = shakespeare("tiny") if corpus is None else corpus
    tok = family_tokenizer(corpus.text)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                    n_embd=n_embd, bias=False)
    out: dict[str, Any] = {"tokenizer": tok, "models": {}, "metrics": {}, "params": {},
                           "seconds": {}, "settings": settings, "test_words": [], "n_train_words": 0}
    if "blanks" in parts:
        _run_blanks(out, corpus, cfg, steps=steps, mlm_steps=mlm_steps, mask_prob=mask_prob, batch_size=batch_size,
                    lr=lr, n_eval=n_eval, seed=seed)
    if "reversal" in parts:
        _run_reversal(out, corpus, cfg, seq2seq_steps=seq2seq_steps, batch_size=batch_size, lr=lr,
                      min_word_len=min_word_len, max_word_len=max_word_len, seed=seed)
    for name, m in out["models"].items():
        m.eval()
        out["params"][name] = m.num_params()
    return out


def _check_settings(parts: Sequence[str], mask_prob: float, **positive: int) -> None:
    """Raise ``ValueError`` naming the setting unless ``parts`` is valid, ``positive`` are ints >= 1, 0 < mask_prob <= 1."""
    if isinstance(parts, str) or not parts or not set(parts) <= {"blanks", "reversal"}:
        raise ValueError(f"parts must be a non-empty list from ('blanks', 'reversal'), got {parts!r}")
    for name, v in positive.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")


def _run_blanks(out: dict[str, Any], corpus: CorpusSplit, cfg: GPTConfig, *, steps: int, mlm_steps: int,
                mask_prob: float, batch_size: int, lr: float, n_eval: int, seed: int) -> None:
    """Part 1: encoder (MLM) vs decoder (next character) on the same text; fills ``out`` in place."""
    tok, models, metrics, seconds = out["tokenizer"], out["models"], out["metrics"], out["seconds"]
    block_size = cfg.block_size
    data = {s: torch.tensor(tok.encode(getattr(corpus, s)), dtype=torch.long) for s in ("train", "val")}
    torch.manual_seed(seed)
    models["encoder"] = MaskedLM(cfg)
    t0 = time.perf_counter()
    h = train(models["encoder"], mlm_batch_fn(data, tok, block_size, batch_size, mask_prob),
              _train_cfg(mlm_steps, batch_size, block_size, lr, seed), loss_fn=masked_cross_entropy)
    seconds["encoder"], metrics["mlm_loss"] = time.perf_counter() - t0, h["loss"][-1]
    metrics["mlm_targets"] = round(mlm_steps * batch_size * block_size * mask_prob)  # expected number
    metrics["gpt_targets"] = steps * batch_size * block_size
    torch.manual_seed(seed)
    models["decoder"] = GPT(cfg)
    t0 = time.perf_counter()
    h = train(models["decoder"], data, _train_cfg(steps, batch_size, block_size, lr, seed))
    seconds["decoder"], metrics["gpt_loss"] = time.perf_counter() - t0, h["loss"][-1]
    t0 = time.perf_counter()
    for name in ("encoder", "decoder"):
        metrics[f"blank_acc_{name}"] = blank_accuracy(models[name], data["val"], tok, block_size, n_eval, seed)
    metrics["blank_acc_chance"] = Counter(corpus.val).most_common(1)[0][1] / len(corpus.val)
    seconds["blank_eval"] = time.perf_counter() - t0


def _run_reversal(out: dict[str, Any], corpus: CorpusSplit, cfg: GPTConfig, *, seq2seq_steps: int,
                  batch_size: int, lr: float, min_word_len: int, max_word_len: int, seed: int) -> None:
    """Part 2: encoder-decoder vs decoder-only on reversing words never seen in training; fills ``out`` in place."""
    tok, models, metrics, seconds = out["tokenizer"], out["models"], out["metrics"], out["seconds"]
    train_words = reversal_words(corpus.train, min_word_len, max_word_len)
    seen = set(reversal_words(corpus.train, 1, 10**9))
    test_words = [w for w in reversal_words(corpus.val, min_word_len, max_word_len) if w not in seen]
    if not train_words or not test_words:
        raise ValueError("no training or held-out words for the reversal task; widen min_word_len..max_word_len")
    words = {"train": train_words, "val": test_words}
    M = max_word_len
    torch.manual_seed(seed)
    models["encdec"] = EncoderDecoder(_replace_cfg(cfg, block_size=M + 2), pad_id=special_id(tok, "[PAD]"))
    torch.manual_seed(seed)
    models["decoder_seq2seq"] = GPT(_replace_cfg(cfg, block_size=2 * M + 1, n_layer=2 * cfg.n_layer))
    for name, kind, model, T in (("encdec", "encdec", PackedSeq2Seq(models["encdec"], M), M + 1),
                                 ("decoder_seq2seq", "gpt", models["decoder_seq2seq"], 2 * M + 1)):
        t0 = time.perf_counter()
        h = train(model, reversal_batch_fn(words, tok, M, batch_size, kind),
                  _train_cfg(seq2seq_steps, batch_size, T, lr, seed), loss_fn=masked_cross_entropy)
        seconds[name] = time.perf_counter() - t0
        metrics[f"reversal_loss_{kind}"] = h["loss"][-1]
    t0 = time.perf_counter()
    metrics["reversal_acc_encdec"] = reversal_accuracy(models["encdec"], tok, test_words)
    metrics["reversal_acc_decoder"] = reversal_accuracy(models["decoder_seq2seq"], tok, test_words)
    seconds["reversal_eval"] = time.perf_counter() - t0
    out["test_words"], out["n_train_words"] = test_words, len(train_words)


def _replace_cfg(cfg: GPTConfig, **changes: Any) -> GPTConfig:
    """A copy of ``cfg`` with some fields changed (``dataclasses.replace``, re-validated)."""
    from dataclasses import replace  # noqa: PLC0415

    return replace(cfg, **changes)


def family_table(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per family: examples, attention, objective, what it is good at, and what we measured.

    Args:
        results: what :func:`run_family_tree` returned or :func:`load_family_results` loaded
            (either part or both; a part not run shows "not run").

    Returns:
        A list of 3 dicts with keys ``family``, ``examples``, ``attention``, ``objective``,
        ``good_at``, ``measured``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    try:
        m, p, s = results["metrics"], results["params"], results["settings"]
    except (KeyError, TypeError):
        raise ValueError("family_table needs the dict returned by run_family_tree or load_family_results") from None
    T, n_test = s["block_size"], len(results["test_words"])
    blanks, rev = "blank_acc_encoder" in m, "reversal_acc_encdec" in m
    enc = (f"blank accuracy {m['blank_acc_encoder']:.1%} ({T - 1} chars around; {p['encoder']:,} params)"
           if blanks else "not run")
    dec = [f"blank accuracy {m['blank_acc_decoder']:.1%} ({T - 1} chars before; {p['decoder']:,} params)"] if blanks else []
    dec += [f"reversal {m['reversal_acc_decoder']:.1%} ({p['decoder_seq2seq']:,} params)"] if rev else []
    encdec = (f"reversal exact match {m['reversal_acc_encdec']:.1%} on {n_test} unseen words ({p['encdec']:,} params)"
              if rev else "not run")
    return [
        {"family": "encoder-only", "examples": "BERT, RoBERTa", "attention": "bidirectional",
         "objective": "masked LM (15%: 80/10/10)", "good_at": "understanding, filling blanks, classifying",
         "measured": enc},
        {"family": "decoder-only", "examples": "GPT-2/3/4, Llama", "attention": "causal",
         "objective": "next token", "good_at": "generating text", "measured": "; ".join(dec) or "not run"},
        {"family": "encoder-decoder", "examples": "Transformer (2017), T5, BART",
         "attention": "bidirectional encoder + causal decoder with cross-attention",
         "objective": "target given source", "good_at": "transforming a sequence (translation, summaries)",
         "measured": encdec},
    ]


def family_table_markdown(results: dict[str, Any]) -> str:
    """:func:`family_table` as a Markdown table (for ``IPython.display.Markdown``).

    Works on a live result (:func:`run_family_tree`) and on a saved one (:func:`load_family_results`).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    rows = family_table(results)
    keys = list(rows[0])
    lines = ["| " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the shipped full-mode result

#: The shipped full-mode result (written by recipes/family_tree.py).
RESULTS_PATH = ASSETS / "family_tree.json"
_FORMAT = "lmlib.families/1"  # the file format's name (kept from the first version)
_SAVED_KEYS = ("metrics", "params", "seconds", "settings", "test_words", "n_train_words")


def _validate(results: Any, where: str) -> None:
    if not isinstance(results, dict) or results.get("format") != _FORMAT:
        raise ValueError(f"{where} is not a family-tree result (no format {_FORMAT!r}); "
                         "make one with lmlib.experiments.family_tree.run_family_tree and save_family_results")
    missing = [k for k in _SAVED_KEYS if k not in results]
    if missing:
        raise ValueError(f"{where} is missing the field(s) {missing} of a family-tree result")
    m, p, s = results["metrics"], results["params"], results["settings"]
    if not all(isinstance(d, dict) for d in (m, p, s, results["seconds"])):
        raise ValueError(f"{where}: metrics, params, seconds and settings must be JSON objects")
    if not isinstance(results["test_words"], list) or not all(isinstance(w, str) for w in results["test_words"]):
        raise ValueError(f"{where}: test_words must be a list of strings")
    if "block_size" not in s:
        raise ValueError(f"{where}: settings has no block_size")
    need = {"blank_acc_encoder": "encoder", "blank_acc_decoder": "decoder",
            "reversal_acc_encdec": "encdec", "reversal_acc_decoder": "decoder_seq2seq"}
    if not any(k in m for k in need):
        raise ValueError(f"{where}: metrics has no accuracy at all (expected some of {list(need)})")
    for key, model in need.items():
        if key not in m:
            continue
        v = m[key]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{where}: metrics[{key!r}] must be an accuracy in [0, 1], got {v!r}")
        if not isinstance(p.get(model), int):
            raise ValueError(f"{where}: params has no parameter count for {model!r} (needed with {key!r})")


def save_family_results(results: dict[str, Any], path: str | os.PathLike = RESULTS_PATH,
                        **extra: Any) -> Path:
    """Write what :func:`run_family_tree` measured as JSON, atomically (the models are not saved).

    Keeps ``metrics``, ``params``, ``seconds``, ``settings``, ``test_words`` and ``n_train_words``
    (enough for :func:`family_table`), plus any JSON-able ``extra`` fields (e.g. ``command``,
    ``machine``, ``created_utc``). Read it back with :func:`load_family_results`.

    Returns:
        The path written.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not isinstance(results, dict):
        raise ValueError(f"results must be the dict returned by run_family_tree, got {type(results).__name__}")
    clash = set(extra) & set(_SAVED_KEYS + ("format",))
    if clash:
        raise ValueError(f"extra fields may not replace the result's own fields {sorted(clash)}")
    out = {"format": _FORMAT, **{k: results[k] for k in _SAVED_KEYS if k in results}, **extra}
    return write_results(out, path, _validate)


def load_family_results(path: str | os.PathLike = RESULTS_PATH) -> dict[str, Any]:
    """Load the shipped full-mode family-tree result (or another file from :func:`save_family_results`).

    The dict works with :func:`family_table` and :func:`family_table_markdown` (it has no
    ``models`` or ``tokenizer``: those live only in a live run).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not valid JSON or not a family-tree result.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    return read_results(path, "python recipes/family_tree.py", _validate)

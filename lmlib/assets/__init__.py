"""What ships with lmlib, and its loaders: the book's GPT, the PPO agents, the shipped results and videos.

Every file in this folder is recorded in ``MANIFEST.json`` (size, SHA-256, the recipe that made
it) and checked against it when loaded. The loaders:

* :func:`load_book_gpt`, :func:`book_gpt_info` - the book's pretrained character-level GPT;
* :func:`load_agent`, :func:`agent_results`, :func:`agent_video` - Chapter 10's PPO agents;
* :func:`preference_results`, :func:`preference_video` - Chapter 11's agents trained from preferences;
* :func:`read_results` / :func:`write_results` - the one JSON reader and writer of every shipped
  result (the positional-encoding and family-tree experiments use them too).

The book's own pretrained GPT is a character-level model of Shakespeare that ships with lmlib.

Every chapter from "Attention" on, and later the fine-tuning and RLHF chapters, start from
the same small GPT, pretrained by the project's recipe (``recipes/book_gpt.py``, about 25 min
on a 2-core laptop CPU) on all 38 plays of :func:`lmlib.text.corpus.shakespeare`. It loads in one
line, offline and in Colab (the checkpoint is package data of lmlib)::

    from lmlib.assets import load_book_gpt
    model, tok = load_book_gpt()          # GPT in eval mode, CharTokenizer
    ids = torch.tensor([tok.encode("ROMEO:\\n")])
    print(tok.decode(model.generate(ids, 200, generator=torch.Generator().manual_seed(0))[0].tolist()))

The file is ``lmlib/assets/book_gpt.safetensors``. Its SHA-256 is recorded twice: in the
sidecar next to it (checked by :func:`lmlib.checkpoint.load_checkpoint`) and in
``lmlib/assets/MANIFEST.json`` written by the recipe, which :func:`load_book_gpt` checks as
well, so a file swapped together with its sidecar is still caught. The tokenizer's characters,
the training configuration, the validation loss and the pretraining time are stored in the
checkpoint's metadata (:func:`book_gpt_info`).

Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb); used from Chapter 4 on.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_text, sha256_file, verify_sha256
from ..checkpoint import CheckpointError, load_checkpoint
from ..lm.gpt import GPT
from ..text.tokenizer import CharTokenizer

__all__ = ["ASSETS", "BOOK_GPT", "load_book_gpt", "book_gpt_info", "book_gpt_tokenizer", "manifest_sha256",
           "AGENTS", "load_agent", "agent_results", "agent_video", "manifest_add", "preference_results",
           "preference_video", "read_results", "write_results", "SFT_GPT", "load_sft_gpt",
           "REWARD_GPT", "load_reward_gpt", "PPO_GPT", "load_ppo_gpt"]

ASSETS = Path(__file__).resolve().parent
"""Folder of the files that ship inside lmlib (checkpoints and their manifest)."""
BOOK_GPT = ASSETS / "book_gpt.safetensors"
"""Where the book GPT's checkpoint lives."""
SFT_GPT = ASSETS / "sft_gpt.safetensors"
"""Where the instruction-tuned GPT of ``recipes/sft.py`` lives."""
REWARD_GPT = ASSETS / "reward_gpt.safetensors"
"""The reward model of Chapter 14 (``recipes/reward_model.py``): the tuned GPT's trunk with a scalar head."""
PPO_GPT = ASSETS / "ppo_gpt.safetensors"
"""The tuned GPT after RLHF with PPO against the reward model (``recipes/rlhf_ppo.py``, Chapter 15)."""
MANIFEST = ASSETS / "MANIFEST.json"


def manifest_sha256(name: str) -> str:
    """The SHA-256 that ``lmlib/assets/MANIFEST.json`` records for asset ``name``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if not MANIFEST.exists():
        raise FileNotFoundError(f"{MANIFEST} is missing: reinstall lmlib, or rebuild the assets with "
                                f"`python recipes/book_gpt.py`")
    entries = json.loads(MANIFEST.read_text(encoding="utf-8"))
    if name not in entries or "sha256" not in entries[name]:
        raise KeyError(f"{MANIFEST} has no checksum for {name!r} (known: {sorted(entries)})")
    return entries[name]["sha256"]


def manifest_add(path: str | os.PathLike, recipe: str) -> str:
    """Record ``path``'s size, SHA-256 and the ``recipe`` that made it in the ``MANIFEST.json`` of its folder
    (created if missing; written atomically); return the digest. The recipes call this for every file they ship.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    path = Path(path)
    manifest = path.parent / "MANIFEST.json"
    entries = json.loads(manifest.read_text(encoding="utf-8")) if manifest.exists() else {}
    digest = sha256_file(path)
    entries[path.name] = {"bytes": path.stat().st_size, "sha256": digest, "recipe": recipe}
    atomic_write_text(manifest, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return digest


def read_results(path: str | os.PathLike, recipe: str,
                 validate: Callable[[Any, str], None] | None = None) -> Any:
    """Read a shipped (or freshly written) JSON result, with errors that say how to re-create it.

    Args:
        path: the JSON file.
        recipe: the command that makes it (named in every error).
        validate: optional ``validate(results, where)`` that raises ``ValueError`` on a malformed result.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not valid JSON, or ``validate`` rejects it.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb); used by every chapter that shows
    shipped results.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results at {path}; create them with `{recipe}`")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-create it with `{recipe}`") from None
    if validate is not None:
        validate(results, str(path))
    return results


def write_results(results: Any, path: str | os.PathLike,
                  validate: Callable[[Any, str], None] | None = None) -> Path:
    """Write ``results`` as JSON atomically (after ``validate(results, "results")``, if given); return the path.

    Raises ``ValueError`` if the results hold something JSON cannot store (NaN, a tensor...).

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    if validate is not None:
        validate(results, "results")
    try:
        text = json.dumps(results, indent=1, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the results cannot be written as JSON: {e}") from None
    return atomic_write_text(path, text + "\n")


def _read_all(files: list[Path]) -> list[Any]:
    return [read_results(f, "the recipe named in its chapter") for f in files]


def _resolve(path: str | os.PathLike | None) -> tuple[Path, str | None]:
    if path is None:
        if not BOOK_GPT.exists():
            raise FileNotFoundError(
                f"the book GPT checkpoint {BOOK_GPT} is missing. It ships with lmlib; reinstall it "
                f"(pip install --force-reinstall lmlib) or rebuild it with `python recipes/book_gpt.py`.")
        return BOOK_GPT, manifest_sha256(BOOK_GPT.name)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint at {p}")
    return p, None


def book_gpt_tokenizer(meta: dict[str, Any]) -> CharTokenizer:
    """Rebuild the tokenizer stored in a book-GPT checkpoint's metadata.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    tok_meta = meta.get("tokenizer")
    if not isinstance(tok_meta, dict) or tok_meta.get("kind") != "char":
        raise CheckpointError("this checkpoint does not store a character tokenizer (meta['tokenizer'])")
    return CharTokenizer(tok_meta["chars"], unk_token=tok_meta.get("unk_token"),
                         special_tokens=tok_meta.get("special_tokens", ()))


def load_book_gpt(path: str | os.PathLike | None = None, *, map_location: str = "cpu") -> tuple[GPT, CharTokenizer]:
    """Load the book's pretrained GPT and its tokenizer (checksums verified), model in eval mode.

    Args:
        path: another checkpoint written by ``recipes/book_gpt.py`` (e.g. your own retrained
            one); default: the one shipped in ``lmlib/assets``.
        map_location: device for the weights ("cpu", "cuda", ...).

    Returns:
        ``(model, tokenizer)``: a :class:`lmlib.lm.gpt.GPT` and a :class:`lmlib.text.tokenizer.CharTokenizer`
        with ``tokenizer.vocab_size == model.config.vocab_size``.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    p, expected = _resolve(path)
    return _load_gpt(p, expected, map_location)


def _load_gpt(p: Path, expected: str | None, map_location: str) -> tuple[GPT, CharTokenizer]:
    model = GPT.from_checkpoint(p, map_location=map_location, expected_sha256=expected)
    meta = load_checkpoint(p, expected_sha256=expected).meta
    tok = book_gpt_tokenizer(meta)
    if tok.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{p}: tokenizer has {tok.vocab_size} tokens but the model {model.config.vocab_size}")
    return model, tok


def load_sft_gpt(*, map_location: str = "cpu") -> tuple[GPT, CharTokenizer]:
    """The book's GPT instruction-tuned by ``recipes/sft.py`` (the assistant of Part III), checksums verified.

    Returns ``(model, tokenizer)``: the GPT in eval mode with the chat tokens ``<|user|>``,
    ``<|assistant|>``, ``<|end|>`` in its vocabulary, and the chat tokenizer (see :mod:`lmlib.rlhf.template`).
    Its training and evaluation (gold-judge scores per category, decline rates, alignment tax) are in
    ``read_results(ASSETS / "sft_results.json", "python recipes/sft.py")``.

    Taught in: Chapter 13, "Instruction tuning" (chapters/13_instruction_tuning.ipynb).
    """
    if not SFT_GPT.exists():
        raise FileNotFoundError(f"the instruction-tuned GPT {SFT_GPT} is missing; make it with `python recipes/sft.py`")
    return _load_gpt(SFT_GPT, manifest_sha256(SFT_GPT.name), map_location)


def load_reward_gpt(*, map_location: str = "cpu"):
    """The reward model of ``recipes/reward_model.py``, checksums verified: ``(model, tokenizer)``.

    ``model`` is a :class:`lmlib.preferences.SequenceRewardModel` on the tuned GPT's trunk, in eval mode;
    score answers with :func:`lmlib.rlhf.reward.encode_answers` and :func:`lmlib.rlhf.reward.score_answers`.
    How it was trained and how often it agrees with the gold judge: ``reward_results.json``.

    Taught in: Chapter 14, "Reward models from rankings" (chapters/14_reward_models.ipynb).
    """
    from ..rlhf.reward import load_reward_model  # assets may use rlhf; rlhf never imports assets
    if not REWARD_GPT.exists():
        raise FileNotFoundError(f"the reward model {REWARD_GPT} is missing; make it with "
                                "`python recipes/reward_model.py`")
    model, meta = load_reward_model(REWARD_GPT, expected_sha256=manifest_sha256(REWARD_GPT.name),
                                    map_location=map_location)
    return model, book_gpt_tokenizer(meta)


def load_ppo_gpt(*, map_location: str = "cpu") -> tuple[GPT, CharTokenizer]:
    """The instruction-tuned GPT after RLHF with PPO against the chapter-14 reward model (the first headline run
    of ``recipes/rlhf_ppo.py``), checksums verified: ``(model, tokenizer)``, the model in eval mode.

    Its training curves, held-out evaluations and the other runs are in ``ppo_results.json``.

    Taught in: Chapter 15, "RLHF with PPO and a KL penalty" (chapters/15_rlhf_ppo.ipynb).
    """
    if not PPO_GPT.exists():
        raise FileNotFoundError(f"the RLHF-tuned GPT {PPO_GPT} is missing; make it with `python recipes/rlhf_ppo.py`")
    return _load_gpt(PPO_GPT, manifest_sha256(PPO_GPT.name), map_location)


def book_gpt_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The book GPT's metadata: config, training settings, validation loss, time, sample, history.

    Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb).
    """
    p, expected = _resolve(path)
    return load_checkpoint(p, expected_sha256=expected).meta


# ----------------------------------------------------------------------------- the book's PPO agents

AGENTS = ("hopper", "halfcheetah", "breakout")
"""Agents that ``recipes/ppo_agents.py`` trains and that ship as ``lmlib/assets/ppo_<name>.safetensors``."""


def load_agent(name: str):
    """A PPO agent that ships with the book (``"hopper"``, ``"halfcheetah"``, ``"breakout"``), ready to act.

    Returns the policy of :func:`lmlib.rl.ppo.load_ppo` (eval mode, ``.config`` and
    ``.obs_normalizer`` attached). Its SHA-256 is checked against the sidecar and against
    ``lmlib/assets/MANIFEST.json``. Rebuild it with ``python recipes/ppo_agents.py <name>``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    from ..rl.ppo import load_ppo  # noqa: PLC0415  (gymnasium only when an agent is wanted)

    path = ASSETS / f"ppo_{name}.safetensors"
    if not path.exists():
        shipped = sorted(p.stem[4:] for p in ASSETS.glob("ppo_*.safetensors"))
        raise FileNotFoundError(f"no shipped agent {name!r} ({path} is missing); shipped agents: {shipped}. "
                                f"Train it with `python recipes/ppo_agents.py {name}`")
    return load_ppo(path, expected_sha256=manifest_sha256(path.name))


def agent_results(name: str) -> list[dict[str, Any]]:
    """The results that ``recipes/ppo_agents.py`` wrote for agent ``name``, one dict per seed (sorted by seed):
    ``curve`` (every finished episode's return and the step it ended at), ``iterations`` (per-update
    diagnostics), ``eval``, ``train_seconds``, ``mean_sps``, ``machine``, ``command``...

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    files = sorted(ASSETS.glob(f"ppo_{name}_s*.json"), key=lambda p: int(p.stem.rsplit("_s", 1)[1]))
    if not files:
        raise FileNotFoundError(f"no results for agent {name!r} in {ASSETS} (files ppo_{name}_s<seed>.json); "
                                f"make them with `python recipes/ppo_agents.py {name} --seed 1`")
    return _read_all(files)


def preference_results(prefix: str) -> dict[str, dict[str, Any]]:
    """The results that ``recipes/preference_agents.py`` wrote (``lmlib/assets/rlhp_<tag>.json``) whose tag starts
    with ``prefix`` (e.g. ``"hopper_"``, ``"backflip"``), keyed by tag: ``curve`` (true, learned and
    standard-task returns per episode), ``labels`` (labels asked over time, the reward model's
    agreement with the true reward), ``eval``, ``train_seconds``, ``command``...

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    files = sorted(ASSETS.glob(f"rlhp_{prefix}*.json"))
    if not files:
        raise FileNotFoundError(f"no results rlhp_{prefix}*.json in {ASSETS}; the recipes "
                                f"recipes/preference_agents.py (Hopper, the backflip) and "
                                f"recipes/preference_atari.py (Breakout) make them")
    return {f.stem[len("rlhp_"):]: r for f, r in zip(files, _read_all(files))}


def preference_video(tag: str) -> Path | None:
    """The video of the agent of ``recipes/preference_agents.py`` run ``tag`` (``lmlib/assets/rlhp_<tag>.mp4``,
    recorded with ``--video``) after checking its SHA-256 against the manifest, or ``None`` if that run
    shipped no video.

    Taught in: Chapter 11, "Learning rewards from human preferences" (chapters/11_preferences.ipynb).
    """
    path = ASSETS / f"rlhp_{tag}.mp4"
    return verify_sha256(path, manifest_sha256(path.name)) if path.exists() else None


def agent_video(name: str) -> Path:
    """The path of the shipped video of agent ``name`` (``lmlib/assets/ppo_<name>.mp4``), after checking its
    SHA-256 against ``lmlib/assets/MANIFEST.json``. Re-record it with
    ``python recipes/ppo_agents.py <name> --video-only``.

    Taught in: Chapter 10, "Proximal Policy Optimization" (chapters/10_ppo.ipynb).
    """
    path = ASSETS / f"ppo_{name}.mp4"
    if not path.exists():
        raise FileNotFoundError(f"no shipped video {path}; record it with "
                                f"`python recipes/ppo_agents.py {name} --video-only`")
    return verify_sha256(path, manifest_sha256(path.name))

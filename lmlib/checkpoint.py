"""Checkpoints that load safely: safetensors + a SHA-256 sidecar, written atomically.

A checkpoint is ONE safetensors file plus a checksum file next to it::

    ckpt.safetensors          tensors + a JSON header (meta, optimizer layout, tied names)
    ckpt.safetensors.sha256   "<hex digest>  ckpt.safetensors"   (the format of `sha256sum`)

Why these choices:

* **No pickle.** ``torch.save``/``torch.load`` run arbitrary code from the file.
  safetensors stores raw tensors and a JSON header, nothing executable. The
  optimizer state (nested dicts of tensors and numbers, e.g. AdamW's
  ``exp_avg``) is *flattened*: every tensor goes into the safetensors file under
  ``optimizer/<i>`` and the nesting goes into the JSON header, where the tensor is
  replaced by ``{"__tensor__": "optimizer/<i>"}``. ``meta`` is stored the same way,
  so it may hold tensors too (a trainer keeps its RNG states there).
* **Atomic.** The bytes are written to a temporary file in the same folder,
  fsynced, and moved over the old file with ``os.replace`` (:mod:`lmlib._io`).
  The sidecar is updated in three atomic steps (list old+new digest, replace the
  data, list only the new digest), so a crash at *any* point leaves a
  checkpoint that loads: the old one or the new one.
* **Verified.** :func:`load_checkpoint` hashes the file and compares it with
  the sidecar (and with ``expected_sha256`` if you give one) before parsing a
  single byte.
* **Tied weights.** safetensors refuses tensors that share memory, and a GPT
  ties ``lm_head.weight`` to ``wte.weight``. We store such a tensor once and
  record the other name as an alias; loading gives back one tensor under both
  names.

Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from ._io import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "LoadReport",
    "save_checkpoint",
    "load_checkpoint",
    "load_into",
    "sidecar_path",
]

FORMAT = 1
_HEADER_KEY = "lmlib_checkpoint"  # key in the safetensors __metadata__ that holds our JSON


class CheckpointError(ValueError):
    """A checkpoint is corrupt, does not match its checksum, or does not fit the model.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        model: parameter/buffer name -> tensor (tied names map to the *same* tensor).
        optimizer: the ``optimizer.state_dict()`` that was saved, or ``None``.
        meta: the ``meta`` dict that was saved (``{}`` if none).
        path: the file it was read from.
        sha256: hex digest of that file (already verified).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """

    model: dict[str, torch.Tensor]
    optimizer: dict | None = None
    meta: dict = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""


class LoadReport(NamedTuple):
    """Keys that did not fit in :func:`load_into`.

    ``missing``: in the model, not in the checkpoint. ``unexpected``: in the
    checkpoint, not in the model. ``mismatched``: ``(name, checkpoint shape, model shape)``.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """

    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``ckpt.safetensors`` -> ``ckpt.safetensors.sha256`` (the checksum file next to it).

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    path = Path(path)
    return path.with_name(path.name + ".sha256")


# ----------------------------------------------------------------------------
# Nested python objects <-> JSON + a flat dict of tensors (no pickle anywhere)


def _encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """Replace every tensor in ``obj`` by ``{"__tensor__": key}`` and put it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}/{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, prefix, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, prefix, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, prefix, tensors, f"{where}[{k!r}]") for k, v in obj.items()}
        # int keys (optimizer state is keyed by parameter index) or reserved names
        return {"__dict__": [[_encode(k, prefix, tensors, where), _encode(v, prefix, tensors, f"{where}[{k!r}]")]
                             for k, v in obj.items()]}
    raise TypeError(
        f"cannot store {where} of type {type(obj).__name__} in a checkpoint: only tensors, "
        "dict, list, tuple, str, int, float, bool and None are allowed (no pickle)"
    )


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store tensors that are the same view of the same memory once; make the rest safetensors-ready.

    Returns ``(unique, aliases)`` with ``aliases[name] = name_kept``. Tensors that
    overlap in memory without being the same view (slices of one buffer) are cloned.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storage_users: dict[tuple, int] = {}
    for name, t in tensors.items():
        t = t.detach()
        if t.numel() > 0 and t.device.type != "meta":
            ptr = (t.device, t.untyped_storage().data_ptr())
            view = (*ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if view in seen:  # e.g. lm_head.weight is wte.weight
                aliases[name] = seen[view]
                continue
            seen[view] = name
            storage_users[ptr] = storage_users.get(ptr, 0) + 1
        unique[name] = t
    out = {}
    for name, t in unique.items():
        shared = t.numel() > 0 and storage_users.get((t.device, t.untyped_storage().data_ptr()), 0) > 1
        t = t.to("cpu")
        if shared or not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone(memory_format=torch.contiguous_format)  # own, compact memory
        out[name] = t
    return out, aliases


# ----------------------------------------------------------------------------
# Save


def _read_sidecar(side: Path) -> list[str]:
    digests = []
    for line in side.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digests.append(line.split()[0].lower())
    return digests


def save_checkpoint(
    path: str | os.PathLike,
    model_state: dict[str, torch.Tensor] | torch.nn.Module,
    *,
    optimizer_state: dict | None = None,
    meta: dict | None = None,
) -> str:
    """Write a checkpoint atomically and return its SHA-256 hex digest.

    Args:
        path: the ``.safetensors`` file to (over)write; folders are created.
        model_state: ``model.state_dict()`` (name -> tensor of any shape), or the
            module itself. Tied/shared tensors are stored once (see module docs).
        optimizer_state: ``optimizer.state_dict()``; tensors are stored in the
            safetensors file, the nesting and numbers in its JSON header.
        meta: anything made of dict/list/tuple/str/int/float/bool/None/tensor
            (a config, the step, a training history, RNG states).

    Writes ``path`` and ``path + ".sha256"``. A crash at any moment leaves a
    checkpoint that loads (the previous one or this one), never a torn file.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    path = Path(path)
    if isinstance(model_state, torch.nn.Module):
        model_state = model_state.state_dict()
    if not isinstance(model_state, dict):
        raise TypeError(f"model_state must be a dict name -> tensor (model.state_dict()), got {type(model_state).__name__}")
    for name, t in model_state.items():
        if not isinstance(name, str) or "/" in name:
            raise TypeError(f"model_state key {name!r} must be a str without '/'")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"model_state[{name!r}] is a {type(t).__name__}, not a tensor")

    # 1. everything -> one flat dict of tensors + one JSON header
    extra: dict[str, torch.Tensor] = {}
    header = {
        "format": FORMAT,
        "model_keys": list(model_state),
        "optimizer": None if optimizer_state is None else _encode(optimizer_state, "optimizer", extra, "optimizer_state"),
    }
    meta_tensors: dict[str, torch.Tensor] = {}
    header["meta"] = _encode({} if meta is None else meta, "meta", meta_tensors, "meta")
    tensors, aliases = _dedupe({**model_state, **extra, **meta_tensors})
    header["aliases"] = aliases
    data = _st_save(tensors, metadata={_HEADER_KEY: json.dumps(header)})
    digest = sha256_bytes(data)

    # 2. sidecar lists old+new digest -> replace data -> sidecar lists only new.
    side = sidecar_path(path)
    keep: list[str] = []
    if path.exists() and side.exists():
        old = sha256_file(path)
        keep = [d for d in _read_sidecar(side) if d == old and d != digest]
    if keep:
        atomic_write_text(side, "".join(f"{d}  {path.name}\n" for d in [*keep, digest]))
    atomic_write_bytes(path, data)
    atomic_write_text(side, f"{digest}  {path.name}\n")
    return digest


# ----------------------------------------------------------------------------
# Load


def _missing_hint(path: Path) -> str:
    return (
        "Create it by running the training cell that saves it (lmlib.lm.train.train(..., cfg) with "
        f"cfg.ckpt_path={str(path)!r}) or with lmlib.checkpoint.save_checkpoint({str(path)!r}, model.state_dict())."
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Checkpoint:
    """Verify and load a checkpoint written by :func:`save_checkpoint`.

    The file's SHA-256 must match its ``.sha256`` sidecar, and ``expected_sha256``
    if given (then the sidecar may be absent: use this for shipped weights whose
    digest the book prints). A plain safetensors file (not written by lmlib)
    loads as model weights only.

    Args:
        path: the ``.safetensors`` file.
        expected_sha256: hex digest the file must have, or ``None``.
        map_location: device for the returned tensors (``"cpu"``, ``"cuda"``, ...).

    Raises:
        FileNotFoundError: the file or its sidecar is missing (says how to recreate it).
        CheckpointError: checksum mismatch (names both digests) or a truncated/corrupt file.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist. {_missing_hint(path)}")
    side = sidecar_path(path)
    if expected_sha256 is None and not side.is_file():
        raise FileNotFoundError(
            f"checksum file {side} is missing, so {path} cannot be verified (was it copied without "
            "its .sha256 file, or written by something other than save_checkpoint?). Copy the sidecar "
            f"too, pass expected_sha256=..., or re-create the checkpoint. {_missing_hint(path)}"
        )
    data = path.read_bytes()  # read once: the bytes we verify are the bytes we parse
    digest = sha256_bytes(data)
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        raise CheckpointError(
            f"checksum mismatch for {path}: expected sha256 {expected_sha256.strip().lower()}, got {digest} "
            f"({len(data)} bytes). The file is truncated, corrupted or a different checkpoint; "
            f"delete it and re-create it. {_missing_hint(path)}"
        )
    if side.is_file():
        listed = _read_sidecar(side)
        if digest not in listed:
            raise CheckpointError(
                f"checksum mismatch for {path}: its sidecar {side.name} says sha256 "
                f"{' or '.join(listed) or '(nothing)'}, but the file hashes to {digest} ({len(data)} bytes). "
                f"The file was truncated, corrupted or edited after saving; delete both files and "
                f"re-create the checkpoint. {_missing_hint(path)}"
            )

    try:
        n = int.from_bytes(data[:8], "little")
        meta_raw = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        tensors = _st_load(data)
    except Exception as e:  # safetensors raises its own SafetensorError; JSON errors too
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({len(data)} bytes): {e}. "
            f"It is truncated or corrupt; delete it and re-create it. {_missing_hint(path)}"
        ) from e
    if map_location is not None and torch.device(map_location) != torch.device("cpu"):
        tensors = {k: v.to(map_location) for k, v in tensors.items()}

    if _HEADER_KEY not in meta_raw:  # plain safetensors weights (e.g. exported elsewhere)
        return Checkpoint(model=tensors, optimizer=None, meta={}, path=path, sha256=digest)
    header = json.loads(meta_raw[_HEADER_KEY])
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {header.get('format')!r}; this lmlib reads format {FORMAT}")
    for name, kept in header["aliases"].items():
        tensors[name] = tensors[kept]  # tied weights: one tensor, two names
    model = {k: tensors[k] for k in header["model_keys"]}
    optimizer = None if header["optimizer"] is None else _decode(header["optimizer"], tensors)
    return Checkpoint(model=model, optimizer=optimizer, meta=_decode(header["meta"], tensors), path=path, sha256=digest)


def load_into(model: torch.nn.Module, ckpt: Checkpoint | dict[str, torch.Tensor], *, strict: bool = True) -> LoadReport:
    """Copy checkpoint weights into ``model``, naming every key that does not fit.

    Compares ``model.state_dict()`` with the checkpoint: missing keys, unexpected
    keys and shape mismatches are listed by name. With ``strict=True`` (default)
    any of them raises :class:`CheckpointError` and nothing is loaded; with
    ``strict=False`` the keys that fit are loaded and the report is returned.

    Taught in: Chapter 3, "Neural language models" (chapters/03_neural_language_models.ipynb).
    """
    state = ckpt.model if isinstance(ckpt, Checkpoint) else ckpt
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        (k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if k in state and state[k].shape != own[k].shape
    ]
    report = LoadReport(missing, unexpected, mismatched)
    if strict and not report.ok:
        lines = [f"checkpoint does not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing (in the model, not in the checkpoint): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected (in the checkpoint, not in the model): {', '.join(unexpected)}")
        for k, s_ck, s_m in mismatched:
            lines.append(f"  shape mismatch for {k}: checkpoint {list(s_ck)} vs model {list(s_m)}")
        lines.append("Was the model built with the same config as the checkpoint?")
        raise CheckpointError("\n".join(lines))
    bad = {k for k, _, _ in mismatched}
    fits = {k: v for k, v in state.items() if k in own and k not in bad}
    model.load_state_dict(fits, strict=False)
    return report

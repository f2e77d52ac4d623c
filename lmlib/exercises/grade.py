"""Grade a folder of completed student notebooks by running them.

``python -m lmlib.exercises grade SUBMISSIONS --out grades.csv`` (``make grade
SUBMISSIONS=dir``) finds every submission in the folder, laid out either as

* ``SUBMISSIONS/<student>/<notebook>.ipynb`` (one folder per student), or
* ``SUBMISSIONS/<student>__<notebook>.ipynb`` (flat, two underscores),

executes each one in a fresh Jupyter kernel (quick mode, a time limit per
cell) with ``LMBOOK_GRADE_REPORT`` pointing at a temporary file, and reads the
one JSON line that every ``check`` call appends there. The exercises a
notebook must answer, and the check cells that grade them, always come from
the book's own copy of the notebook (``--chapters``, by default the
``chapters/`` folder of the repository that holds the installed ``lmlib``, or
of the current folder; grading stops with an error when there is none): they
replace the submission's check cells, any that were deleted are appended, and
only what those cells report counts, so a learner cannot skip or rewrite a
check by editing it. A submission that is not a notebook of the book scores 0.

Scores are partial credit: the fraction of an exercise's test cases that
passed. An exercise whose check never reported scores 0 with the reason; a
notebook that cannot be read or run scores 0 for each of its exercises, and
grading goes on with the next one. Two files are written, atomically:

* ``grades.csv``: one row per student, one column per exercise id, a
  ``total`` (sum of scores) and ``percent``;
* ``grades_detail.csv`` next to it: one row per (student, notebook,
  exercise) with score, passed, total and the first problem found.

The student's code runs with the instructor's ``lmlib`` (its references and
test cases), not anything from the submission. It is still the student's
code: grade untrusted submissions inside a container or VM.

Taught in: the instructor guide (book/instructors.md).
"""
from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .._io import atomic_write_text

__all__ = ["Submission", "Row", "NotebookResult", "find_submissions", "find_chapters", "check_ids",
           "grade_notebook", "grade_folder", "write_grades"]

CHECK_TAG = "check"
FLAT_SEPARATOR = "__"
NOT_REACHED = "not reached (the notebook stopped before this check)"
NO_SUBMISSION = "no submission for this notebook"
NOT_IN_BOOK = "not a notebook of the book: {chapters} has no {name}; hand it in under the chapter's file name"
CHAPTER_NOTEBOOK = re.compile(r"^\d\d_.*\.ipynb$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_LINE = re.compile(r"Cell In\[(?P<count>\d+)\], line (?P<line>\d+)")
GRADER_IMPORT = "from lmlib.exercises import check  # added by the grader\n"
_CHECK_CALL = re.compile(r"""\bcheck\(\s*(['"])(?P<id>[^'"]+)\1""")


@dataclass(frozen=True)
class Submission:
    """One student's copy of one notebook.

    Taught in: the instructor guide (book/instructors.md).
    """

    student: str
    notebook: str  # file name without folder, e.g. "01_language_models.ipynb"
    path: Path


@dataclass
class Row:
    """One graded exercise of one submission (a line of grades_detail.csv).

    Taught in: the instructor guide (book/instructors.md).
    """

    student: str
    notebook: str
    exercise: str
    score: float
    passed: int
    total: int
    message: str


@dataclass
class NotebookResult:
    """Everything grading one submission produced.

    Taught in: the instructor guide (book/instructors.md).
    """

    submission: Submission
    rows: list[Row]
    seconds: float
    problem: str = ""  # why the notebook could not run to the end ("" when it did)
    first_error: str = ""  # the first error a cell of the submission raised, with its type and line ("" if none)
    executed: dict | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------- finding work


def _notebook_name(filename: str) -> str:
    # Downloads and Colab copies rename files: "Copy of 01_x.ipynb", "01_x (1).ipynb" -> "01_x.ipynb".
    stem = Path(filename).stem
    stem = re.sub(r"^Copy of ", "", stem)
    stem = re.sub(r"\s*\(\d+\)$", "", stem)
    return stem + ".ipynb"


def find_submissions(folder: str | Path) -> list[Submission]:
    """Every submission in ``folder``: ``<student>/<notebook>.ipynb`` or ``<student>__<notebook>.ipynb``.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for a
    flat file without the ``__`` separator or a folder with no notebooks.

    Taught in: the instructor guide (book/instructors.md).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of submissions")
    found: list[Submission] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            for nb in sorted(entry.glob("*.ipynb")):
                found.append(Submission(entry.name, _notebook_name(nb.name), nb))
        elif entry.suffix == ".ipynb":
            if FLAT_SEPARATOR not in entry.stem:
                raise ValueError(
                    f"{entry}: cannot tell whose notebook this is; name flat submissions "
                    f"<student>{FLAT_SEPARATOR}<notebook>.ipynb or put them in a folder per student"
                )
            student, notebook = entry.name.split(FLAT_SEPARATOR, 1)
            found.append(Submission(student, _notebook_name(notebook), entry))
    if not found:
        raise ValueError(f"no submissions (*.ipynb) in {folder}")
    seen: dict[tuple[str, str], Path] = {}
    for sub in found:
        key = (sub.student, sub.notebook)
        if key in seen:
            raise ValueError(f"two submissions of {sub.notebook} for {sub.student}: {seen[key]} and {sub.path}")
        seen[key] = sub.path
    return found


def find_chapters(chapters: str | Path | None = None) -> Path:
    """The folder of the book's chapter notebooks, whose check cells grade every submission.

    ``chapters``: the folder to use (``--chapters``); it must hold ``NN_*.ipynb`` notebooks. Without it,
    the ``chapters/`` folder of the repository that holds the installed ``lmlib`` (a clone with
    ``pip install -e .``), else ``./chapters``. Raises ``FileNotFoundError`` saying what to pass when
    there is none: grading with the learners' own check cells would let a deleted check go unnoticed.

    Taught in: the instructor guide (book/instructors.md).
    """
    def has_chapters(folder: Path) -> bool:
        return folder.is_dir() and any(CHAPTER_NOTEBOOK.match(p.name) for p in folder.iterdir())

    if chapters is not None:
        folder = Path(chapters)
        if not has_chapters(folder):
            what = "no chapter notebooks (NN_*.ipynb) in" if folder.is_dir() else "no such folder:"
            raise FileNotFoundError(f"--chapters: {what} {folder}; pass the chapters/ folder of your copy of the book")
        return folder
    candidates = list(dict.fromkeys([Path(__file__).resolve().parents[2] / "chapters", Path.cwd() / "chapters"]))
    for folder in candidates:
        if has_chapters(folder):
            return folder
    raise FileNotFoundError(
        "cannot find the book's chapter notebooks, whose check cells grade the submissions (looked in "
        + " and ".join(str(c) for c in candidates)
        + "). Pass --chapters DIR, the chapters/ folder of your copy of the book, or run from its root folder."
    )


def check_ids(source: str) -> list[str]:
    """Exercise ids named by ``check("id", ...)`` calls in one cell's code, in order.

    Taught in: the instructor guide (book/instructors.md).
    """
    ids: list[str] = []
    try:
        tree = ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name == "check":
                    ids.append(node.args[0].value)
        ids.sort(key=lambda i: source.find(i))
    except SyntaxError:  # a learner broke the cell: fall back to the text
        ids = [m.group("id") for m in _CHECK_CALL.finditer(source)]
    return list(dict.fromkeys(ids))


def _check_cells(nb: nbformat.NotebookNode) -> list[tuple[int, list[str]]]:
    """(cell index, ids) of the check cells: cells tagged ``check``, or any cell calling check if none is tagged."""
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    tagged = [(i, c) for i, c in code if CHECK_TAG in c.get("metadata", {}).get("tags", [])]
    cells = tagged or code  # Colab or a hand copy may have lost the tags
    return [(i, ids) for i, c in cells if (ids := check_ids(c.source))]


def _read(path: Path) -> nbformat.NotebookNode:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text, so not a notebook") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the file is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         "it is damaged or not a notebook") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:
        raise ValueError(f"not a valid notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError("not a valid notebook (no list of cells)")
    return nb


# ---------------------------------------------------------------------------- running one notebook


def _cell_error(cell: dict) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_error(nb: nbformat.NotebookNode, skip: set[int], before: int | None = None) -> str:
    """The first error a code cell raised (cells in ``skip`` and after ``before`` aside): type, message, where.

    For example ``SyntaxError: invalid syntax (code cell 7, line 3: def f(x y):)``. The line is the one
    in the deepest frame of the traceback that is a notebook cell (IPython's ``Cell In[N], line L``).
    """
    by_count = {c.get("execution_count"): i for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    code_number = {i: n for n, i in enumerate((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), 1)}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or i in skip or (before is not None and i >= before):
            continue
        out = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if out is None or out.get("ename") == "ExerciseFailed":
            continue
        where = f"code cell {code_number[i]}"
        frames = _CELL_LINE.findall(_ANSI.sub("", "\n".join(out.get("traceback", []))))
        if frames:
            count, line = int(frames[-1][0]), int(frames[-1][1])
            j = by_count.get(count, i)
            source_lines = nb.cells[j].source.splitlines()
            if nb.cells[j].source.startswith(GRADER_IMPORT):
                line -= 1
                source_lines = source_lines[1:]
            where = f"code cell {code_number[j]}, line {line}"
            if 1 <= line <= len(source_lines) and source_lines[line - 1].strip():
                where += f": {source_lines[line - 1].strip()}"
        evalue = re.sub(r"\s*\([^()]*, line \d+\)$", "", str(out.get("evalue", "")))  # IPython's "(file, line N)"
        return _one_line(f"{out.get('ename')}: {evalue} ({where})", 300)
    return ""


def _with_instructor_checks(nb: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace the submission's check cells by the instructor's, appending any the learner deleted.

    A check cell of the submission that names any of the reference's exercises becomes the
    reference's check cell(s) for them; the other exercises' check cells are added at the end.
    """
    ref_cells: dict[str, str] = {}
    for i, ids in _check_cells(reference):
        for ex_id in ids:
            ref_cells.setdefault(ex_id, reference.cells[i].source)
    present = set()
    for i, ids in _check_cells(nb):
        sources = list(dict.fromkeys(ref_cells[x] for x in ids if x in ref_cells))
        if sources:
            nb.cells[i].source = "\n".join(sources)
            nb.cells[i].setdefault("metadata", {}).setdefault("tags", [])
            if CHECK_TAG not in nb.cells[i].metadata["tags"]:
                nb.cells[i].metadata["tags"].append(CHECK_TAG)
            present.update(x for src in sources for x in check_ids(src))
    for source in dict.fromkeys(src for ex_id, src in ref_cells.items() if ex_id not in present):
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": [CHECK_TAG]})
        nb.cells.append(cell)
        present.update(check_ids(source))
    return nb


def grade_notebook(
    submission: Submission,
    reference: dict,
    timeout: int = 300,
    startup_timeout: int = 120,
    keep_executed: bool = False,
) -> NotebookResult:
    """Execute one submission and grade its exercises; never raises for a broken notebook.

    ``reference``: the book's copy of the notebook (as a dict). Its check cells name the exercises
    to grade and replace the submission's; only what they report counts. ``timeout``: seconds
    allowed per cell.

    The steps: read the notebook and put the book's checks in (:func:`_prepare`), run it in a
    fresh kernel that reports every check (:func:`_execute`), and turn the reports, or the reason a
    check is missing, into one row per exercise (:func:`_grade_rows`).

    Taught in: the instructor guide (book/instructors.md).
    """
    start = time.perf_counter()
    ref_nb = nbformat.from_dict(json.loads(json.dumps(reference)))
    expected = list(dict.fromkeys(x for _, ids in _check_cells(ref_nb) for x in ids))

    def result(rows: list[Row], problem: str = "", executed: dict | None = None, first_error: str = "") -> NotebookResult:
        return NotebookResult(submission, rows, time.perf_counter() - start, problem, first_error,
                              executed if keep_executed else None)

    try:
        nb = _read(submission.path)
    except (OSError, ValueError) as exc:
        problem = f"could not read the notebook: {exc}"
        return result(_zero_rows(submission, problem, expected), problem)
    nb, check_cells = _prepare(nb, ref_nb)
    problem, reports = _execute(nb, timeout, startup_timeout, dict(check_cells))
    rows = _grade_rows(submission, nb, expected, check_cells, reports, problem)
    first_error = _first_error(nb, skip={i for i, _ in check_cells})
    return result(rows, problem, nbformat.from_dict(nb) if keep_executed else None, first_error)


def _zero_rows(submission: Submission, message: str, ids: list[str]) -> list[Row]:
    """A zero for each of ``ids`` (or one row without an id if there are none), all with ``message``."""
    return [Row(submission.student, submission.notebook, x, 0.0, 0, 0, message) for x in ids] or \
           [Row(submission.student, submission.notebook, "", 0.0, 0, 0, message)]


def _prepare(nb: nbformat.NotebookNode,
             reference: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, list[tuple[int, list[str]]]]:
    """The notebook with the book's check cells in it, and those cells as ``(index, ids)``."""
    nb = _with_instructor_checks(nb, reference)
    check_cells = _check_cells(nb)
    for i, _ in check_cells:  # a learner's own `check = ...` earlier in the notebook does not count
        nb.cells[i].source = GRADER_IMPORT + nb.cells[i].source
    return nb, check_cells


def _execute(nb: nbformat.NotebookNode, timeout: int, startup_timeout: int,
             check_cells: dict[int, list[str]]) -> tuple[str, dict[str, dict]]:
    """Run ``nb`` in place in a fresh kernel, in a throw-away folder and quick mode.

    Returns ``(problem, reports)``: why the run stopped early ("" if it did not) and, for each exercise
    id, the last report that a check wrote while one of ``check_cells`` (index -> ids) ran for that id:
    a ``check`` call anywhere else in the notebook, or a line the notebook wrote into the report file
    itself, does not count.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    problem = ""
    with tempfile.TemporaryDirectory(prefix="lmbook-grade-") as tmp:
        workdir = Path(tmp) / "work"  # the notebook's cwd: whatever it writes is thrown away
        workdir.mkdir()
        report = Path(tmp) / "report.jsonl"
        report.touch()
        windows: dict[int, tuple[int, int]] = {}  # check cell index -> report bytes (before, after) it ran

        def before(cell, cell_index, **kwargs) -> None:
            if cell_index in check_cells:
                windows[cell_index] = (report.stat().st_size, -1)

        def after(cell, cell_index, **kwargs) -> None:
            if cell_index in windows:
                windows[cell_index] = (windows[cell_index][0], report.stat().st_size)

        env = dict(os.environ, LMBOOK_MODE="quick", LMBOOK_GRADE_REPORT=str(report))
        client = NotebookClient(
            nb, timeout=timeout, startup_timeout=startup_timeout, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": str(workdir)}}, on_cell_execute=before, on_cell_executed=after,
        )
        kernel_log = Path(tmp) / "kernel.log"
        with open(kernel_log, "wb") as log:  # the kernel's own chatter stays out of the grading output
            try:
                client.execute(env=env, cwd=str(workdir), stdout=log, stderr=log)
            except CellTimeoutError:
                problem = f"a cell ran longer than the limit of {timeout} s and was stopped"
            except DeadKernelError:
                problem = "the Python kernel died (the notebook crashed Python, exited or ran out of memory)"
            except Exception as exc:  # kernel failed to start, nbclient trouble: say so, grade the rest
                problem = f"could not run the notebook: {type(exc).__name__}: {_one_line(exc, 200)}"
        if problem and not problem.startswith("a cell"):
            last = [l for l in kernel_log.read_text(errors="replace").splitlines() if l.strip()
                    and "running over TCP without encryption" not in l][-1:]
            problem += f"; the kernel's last words: {_one_line(last[0], 150)}" if last else ""
        data = report.read_bytes()
        reports: dict[str, dict] = {}
        for index, (lo, hi) in sorted(windows.items()):
            hi = len(data) if hi < 0 else hi  # a cell stopped by the time limit: what it wrote before
            for ex_id, rec in _read_reports(data[lo:hi]).items():
                if ex_id in check_cells[index]:
                    reports[ex_id] = rec
    return problem, reports


def _read_reports(data: bytes) -> dict[str, dict]:
    """``{exercise id: record}`` from the checks' JSON-lines report; the last check of an id counts."""
    reports: dict[str, dict] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            reports[str(rec["id"])] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return reports


def _has_run(cell: dict) -> bool:
    return cell.get("execution_count") is not None or bool(cell.get("outputs"))


def _grade_rows(submission: Submission, nb: nbformat.NotebookNode, ids: list[str],
                check_cells: list[tuple[int, list[str]]], reports: dict[str, dict], problem: str) -> list[Row]:
    """One row per exercise id: the score its check reported, or a zero saying why there is none."""
    last_run = max((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _has_run(c)), default=-1)
    rows = []
    for ex_id in ids:
        rec = reports.get(ex_id)
        if rec is not None:
            passed, total = int(rec.get("passed", 0)), int(rec.get("total", 0))
            passed = max(0, min(passed, total))
            score = passed / total if total else 0.0
            message = _one_line(rec.get("message", "")) or ("" if total else "the check ran no cases")
        else:
            score, passed, total = 0.0, 0, 0
            cells = [i for i, cell_ids in check_cells if ex_id in cell_ids]
            message = _missing_message(nb, cells, last_run, problem, {i for i, _ in check_cells})
        rows.append(Row(submission.student, submission.notebook, ex_id, score, passed, total, message))
    return rows or _zero_rows(submission, problem or "the notebook has no check cells", [])


def _missing_message(nb: nbformat.NotebookNode, cells: list[int], last_run: int, problem: str,
                     all_checks: set[int]) -> str:
    """Why an exercise whose check cells are ``cells`` reported nothing."""
    error = next((e for i in cells if (e := _cell_error(nb.cells[i]))), None)
    if problem and last_run in cells:  # the notebook was stopped while this check was running
        return f"this check did not finish: {problem}"
    if error:
        earlier = _first_error(nb, skip=all_checks, before=min(cells))
        cause = f"; the first error in the notebook: {earlier}" if earlier else " (did an earlier cell fail?)"
        return f"the check cell failed before checking: {_one_line(error, 150)}{cause}"
    if not cells:
        return "no check cell for this exercise in the notebook"
    if any(_has_run(nb.cells[i]) for i in cells):
        return "the check cell ran but did not call check for this exercise"
    return NOT_REACHED + (f": {problem}" if problem else "")


def _grade_task(args: tuple) -> NotebookResult:
    sub, reference, timeout, keep = args
    return grade_notebook(sub, reference, timeout=timeout, keep_executed=keep)


# ---------------------------------------------------------------------------- a whole folder


def _fmt(score: float) -> str:
    return str(round(score, 4))


def write_grades(rows: list[Row], out_csv: str | Path, exercises: list[str]) -> tuple[Path, Path]:
    """Write ``grades.csv`` (wide) and ``grades_detail.csv`` (long, next to it) atomically; return both paths.

    Taught in: the instructor guide (book/instructors.md).
    """
    out_csv = Path(out_csv)
    detail_path = out_csv.with_name(out_csv.stem + "_detail" + out_csv.suffix)
    students = sorted({r.student for r in rows})
    score = {(r.student, r.exercise): r.score for r in rows}
    wide = io.StringIO()
    w = csv.writer(wide, lineterminator="\n")
    w.writerow(["student", *exercises, "total", "percent"])
    for s in students:
        scores = [score.get((s, x), 0.0) for x in exercises]
        total = sum(scores)
        w.writerow([s, *map(_fmt, scores), _fmt(total), _fmt(100 * total / len(exercises)) if exercises else "0"])
    long = io.StringIO()
    w = csv.writer(long, lineterminator="\n")
    w.writerow(["student", "notebook", "exercise", "score", "passed", "total", "message"])
    for r in sorted(rows, key=lambda r: (r.student, r.notebook)):
        w.writerow([r.student, r.notebook, r.exercise, _fmt(r.score), r.passed, r.total, r.message])
    atomic_write_text(out_csv, wide.getvalue())
    atomic_write_text(detail_path, long.getvalue())
    return out_csv, detail_path


def _summary(results: list[NotebookResult], rows: list[Row], exercises: list[str], seconds: float) -> str:
    students = sorted({r.student for r in rows})
    per_nb = [r.seconds for r in results]
    lines = [
        f"Graded {len(results)} notebook(s) of {len(students)} student(s) in {seconds:.1f} s "
        f"({sum(per_nb) / max(1, len(per_nb)):.1f} s per notebook)."
    ]
    show = exercises if len(exercises) <= 6 else []
    width = max([7] + [len(s) for s in students])
    col = max([6] + [len(x) for x in show])
    head = [f"{'student':<{width}}"] + [f"{x:>{col}}" for x in show] + [f"{'total':>10}", "  problems"]
    lines.append(" ".join(head))
    for s in students:
        mine = {r.exercise: r for r in rows if r.student == s}
        total = sum(mine[x].score for x in exercises if x in mine)
        cells = [f"{s:<{width}}"] + [f"{mine[x].score if x in mine else 0:>{col}.2f}" for x in show]
        problems = sum(1 for x in exercises if x not in mine or mine[x].score < 1)
        lines.append(" ".join(cells + [f"{total:>6.2f}/{len(exercises):<3}", f"  {problems}"]))
    for r in results:
        if r.problem:
            lines.append(f"! {r.submission.student}/{r.submission.notebook}: {r.problem}")
        if r.first_error:
            lines.append(f"! {r.submission.student}/{r.submission.notebook}: first error: {r.first_error}")
    return "\n".join(lines)


def grade_folder(
    folder: str | Path,
    out_csv: str | Path = "grades.csv",
    timeout: int = 300,
    chapters: str | Path | None = None,
    jobs: int = 1,
    executed_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Grade every submission in ``folder``; write ``out_csv`` and its ``_detail`` file; return the rows.

    ``chapters``: the folder of the book's notebooks (see :func:`find_chapters`; by default the
    repository's ``chapters/``). Their check cells say which exercises each notebook has and grade
    them; a submission with no notebook of its name there scores 0 without being run.
    ``jobs``: notebooks run at the same time (each in its own kernel).
    ``executed_dir``: if given, every executed submission is saved there as
    ``<student>__<notebook>.ipynb`` so its outputs can be read.

    Taught in: the instructor guide (book/instructors.md).
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    start = time.perf_counter()
    chapters = find_chapters(chapters)
    subs = find_submissions(folder)
    notebooks = sorted({s.notebook for s in subs})

    # Which exercises each notebook must answer: the check cells of the book's copy, and only those.
    references: dict[str, dict] = {}
    for name in notebooks:
        if (chapters / name).is_file():
            try:
                references[name] = json.loads(json.dumps(_read(chapters / name)))
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read the book's notebook {chapters / name}: {exc}") from None
        else:
            log(f"warning: {chapters} has no {name}: its submissions score 0")
    expected = {name: list(dict.fromkeys(x for _, ids in _check_cells(nbformat.from_dict(ref)) for x in ids))
                for name, ref in references.items()}
    exercises = list(dict.fromkeys(x for name in notebooks for x in expected.get(name, [])))

    tasks = [(s, references[s.notebook], timeout, executed_dir is not None) for s in subs if s.notebook in references]
    results: list[NotebookResult] = []

    def done(res: NotebookResult) -> None:
        results.append(res)
        got = sum(r.score for r in res.rows)
        note = f"  ({res.problem})" if res.problem else ""
        note += f"  (first error: {res.first_error})" if res.first_error else ""
        log(f"[{len(results)}/{len(subs)}] {res.submission.student}/{res.submission.notebook}: "
            f"{got:.2f}/{len(res.rows)} in {res.seconds:.1f} s{note}")
        if executed_dir is not None and res.executed is not None:
            dest = Path(executed_dir) / f"{res.submission.student}{FLAT_SEPARATOR}{res.submission.notebook}"
            atomic_write_text(dest, nbformat.writes(nbformat.from_dict(res.executed), version=4) + "\n")

    for sub in subs:
        if sub.notebook not in references:
            msg = NOT_IN_BOOK.format(chapters=chapters, name=sub.notebook)
            done(NotebookResult(sub, _zero_rows(sub, msg, []), 0.0, msg))
    if jobs == 1:
        for task in tasks:
            done(_grade_task(task))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_grade_task, t): t for t in tasks}
            for fut in as_completed(futures):
                try:
                    done(fut.result())
                except Exception as exc:  # a worker itself died: still grade the notebook as 0
                    sub = futures[fut][0]
                    msg = f"the grading process failed: {type(exc).__name__}: {_one_line(exc, 200)}"
                    done(NotebookResult(sub, _zero_rows(sub, msg, expected[sub.notebook]), 0.0, msg))

    rows = [r for res in results for r in res.rows]
    # A student who did not hand in a notebook that others did: 0 for each of its exercises.
    have = {(s.student, s.notebook) for s in subs}
    for student in sorted({s.student for s in subs}):
        for name in notebooks:
            if (student, name) not in have:
                rows += [Row(student, name, x, 0.0, 0, 0, NO_SUBMISSION) for x in expected.get(name, [])]
    rows.sort(key=lambda r: (r.student, notebooks.index(r.notebook),
                             exercises.index(r.exercise) if r.exercise in exercises else -1))
    wide, detail = write_grades(rows, out_csv, exercises)
    log(_summary(results, rows, exercises, time.perf_counter() - start))
    log(f"Wrote {wide} and {detail}.")
    return rows

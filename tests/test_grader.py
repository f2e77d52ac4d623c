"""The grader cannot be fooled, says what really went wrong, and "Run All" goes on past a failed check.

Each grading run starts one Jupyter kernel per submission (2 to 4 s each); the submissions of one
run share what they test, so the module needs three kernels for the grader and one for "Run All".
"""
import csv
import json
import os
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from lmlib.exercises.__main__ import main
from lmlib.exercises.grade import find_chapters
from lmlib.exercises.plain_markdown import plain_notebook
from lmlib.exercises.student import student_notebook

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "exercise_demo.md"


def chapter(folder: Path, name: str = "01_demo.ipynb") -> Path:
    """The fixture as the book's generator writes a chapter notebook: plain markdown, solutions in place."""
    nb = jupytext.read(FIXTURE, fmt="md:myst")
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    plain_notebook(nb, FIXTURE.parent)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def student(folder: Path) -> nbformat.NotebookNode:
    return student_notebook(nbformat.read(chapter(folder), as_version=4), "chapters/01_demo.ipynb")


def answer_cell(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if "answer" in c.metadata.get("tags", []) and f"def {name}(" in c.source)


def detail_rows(out: Path) -> dict:
    return {(r["student"], r["exercise"]): r for r in csv.DictReader(out.with_name("grades_detail.csv").open())}


# ---------------------------------------------------------------------------- where the checks come from


def test_grading_without_the_books_chapters_is_an_error_naming_the_fix(tmp_path, monkeypatch, capsys):
    subs = tmp_path / "submissions"
    (subs / "bob").mkdir(parents=True)
    nbformat.write(student(tmp_path / "chapters"), subs / "bob" / "01_demo.ipynb")
    assert main(["grade", str(subs), "--chapters", str(tmp_path / "nowhere")]) == 2
    assert "--chapters: no such folder:" in capsys.readouterr().err
    # no --chapters, run from a folder without chapters/, and an lmlib that is not in a clone of the book
    monkeypatch.chdir(subs)
    monkeypatch.setattr("lmlib.exercises.grade.__file__", str(tmp_path / "site-packages/lmlib/exercises/grade.py"))
    assert main(["grade", str(subs), "--out", str(tmp_path / "grades.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot find the book's chapter notebooks" in err and "Pass --chapters DIR" in err
    assert not (tmp_path / "grades.csv").exists()


def test_the_default_chapters_are_the_repositorys_wherever_the_grader_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_chapters() == ROOT / "chapters"
    chapter(tmp_path / "mine")
    assert find_chapters(tmp_path / "mine") == tmp_path / "mine"  # --chapters: an instructor's own copy


def test_deleted_rewritten_or_forged_checks_do_not_count(tmp_path, capsys):
    """bob's count_pairs is wrong: he rewrites its check, forges reports after it and deletes the other check."""
    chapters = tmp_path / "chapters"
    subs = tmp_path / "submissions"
    subs.mkdir()
    bob = student(chapters)
    answer_cell(bob, "count_pairs").source = (
        "def count_pairs(text):\n    return {}\n")  # right only on the empty text and the single character
    for cell in bob.cells:
        if "count_pairs, stop=False" in cell.source:  # "check" the reference instead of his function
            cell.source = 'check("demo.count_pairs", _pairs_reference)'
    bob.cells = [c for c in bob.cells if "normalize, stop=False" not in c.source]  # a failing check: gone
    bob.cells += [
        nbformat.v4.new_code_cell('check("demo.count_pairs", _pairs_reference)'),  # untagged, after the check
        nbformat.v4.new_code_cell(
            "import json, os\n"
            "with open(os.environ['LMBOOK_GRADE_REPORT'], 'a') as f:\n"
            "    f.write(json.dumps({'id': 'demo.count_pairs', 'passed': 8, 'total': 8, 'message': ''}) + '\\n')\n"),
    ]
    nbformat.write(bob, subs / "bob__01_demo.ipynb")
    nbformat.write(bob, subs / "bob__99_not_in_the_book.ipynb")

    out = tmp_path / "grades.csv"
    assert main(["grade", str(subs), "--out", str(out), "--chapters", str(chapters)]) == 0
    printed = capsys.readouterr().out
    detail = detail_rows(out)
    pairs = detail["bob", "demo.count_pairs"]
    assert (pairs["passed"], pairs["total"]) == ("2", "8"), pairs  # the book's check ran, not bob's forgeries
    assert detail["bob", "demo.normalize"]["message"].startswith("not implemented yet")
    assert detail["bob", ""]["message"].startswith(f"not a notebook of the book: {chapters} has no 99_not_in_the_book")
    wide = next(csv.DictReader(out.open()))
    assert list(wide) == ["student", "demo.count_pairs", "demo.normalize", "total", "percent"]
    assert wide["percent"] == "12.5"
    assert "has no 99_not_in_the_book.ipynb: its submissions score 0" in printed


# ---------------------------------------------------------------------------- the real error, with its line


def test_a_syntax_error_is_reported_with_its_type_and_line(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    subs = tmp_path / "submissions" / "eve"
    subs.mkdir(parents=True)
    eve = student(chapters)
    answer_cell(eve, "count_pairs").source = (
        "def count_pairs(text):\n"
        "    out = {}\n"
        "    for a, b in zip(text, text[1:]) \n"  # line 3: the colon is missing
        "        out[a + b] = out.get(a + b, 0) + 1\n"
        "    return out\n")
    nbformat.write(eve, subs / "01_demo.ipynb")
    out = tmp_path / "grades.csv"
    assert main(["grade", str(tmp_path / "submissions"), "--out", str(out), "--chapters", str(chapters)]) == 0
    printed = capsys.readouterr().out
    message = detail_rows(out)["eve", "demo.count_pairs"]["message"]
    assert "NameError: name 'count_pairs' is not defined" in message
    where = re.search(r"the first error in the notebook: SyntaxError: (?P<msg>.+) \(code cell \d+, line 3: "
                      r"for a, b in zip\(text, text\[1:\]\)\)$", message)
    assert where, message
    assert re.search(r"! eve/01_demo.ipynb: first error: SyntaxError: .+, line 3: for a, b in zip", printed), printed


# ---------------------------------------------------------------------------- files and Run All


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        chapter(tmp_path / "chapters")
        assert main(["student", str(tmp_path / "chapters"), "--out", str(tmp_path / "student")]) == 0
        assert (tmp_path / "student" / "01_demo.ipynb").stat().st_mode & 0o777 == 0o644
        from lmlib.exercises.grade import Row, write_grades

        wide, detail = write_grades([Row("ann", "01_demo.ipynb", "demo.count_pairs", 1.0, 8, 8, "")],
                                    tmp_path / "grades.csv", ["demo.count_pairs"])
        assert wide.stat().st_mode & 0o777 == 0o644 and detail.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_run_all_goes_on_past_failed_checks_and_the_grader_still_sees_them(tmp_path):
    """Like Jupyter's Run All: execution stops at the first cell that raises. The stubs' checks must not raise."""
    from nbclient import NotebookClient

    nb = student(tmp_path / "chapters")
    nb.cells.append(nbformat.v4.new_code_cell('print("reached the end")'))
    report = tmp_path / "report.jsonl"
    env = dict(os.environ, LMBOOK_GRADE_REPORT=str(report), LMBOOK_MODE="quick")
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False).execute(env=env, cwd=str(tmp_path))
    outputs = {c.source: "".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"}
    assert "\u2718 demo.count_pairs: 0/8 checks passed. First problem: not implemented yet" in \
        outputs['check("demo.count_pairs", count_pairs, stop=False)']
    assert "\u2718 demo.normalize: 0/4" in outputs['check("demo.normalize", normalize, stop=False)']
    assert outputs['print("reached the end")'] == "reached the end\n"
    reports = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["id"], r["passed"]) for r in reports] == [("demo.count_pairs", 0), ("demo.normalize", 0)]


def test_keep_going_adds_stop_false_to_every_check_call():
    from lmlib.exercises.student import keep_going

    assert keep_going('check("a", f)') == 'check("a", f, stop=False)'
    assert keep_going('check("a", f,)') == 'check("a", f, stop=False,)'
    assert keep_going('check(\n    "a",\n    f,  # mine\n)') == 'check(\n    "a",\n    f, stop=False,  # mine\n)'
    assert keep_going('r = check("é", f, quiet=True)') == 'r = check("é", f, quiet=True, stop=False)'
    assert keep_going('check("a", f, stop=True)') == 'check("a", f, stop=True)'  # an explicit choice stays
    assert keep_going('lmlib.exercises.check("a", g); check("b", h)') == \
        'lmlib.exercises.check("a", g, stop=False); check("b", h, stop=False)'

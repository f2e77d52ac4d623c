"""lmlib.exercises: check() grades and explains; student notebooks hide every solution; the grader scores folders.

The grading test starts three Jupyter kernels (about 3 s each); everything
else runs in-process.
"""
import ast
import copy
import csv
import json
import re
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib.exercises import Case, ExerciseFailed, check, compare_values, get, register
from lmlib.exercises.__main__ import main
from lmlib.exercises.student import StudentVersionError, stub_source, student_notebook

FIXTURE = Path(__file__).parent / "fixtures" / "exercise_demo.md"


# ---------------------------------------------------------------------------- check()


def _sum_cases(rng):
    return [Case(([],), label="empty list"), Case(([7],), label="one number")] + [
        Case((rng.integers(-5, 5, size=int(n)).tolist(),)) for n in rng.integers(2, 6, size=4)
    ]


register("test.total", lambda xs: sum(xs), _sum_cases, title="Add a list")


def test_check_passes_a_correct_function_and_says_so(capsys):
    def total(xs):
        out = 0
        for x in xs:
            out += x
        return out

    result = check("test.total", total)
    assert (result.passed, result.total, result.ok, result.score) == (6, 6, True, 1.0)
    assert capsys.readouterr().out.strip() == "\u2714 test.total: all 6 checks passed."


def test_wrong_answer_names_the_input_and_the_difference():
    with pytest.raises(ExerciseFailed) as err:
        check("test.total", lambda xs: sum(xs[1:]))  # forgets the first number
    msg = str(err.value)
    # the empty list (and any list starting with 0) is right by luck; the one-number case is the first wrong one
    assert re.fullmatch(r"test\.total: [1-5]/6 checks passed\. First problem: on one number, input \(\[7\]\): "
                        r"got 0, expected 7", msg), msg


def test_crash_and_not_implemented_are_explained():
    def crashes(xs):
        return sum(xs) / len(xs)

    with pytest.raises(ExerciseFailed) as err:
        check("test.total", crashes)
    msg = str(err.value)
    assert "on empty list, input ([]), your function raised ZeroDivisionError: division by zero" in msg
    assert "return sum(xs) / len(xs)" in msg  # the learner's own line, not a library's

    def stub(xs):
        raise NotImplementedError("Exercise ex-total: write your code here")

    with pytest.raises(ExerciseFailed, match=r"0/6 checks passed\. First problem: not implemented yet"):
        check("test.total", stub)


def test_check_rejects_bad_calls_clearly(monkeypatch):
    monkeypatch.setattr("lmlib.exercises.core._load_chapter_modules", lambda only=None: None)  # no chapter imports
    with pytest.raises(TypeError, match="needs your function, got int"):
        check("test.total", 3)
    with pytest.raises(KeyError, match="no exercise called 'test.nope'; known exercises: .*test.total"):
        get("test.nope")
    with pytest.raises(ValueError, match="exercise ids look like"):
        register("nodot", sum, _sum_cases)


def test_check_appends_one_report_line_per_call(tmp_path, monkeypatch):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("LMBOOK_GRADE_REPORT", str(report))
    check("test.total", sum, quiet=True)
    with pytest.raises(ExerciseFailed):
        check("test.total", lambda xs: 0)
    lines = [json.loads(l) for l in report.read_text().splitlines()]
    assert lines[0] == {"id": "test.total", "passed": 6, "total": 6, "message": ""}
    assert lines[1]["id"] == "test.total" and lines[1]["total"] == 6 and lines[1]["passed"] < 6
    assert lines[1]["message"].startswith("on one number, input ([7]): got 0, expected 7")


def test_learner_cannot_spoil_the_inputs_of_the_reference():
    def ref(xs):
        return list(xs)

    register("test.copy", ref, lambda rng: [Case(([3, 1, 2],))] * 3)

    def sorts_in_place(xs):
        xs.sort()
        return [3, 1, 2]

    assert check("test.copy", sorts_in_place, quiet=True).ok


# ---------------------------------------------------------------------------- compare_values


def test_compare_arrays_shape_then_values():
    a = np.arange(6.0).reshape(2, 3)
    assert compare_values(a.copy(), a) is None
    assert compare_values(a + 1e-12, a) is None  # within tolerance
    assert compare_values(a.T, a) == "wrong shape: got (3, 2), expected (2, 3)"
    b = a.copy()
    b[1, 2] = 9.5
    assert compare_values(b, a) == "wrong values: at index (1, 2) got 9.5, expected 5.0"
    ints = np.array([1, 2, 3])
    assert compare_values(np.array([1, 5, 3]), ints) == "wrong values: at index (1,) got 5, expected 2"
    assert compare_values([1, 2, 3], ints) is None  # a list with the right values is accepted
    assert compare_values(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) is None


def test_compare_numbers_dicts_and_nested_lists():
    assert compare_values(0.1 + 0.2, 0.3) is None
    assert compare_values(0.31, 0.3) == "got 0.31, expected 0.3"
    assert compare_values(np.float64(2.0), 2) is None
    assert compare_values(np.array(2.0), 2.0) is None  # a 0-d array counts as its number
    assert compare_values("2", 2) == "expected a number, got str '2'"
    assert compare_values({"a": 1}, {"a": 1, "b": 2}) == "missing keys ['b'] (1 in all)"
    assert compare_values({"a": 1, "c": 0}, {"a": 1}) == "unexpected keys ['c'] (1 in all)"
    assert compare_values({"a": {"x": [1, 2]}}, {"a": {"x": [1, 3]}}) == "for key 'a': for key 'x': at position 1: got 2, expected 3"
    assert compare_values([[1, 2], [3]], [[1, 2], [3, 4]]) == "at position 1: wrong length: got 1 items, expected 2"
    assert compare_values((1, "ab"), [1, "ab"]) is None
    assert compare_values(None, []) == "expected a list, got NoneType"
    assert compare_values(True, False) == "got True, expected False"


def test_compare_torch_tensors():
    torch = pytest.importorskip("torch")
    t = torch.ones(2, 2)
    assert compare_values(t.clone(), t) is None
    assert compare_values(np.ones((2, 2)), t) == "expected a torch.Tensor, got ndarray"
    assert compare_values(torch.ones(2), t) == "wrong shape: got (2,), expected (2, 2)"
    assert compare_values(torch.tensor(1.5), 1.5) is None  # a scalar tensor counts as its number


_values = st.recursive(
    st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=True, allow_infinity=False), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_compare_a_value_with_a_copy_of_itself_finds_nothing(value):
    assert compare_values(copy.deepcopy(value), value) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20), st.data())
def test_compare_finds_any_changed_array_entry(values, data):
    expected = np.array(values)
    i = data.draw(st.integers(0, len(values) - 1))
    got = expected.copy()
    got[i] += 1.0 + abs(got[i])  # well beyond the tolerance
    assert compare_values(got, expected) == f"wrong values: at index ({i},) got {got[i].item()!r}, expected {expected[i].item()!r}"


# ---------------------------------------------------------------------------- stubs


def test_stub_keeps_the_interface_and_drops_the_answer():
    source = '''import numpy as np
from dataclasses import dataclass
%matplotlib inline

SCALE = 3

@dataclass
class Config:
    """Sizes."""
    vocab: int = 65
    def n_params(self) -> int:
        """How many numbers."""
        return self.vocab ** 2  # ANSWER-1

def scale(x: np.ndarray,
          by: float = 2.0) -> np.ndarray:
    """Multiply `x` (any shape) by `by` (★ π)."""; helper = x * by  # ANSWER-2
    return helper

def quick(x): return x + 1  # ANSWER-3

print(scale(np.ones(2)))  # ANSWER-4
'''
    stub = stub_source(source, "ex-scale")
    for secret in ("ANSWER-1", "ANSWER-2", "ANSWER-3", "ANSWER-4", "SCALE = 3", "x * by", "self.vocab **"):
        assert secret not in stub
    assert "import numpy as np\nfrom dataclasses import dataclass\n" in stub
    assert "def scale(x: np.ndarray,\n          by: float = 2.0) -> np.ndarray:\n" in stub
    assert '    """Multiply `x` (any shape) by `by` (★ π)."""\n' in stub
    assert "@dataclass\nclass Config:\n" in stub and "    vocab: int = 65" in stub
    namespace = {}
    exec(stub, namespace)  # the stub is valid Python
    assert namespace["SCALE"] is None
    for call in (lambda: namespace["scale"](np.ones(2)), lambda: namespace["quick"](1),
                 lambda: namespace["Config"]().n_params()):
        with pytest.raises(NotImplementedError, match="^Exercise ex-scale: write your code here$"):
            call()
    assert namespace["scale"].__doc__ == "Multiply `x` (any shape) by `by` (★ π)."
    with pytest.raises(NotImplementedError, match="^Exercise quick: write your code here$"):
        exec(stub_source("def quick(x): return x + 1"), namespace) or namespace["quick"](1)


def test_stub_refuses_code_it_cannot_parse():
    with pytest.raises(StudentVersionError, match="cannot parse the solution code"):
        stub_source("def f(x)\n    return x\n")


# ---------------------------------------------------------------------------- student notebooks


def _fixture_notebook(folder, name="01_demo.ipynb"):
    nb = jupytext.read(FIXTURE, fmt="md:myst")
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


def _solution_lines(nb):
    """The lines of each solution cell that are neither imports, signatures nor docstrings."""
    lines = []
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
                body = fn.body[1:] if ast.get_docstring(fn) else fn.body
                lines += [l.strip() for s in body for l in ast.get_source_segment(cell.source, s).splitlines()]
    return lines


def test_student_notebook_hides_solutions_and_keeps_checks(tmp_path, capsys):
    src = _fixture_notebook(tmp_path / "chapters")
    nb = nbformat.read(src, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="registered\n")]  # as if it had been run
    nb.cells[1].execution_count = 4
    nbformat.write(nb, src)

    assert main(["student", str(tmp_path / "chapters"), "--out", str(tmp_path / "student")]) == 0
    assert "1 student notebook(s)" in capsys.readouterr().out
    out = tmp_path / "student" / "01_demo.ipynb"
    student = nbformat.read(out, as_version=4)
    nbformat.validate(student)
    text = out.read_text()

    secrets = _solution_lines(nb)
    assert len(secrets) >= 5
    for secret in secrets + ["SOLUTION-CODE-MARKER", "SOLUTION-EXPLANATION-MARKER", "NORMALIZE-MARKER",
                             "solution-start", "solution-end", ":class: dropdown"]:
        assert secret not in text, f"solution text left in the student notebook: {secret!r}"
    assert "Student version" in student.cells[0].source and "NotImplementedError" in student.cells[0].source
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")

    # exercise statements are kept, as plain markdown; check cells are kept and do not stop "Run All"
    assert [c.source for c in student.cells if "check" in c.metadata.get("tags", [])] == [
        'check("demo.count_pairs", count_pairs, stop=False)', 'check("demo.normalize", normalize, stop=False)']
    statements = [c.source for c in student.cells if re.search(r"^#+ Exercise \d+: ", c.source, re.M)]
    assert len(statements) == 2 and all("**Difficulty**" in s for s in statements)
    assert "\n## Exercise 1: Count character pairs\n" in statements[0]  # one level below the page's title
    assert "{exercise" not in text and "lmbook" not in text  # no MyST, not even in cell metadata

    # run the stubs: each raises NotImplementedError naming its exercise, and check() says "not implemented"
    namespace = {}
    for cell in student.cells:
        if cell.cell_type == "code" and "colab-setup" not in cell.metadata.get("tags", []) \
                and "check" not in cell.metadata.get("tags", []):
            exec(cell.source, namespace)
    with pytest.raises(NotImplementedError, match="^Exercise ex-demo-pairs: write your code here$"):
        namespace["count_pairs"]("abc")
    with pytest.raises(NotImplementedError, match="^Exercise ex-demo-normalize: write your code here$"):
        namespace["normalize"](np.ones((2, 2)))
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        check("demo.normalize", namespace["normalize"])


def test_student_refuses_to_overwrite_sources_and_unclosed_solutions(tmp_path, capsys):
    src = _fixture_notebook(tmp_path)
    assert main(["student", str(src), "--out", str(tmp_path)]) == 2
    assert "refusing to overwrite the source notebook" in capsys.readouterr().err
    nb = nbformat.read(src, as_version=4)
    nb.cells = [c for c in nb.cells if "{solution-end}" not in c.source]
    with pytest.raises(StudentVersionError, match="a solution-start has no matching solution-end"):
        student_notebook(nb, "broken.ipynb")
    assert main(["student", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2


# ---------------------------------------------------------------------------- grading


def test_grade_a_folder_with_right_wrong_stuck_and_broken_notebooks(tmp_path, capsys):
    src = _fixture_notebook(tmp_path / "chapters")
    assert main(["student", str(src), "--out", str(tmp_path / "student")]) == 0
    subs = tmp_path / "submissions"

    # alice hands in the instructor's notebook (folder layout): everything right
    _fixture_notebook(subs / "alice")

    # bob (flat layout): count_pairs misses the last pair, normalize left as the stub,
    # and he deleted the normalize check cell (the instructor's copy puts it back)
    student = nbformat.read(tmp_path / "student" / "01_demo.ipynb", as_version=4)
    answer = [c for c in student.cells if "answer" in c.metadata.get("tags", [])][0]
    answer.source = answer.source.split("    raise NotImplementedError")[0] + (
        "    out = {}\n"
        "    for i in range(len(text) - 2):\n"
        "        out[text[i : i + 2]] = out.get(text[i : i + 2], 0) + 1\n"
        "    return out\n")
    student.cells = [c for c in student.cells if "normalize)" not in c.source]
    nbformat.write(student, subs / "bob__01_demo.ipynb")

    # carol's file is not a notebook; dave's normalize never finishes
    (subs / "carol__01_demo.ipynb").write_text('{"cells": [')
    dave = nbformat.read(src, as_version=4)
    [c for c in dave.cells if "def normalize" in c.source][0].source = "def normalize(counts):\n    while True:\n        pass\n"
    nbformat.write(dave, subs / "dave__01_demo.ipynb")

    out = tmp_path / "grades.csv"
    assert main(["grade", str(subs), "--out", str(out), "--timeout", "5", "--source", str(tmp_path / "chapters")]) == 0
    printed = capsys.readouterr().out
    assert "Graded 4 notebook(s) of 4 student(s)" in printed and "Wrote" in printed

    wide = {r["student"]: r for r in csv.DictReader(out.open())}
    assert list(next(iter(wide.values()))) == ["student", "demo.count_pairs", "demo.normalize", "total", "percent"]
    assert (wide["alice"]["demo.count_pairs"], wide["alice"]["demo.normalize"], wide["alice"]["total"]) == ("1.0", "1.0", "2.0")
    assert 0 < float(wide["bob"]["demo.count_pairs"]) < 1 and wide["bob"]["demo.normalize"] == "0.0"
    assert (wide["carol"]["total"], wide["carol"]["percent"]) == ("0.0", "0.0")
    assert (wide["dave"]["demo.count_pairs"], wide["dave"]["demo.normalize"]) == ("1.0", "0.0")

    detail = {(r["student"], r["exercise"]): r for r in csv.DictReader((tmp_path / "grades_detail.csv").open())}
    assert len(detail) == 8
    bob_pairs = detail["bob", "demo.count_pairs"]
    assert int(bob_pairs["passed"]) < int(bob_pairs["total"]) == 8
    assert bob_pairs["message"].startswith("on case 3, input (") and ": got " in bob_pairs["message"]
    assert detail["bob", "demo.normalize"]["message"].startswith("not implemented yet")
    assert detail["carol", "demo.count_pairs"]["message"].startswith("could not read the notebook: the file is not valid JSON")
    assert detail["dave", "demo.normalize"]["message"] == (
        "this check did not finish: a cell ran longer than the limit of 5 s and was stopped")
    assert all(r["notebook"] == "01_demo.ipynb" for r in detail.values())

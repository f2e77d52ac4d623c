"""The instructor's command line: student notebooks, grading, and the list of exercises.

    python -m lmlib.exercises student chapters --out student          # make student
    python -m lmlib.exercises grade SUBMISSIONS --out grades.csv       # make grade SUBMISSIONS=dir
    python -m lmlib.exercises list                                     # every registered exercise

(also installed as the ``lmbook-exercises`` command). See the instructor
guide (book/instructors.md).

Taught in: the instructor guide (book/instructors.md).
"""
from __future__ import annotations

import argparse
import sys
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lmlib.exercises", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("student", help="write student notebooks: solutions replaced by stubs, outputs stripped")
    s.add_argument("sources", nargs="+", metavar="SRC", help="a notebook, or a folder of NN_*.ipynb chapter notebooks")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the student notebooks (same file names)")

    g = sub.add_parser("grade", help="run a folder of completed student notebooks and write grades.csv")
    g.add_argument("submissions", metavar="DIR",
                   help="DIR/<student>/<notebook>.ipynb or DIR/<student>__<notebook>.ipynb")
    g.add_argument("--out", default="grades.csv", metavar="CSV",
                   help="the wide table (default grades.csv); the long one goes next to it as *_detail.csv")
    g.add_argument("--timeout", type=int, default=300, metavar="S", help="seconds allowed per cell (default 300)")
    g.add_argument("--chapters", "--source", dest="chapters", default=None, metavar="DIR",
                   help="the book's chapter notebooks, whose check cells grade the submissions (default: the "
                        "chapters/ folder of the repository holding the installed lmlib, else ./chapters)")
    g.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks run at the same time (default 1)")
    g.add_argument("--executed", default=None, metavar="DIR", help="also save every executed submission here")

    sub.add_parser("list", help="list every registered exercise")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m lmlib.exercises`` and ``lmbook-exercises``; returns the exit status.

    Taught in: the instructor guide (book/instructors.md).
    """
    args = _parser().parse_args(argv)
    if args.command == "student":
        from .student import StudentVersionError, write_student_notebooks

        start = time.perf_counter()
        try:
            written = write_student_notebooks(args.sources, args.out)
        except (StudentVersionError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for path in written:
            print(f"wrote {path}")
        print(f"{len(written)} student notebook(s) in {time.perf_counter() - start:.2f} s.")
        return 0
    if args.command == "grade":
        from .grade import grade_folder

        try:
            grade_folder(args.submissions, args.out, timeout=args.timeout, chapters=args.chapters, jobs=args.jobs,
                         executed_dir=args.executed)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    from .core import all_exercises

    for ex_id, ex in all_exercises().items():
        print(f"{ex_id:<32} {ex.title if ex.title != ex_id else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The term's commands on the command line: ``collect``, ``grade --term``, ``manual``, ``export``,
``feedback`` (``autograder/README.md``, "A whole term"; the files are described in ``term.py``).

Bad input (a roster, ``term.toml``, ``timestamps.csv`` or ``manual.csv`` line, an argument) stops
the command with one message naming the file, line or argument and what was expected, on stderr,
and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

TERM_COMMANDS = ("collect", "manual", "export", "feedback")


def add_term_commands(commands, common: argparse.ArgumentParser) -> None:
    """The subcommands of the term, each with ``--term DIR``."""
    term = argparse.ArgumentParser(add_help=False)
    add_term_option(term)
    collect = commands.add_parser(
        "collect", parents=[common, term],
        help="copy an LMS download (flat <lmsname>[_LATE]_<n>_<n>_<file> names) or per-student "
             "folders to TERM/ASSIGNMENT/submissions/<student_id>/ and record submission times")
    collect.add_argument("assignment", metavar="ASSIGNMENT")
    collect.add_argument("download", type=Path, metavar="DOWNLOAD_DIR",
                         help="the unzipped download: flat LMS files and/or one folder a student")
    manual = commands.add_parser(
        "manual", parents=[common, term],
        help="grade written answers: with STUDENT CELL_ID SCORE enter a score; with STUDENT alone "
             "show that student's answers; with neither list what remains ungraded")
    manual.add_argument("assignment", metavar="ASSIGNMENT")
    manual.add_argument("student", nargs="?", metavar="STUDENT", help="a student_id")
    manual.add_argument("cell", nargs="?", metavar="CELL_ID",
                        help="a written answer's grade_id (or NOTEBOOK:GRADE_ID)")
    manual.add_argument("score", nargs="?", metavar="SCORE", help="points, 0 to the cell's max")
    manual.add_argument("--comment", help="the grader's comment, shown in the student's feedback")
    export = commands.add_parser(
        "export", parents=[common, term],
        help="write TERM/ASSIGNMENT/export.csv (one row per roster student: auto, manual, late "
             "penalty, total) and, for several assignments, TERM/export.csv")
    export.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help="default: every assignment of term.toml that has been graded")
    handback = commands.add_parser(
        "feedback", parents=[common, term],
        help="write TERM/ASSIGNMENT/handback/<student_id>/*.html: feedback with the written "
             "answers' scores and comments, the late penalty and the total")
    handback.add_argument("assignment", metavar="ASSIGNMENT")


def add_term_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--term", type=Path, default=None, metavar="DIR",
                        help="term folder holding roster.csv and term.toml (default: "
                             "ROOT/grading)")


def add_grade_options(grade: argparse.ArgumentParser) -> None:
    """``grade``'s term options: ``--term`` (instead of SUBMISSIONS and --out) and ``--only``."""
    add_term_option(grade)
    grade.add_argument("--only", nargs="+", metavar="STUDENT",
                       help="grade only these student folders; their rows replace theirs in the "
                            "existing grades.csv and cells.csv, every other row stays")


def wants_term(args: argparse.Namespace) -> bool:
    return args.command in TERM_COMMANDS or (args.command == "grade" and args.submissions is None)


def run(args: argparse.Namespace, root: Path) -> int:
    """Run a term command; a TermError becomes one line on stderr and exit status 2."""
    from .lms import TermError
    try:
        return _dispatch(args, root, (args.term or root / "grading").resolve())
    except TermError as error:
        print(f"python -m autograder {args.command}: error: {error}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace, root: Path, folder: Path) -> int:
    from . import lms, term
    if args.command == "collect":
        return lms.collect(folder, args.assignment, args.download.resolve())
    if args.command == "grade":
        return grade_term(args, root, folder)
    if args.command == "manual":
        return manual_command(term.read_term(folder), args)
    if args.command == "export":
        current = term.read_term(folder)
        names = args.assignments or [n for n in current.assignments
                                     if (folder / n / "grades.csv").is_file()]
        if not names:
            raise lms.TermError(f"no assignment of {folder / 'term.toml'} has been graded yet")
        return term.export(current, names)
    if args.command == "feedback":
        return term.write_handback(term.read_term(folder), args.assignment)
    raise AssertionError(args.command)


def grade_term(args: argparse.Namespace, root: Path, folder: Path) -> int:
    """``grade ASSIGNMENT --term DIR [--only ...]``: grade into ``DIR/ASSIGNMENT``, merged (a
    student not graded now keeps the row of the last run), then add the new rows of
    ``manual.csv``."""
    from .grade import grade
    from .lms import TermError
    from .manual import manual_cells, pending, prefill, read_manual, read_rows
    from .sandbox import Limits
    from .term import read_term
    if args.out is not None:
        raise TermError("--out: with --term the results go to TERM/ASSIGNMENT; give SUBMISSIONS "
                        "and --out without --term to grade elsewhere")
    current = read_term(folder)
    base = folder / args.assignment
    submissions = base / "submissions"
    if not submissions.is_dir():
        raise TermError(f"{submissions} does not exist: collect the submissions first "
                        f"(python -m autograder collect {args.assignment} DOWNLOAD_DIR)")
    absent = [s for s in args.only or [] if not (submissions / s).is_dir()]
    if absent:
        raise TermError(f"--only: no folder {', '.join(absent)} in {submissions}")
    if args.assignment not in current.assignments:
        print(f"grade: WARNING: {folder / 'term.toml'} has no due date for {args.assignment}; "
              "export needs one")
    code = grade(root, args.assignment, submissions, base, workers=args.workers,
                 timeout=args.timeout, cell_timeout=args.cell_timeout, keep_work=args.keep_work,
                 limits=Limits(memory_mb=args.memory_mb), only=args.only, merge=True)
    if not (base / "grades.csv").is_file():
        return code or 1
    rows = read_rows(base / "grades.csv", "")
    students = set(current.roster.ids) | {r["student_id"] for r in rows}
    try:
        added = prefill(base, students, [r["student_id"] for r in rows if r["status"] != "missing"])
    except TermError as error:
        raise TermError(f"graded, but manual.csv was left as it was: {error}") from None
    left = pending(read_manual(base / "manual.csv", manual_cells(base), students))
    print(f"grade: {added} row(s) added to {base / 'manual.csv'}; {len(left)} written answer(s) "
          f"to grade (python -m autograder manual {args.assignment} lists them)")
    return code


def manual_command(term, args: argparse.Namespace) -> int:
    """List what is ungraded, show one student's answers, or enter one score."""
    from .lms import TermError
    from .manual import answers_of, manual_cells, pending, read_manual, set_score
    base = term.folder / args.assignment
    cells = manual_cells(base)
    students = set(term.roster.ids) | {r["student_id"] for r in _grades(base)}
    if args.cell is not None and args.score is None:
        raise TermError("SCORE is missing: manual ASSIGNMENT STUDENT CELL_ID SCORE")
    if args.score is not None:
        row = set_score(base, students, args.student, args.cell, args.score, args.comment)
        left = pending(read_manual(base / "manual.csv", cells, students))
        print(f"manual: {row['student_id']} {row['grade_id']}: {row['score']} / "
              f"{row['max_score']}; {len(left)} written answer(s) left to grade")
        return 0
    rows = read_manual(base / "manual.csv", cells, students)
    if args.student is not None:
        if args.student not in students:
            raise TermError(f"STUDENT {args.student!r} is neither on the roster nor graded")
        texts = answers_of(base, args.student, cells)
        mine = [r for r in rows if r["student_id"] == args.student]
        if not mine:
            print(f"manual: {args.student} has no row in {base / 'manual.csv'} (never graded, "
                  "or nothing handed in)")
        for row in mine:
            key = f"{row['notebook']}:{row['grade_id']}"
            print(f"--- {key} ({row['score'] or '?'} / {row['max_score']}) {row['comment']}\n"
                  f"{texts.get(key, '[no executed notebook to read it from]')}")
        return 0
    left = pending(rows)
    for row in left:
        print(f"{row['student_id']:<20} {row['notebook']}:{row['grade_id']} (max "
              f"{row['max_score']})")
    print(f"manual: {len(rows) - len(left)} of {len(rows)} written answer(s) graded in "
          f"{base / 'manual.csv'}")
    return 0


def _grades(base: Path) -> list[dict[str, str]]:
    from .manual import read_rows
    return read_rows(base / "grades.csv", "grade the assignment first (grade --term)")

"""Command line of the instructor pipeline: ``python -m autograder --help``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import term_cli


def _grade_arguments(grade: argparse.ArgumentParser) -> None:
    """The options of ``grade``: what is graded, where the results go, and the limits."""
    grade.add_argument("assignment", metavar="ASSIGNMENT")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS", nargs="?",
                       help="folder with one sub-folder per student holding the .ipynb (give "
                            "neither it nor --out to grade the term's submissions, --term)")
    grade.add_argument("--out", type=Path, help="output folder (required with SUBMISSIONS)")
    term_cli.add_grade_options(grade)
    grade.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                       help="submissions graded in parallel (default: min(4, CPUs))")
    grade.add_argument("--timeout", type=float, default=900,
                       help="wall-clock limit in s for grading one submission, all cells "
                            "together (default: 900); past it everything it started is killed")
    grade.add_argument("--cell-timeout", type=int, default=None,
                       help="limit in s for one cell; a cell past it is interrupted and the "
                            "rest still runs (default: 120)")
    grade.add_argument("--memory-mb", type=int, default=4096,
                       help="memory limit of one submission in MB: data segment of each of its "
                            "processes; the whole jail is killed at 1.5x this resident (default: "
                            "4096)")
    grade.add_argument("--keep-work", action="store_true",
                       help="keep each submission's work folder (notebook in, executed notebook "
                            "and journal out, run log) under OUT/work")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="Release nbgrader assignments from solutions/ to exercises/, check the "
                    "release, grade student submissions (see autograder/README.md).")
    root_help = "repository root holding solutions/ and exercises/ (default: .)"
    parser.add_argument("--root", type=Path, default=Path("."), help=root_help)
    # --root is also accepted after the command (`check --root /tmp/copy`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=argparse.SUPPRESS, help=root_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser(
        "release", parents=[common],
        help="regenerate exercises/ from solutions/ with nbgrader generate_assignment; stamp "
             "[tool.course] of pyproject.toml into every badge and Colab install of the "
             "lectures, exercises and README")
    release.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                         help="assignment folder name(s) under solutions/ (default: all)")

    commands.add_parser(
        "check", parents=[common],
        help="fail if exercises/ differs from what release writes, leaks a solution or hidden "
             "test, or lacks the Colab badge / set-up cell, or if a lecture, an exercise or the "
             "README links elsewhere than [tool.course] in pyproject.toml")

    _grade_arguments(commands.add_parser(
        "grade", parents=[common],
        help="autograde SUBMISSIONS/<student_id>/*.ipynb; write grades.csv, cells.csv and "
             "feedback HTML under --out"))

    samples = commands.add_parser(
        "samples", parents=[common],
        help="write fixture submissions (solution, release, hostile variants) built from the "
             "current notebooks")
    samples.add_argument("assignment", metavar="ASSIGNMENT")
    samples.add_argument("out", type=Path, metavar="OUT")

    publish = commands.add_parser(
        "publish", parents=[common],
        help="write the student-facing tree (course_lib, lectures, exercises, set-up; no "
             "solutions, hidden tests or grader) to DIR, for the public repository of "
             "[tool.course] in pyproject.toml")
    publish.add_argument("dest", type=Path, metavar="DIR",
                         help="a new folder, or a clone of the public repository holding only .git")
    term_cli.add_term_commands(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = args.root.resolve()
    if args.command == "release":
        from .release import release
        return release(root, args.assignments or None)
    if args.command == "check":
        from .release import check
        return check(root)
    if args.command == "publish":
        from .publish import publish
        return publish(root, args.dest.resolve())
    if term_cli.wants_term(args):
        return term_cli.run(args, root)
    if args.command == "grade":
        from .grade import grade
        from .sandbox import Limits
        if args.out is None or args.term is not None:
            print("python -m autograder grade: error: SUBMISSIONS goes with --out OUT; for the "
                  "term's submissions give neither (--term DIR)", file=sys.stderr)
            return 2
        return grade(root, args.assignment, args.submissions.resolve(), args.out.resolve(),
                     workers=args.workers, timeout=args.timeout, cell_timeout=args.cell_timeout,
                     keep_work=args.keep_work, limits=Limits(memory_mb=args.memory_mb),
                     only=args.only)
    if args.command == "samples":
        from .samples import write_samples
        return write_samples(root, args.assignment, args.out.resolve())
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

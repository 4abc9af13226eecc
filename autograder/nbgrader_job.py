"""nbgrader steps run as a subprocess inside a temporary course directory (the current directory).

    python -m autograder.nbgrader_job generate_assignment ASSIGNMENT
    python -m autograder.nbgrader_job autograde ASSIGNMENT STUDENT [--cell-timeout S]

The first is ``nbgrader generate_assignment ASSIGNMENT --force``; the second is ``nbgrader
autograde ASSIGNMENT --student STUDENT --force`` followed by ``nbgrader generate_feedback``, in one
interpreter instead of two. Both go through nbgrader's own Python API (``NbGraderAPI``) with the
course's ``nbgrader_config.py``. The parent process enforces the wall-clock limit and kills this
process together with its kernel.

Exit status: 0 success; 1 the nbgrader step (generate_assignment or autograde) failed; 2 autograde
succeeded but generate_feedback failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(step: str, result: dict) -> bool:
    print(f"=== nbgrader {step} ===", flush=True)
    print(result.get("log", ""), flush=True)
    if not result["success"]:
        print(result.get("error", f"nbgrader {step} failed"), flush=True)
    return bool(result["success"])


def _api(cell_timeout: int | None):
    # When `rfc3987_syntax` is importable, jsonschema builds its IRI grammar at import: about 2 s
    # of CPU in every process that imports nbformat, a third of this job's start-up. Notebook
    # validation uses no IRI format, so this process goes without (jsonschema expects the
    # ImportError that a module set to None raises).
    sys.modules.setdefault("rfc3987_syntax", None)
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(Path.cwd())).load_config()
    if cell_timeout:
        config.Execute.timeout = cell_timeout
    return NbGraderAPI(coursedir=CourseDirectory(config=config, root=str(Path.cwd())),
                       config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.nbgrader_job")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("generate_assignment").add_argument("assignment")
    autograde = steps.add_parser("autograde")
    autograde.add_argument("assignment")
    autograde.add_argument("student")
    autograde.add_argument("--cell-timeout", type=int, default=None)
    args = parser.parse_args(argv)

    if args.step == "generate_assignment":
        api = _api(None)
        return 0 if _report("generate_assignment", api.generate_assignment(
            args.assignment, force=True, create=True)) else 1
    api = _api(args.cell_timeout)
    if not _report("autograde", api.autograde(args.assignment, args.student, force=True,
                                              create=True)):
        return 1
    if not _report("generate_feedback", api.generate_feedback(args.assignment, args.student,
                                                              force=True)):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

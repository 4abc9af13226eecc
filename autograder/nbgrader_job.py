"""nbgrader's release step run as a subprocess inside a temporary course directory (the cwd).

    python -m autograder.nbgrader_job generate_assignment ASSIGNMENT

is ``nbgrader generate_assignment ASSIGNMENT --force`` through nbgrader's own Python API
(``NbGraderAPI``) with the course's ``nbgrader_config.py``. Grading does not use nbgrader's
autograde (see ``grade.py`` for why). Exit status: 0 success, 1 failure.
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


def alembic_head() -> str:
    """The gradebook schema's revision, read from nbgrader's migration scripts in this process.

    A new gradebook records it. nbgrader asks for it by running the ``alembic`` executable, a
    second Python start-up of about 3 s in every release step; the answer is the same."""
    import nbgrader
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(nbgrader.__file__).parent / "alembic")).get_current_head()


def _api():
    import nbgrader.api
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    nbgrader.api.get_alembic_version = alembic_head
    config = PyFileConfigLoader("nbgrader_config.py", path=str(Path.cwd())).load_config()
    return NbGraderAPI(coursedir=CourseDirectory(config=config, root=str(Path.cwd())),
                       config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.nbgrader_job")
    steps = parser.add_subparsers(dest="step", required=True)
    steps.add_parser("generate_assignment").add_argument("assignment")
    args = parser.parse_args(argv)
    return 0 if _report("generate_assignment", _api().generate_assignment(
        args.assignment, force=True, create=True)) else 1


if __name__ == "__main__":
    sys.exit(main())

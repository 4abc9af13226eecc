"""The instructor pipeline: release the student notebooks, check them, grade submissions.

    python -m autograder release [ASSIGNMENT]       # solutions/ -> exercises/ (nbgrader)
    python -m autograder check                      # CI: exercises/ is current and leaks nothing
    python -m autograder grade ASSIGNMENT SUBMISSIONS --out OUT
    python -m autograder samples ASSIGNMENT OUT     # fixture submissions (tests, dry runs)
    python -m autograder publish DIR                # the student-facing tree, for the public repo

A whole term (``--term DIR``, default ``grading/``: roster, due dates, late policy):

    python -m autograder collect ASSIGNMENT DOWNLOAD  # LMS download -> submissions/<student_id>/
    python -m autograder grade ASSIGNMENT [--only STUDENT ...]   # merged: other rows kept
    python -m autograder manual ASSIGNMENT [STUDENT [CELL_ID SCORE]]   # written answers
    python -m autograder export [ASSIGNMENT ...]    # one row per roster student, late penalty
    python -m autograder feedback ASSIGNMENT        # hand-back pages with the manual scores

See ``autograder/README.md`` for the instructor's path and what grading does and does not enforce.
"""
import sys

# When `rfc3987_syntax` is importable, jsonschema builds its IRI grammar when nbformat imports it:
# 1.5 to 2 s of CPU in every process of the pipeline (each command, each submission's executor,
# each release step). Notebook validation uses no IRI format, so the pipeline goes without
# (jsonschema expects the ImportError that a module set to None raises).
sys.modules.setdefault("rfc3987_syntax", None)


def __getattr__(name: str) -> str:
    """``COURSE_REPO`` and ``COURSE_TAG``: ``[tool.course]`` of this checkout's pyproject.toml,
    the one place where the course's public repository and tag are set (``links.py``). Read when
    first asked for, not at import: the grading jail imports this package without pyproject.toml."""
    if name in ("COURSE_REPO", "COURSE_TAG"):
        from .links import CHECKOUT, load_setting
        setting = load_setting(CHECKOUT)
        return setting.repository if name == "COURSE_REPO" else setting.tag
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

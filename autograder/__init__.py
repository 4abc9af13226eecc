"""The instructor pipeline: release the student notebooks, check them, grade submissions.

    python -m autograder release [ASSIGNMENT]       # solutions/ -> exercises/ (nbgrader)
    python -m autograder check                      # CI: exercises/ is current and leaks nothing
    python -m autograder grade ASSIGNMENT SUBMISSIONS --out OUT
    python -m autograder samples ASSIGNMENT OUT     # fixture submissions (tests, dry runs)

See ``autograder/README.md`` for the instructor's path and what grading does and does not enforce.
"""
import sys

# When `rfc3987_syntax` is importable, jsonschema builds its IRI grammar when nbformat imports it:
# 1.5 to 2 s of CPU in every process of the pipeline (each command, each submission's executor,
# each release step). Notebook validation uses no IRI format, so the pipeline goes without
# (jsonschema expects the ImportError that a module set to None raises).
sys.modules.setdefault("rfc3987_syntax", None)

# The GitHub repository ("owner/name") students open notebooks from: the "Open in Colab" badge and
# the Colab set-up cell's `pip install git+https://github.com/...` of every released notebook are
# rewritten to point here. Change it (and run `python -m autograder release`) when publishing.
COURSE_REPO = "ssl-vision-course/ssl-vision-course"
# The branch the badges open.
COURSE_BRANCH = "main"

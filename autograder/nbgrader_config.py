"""nbgrader configuration for this course's release step.

The pipeline copies this file into the temporary course directory it builds for ``nbgrader
generate_assignment`` (release, check, and the template of a grading batch), where nbgrader loads
it as ``nbgrader_config.py``. It is also importable (``autograder.nbgrader_config.c``).
"""
try:
    c = get_config()  # noqa: F821 - defined when nbgrader executes this file as its config
except NameError:  # imported as a module
    from traitlets.config import Config

    c = Config()

c.CourseDirectory.course_id = "ssl-vision"

# --- release --------------------------------------------------------------------------------------
# What a student sees in place of a solution (nbgrader's defaults, spelled out).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading (execution, time limits, scores, feedback) does not go through nbgrader's autograde;
# see autograder/grade.py for why and for its limits.

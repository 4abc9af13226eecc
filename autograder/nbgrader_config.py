"""nbgrader configuration for this course: the one place its grading policy is set.

The pipeline copies this file into every temporary course directory it builds (release, and one per
graded submission), where nbgrader loads it as ``nbgrader_config.py``. It is also importable
(``autograder.nbgrader_config.c``) so the pipeline and the tests read the same values.
Command-line flags the pipeline passes (``--Execute.timeout=...``) override what is set here.
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

# --- autograde ------------------------------------------------------------------------------------
# Per-cell wall-clock limit: long enough for a CPU-scale training cell, finite so a loop ends.
# A cell that runs past it is interrupted (KeyboardInterrupt in the kernel), gets a
# CellTimeoutError output, and the rest of the notebook still runs.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.allow_errors = True

# Restore grade cells a student deleted (nbgrader >= 0.9; off by default). Locked test cells whose
# source was edited are restored from the gradebook by OverwriteCells in any case.
c.OverwriteCells.add_missing_cells = True

# nbgrader scores a test cell zero when it wrote anything to stderr. Library noise (warnings,
# progress bars, logging) is not a failed test: drop stderr outputs that look like noise. A real
# failure still raises, and an error output always scores zero.
NOISE_PATTERN = r"(?im)warn|\d+%\||[\d.]+(it/s|s/it)|^(DEBUG|INFO)\b"
c.IgnorePattern.enabled = True  # off by default in nbgrader
c.IgnorePattern.pattern = NOISE_PATTERN

# Keep feedback and autograded notebooks readable when a student prints in a loop.
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

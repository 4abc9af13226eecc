"""Colab's stack: the library's tests and lecture 02's widgets under the widget and numpy
versions Colab ships (``requirements/colab.txt``), in ``.venv-colab`` (``make colab-stack``, which
``make test`` runs first). Each check runs in a subprocess of that venv's Python.

The whole of lecture 02 runs in the main nbval session; here its opening runs, down to the
widget cell and the numeric checks after it (sections 1 and 2, under 15 s): the cells whose code
touches ipywidgets and numpy-facing plotting. Its training sections use torch alone, which is the
same in both stacks.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLAB_PYTHON = ROOT / ".venv-colab" / "bin" / "python"
PINS = dict(line.split("==") for line in (ROOT / "requirements" / "colab.txt").read_text().splitlines()
            if line and not line.startswith("#"))
# The library's tests whose code paths use numpy or matplotlib directly: the data, schedules,
# diagnostics, the grading helpers (what a graded notebook calls) and the runtime settings. The
# training and evaluation tests (torch only, a minute more) are left to the main session.
UNIT_TESTS = ["tests/test_data.py", "tests/test_schedules.py", "tests/test_diagnostics.py",
              "tests/test_grading.py", "tests/test_runtime.py"]
LECTURE = ROOT / "lectures" / "02_dino.ipynb"
WIDGET_SECTIONS_END = "## 3."   # the first markdown heading after the widget sections

pytestmark = pytest.mark.skipif(not COLAB_PYTHON.exists(),
                                reason=f"{COLAB_PYTHON} missing: `make colab-stack` builds it")


def colab_run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run([str(COLAB_PYTHON), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_colab_venv_has_colabs_versions_and_this_checkouts_library():
    probe = ("import importlib.metadata as m, course_lib, ipywidgets, numpy; "
             "print(ipywidgets.__version__, numpy.__version__, m.version('ipython_genutils'), course_lib.__file__)")
    done = colab_run("-c", probe, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    widgets, numpy, genutils, library = done.stdout.split()
    assert (widgets, numpy, genutils) == (PINS["ipywidgets"], PINS["numpy"], PINS["ipython_genutils"])
    assert Path(library).resolve() == ROOT / "course_lib" / "__init__.py"


def test_library_tests_pass_on_colabs_stack():
    done = colab_run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *UNIT_TESTS,
                     timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def widget_sections(notebook: dict) -> dict:
    """``notebook`` cut before the markdown cell that opens section 3."""
    ends = [i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "markdown"
            and "".join(cell["source"]).startswith(WIDGET_SECTIONS_END)]
    assert ends, f"no markdown cell starting {WIDGET_SECTIONS_END!r} in {LECTURE.name}"
    return {**notebook, "cells": notebook["cells"][:ends[0]]}


def test_the_widget_sections_are_the_ones_with_the_widget():
    cells = widget_sections(json.loads(LECTURE.read_text()))["cells"]
    code = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    assert any("widgets.interact(" in source for source in code)
    assert 4 <= len(code) <= 8, "the cut should keep the set-up, the widget and its checks only"


def test_the_widget_lecture_runs_on_colabs_stack(tmp_path):
    opening = tmp_path / "02_dino_widgets.ipynb"
    opening.write_text(json.dumps(widget_sections(json.loads(LECTURE.read_text()))))
    done = colab_run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax",
                     "--nbval-current-env", str(opening), timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "failed" not in done.stdout

"""Colab's stack: the library's tests and lecture 02 (the widget lecture) under the widget and
numpy versions Colab ships (``requirements/colab.txt``), in ``.venv-colab`` (``make colab-stack``,
which ``make test`` runs first). Each check runs in a subprocess of that venv's Python.

Lecture 02 runs here instead of in the main nbval session (the Makefile leaves it out there).
"""
from __future__ import annotations

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
LECTURE = "lectures/02_dino.ipynb"

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


def test_the_widget_lecture_runs_on_colabs_stack():
    done = colab_run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax",
                     "--nbval-current-env", LECTURE, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

"""The library's tests, one whole lecture and lecture 02's widgets on Python 3.13, the Python
Colab runs, with Colab's ipywidgets 7: the lock's packages, the widget pins of
``requirements/colab.txt`` and this checkout in ``.venv-py313`` (``make py313-stack``, which
``make test`` runs first). Each check runs in a subprocess of that venv's Python.

Colab's numpy pin is not combined with 3.13: that pin (2.0.2) has no wheel for 3.13 (the first
numpy with one is 2.1.0), and which numpy Colab ships beside 3.13 cannot be read from this
machine. So this venv keeps the lock's numpy, and ``tests/test_colab_stack.py`` checks the numpy
pin on this machine's own Python.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from test_colab_stack import LECTURE as WIDGET_LECTURE, PINS, widget_sections

ROOT = Path(__file__).resolve().parents[1]
PY313 = ROOT / ".venv-py313" / "bin" / "python"
LOCK = dict(line.split("==") for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#"))
# The unit tests of every course_lib module that trains or evaluates (about 35 s on one core).
# tests/test_zoo.py is left out: it recomputes every shipped checkpoint's k-NN, three minutes of
# forward passes; loading a checkpoint on 3.13 is what the lecture below does.
LIBRARY_TESTS = ["augment", "backbones", "data", "diagnostics", "dino", "dinov2", "ema", "evaluate",
                 "grading", "ibot", "ijepa", "mae", "masking", "moco", "runtime", "schedules",
                 "simclr", "train"]
LECTURE = "lectures/07_evaluation.ipynb"     # the shortest whole lecture: the zoo, every protocol

pytestmark = pytest.mark.skipif(
    not PY313.exists(), reason=f"{PY313} missing: `make py313-stack` builds it where a Python 3.13 "
                               "is installed (python3.13, or pyenv's 3.13.x)")


def run313(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)    # the venv is not compiled: the first run writes it
    return subprocess.run([str(PY313), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_venv_is_python_313_with_the_locks_packages_colabs_widgets_and_this_checkout():
    probe = ("import sys, importlib.metadata as m, torch, numpy, ipywidgets, course_lib; "
             "print('%d.%d' % sys.version_info[:2], torch.__version__, numpy.__version__, "
             "ipywidgets.__version__, m.version('ipython_genutils'), course_lib.__file__)")
    done = run313("-c", probe, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    python, torch, numpy, widgets, genutils, library = done.stdout.split()
    assert python == "3.13"
    assert torch.split("+")[0] == LOCK["torch"] and numpy == LOCK["numpy"]
    assert (widgets, genutils) == (PINS["ipywidgets"], PINS["ipython_genutils"])      # Colab's widget pins
    assert Path(library).resolve() == ROOT / "course_lib" / "__init__.py"


def test_the_library_tests_pass_on_python_313():
    modules = [f"tests/test_{name}.py" for name in LIBRARY_TESTS]
    assert all((ROOT / module).exists() for module in modules), modules
    done = run313("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-m", "not slow",
                  *modules, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 300 and " failed" not in done.stdout, done.stdout[-2000:]


def test_a_whole_lecture_and_lecture_02s_widgets_run_on_python_313(tmp_path):
    """Lecture 07 whole, then lecture 02 down to its widget and the checks after it (the cut of
    ``tests/test_colab_stack.py``), in one nbval session."""
    opening = tmp_path / "02_dino_widgets.ipynb"
    opening.write_text(json.dumps(widget_sections(json.loads(WIDGET_LECTURE.read_text()))))
    done = run313("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "--nbval-lax",
                  "--nbval-current-env", LECTURE, str(opening), timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout) and "failed" not in done.stdout

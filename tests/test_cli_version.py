"""`python -m course_lib --version`: the installed distribution's version, else pyproject.toml's."""
import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from course_lib import _cli_info
from course_lib.__main__ import main

REPO = Path(__file__).resolve().parents[1]
PYPROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_python_m_course_lib_version_prints_the_installed_version_and_exits_0():
    run = subprocess.run([sys.executable, "-m", "course_lib", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"course_lib {importlib.metadata.version('course_lib')}\n"
    assert importlib.metadata.version("course_lib") == PYPROJECT_VERSION


def test_version_falls_back_to_pyproject_then_to_the_package(monkeypatch, tmp_path, capsys):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(_cli_info, "PYPROJECT", tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "course_lib"\nversion = "9.8.7"\n')
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == "course_lib 9.8.7\n"

    (tmp_path / "pyproject.toml").unlink()
    assert _cli_info.installed_version() == _cli_info.__version__

"""The repository's ``--run-first`` option (``conftest.py``), which ``make test`` uses to hand the
longest modules out first: run on a scratch project holding a copy of that conftest."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collected(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "-p", "no:nbval", *args], cwd=project, capture_output=True, text=True,
                          timeout=120)


def files(done: subprocess.CompletedProcess) -> list[str]:
    return [line.split("::")[0] for line in done.stdout.splitlines() if "::" in line]


def test_run_first_moves_files_and_folders_ahead_in_the_order_given_and_keeps_the_rest(tmp_path):
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (tmp_path / "sub").mkdir()
    for name in ("test_a.py", "test_b.py", "test_c.py", "sub/test_d.py"):
        (tmp_path / name).write_text("def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    plain = collected(tmp_path)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert files(plain) == ["sub/test_d.py"] * 2 + ["test_a.py"] * 2 + ["test_b.py"] * 2 + ["test_c.py"] * 2
    moved = collected(tmp_path, "--run-first", "test_c.py", "--run-first", "sub")
    assert files(moved) == ["test_c.py"] * 2 + ["sub/test_d.py"] * 2 + ["test_a.py"] * 2 + ["test_b.py"] * 2
    assert [line for line in moved.stdout.splitlines() if "::" in line][:2] == ["test_c.py::test_one", "test_c.py::test_two"]
    missing = collected(tmp_path, "--run-first", "test_nope.py")
    assert missing.returncode != 0 and "--run-first test_nope.py: no such file or folder" in missing.stderr

"""The benchmark scripts run end to end at a toy size and print the rows they promise (their
figures are read by people, not asserted: timings on a shared machine are noise)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_dino_step_prints_course_lib_and_the_lightly_rows_or_how_to_get_them():
    out = subprocess.run([sys.executable, str(BENCHMARKS / "dino_step.py"), "--batch-size", "4",
                          "--local-crops", "2", "--out-dim", "64", "--repeats", "1"],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    assert "course_lib" in out and "ratio to course_lib  1.00x" in out
    if importlib.util.find_spec("lightly") is not None:
        assert "lightly grouped" in out and "lightly per-view" in out
    else:
        assert "make bench-deps" in out

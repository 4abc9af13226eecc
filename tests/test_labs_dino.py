"""Lecture 02's lab (course_lib.labs.dino): the collapse ablation's CLI output."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

SLOW = pytest.mark.slow


@SLOW
def test_dino_ablation_cli_shows_both_collapse_modes(tmp_path):
    """The CPU-scale ablation's three telling runs (about 2 minutes; all five take about 3):
    uniform collapse with centering only, towards one-hot with sharpening only, a healthy middle
    with both."""
    out = tmp_path / "ablation.json"
    run = subprocess.run([sys.executable, "-m", "course_lib", "dino-ablation", "--scale", "cpu",
                          "--variants", "centering", "sharpening", "both", "--json", str(out)],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})  # the other worker has a core
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"centering", "sharpening", "both"}
    log_k, v = result["log_k"], result["variants"]
    assert result["out_dim"] == 256 and log_k == pytest.approx(math.log(256))
    assert v["centering"]["final_teacher_entropy"] > 0.95 * log_k      # uniform
    assert v["centering"]["final_kl"] < 0.1
    assert v["sharpening"]["final_teacher_entropy"] < 0.2 * log_k      # towards one-hot
    both = v["both"]["final_teacher_entropy"]
    assert 0.3 * log_k < both < 0.85 * log_k and v["both"]["final_kl"] > 0.3
    for run_ in v.values():
        curves = run_["curves"]
        assert len(curves["step"]) == len(curves["teacher_entropy"]) == len(curves["kl"]) > 10

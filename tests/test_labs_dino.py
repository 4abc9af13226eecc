"""Lecture 02's lab (course_lib.labs.dino): the ablation command writes what it says."""
from __future__ import annotations

import json
import math

import pytest

from course_lib.__main__ import main

# The phenomenon itself (uniform collapse with centering alone, towards one-hot with sharpening
# alone, confident image-dependent targets with both) is asserted by lecture 02's check cell on
# the lecture's own 100-step run, which `make test` executes; this file checks the command.


def test_ablation_command_writes_its_table_and_json(tmp_path, capsys):
    out = tmp_path / "ablation.json"
    assert main(["dino-ablation", "--scale", "cpu", "--variants", "none", "both", "--steps", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"none", "both"}
    assert result["settings"]["train"]["steps"] == 2
    assert result["log_k"] == pytest.approx(math.log(result["out_dim"]))
    for run in result["variants"].values():
        curves = run["curves"]
        assert len(curves["step"]) == len(curves["teacher_entropy"]) == len(curves["kl"]) >= 1
        assert len(curves["batch_mean_entropy"]) == len(curves["step"])
    printed = capsys.readouterr().out
    assert "batch-mean H" in printed and printed.count("\nboth ") == 1 and "total" in printed

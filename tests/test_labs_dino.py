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


def test_image_properties_by_hand():
    import torch

    from course_lib.labs.dino import image_properties
    masks = torch.zeros(8, 32, 32, dtype=torch.bool)
    for i in range(8):                        # squares of growing side, left to right along x
        side, x = 4 + 2 * i, 3 * i
        masks[i, 10:10 + side, x:x + side] = True
    props = image_properties(masks, torch.arange(8))
    assert props["shape"].tolist() == list(range(8))
    assert props["area"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]              # quartiles of the area
    # centroid x grows with i (terciles 0, 1, 2), centroid y too: position = 3 * x-bin + y-bin
    x_bin, y_bin = props["position"] // 3, props["position"] % 3
    assert x_bin.tolist() == sorted(x_bin.tolist()) and x_bin[0] == 0 and x_bin[-1] == 2
    assert y_bin.tolist() == sorted(y_bin.tolist())


def test_shape_run_returns_its_three_networks_and_what_the_teacher_sorts_by():
    from course_lib.labs.dino import ABLATION_SCALES, shape_run
    run = shape_run("cpu", steps=2)
    assert run["steps"] == 2 and set(run["knn"]) == {"untrained", "DINO", "supervised"}
    assert all(0.0 <= v <= 1.0 for v in run["knn"].values())
    assert set(run["sorting"]) == {"shape", "area", "position", "prototypes_used"}
    assert all(0.0 <= run["sorting"][k] <= 1.0 for k in ("shape", "area", "position"))
    assert 1 <= run["sorting"]["prototypes_used"] <= ABLATION_SCALES["cpu"].dino.out_dim
    assert run["test_images"].unique().tolist() == [50, 220]                 # one grey object, one grey ground
    assert 0 <= run["teacher_entropy"] <= run["batch_mean_entropy"] + 1e-6 <= math.log(256) + 1e-6
    untrained = run["models"]["untrained"].state_dict()
    trained = run["models"]["supervised"].state_dict()
    assert untrained.keys() == trained.keys()
    assert any(not (untrained[k] == trained[k]).all() for k in untrained)     # the labels moved it
    with pytest.raises(ValueError, match="^steps must"):
        shape_run("cpu", steps=0)

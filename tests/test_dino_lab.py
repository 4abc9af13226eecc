"""Lecture 02's runners: attention thresholding and Jaccard against hand-worked cases, the
teacher-distribution numbers of the widget, and the collapse ablation's CLI output."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from course_lib import dino_lab
from course_lib.backbones import build_vit
from course_lib.data import make_shapes

SLOW = pytest.mark.slow


def test_attention_masks_keep_the_fewest_patches_holding_the_mass():
    att = torch.tensor([[0.5, 0.1], [0.3, 0.1]])             # sorted: 0.5, 0.3, 0.1, 0.1
    keep = dino_lab.attention_masks(att, mass=0.6)            # 0.5 < 0.6, 0.5 + 0.3 crosses it
    assert keep.tolist() == [[True, False], [True, False]]
    assert dino_lab.attention_masks(att, mass=0.5).tolist() == [[True, False], [False, False]]
    assert dino_lab.attention_masks(att, mass=1.0).all()
    scaled = dino_lab.attention_masks(7 * att, mass=0.6)      # maps need not sum to 1
    assert torch.equal(scaled, keep)


def test_attention_masks_match_dinos_ascending_cumsum_rule():
    gen = torch.Generator().manual_seed(0)
    att = torch.rand(4, 3, 5, 5, generator=gen)
    for mass in (0.3, 0.6, 0.9):
        flat = att.flatten(-2) / att.flatten(-2).sum(-1, keepdim=True)
        val, idx = torch.sort(flat, dim=-1)                   # visualize_attention.py, ascending
        th = torch.cumsum(val, dim=-1) > (1 - mass)
        dino = torch.zeros_like(th).scatter(-1, idx, th).reshape(att.shape)
        assert torch.equal(dino_lab.attention_masks(att, mass), dino)


def test_jaccard_by_hand():
    a = torch.tensor([[True, True], [False, False]])
    b = torch.tensor([[True, False], [True, False]])
    assert dino_lab.jaccard(a, b).item() == pytest.approx(1 / 3)
    assert dino_lab.jaccard(a, a).item() == 1.0
    empty = torch.zeros(2, 2, dtype=torch.bool)
    assert dino_lab.jaccard(empty, empty).item() == 1.0 and dino_lab.jaccard(a, empty).item() == 0.0


def test_attention_jaccard_shapes_and_bounds():
    torch.manual_seed(0)
    model = build_vit("cpu-fine")
    images, _, masks = make_shapes(6, 32, seed=0)
    out = dino_lab.attention_jaccard(model, images, masks, batch_size=4)
    assert len(out["per_head"]) == model.blocks[-1].attn.num_heads
    assert out["best_head"] == max(out["per_head"])
    for key in ("mean_over_heads", "best_head", "head_average"):
        assert 0.0 <= out[key] <= 1.0
    with pytest.raises(ValueError, match="masks"):
        dino_lab.attention_jaccard(model, images, masks.float())


def test_teacher_distribution_sharpens_and_centers():
    logits = torch.tensor([2.0, 1.0, 0.0])
    soft = dino_lab.teacher_distribution(logits, 0.0, 1.0)
    assert soft.tolist() == pytest.approx((torch.exp(logits) / torch.exp(logits).sum()).tolist())
    sharp = dino_lab.teacher_distribution(logits, 0.0, 0.04)
    assert sharp[0] > 0.999 and dino_lab.entropy(sharp) < dino_lab.entropy(soft)
    flat = dino_lab.teacher_distribution(logits, logits, 0.04)   # the centre equals the logits
    assert flat.tolist() == pytest.approx([1 / 3] * 3)
    assert dino_lab.entropy(flat).item() == pytest.approx(math.log(3))


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

"""Lecture 04's lab (course_lib.labs.ibot): the feedback-loop simulation, the ablation command and
the dense-probe table of the shipped checkpoints.

The phenomena (the favoured output taking over without centering; the patch targets concentrating
without the patch center while the CLS targets stay; iBOT's dense probe above MAE's and an
untrained network's) are asserted by lecture 04's check cells on the lecture's own runs, which
`make test` executes; this file checks the plumbing and the simulation against a hand step."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from course_lib.__main__ import main
from course_lib.labs import ibot as lab
from lab_scales import shrink_cpu_scale


def test_feedback_loop_records_one_value_per_step_and_is_seeded():
    first = lab.feedback_loop(centering=False, steps=7, seed=3)
    again = lab.feedback_loop(centering=False, steps=7, seed=3)
    for key in ("favoured_share", "batch_mean_entropy", "entropy", "bias_gap"):
        assert len(first[key]) == 7 and first[key] == again[key]
    assert first["log_k"] == pytest.approx(math.log(8))
    assert all(0.0 < share < 1.0 for share in first["favoured_share"])
    assert all(h <= first["log_k"] + 1e-9 for h in first["batch_mean_entropy"])


def test_the_first_step_of_the_feedback_loop_matches_a_step_written_out():
    """One step by hand, float64: teacher targets at tau_t on view 1 with a zero center, the
    student's cross-entropy gradient (q - p) / tau_s on view 2, SGD, then the EMA."""
    n_out, n_feat, batch, lr, ema, signal = 4, 3, 5, 0.05, 0.9, 0.1
    run = lab.feedback_loop(centering=False, steps=1, n_outputs=n_out, n_features=n_feat,
                            batch_size=batch, lr=lr, ema=ema, signal=signal, favour=0.05, seed=11)
    gen = torch.Generator().manual_seed(11)
    weight = torch.randn(n_out, n_feat, generator=gen, dtype=torch.float64) / math.sqrt(n_feat)
    bias = torch.tensor([0.05, 0.0, 0.0, 0.0], dtype=torch.float64)
    x = signal * torch.randn(batch, n_feat, generator=gen, dtype=torch.float64)
    v1 = x + 0.1 * signal * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    v2 = x + 0.1 * signal * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    p = torch.softmax((v1 @ weight.T + bias) / 0.04, dim=1)
    q = torch.softmax((v2 @ weight.T + bias) / 0.1, dim=1)
    grad_b = ((q - p) / 0.1).mean(0)                                  # d mean CE / d b
    student_b = bias - lr * grad_b
    teacher_b = ema * bias + (1 - ema) * student_b
    assert run["favoured_share"][0] == pytest.approx(p.mean(0)[0].item(), abs=1e-12)
    assert run["bias_gap"][0] == pytest.approx((teacher_b[0] - teacher_b[1:].mean()).item(), abs=1e-12)
    entropy = -(p * p.log()).sum(1).mean().item()
    assert run["entropy"][0] == pytest.approx(entropy, abs=1e-6)   # entropy() works in float32


@pytest.fixture
def tiny_scale(monkeypatch):
    shrink_cpu_scale(monkeypatch, lab)


def test_ablation_command_writes_its_table_and_json(tmp_path, capsys, tiny_scale):
    out = tmp_path / "ablation.json"
    assert main(["ibot-ablation", "--scale", "cpu", "--variants", "both", "no_patch_centering",
                 "--steps", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"both", "no_patch_centering"}
    assert result["settings"]["train"]["steps"] == 2
    assert result["log_k"] == pytest.approx(math.log(result["out_dim"]))
    for run in result["variants"].values():
        curves = run["curves"]
        assert len(curves["step"]) == len(curves["patch_entropy"]) == len(curves["loss_mim"]) >= 1
        assert 0.0 <= run["dense_iou"] <= 1.0 and 0.0 <= run["knn_accuracy"] <= 1.0
        assert 0.0 <= run["final_patch_batch_mean_entropy"] <= result["log_k"] + 1e-4
    printed = capsys.readouterr().out
    assert printed.count("\nno_patch_centering ") == 1 and "untrained" in printed


def test_the_variants_change_only_what_they_name(tiny_scale):
    """Without the patch center the patch center stays zero; every other run moves it. (The loss
    weights of cls_only and mim_only: tests/test_ibot.py.)"""
    setup = replace(lab.ablation_scale("cpu"), train=replace(lab.ablation_scale("cpu").train,
                                                             steps=1, log_every=1, warmup_steps=0))
    data = lab.ablation_data(setup)
    runs = {name: lab.run_variant(name, data, setup, keep_model=True) for name in lab.VARIANTS}
    for name, run in runs.items():
        method = run.pop("model")
        if name == "no_patch_centering":
            assert torch.count_nonzero(method.patch_center) == 0
        else:
            assert torch.count_nonzero(method.patch_center) > 0
    with pytest.raises(ValueError, match="name must be one of"):
        lab.run_variant("dino", data, setup)
    with pytest.raises(ValueError, match="variants must be among"):
        lab.ibot_ablation("cpu", variants=["both", "no_ema"])


def test_the_dense_table_of_shipped_checkpoints_has_one_row_per_network():
    table = lab.checkpoint_dense_table(["ibot", "dino"], n_images=20)
    assert list(table) == ["ibot", "dino", "untrained", "untrained sin-cos"]
    assert table["ibot"]["grid"] == (8, 8) and table["dino"]["grid"] == (4, 4)
    assert table["untrained"]["grid"] == (8, 8) and "knn_accuracy" not in table["untrained"]
    assert table["untrained"]["dense_position_iou"] == table["ibot"]["dense_position_iou"]
    text = lab.dense_table_text(table)
    assert len(text.splitlines()) == 1 + 4 + 2 and "position alone (4x4 grid)" in text

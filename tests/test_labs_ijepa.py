"""Lecture 05's lab (course_lib.labs.ijepa): the coverage maps, the ablation command and the
I-JEPA against MAE table. The phenomena (the context pinned to the top-left by the official
collator; the targets' std collapsing without EMA and stop-gradient) are asserted by lecture 05's
check cells on the lecture's own runs; this file checks the plumbing and the counts (the table
of I-JEPA against MAE: tests/test_benchmarks.py, through the script that fine-tunes them)."""
from __future__ import annotations

import json

import pytest
import torch

from course_lib.__main__ import main
from course_lib.ijepa import multiblock_batch
from course_lib.labs import ijepa as lab
from lab_scales import shrink_cpu_scale


def test_coverage_counts_match_a_direct_count():
    run = lab.context_coverage(10, official=False, n_batches=3, batch=4, seed=7)
    gen = torch.Generator().manual_seed(7)
    counts = torch.zeros(100)
    for _ in range(3):
        context, _ = multiblock_batch(4, 10, generator=gen)
        for row in context:
            counts[row] += 1
    assert torch.allclose(run["context"].flatten(), counts / 12)
    assert run["targets"].shape == (10, 10) and 0 <= run["targets"].max() <= 4


def test_the_official_coverage_never_reaches_the_last_row():
    official = lab.context_coverage(14, official=True, n_batches=5, batch=8)
    fixed = lab.context_coverage(14, official=False, n_batches=5, batch=8)
    assert official["context"][-1].sum() == 0 and official["uncovered"] >= 27
    assert fixed["context"][-1].sum() > 0 and fixed["uncovered"] < official["uncovered"]


@pytest.fixture
def tiny_scale(monkeypatch):
    shrink_cpu_scale(monkeypatch, lab)


def test_ablation_command_writes_its_table_and_json(tmp_path, capsys, tiny_scale):
    out = tmp_path / "ablation.json"
    assert main(["ijepa-ablation", "--scale", "cpu", "--variants", "ijepa", "no_ema_no_stopgrad",
                 "--steps", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"ijepa", "no_ema_no_stopgrad"}
    for run in result["variants"].values():
        assert len(run["curves"]["step"]) == len(run["curves"]["target_std"]) >= 1
        assert run["final_target_std"] > 0 and 0 <= run["dense_iou"] <= 1
    printed = capsys.readouterr().out
    assert printed.count("\nno_ema_no_stopgrad ") == 1 and "untrained" in printed
    with pytest.raises(ValueError, match="variants must be among"):
        lab.collapse_ablation("cpu", variants=["ijepa", "no_teacher"])

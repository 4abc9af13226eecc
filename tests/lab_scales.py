"""The labs' CPU ablation scale cut to a handful of images, for tests of a runner's plumbing."""
from __future__ import annotations

from dataclasses import replace


def shrink_cpu_scale(monkeypatch, lab) -> None:
    """Replace ``lab.ABLATION_SCALES["cpu"]`` (for this test only) by 64 training, 40 held-out
    and 16 dense-probe images at batch 8, so a run takes seconds."""
    cpu = lab.ABLATION_SCALES["cpu"]
    small = replace(cpu, n_train=64, n_test=40, n_dense=16, train=replace(cpu.train, batch_size=8))
    monkeypatch.setitem(lab.ABLATION_SCALES, "cpu", small)

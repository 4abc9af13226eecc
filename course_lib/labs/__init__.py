"""Experiment runners and figures, one module per unit, named by the unit.

A lab trains the unit's method a few times at the scale the notebook asks for and returns plain
numbers (and optionally the models) for the lecture's cells to print and plot; it holds no math
of its own. The formulas live in the method modules at ``course_lib``'s top, next to the paper:

    labs.infonce   lecture 01: temperature sweep, queue experiment (simclr, moco, diagnostics)
    labs.dino      lecture 02: collapse ablation, attention figures (dino, evaluate)
    labs.mae       lecture 03: masking-ratio sweep, measured speed-up (mae, masking, evaluate)
    labs.ibot      lecture 04: feedback loop, objective ablation, dense probe (ibot, evaluate)
    labs.ijepa     lecture 05: mask coverage, collapse ablation, against MAE (ijepa, evaluate)
    labs.dinov2    lecture 06: small-batch bound, centering and KoLeo on frozen features, token norms
    labs.pretrain  the recipes of the shipped checkpoints (``python -m course_lib pretrain``)
    labs.shipped   lectures 01 to 03: the shipped checkpoints side by side

    from course_lib.labs import dino as lab
    result = lab.collapse_ablation("cpu", steps=100)
"""
from __future__ import annotations

from dataclasses import replace


def ablation_runs(setup, variants: dict, steps: int | None, chosen: list[str] | None):
    """The common start of a lab's ablation: ``setup`` (a scale with a ``train`` TrainConfig)
    with ``steps`` replacing its steps (warm-up cut to fit), and the names of the runs to train
    (``chosen``, checked against ``variants``; default all)."""
    if steps is not None:
        setup = replace(setup, train=replace(setup.train, steps=steps,
                                             warmup_steps=min(setup.train.warmup_steps, steps)))
    unknown = set(chosen or []) - set(variants)
    if unknown:
        raise ValueError(f"variants must be among {sorted(variants)}, got {sorted(unknown)}")
    return setup, list(variants) if chosen is None else list(chosen)

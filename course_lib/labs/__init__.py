"""Experiment runners and figures, one module per unit, named by the unit.

A lab trains the unit's method a few times at the scale the notebook asks for and returns plain
numbers (and optionally the models) for the lecture's cells to print and plot; it holds no math
of its own. The formulas live in the method modules at ``course_lib``'s top, next to the paper:

    labs.infonce   lecture 01: temperature sweep, queue experiment (simclr, moco, diagnostics)
    labs.dino      lecture 02: collapse ablation, attention figures (dino, evaluate)
    labs.mae       lecture 03: masking-ratio sweep, measured speed-up (mae, masking, evaluate)

    from course_lib.labs import dino as lab
    result = lab.collapse_ablation("cpu", steps=100)
"""

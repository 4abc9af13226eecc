"""Exponential moving average of weights: the momentum encoder of MoCo (He et al. 2020, eq. 2)
and the teacher of DINO (Caron et al. 2021, section 3.1). Lecture 01, section 4; Lecture 02.

    theta_t <- m * theta_t + (1 - m) * theta_s

The teacher moves slowly towards the student (m close to 1). Buffers (e.g. BatchNorm running
statistics) are copied, not averaged, as in the MoCo and DINO code.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: every teacher parameter ``t <- m t + (1 - m) s``; buffers copied from student.

    Example:
        >>> teacher = copy.deepcopy(student).requires_grad_(False)
        >>> ema_update(teacher, student, momentum=0.996)
    """
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    t_params = dict(teacher.named_parameters())
    s_params = dict(student.named_parameters())
    if t_params.keys() != s_params.keys():
        missing = sorted(set(s_params) ^ set(t_params))[:5]
        raise ValueError(f"teacher and student must have the same parameters; differing: {missing}")
    for name, t in t_params.items():
        s = s_params[name]
        if t.shape != s.shape:
            raise ValueError(f"parameter {name!r}: teacher shape {tuple(t.shape)} != student "
                             f"shape {tuple(s.shape)}")
        t.mul_(m).add_(s.detach().to(t.dtype), alpha=1.0 - m)
    t_bufs = dict(teacher.named_buffers())
    for name, b in student.named_buffers():
        if name in t_bufs:
            t_bufs[name].copy_(b)

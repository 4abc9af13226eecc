"""Exponential moving average of weights: the momentum encoder of MoCo (He et al. 2020, eq. 2)
and the teacher of DINO (Caron et al. 2021, section 3.1). Lecture 01, section 4; Lecture 02.

    theta_t <- m * theta_t + (1 - m) * theta_s

The teacher moves slowly towards the student (m close to 1). Buffers (e.g. BatchNorm running
statistics) are copied, not averaged, as in the MoCo and DINO code. The same average keeps
DINO's and iBOT's centers: ``update_center``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ._checks import describe

Tensor = torch.Tensor


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


@torch.no_grad()
def update_center(center: Tensor, teacher_logits: Tensor, momentum: float = 0.9) -> Tensor:
    """In place: c <- momentum * c + (1 - momentum) * (mean of ``teacher_logits`` over every axis
    but the last). Returns ``center``.

    For CLS logits (rows, K) that is the batch mean; for patch logits (B, N, K) the mean over
    images of the mean over patches, as iBOT's ``center2``. With several processes the mean runs
    over every process's rows (all_reduce), as DINO; in one process it needs no process group."""
    if not isinstance(center, Tensor) or not center.is_floating_point():
        raise ValueError(f"center must be a floating-point tensor (1, K), got {describe(center)}")
    if (not isinstance(teacher_logits, Tensor) or teacher_logits.dim() < 2
            or teacher_logits.shape[-1] != center.shape[-1]):
        raise ValueError(f"teacher_logits must be (..., K={center.shape[-1]}), got "
                         f"{describe(teacher_logits)}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    rows = teacher_logits.detach().float().reshape(-1, teacher_logits.shape[-1])
    total, n_rows = rows.sum(dim=0), rows.shape[0]                        # (K,)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        n_rows *= dist.get_world_size()
    mean = (total / n_rows).to(center.dtype).view(center.shape)
    return center.mul_(momentum).add_(mean, alpha=1.0 - momentum)

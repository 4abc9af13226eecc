"""Per-step schedules (learning rate, EMA momentum, teacher temperature) as pure functions.

Follows the DINO code's ``cosine_scheduler`` (Caron et al. 2021, ``utils.py``): an optional
linear warm-up from ``warmup_start`` to ``base`` over ``warmup_steps``, then a half cosine from
``base`` down to ``final`` over the remaining steps. Lecture 02 derives why the EMA momentum of the
teacher follows this schedule from 0.996 to 1.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_int


def cosine_schedule(base: float, final: float, steps: int, warmup_steps: int = 0,
                    warmup_start: float = 0.0) -> torch.Tensor:
    """Per-step values, shape ``(steps,)``, float64.

    value[i] = warmup_start + (base - warmup_start) * i / (warmup_steps - 1)    for i < warmup_steps
    value[i] = final + (base - final) * (1 + cos(pi * j / (steps - warmup_steps))) / 2,
               j = i - warmup_steps                                               otherwise

    Example:
        >>> cosine_schedule(1.0, 0.0, 4).tolist()
        [1.0, 0.8535533905932737, 0.5, 0.14644660940672627]
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= steps:
        raise ValueError(f"warmup_steps must be an int in [0, steps={steps}], got {warmup_steps!r}")
    # Exactly the DINO code: np.linspace(warmup_start, base, warmup_steps), so the last warm-up
    # step already equals ``base`` and the cosine starts from ``base`` again.
    warmup = torch.linspace(warmup_start, base, warmup_steps, dtype=torch.float64)
    n_cos = steps - warmup_steps
    j = torch.arange(n_cos, dtype=torch.float64)
    cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * j / n_cos))
    return torch.cat([warmup, cosine])


def linear_warmup_then_constant(start: float, end: float, warmup_steps: int,
                                steps: int) -> torch.Tensor:
    """``start`` to ``end`` linearly over ``warmup_steps``, then ``end``: the DINO teacher
    temperature warm-up (0.04 -> 0.07 over the first 30 epochs in the paper, section 3.1)."""
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= steps:
        raise ValueError(f"warmup_steps must be an int in [0, steps={steps}], got {warmup_steps!r}")
    ramp = torch.linspace(start, end, warmup_steps, dtype=torch.float64)
    flat = torch.full((steps - warmup_steps,), float(end), dtype=torch.float64)
    return torch.cat([ramp, flat])


def teacher_temperature_schedule(warmup_temp: float, final_temp: float, warmup_epochs: int,
                                 epochs: int, steps_per_epoch: int = 1) -> torch.Tensor:
    """Per-step tau_t, shape (epochs * steps_per_epoch,), float64: DINO's per-epoch schedule
    ``linspace(warmup_temp, final_temp, warmup_epochs)`` then ``final_temp``, each epoch's value
    repeated for its ``steps_per_epoch`` steps.

    A teacher that starts too soft makes early training unstable; the paper's ViT-S/16 recipe warms
    tau_t from 0.04 to 0.07 over the first 30 epochs (section 3.2). Pass
    ``steps_per_epoch=1`` to count in steps instead of epochs.

    Example:
        >>> [round(t, 4) for t in teacher_temperature_schedule(0.04, 0.07, 3, 4).tolist()]
        [0.04, 0.055, 0.07, 0.07]
    """
    for name, value in (("warmup_temp", warmup_temp), ("final_temp", final_temp)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    check_int("epochs", epochs)
    check_int("steps_per_epoch", steps_per_epoch)
    check_int("warmup_epochs", warmup_epochs, 0, epochs)
    per_epoch = linear_warmup_then_constant(warmup_temp, final_temp, warmup_epochs, epochs)
    return per_epoch.repeat_interleave(steps_per_epoch)

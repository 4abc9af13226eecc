"""Per-step schedules (learning rate, EMA momentum, teacher temperature) as pure functions.

Follows the DINO code's ``cosine_scheduler`` (Caron et al. 2021, ``utils.py``): an optional
linear warm-up from ``warmup_start`` to ``base`` over ``warmup_steps``, then a half cosine from
``base`` down to ``final`` over the remaining steps. Lecture 02 derives why the EMA momentum of the
teacher follows this schedule from 0.996 to 1.
"""
from __future__ import annotations

import math

import torch


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

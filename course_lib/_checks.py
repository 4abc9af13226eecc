"""Argument checks shared by the method modules, so that a function's body reads like its equation.

Each raises ``ValueError`` naming the argument, what was expected and what came (the course's rule:
bad input gets a clear error, nothing is silently coerced).
"""
from __future__ import annotations

import torch


def describe(x: object) -> str:
    """'torch.float32 (2, 3)' for a tensor, the type's name for anything else."""
    return f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def check_int(name: str, value: object, low: int = 1, high: int | None = None) -> None:
    """``value`` is an int (not a bool) in ``[low, high]``."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < low
            or (high is not None and value > high)):
        what = f"an int in [{low}, {high}]" if high is not None else (
            "a positive int" if low == 1 else f"an int >= {low}")
        raise ValueError(f"{name} must be {what}, got {value!r}")


def check_tensor(name: str, x: object, dims: int, layout: str = "") -> None:
    """``x`` is a tensor with ``dims`` dimensions (``layout`` names them, e.g. '(B, D)')."""
    if not isinstance(x, torch.Tensor) or x.dim() != dims:
        layout = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be a {dims}-D tensor{layout}, got {describe(x)}")

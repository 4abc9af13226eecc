"""Token masks shared by the masked-modelling units: which patches a model does not see.

MAE (Lecture 03) drops the masked tokens; iBOT and DINOv2 replace them with a mask token; I-JEPA
predicts the representations of masked blocks. All of them describe a mask the same way: a bool
tensor (B, N) over the row-major patch grid, True = masked. This module holds the masks that are
not MAE's own uniform sampling (``course_lib.mae.random_masking``): a boolean mask turned into the
``(x_visible, mask, ids_restore)`` triple the encoders take, block-wise masking (BEiT) and grid
masking (MAE Figure 6).
"""
from __future__ import annotations

import math

import torch

from ._checks import check_int, describe

Tensor = torch.Tensor


def check_ratio(mask_ratio: object) -> None:
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) \
            or not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be a float in [0, 1), got {mask_ratio!r}")


def mask_from_boolean(x: Tensor, masked: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same triple as :func:`random_masking` for a given boolean mask (B, N), True = masked,
    with the same number of masked tokens in every row (block-wise and grid masking use this).
    Visible tokens keep their patch order."""
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a 3-D tensor (B, N, D), got {describe(x)}")
    if not isinstance(masked, Tensor) or masked.dtype != torch.bool or masked.shape != x.shape[:2]:
        raise ValueError(f"masked must be a bool tensor (B, N) = {tuple(x.shape[:2])}, "
                         f"got {describe(masked)}")
    counts = masked.sum(1)
    if (counts != counts[0]).any() or counts[0] >= x.shape[1]:
        raise ValueError(f"masked must mask the same number (< N) of tokens in every row, got "
                         f"{counts.tolist()}")
    B, N, D = x.shape
    # Stable sort on the mask: visible (0) first in patch order, then masked.
    ids_shuffle = torch.sort(masked.to(torch.uint8), dim=1, stable=True).indices  # (B, N)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    n_keep = N - int(counts[0])
    ids_keep = ids_shuffle[:, :n_keep]
    x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    return x_visible, masked.to(x.dtype), ids_restore


def block_mask(batch: int, grid_size: int, mask_ratio: float, *,
               generator: torch.Generator | None = None, min_block: int = 4) -> Tensor:
    """Block-wise masking (BEiT, Bao et al. 2022, Algorithm 1; MAE Figure 6 middle): mask random
    rectangles (area >= ``min_block`` patches, aspect ratio log-uniform in [0.3, 1/0.3]) until
    exactly ``int(N * mask_ratio)`` patches are masked; the last rectangle is trimmed to the count.
    Returns a bool (batch, N), True = masked. CPU, from ``generator``."""
    check_ratio(mask_ratio)
    check_int("batch", batch)
    check_int("grid_size", grid_size)
    n = grid_size * grid_size
    target = n - int(n * (1 - mask_ratio))    # the same count random_masking masks
    gen = generator if generator is not None else torch.Generator().manual_seed(
        int(torch.randint(0, 2**31 - 1, ())))
    out = torch.zeros(batch, n, dtype=torch.bool)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    for b in range(batch):
        grid = out[b].view(grid_size, grid_size)
        while int(grid.sum()) < target:
            area = uniform(min(min_block, target), max(min_block, target))
            aspect = math.exp(uniform(math.log(0.3), math.log(1 / 0.3)))
            h = min(grid_size, max(1, round(math.sqrt(area * aspect))))
            w = min(grid_size, max(1, round(math.sqrt(area / aspect))))
            top = int(torch.randint(0, grid_size - h + 1, (), generator=gen))
            left = int(torch.randint(0, grid_size - w + 1, (), generator=gen))
            new = torch.zeros_like(grid)
            new[top:top + h, left:left + w] = True
            new &= ~grid                                    # only patches not masked yet
            room = target - int(grid.sum())
            idx = new.flatten().nonzero().squeeze(1)[:room]  # trim the last block, row-major
            grid.view(-1)[idx] = True
    return out


def grid_mask(batch: int, grid_size: int, *, stride: int = 2,
              generator: torch.Generator | None = None) -> Tensor:
    """Grid masking (MAE Figure 6 right): keep one patch in every ``stride`` x ``stride`` cell
    (stride 2: mask 75 %), at a random offset per image. Needs grid_size divisible by stride.
    Returns a bool (batch, N), True = masked."""
    check_int("batch", batch)
    check_int("stride", stride, 2)
    check_int("grid_size", grid_size)
    if grid_size % stride:
        raise ValueError(f"grid_size={grid_size} must be divisible by stride={stride}")
    offsets = torch.randint(0, stride, (batch, 2), generator=generator)         # (batch, 2)
    rows = torch.arange(grid_size)
    keep_rows = (rows[None, :] % stride) == offsets[:, :1]                     # (batch, g)
    keep_cols = (rows[None, :] % stride) == offsets[:, 1:]                     # (batch, g)
    keep = keep_rows[:, :, None] & keep_cols[:, None, :]                       # (batch, g, g)
    return ~keep.reshape(batch, grid_size * grid_size)


def grid_stride_for(mask_ratio: float) -> int:
    """The grid stride s with 1 - 1/s^2 == mask_ratio (0.75 -> 2, 8/9 -> 3)."""
    check_ratio(mask_ratio)
    stride = round(1 / math.sqrt(1 - mask_ratio))
    if stride < 2 or abs(1 - 1 / stride**2 - mask_ratio) > 1e-6:
        raise ValueError(f"grid masking needs mask_ratio = 1 - 1/s^2 for an integer s >= 2 "
                         f"(0.75, 0.888...), got {mask_ratio}")
    return stride


MASKINGS = ("random", "block", "grid")


def structured_mask(masking: str, batch: int, grid_size: int, mask_ratio: float, *,
                    generator: torch.Generator | None = None) -> Tensor:
    """A bool (batch, N) mask, True = masked, for ``masking`` "block" (:func:`block_mask`) or
    "grid" (:func:`grid_mask`, whose stride follows from ``mask_ratio``). Random masking is
    ``course_lib.mae.random_masking``, which draws and gathers in one go."""
    if masking == "block":
        return block_mask(batch, grid_size, mask_ratio, generator=generator)
    if masking == "grid":
        return grid_mask(batch, grid_size, stride=grid_stride_for(mask_ratio), generator=generator)
    raise ValueError(f"masking must be 'block' or 'grid' here (one of {MASKINGS}; 'random' is "
                     f"random_masking), got {masking!r}")


"""The per-row image operations of ``course_lib.augment``'s batched path: each takes a batch of
views (R, C, S, S) float in [0, 1] and one parameter per row, so a whole batch is augmented in a
few tensor ops on its own device. Each mirrors a torchvision v2 functional (named in its
docstring); ``tests/test_augment.py`` compares them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.2989, 0.587, 0.114)   # ITU-R 601-2, as torchvision's rgb_to_grayscale


def grayscale(x: Tensor) -> Tensor:
    """(R, C, H, W) -> luma (R, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def adjust_hue(x: Tensor, hue_shift: Tensor) -> Tensor:
    """Rotate hue by ``hue_shift`` (R, 1, 1) turns: RGB -> HSV, h += shift, HSV -> RGB.

    Branch-free (masks as floats, no torch.where on pixels: several times faster on CPU)."""
    r, g, b = x.unbind(1)                                                   # (R, H, W) each
    value = torch.maximum(torch.maximum(r, g), b)                           # v = max(r, g, b)
    delta = value - torch.minimum(torch.minimum(r, g), b)
    # Hue sector from the channel holding the max (r first, then g, then b, as torchvision).
    is_r = (value == r).to(x.dtype)
    is_g = (value == g).to(x.dtype) * (1 - is_r)
    is_b = 1 - is_r - is_g
    hue6 = is_r * (g - b) + is_g * (2 * delta + b - r) + is_b * (4 * delta + r - g)
    hue6 = hue6 / delta.clamp(min=1e-12) + 6 * hue_shift                   # 6 h, unwrapped
    hue6 = hue6 - 6 * (hue6 / 6).floor()                                    # in [0, 6)
    saturation = delta / value.clamp(min=1e-12)                             # 0 where v = 0
    # HSV -> RGB: fully saturated colour of hue h, per channel a |6h - c| + d clamped to [0, 1].
    a = x.new_tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    c = x.new_tensor([3.0, 2.0, 4.0]).view(1, 3, 1, 1)
    d = x.new_tensor([-1.0, 2.0, 2.0]).view(1, 3, 1, 1)
    pure = (a * (hue6.unsqueeze(1) - c).abs() + d).clamp_(0, 1)            # (R, 3, H, W)
    saturation, value = saturation.unsqueeze(1), value.unsqueeze(1)
    return value * (1 - saturation + saturation * pure)


def color_jitter(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor,
                  hue_shift: Tensor | None) -> Tensor:
    """torchvision's adjust_brightness / contrast / saturation / hue with per-row factors
    (R, 1, 1, 1), in that order; each output clamped to [0, 1] like torchvision's."""
    x = (x * brightness).clamp_(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)                  # (R, 1, 1, 1)
    x = (contrast * x + (1 - contrast) * mean).clamp_(0, 1)
    x = (saturation * x + (1 - saturation) * grayscale(x)).clamp_(0, 1)
    return x if hue_shift is None else adjust_hue(x, hue_shift[:, :, 0])


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per row (R,), reflect padding as torchvision."""
    rows, channels, height, width = x.shape
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - (kernel_size - 1) / 2
    kernel = (-(t ** 2) / (2 * sigma[:, None] ** 2)).softmax(dim=1)         # (R, k), sums to 1
    kernel = kernel.repeat_interleave(channels, 0)                          # (R*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, rows * channels, height, width), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=rows * channels)      # along W
    y = F.conv2d(y, kernel[:, None, :, None], groups=rows * channels)      # along H
    return y.reshape(rows, channels, height, width)


def rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate each row of x (R, C, S, S) counter-clockwise by its angle (R,) in degrees about the
    image centre, bilinear, repeating the border pixels where the rotation uncovers the frame."""
    radians = torch.deg2rad(degrees)
    cos, sin, zero = radians.cos(), radians.sin(), torch.zeros_like(radians)
    # affine_grid maps output to input coordinates (x right, y down): the inverse rotation
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)          # (R, S, S, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

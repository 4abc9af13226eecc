"""Plots the units share: training curves, image grids, attention overlays, masked and
reconstructed grids (and MAE's masking figure). Each function draws on a matplotlib ``Axes`` (or makes a figure) and
returns it, so a notebook cell stays one line and the student can restyle the result.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

Tensor = torch.Tensor


def _to_hwc(image: Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W, C) float array for imshow."""
    if image.dim() != 3:
        raise ValueError(f"image must be (C, H, W), got {tuple(image.shape)}")
    x = image.detach().cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
    return x.permute(1, 2, 0).numpy()


def plot_curves(curves: Mapping[str, Sequence[float]], *, steps: Sequence[int] | None = None,
                ax=None, xlabel: str = "step", ylabel: str = "", title: str = "",
                hlines: Mapping[str, float] | None = None, logy: bool = False):
    """One line per entry of ``curves``; ``hlines`` marks reference values (e.g. log K)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in curves.items():
        xs = steps if steps is not None else range(len(values))
        ax.plot(list(xs)[: len(values)], values, label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="gray", ls="--", lw=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), va="bottom",
                    fontsize=8, color="gray")
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if curves:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def image_grid(images: Tensor, *, labels: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.2, title: str = ""):
    """Show images (B, C, H, W) (uint8 or float in [0, 1]) in a grid; returns the figure."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    n = images.shape[0]
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_hwc(images[i]), interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def attention_overlay(images: Tensor, attention: Tensor, *, masks: Tensor | None = None,
                      size: float = 1.4, heads: Sequence[int] | None = None):
    """Image, then one panel per head of CLS attention (B, h, gh, gw) upsampled over it.

    With ``masks`` (B, H, W) the ground-truth contour is drawn on the image panel.
    """
    if attention.dim() != 4 or attention.shape[0] != images.shape[0]:
        raise ValueError(f"attention must be (B, h, gh, gw) with B = {images.shape[0]}, "
                         f"got {tuple(attention.shape)}")
    heads = list(heads) if heads is not None else list(range(attention.shape[1]))
    b, (H, W) = images.shape[0], images.shape[-2:]
    att = torch.nn.functional.interpolate(attention[:, heads].float(), size=(H, W), mode="nearest")
    fig, axes = plt.subplots(b, 1 + len(heads), figsize=((1 + len(heads)) * size, b * size),
                             squeeze=False)
    for i in range(b):
        axes[i, 0].imshow(_to_hwc(images[i]), interpolation="nearest")
        if masks is not None:
            axes[i, 0].contour(masks[i].cpu().numpy(), levels=[0.5], colors="w", linewidths=0.8)
        for j, head in enumerate(heads):
            axes[i, j + 1].imshow(att[i, j].cpu().numpy(), cmap="inferno")
            if i == 0:
                axes[i, j + 1].set_title(f"head {head}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout()
    return fig


def masked_reconstruction_grid(images: Tensor, masked: Tensor,
                               reconstructed: Tensor | Mapping[str, Tensor] | None = None,
                               *, size: float = 1.4):
    """Rows: original, masked input and (if given) reconstruction; one column per image
    (B, C, H, W) each. ``reconstructed`` may be a mapping label -> images: one row each."""
    rows = [("original", images), ("masked", masked)]
    if isinstance(reconstructed, Mapping):
        rows.extend(reconstructed.items())
    elif reconstructed is not None:
        rows.append(("reconstruction", reconstructed))
    if any(batch.shape != images.shape for _, batch in rows):
        raise ValueError("images, masked and reconstructed must have the same shape, got "
                         + ", ".join(str(tuple(batch.shape)) for _, batch in rows))
    b = images.shape[0]
    fig, axes = plt.subplots(len(rows), b, figsize=(b * size, len(rows) * size), squeeze=False)
    for row, (name, batch) in enumerate(rows):
        for i in range(b):
            axes[row, i].imshow(_to_hwc(batch[i]), interpolation="nearest")
            axes[row, i].axis("off")
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def bar_table(values: Mapping[str, float], *, ax=None, ylabel: str = "", title: str = "",
              reference: float | None = None, fmt: str = "{:.2f}"):
    """Bar chart with the value printed on each bar; ``reference`` draws e.g. chance level."""
    if ax is None:
        _, ax = plt.subplots(figsize=(1 + 0.9 * len(values), 3))
    names, ys = list(values), [float(v) for v in values.values()]
    bars = ax.bar(names, ys, color="tab:blue")
    for bar, y in zip(bars, ys):
        ax.annotate(fmt.format(y), (bar.get_x() + bar.get_width() / 2, y), ha="center",
                    va="bottom", fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="gray", ls="--", lw=1)
    ax.set(ylabel=ylabel, title=title)
    return ax


def masking_figure(images: Tensor, mask_ratio: float, masking: str = "random",
                   model=None, *, seed: int = 0, patch_size: int = 8):
    """Original, masked and (with ``model``, a ``course_lib.mae.MAE``) reconstructed images
    (uint8 (B, C, H, W)) at any ratio and strategy: lecture 03's widget draws this. Without a model, only the first two
    rows, masked on a ``patch_size`` grid; with one, the model's own patch size is used and two
    reconstruction rows follow (``course_lib.mae.reconstruct``): "model alone", each masked patch
    drawn with the statistics of the image's visible patches, and "true patch stats", drawn with
    the true patch's mean and std (its colour comes from the ground truth)."""
    from .data import denormalize, normalize
    from .mae import patchify, random_masking, reconstruct, unpatchify
    from .masking import structured_mask
    x = normalize(images)
    if model is not None:
        device = next(model.parameters()).device
        drawn = {}
        for statistics, label in (("visible", "model alone"), ("true", "true patch stats")):
            masked, _, pasted = reconstruct(model, x.to(device), mask_ratio, masking=masking,
                                            statistics=statistics,
                                            generator=torch.Generator().manual_seed(seed))
            drawn[label] = denormalize(pasted.cpu())
        return masked_reconstruction_grid(denormalize(x), denormalize(masked.cpu()), drawn)
    grid = x.shape[-1] // patch_size
    generator = torch.Generator().manual_seed(seed)
    if masking == "random":
        _, mask, _ = random_masking(x.new_zeros(x.shape[0], grid * grid, 1), mask_ratio, generator)
    else:
        mask = structured_mask(masking, x.shape[0], grid, mask_ratio, generator=generator).float()
    m = mask.unsqueeze(-1)                                           # (B, N, 1)
    masked = unpatchify(patchify(x, patch_size) * (1 - m), patch_size, x.shape[1])
    return masked_reconstruction_grid(denormalize(x), denormalize(masked))

"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): two augmented views per image, an encoder and a projection head, and the
NT-Xent (normalised temperature-scaled cross-entropy) loss. Lecture 01, sections 1-3.

NT-Xent over the 2B views of B images. With z the 2B L2-normalised projections and i+ the index
of the other view of the same image,

    l_i = -log( exp(z_i . z_{i+} / tau) / sum_{k != i} exp(z_i . z_k / tau) )
    L   = (1 / 2B) sum_i l_i

Each anchor is a (2B-1)-way classification: find your positive among the other 2B-1 views.
The self-similarity z_i . z_i = 1 is excluded from the denominator; left in, it is the largest
logit and teaches nothing.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_tensor
from .train import Method

Tensor = torch.Tensor


def _check_pair(z1: Tensor, z2: Tensor) -> None:
    for name, z in (("z1", z1), ("z2", z2)):
        check_tensor(name, z, 2, "(B, D)")
        if not z.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape (B, D), got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"need B >= 2 pairs so that every anchor has a negative, got B={z1.shape[0]}")


def similarity_matrix(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Cosine similarities / tau between all 2B views, self-pairs masked to -inf: (2B, 2B).

    Row i < B is view 1 of image i, row B + i is view 2 of image i.
    """
    _check_pair(z1, z2)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)        # (2B, D), computed in float32
    sim = z @ z.T / temperature                                 # (2B, 2B)
    self_mask = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return sim.masked_fill(self_mask, float("-inf"))


def positive_index(n: int, device: torch.device | None = None) -> Tensor:
    """Index of each view's positive in the (2B, 2B) matrix: i -> i + B and B + i -> i. (2B,)"""
    return torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device)


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent loss of B positive pairs (z1[i], z2[i]); z1, z2 (B, D) -> scalar (float32).

    Cosine similarity, self-similarity excluded, mean over all 2B anchors (both directions).
    Computed in float32 whatever the input dtype (bfloat16 logits lose the small differences the
    softmax needs); gradients flow back in the input dtype. For perfectly uninformative
    embeddings (all similarities equal) the loss is log(2B - 1).

    Example:
        >>> z1, z2 = model(view1), model(view2)     # (B, D) each
        >>> loss = info_nce(z1, z2, temperature=0.1)
    """
    sim = similarity_matrix(z1, z2, temperature)               # (2B, 2B)
    return F.cross_entropy(sim, positive_index(z1.shape[0], sim.device))


class ProjectionHead(nn.Module):
    """SimCLR's g(.): Linear - BatchNorm - ReLU - Linear (Chen et al. 2020, section 2.1)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim),
                                 nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:   # (B, D) -> (B, K)
        return self.net(x)


def default_views(images: Tensor) -> tuple[Tensor, Tensor]:
    """Two batched SimCLR views of a uint8 batch, on its device (course_lib.augment)."""
    from .augment import batched_simclr_views
    return batched_simclr_views(images)


class SimCLR(Method):
    """Encoder f + projection g trained with :func:`info_nce` on two views per image.

    ``backbone`` maps a normalised float batch (B, C, H, W) to features (B, D); ``views`` maps a
    uint8 batch to two float views (defaults to the batched GPU-friendly augmentation).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, *, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, temperature: float = 0.1,
                 views: Callable[[Tensor], tuple[Tensor, Tensor]] = default_views) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.backbone = backbone
        self.projector = ProjectionHead(feature_dim, proj_hidden_dim, proj_dim)
        self.temperature = temperature
        self.views = views

    def training_step(self, images, labels, step):
        view1, view2 = self.views(images)                      # (B, C, H, W) each
        z1 = self.projector(self.backbone(view1))              # (B, K)
        z2 = self.projector(self.backbone(view2))              # (B, K)
        loss = info_nce(z1, z2, self.temperature)
        with torch.no_grad():
            p1, p2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
            pos_sim = (p1 * p2).sum(1).mean().item()
        return loss, {"positive_similarity": pos_sim}

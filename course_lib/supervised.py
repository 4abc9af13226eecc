"""Supervised baseline on the shared loop: a backbone and a linear classifier trained with
labels. Used as the smoke test that the data is learnable, as the "trained with labels" ViT of
Lecture 02's attention comparison, and as the fine-tuning step of Lecture 07.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .train import Method

Tensor = torch.Tensor


class Supervised(Method):
    """Cross-entropy on ``head(backbone(augment(images)))``; ``augment`` maps uint8 (B, C, H, W)
    to the backbone's float input (e.g. a random crop and flip, then normalisation)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, n_classes: int,
                 augment: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, n_classes)
        self.augment = augment

    def forward(self, x: Tensor) -> Tensor:      # (B, C, H, W) float -> (B, n_classes)
        return self.head(self.backbone(x))

    def training_step(self, images, labels, step):
        if labels is None:
            raise ValueError("Supervised training needs labels: pass labels= to train()")
        logits = self(self.augment(images))
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return F.cross_entropy(logits, labels), {"train_accuracy": accuracy}

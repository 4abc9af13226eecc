"""MoCo (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning";
v2 details from Chen et al. 2020b). Lecture 01, section 4.

The negatives come from a FIFO queue of keys produced by a slowly moving momentum (EMA) encoder,
not from the current batch, so the number of negatives Q is decoupled from the batch size B and
the queued keys need no activations kept for backward. For a query q, its key k+ and the queue:

    logits = [ q . k+ , q . k_1 , ... , q . k_Q ] / tau        (positive in column 0)
    L      = -log softmax(logits)[0]                            averaged over the batch

Key encoder: theta_k <- m theta_k + (1 - m) theta_q  (``course_lib.ema.ema_update``); keys carry
no gradient.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, check_tensor
from .ema import ema_update
from .simclr import ProjectionHead, default_views
from .train import Method

Tensor = torch.Tensor


class MoCoQueue(nn.Module):
    """FIFO queue of ``size`` L2-normalised keys of width ``dim``; a ring buffer.

    ``enqueue(keys)`` overwrites the oldest entries; ``negatives`` is the (size, dim) buffer.
    Starts filled with random unit vectors, as in the MoCo code.
    """

    def __init__(self, dim: int, size: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("size", size)
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @property
    def negatives(self) -> Tensor:
        """The queued keys (size, dim); treat as read-only (a detached view)."""
        return self.queue.detach()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write the L2-normalised ``keys`` (B, dim) over the B oldest entries (wrapping around)."""
        if not isinstance(keys, torch.Tensor) or keys.dim() != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(f"keys must be (B, {self.queue.shape[1]}), got "
                             f"{tuple(keys.shape) if isinstance(keys, torch.Tensor) else type(keys).__name__}")
        if keys.shape[0] > self.size:
            raise ValueError(f"cannot enqueue {keys.shape[0]} keys into a queue of size {self.size}")
        b, ptr = keys.shape[0], int(self.ptr)
        idx = (ptr + torch.arange(b, device=self.queue.device)) % self.size   # (B,)
        self.queue[idx] = F.normalize(keys.detach().to(self.queue.dtype), dim=1)
        self.ptr.fill_((ptr + b) % self.size)


def moco_loss(q: Tensor, k: Tensor, queue: Tensor | MoCoQueue, temperature: float = 0.2) -> Tensor:
    """InfoNCE of queries q (B, D) against their keys k (B, D) and the queue (Q, D) as negatives.

    q and k are L2-normalised here; k and the queue get no gradient. Positive in column 0 of the
    (B, 1 + Q) logits. Default tau = 0.2 is MoCo v2's. Returns a float32 scalar.
    """
    negatives = queue.negatives if isinstance(queue, MoCoQueue) else queue
    for name, x in (("q", q), ("k", k), ("queue", negatives)):
        check_tensor(name, x, 2, "(size, D)" if name == "queue" else "(B, D)")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape (B, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if negatives.shape[1] != q.shape[1]:
        raise ValueError(f"queue width {negatives.shape[1]} != feature width {q.shape[1]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)                     # (B, 1)
    l_neg = q @ negatives.detach().float().T                     # (B, Q)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature      # (B, 1 + Q)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


class MoCo(Method):
    """Query encoder (backbone + projector) trained by gradient; key encoder an EMA copy of it.

    ``queue_size=0`` turns the queue off: the other keys of the batch serve as negatives, which
    is what SimCLR-style in-batch contrast gives at the same batch size (the lecture's baseline).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, *, queue_size: int = 4096,
                 momentum: float = 0.99, temperature: float = 0.2, proj_hidden_dim: int = 512,
                 proj_dim: int = 128, symmetric: bool = True,
                 views: Callable[[Tensor], tuple[Tensor, Tensor]] = default_views,
                 seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.encoder_q = nn.Sequential(backbone, ProjectionHead(feature_dim, proj_hidden_dim, proj_dim))
        self.encoder_k = copy.deepcopy(self.encoder_q).requires_grad_(False)
        self.queue = (MoCoQueue(proj_dim, queue_size, generator=torch.Generator().manual_seed(seed))
                      if queue_size > 0 else None)
        self.momentum, self.temperature, self.symmetric = momentum, temperature, symmetric
        self.views = views
        self._new_keys: Tensor | None = None

    @property
    def backbone(self) -> nn.Module:
        return self.encoder_q[0]

    def _contrast(self, q: Tensor, k: Tensor) -> Tensor:
        if self.queue is not None:
            return moco_loss(q, k, self.queue, self.temperature)
        # No queue: the other keys in the batch are the negatives (B - 1 of them).
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        logits = q @ k.T / self.temperature                                  # (B, B)
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))

    def training_step(self, images, labels, step):
        view1, view2 = self.views(images)
        q1 = self.encoder_q(view1)                                           # (B, K)
        with torch.no_grad():
            self.encoder_k.train(self.training)
            k2 = self.encoder_k(view2)                                       # (B, K)
        loss = self._contrast(q1, k2)
        keys = k2
        if self.symmetric:  # MoCo v3-style: both views act as query once
            q2 = self.encoder_q(view2)
            with torch.no_grad():
                k1 = self.encoder_k(view1)
            loss = 0.5 * (loss + self._contrast(q2, k1))
            keys = torch.cat([k1, k2])
        # Enqueue after backward: the queue is part of this step's graph (q @ queue.T).
        self._new_keys = keys.detach()
        return loss, {}

    @torch.no_grad()
    def after_step(self, step):
        ema_update(self.encoder_k, self.encoder_q, self.momentum)
        if self.queue is not None and self._new_keys is not None:
            self.queue.enqueue(self._new_keys[: self.queue.size])
        self._new_keys = None

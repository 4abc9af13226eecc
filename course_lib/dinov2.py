"""DINOv2's additions to DINO and iBOT (Oquab et al. 2024, "DINOv2: Learning Robust Visual
Features without Supervision", section 4): the KoLeo regulariser and Sinkhorn-Knopp centering.
Unit 6.

    KoLeo:    L_koleo = -(1/n) sum_i log(min_{j != i} ||x_i - x_j||),  x L2-normalised
    SK:       Q = exp(t / tau)^T (K x B), scaled so that every prototype receives the same mass
              and every sample a distribution: a few alternating row and column normalisations

KoLeo (Sablayrolles et al. 2019, "Spreading vectors for similarity search") pushes every feature
away from its nearest neighbour in the batch, which spreads the batch over the sphere. Sinkhorn-
Knopp (Cuturi 2013; SwAV, Caron et al. 2020) replaces the teacher's running center: instead of
subtracting a mean, it rescales the batch's teacher scores until the prototypes are used
equally, an equipartition constraint on the batch itself.

Both follow the official ``dinov2/loss`` code (``KoLeoLoss``, ``sinkhorn_knopp_teacher``) with two
deliberate differences, each in its docstring: KoLeo casts its input to float32 first (in half
precision the official eps underflows and the loss is inf), and Sinkhorn-Knopp shifts the scores
by their maximum and iterates in float64 (a constant shift changes nothing after the
normalisations, and small temperatures no longer overflow).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ._checks import describe

Tensor = torch.Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo on the rows of ``x`` (n, D), n >= 2: L2-normalise, find each row's nearest other row
    by cosine similarity (the diagonal excluded), and return -mean_i log(||x_i - x_nn(i)|| + eps),
    a float32 scalar whatever the input dtype.

    As the official ``KoLeoLoss``: the distance is ``F.pairwise_distance`` (eps added to the
    difference) and the gradient flows through both rows of each pair, the neighbour index does
    not. Two identical rows give a distance of about eps * sqrt(D) and a large finite term
    (about 15.4 for D = 384), never inf; a negative loss is normal (neighbours further than 1)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point() or x.shape[0] < 2:
        raise ValueError(f"x must be a floating-point tensor (n, D) with n >= 2, got {describe(x)}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    x = F.normalize(x.float(), dim=-1, eps=eps)                       # (n, D), float32
    with torch.no_grad():
        similarity = x @ x.T                                          # (n, n), cosines in [-1, 1]
        similarity.fill_diagonal_(-2.0)                               # never one's own neighbour
        nearest = similarity.argmax(dim=1)                            # (n,)
    distance = F.pairwise_distance(x, x[nearest], eps=eps)            # (n,)
    return -torch.log(distance + eps).mean()


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iters: int = 3) -> Tensor:
    """Balanced soft assignments of B samples to K prototypes: (B, K) -> (B, K) float32, each row a
    distribution, each prototype (column) with about B / K of the total mass.

    As the official ``sinkhorn_knopp_teacher``: Q = exp(logits / tau)^T (K x B), divided by its
    sum; then ``n_iters`` times: each prototype's row to total 1 / K, each sample's column to total
    1 / B; finally times B, so that each sample's assignment sums to 1. B counts the samples of
    every process when ``torch.distributed`` is initialised (the sums are all-reduced) and this
    process's otherwise. The logits are shifted by their (global) maximum before the exponential,
    which the normalisations cancel exactly, and the iterations run in float64, so scores spread
    over up to about 700 (cosine logits at a temperature down to 0.003) neither overflow, as the
    official float32 code does from about 88, nor underflow; a row or column that still
    underflows stays zero instead of becoming NaN. No gradient (the teacher's targets)."""
    if (not isinstance(teacher_logits, Tensor) or teacher_logits.dim() != 2
            or not teacher_logits.is_floating_point()):
        raise ValueError(f"teacher_logits must be a floating-point tensor (B, K), got "
                         f"{describe(teacher_logits)}")
    if not teacher_temp > 0:
        raise ValueError(f"teacher_temp must be positive, got {teacher_temp!r}")
    if not isinstance(n_iters, int) or isinstance(n_iters, bool) or n_iters < 1:
        raise ValueError(f"n_iters must be a positive int, got {n_iters!r}")
    scores = teacher_logits.double() / teacher_temp                    # (B, K)
    top = scores.max()
    if _distributed():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(scores - top).T                                      # (K, B)
    n_samples, n_prototypes = q.shape[1], q.shape[0]
    total = q.sum()
    if _distributed():
        dist.all_reduce(total)
        n_samples *= dist.get_world_size()
    tiny = torch.finfo(q.dtype).tiny
    q /= total.clamp_min(tiny)
    for _ in range(n_iters):
        rows = q.sum(dim=1, keepdim=True)                              # (K, 1) mass per prototype
        if _distributed():
            dist.all_reduce(rows)
        q /= rows.clamp_min(tiny) * n_prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(tiny) * n_samples   # (1, B) mass per sample
    return (q * n_samples).T.float()                                   # (B, K), rows sum to 1

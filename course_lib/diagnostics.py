"""Diagnostics that tell a healthy representation from a collapsed one.

- ``entropy`` and ``kl_divergence`` of the teacher / student distributions: the two curves of the
  DINO paper's collapse study (Caron et al. 2021, Fig. 7). Uniform collapse: entropy = log K,
  KL = 0. One-hot collapse: entropy = 0, KL = 0. The entropy of the batch-mean distribution
  tells the second from an image-dependent target (low per image, high on average).
- ``feature_std`` per dimension and ``effective_rank`` (Roy and Vetterli 2007): dimensional
  collapse shows as a few directions carrying all the variance.
- ``alignment`` and ``uniformity`` (Wang and Isola 2020, section 4.1): positives close, all
  features spread over the sphere. Lecture 01, section 5.
- ``normalized_mutual_information`` of two labelings: what a DINO teacher sorts images by
  (Lecture 02, section 5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_tensor, describe

Tensor = torch.Tensor


def entropy(probs: Tensor) -> Tensor:
    """Shannon entropy in nats over the last axis, 0 log 0 = 0: (..., K) -> (...).

    The one entropy of the course: ``entropy(p).mean()`` is the mean per-image entropy of a batch
    of distributions (B, K), ``entropy(p.mean(0))`` the entropy of their average."""
    if not isinstance(probs, Tensor) or probs.dim() < 1:
        raise ValueError(f"probs must be a tensor (..., K), got {describe(probs)}")
    p = probs.float()
    return -torch.special.xlogy(p, p).sum(dim=-1)


def kl_divergence(p: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """Mean KL(p || q) over rows, nats; p, q (B, K) are distributions (rows sum to 1)."""
    check_tensor("p", p, 2, "(B, K)")
    check_tensor("q", q, 2, "(B, K)")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    p, q = p.float(), q.float()
    return (p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps)))).sum(-1).mean()


def feature_std(z: Tensor, normalize: bool = True) -> Tensor:
    """Per-dimension standard deviation (D,) of features z (B, D), L2-normalised first by default.

    For features spread uniformly on the unit sphere each entry is about 1/sqrt(D); a collapsed
    dimension has std near 0 (SimSiam, Chen and He 2021, section 4.1).
    """
    check_tensor("z", z, 2, "(B, D)")
    if z.shape[0] < 2:
        raise ValueError(f"z needs at least 2 rows to compute a std, got {z.shape[0]}")
    z = z.float()
    if normalize:
        z = F.normalize(z, dim=-1)
    return z.std(dim=0)


def effective_rank(z: Tensor, eps: float = 1e-12) -> Tensor:
    """exp(entropy of the normalised singular values) of the centred features z (B, D).

    Between 1 (all variance in one direction) and min(B, D) (isotropic). Roy and Vetterli 2007.
    """
    check_tensor("z", z, 2, "(B, D)")
    z = z.float()
    s = torch.linalg.svdvals(z - z.mean(dim=0, keepdim=True))
    p = s / s.sum().clamp_min(eps)
    return torch.exp(-(p * torch.log(p.clamp_min(eps))).sum())


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """E ||f(x) - f(y)||^alpha over positive pairs (rows of z1, z2 (B, D), L2-normalised here).

    0 when both views map to the same point; at most 2^alpha. Lower is better.
    """
    check_tensor("z1", z1, 2, "(B, D)")
    check_tensor("z2", z2, 2, "(B, D)")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    return (z1 - z2).norm(dim=-1).pow(alpha).mean()


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """log E exp(-t ||f(x) - f(y)||^2) over distinct pairs of rows of z (B, D), L2-normalised.

    Lower (more negative) is more uniform: 0 when all points coincide, about -2t when pairs are on
    average orthogonal (large B, high D), never below -4t (squared distances are at most 4).
    Wang and Isola 2020, eq. (2) with t = 2.
    """
    check_tensor("z", z, 2, "(B, D)")
    if z.shape[0] < 2:
        raise ValueError(f"z needs at least 2 rows, got {z.shape[0]}")
    z = F.normalize(z.float(), dim=-1)
    sq_dists = torch.pdist(z, p=2).pow(2)  # (B*(B-1)/2,) distinct pairs
    return torch.logsumexp(-t * sq_dists, dim=0) - torch.log(torch.tensor(float(sq_dists.numel())))


def normalized_mutual_information(a: Tensor, b: Tensor) -> float:
    """How much two labelings of the same n items agree: I(a; b) / ((H(a) + H(b)) / 2), in [0, 1].

    1: the same partition (whatever the label names); 0: independent (or one labeling is constant).
    ``a`` and ``b`` are integer tensors (n,). Lecture 02 compares the cluster a DINO teacher puts
    each image in with the image's shape, size and position."""
    if (not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.dim() != 1 or a.shape != b.shape
            or a.is_floating_point() or b.is_floating_point() or a.numel() == 0):
        raise ValueError(f"a and b must be integer tensors of the same shape (n,), n > 0, got "
                         f"{describe(a)} and {describe(b)}")
    _, a = torch.unique(a, return_inverse=True)
    _, b = torch.unique(b, return_inverse=True)
    joint = torch.zeros(int(a.max()) + 1, int(b.max()) + 1, dtype=torch.float64)
    joint.index_put_((a.cpu(), b.cpu()), torch.ones(a.numel(), dtype=torch.float64), accumulate=True)
    joint /= joint.sum()
    h_a, h_b = entropy(joint.sum(1)).item(), entropy(joint.sum(0)).item()
    if h_a + h_b == 0:
        return 0.0
    mutual = h_a + h_b - entropy(joint.flatten()).item()        # I(a; b) = H(a) + H(b) - H(a, b)
    return min(1.0, max(0.0, mutual / ((h_a + h_b) / 2)))       # clip rounding outside [0, 1]

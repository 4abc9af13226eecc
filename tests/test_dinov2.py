"""course_lib.dinov2 against loops written from the official dinov2 code, float64: KoLeo with a
brute-force nearest neighbour, Sinkhorn-Knopp with explicit row and column sums; plus the cases
the official code gets wrong (duplicates and half precision for KoLeo, overflow for SK)."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.dinov2 import koleo_loss, sinkhorn_knopp


def koleo_by_loop(x: torch.Tensor, eps: float = 1e-8) -> float:
    rows = [v / max(v.norm().item(), eps) for v in x.double()]
    total = 0.0
    for i, a in enumerate(rows):
        best = max((j for j in range(len(rows)) if j != i), key=lambda j: float(a @ rows[j]))
        total += math.log((a - rows[best] + eps).norm().item() + eps)
    return -total / len(rows)


def sinkhorn_by_loop(logits: torch.Tensor, tau: float, n_iters: int) -> torch.Tensor:
    q = torch.exp(logits.double() / tau).T.clone()          # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(n_iters):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


def test_koleo_matches_a_brute_force_loop():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 5, generator=gen)
    assert koleo_loss(x).item() == pytest.approx(koleo_by_loop(x), rel=1e-5)
    spread = torch.eye(6)                                     # neighbours at distance sqrt(2)
    assert koleo_loss(spread).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-5)


def test_koleo_of_duplicates_is_large_and_finite_in_every_dtype():
    x = torch.randn(8, 384)
    x[1] = x[0]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        loss = koleo_loss(x.to(dtype))
        assert loss.dtype == torch.float32 and torch.isfinite(loss), dtype
    term = -math.log(1e-8 * math.sqrt(384) + 1e-8)            # the duplicate pair's own term
    assert term == pytest.approx(15.4, abs=0.1)
    assert koleo_loss(x).item() > koleo_loss(torch.randn(8, 384)).item() + 2 * term / 8 - 1


def test_koleo_pushes_neighbours_apart_and_rejects_bad_input():
    x = torch.randn(10, 4, requires_grad=True)
    koleo_loss(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="n >= 2"):
        koleo_loss(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\(n, D\)"):
        koleo_loss(torch.randn(4))
    with pytest.raises(ValueError, match="eps must be positive"):
        koleo_loss(torch.randn(3, 4), eps=0.0)


def test_sinkhorn_matches_the_official_algorithm_written_out():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=gen)
    for n_iters in (1, 3):
        got = sinkhorn_knopp(logits, 0.5, n_iters)
        assert got.dtype == torch.float32
        assert torch.allclose(got.double(), sinkhorn_by_loop(logits, 0.5, n_iters), atol=1e-6)


def test_sinkhorn_rows_sum_to_one_and_prototypes_are_balanced():
    gen = torch.Generator().manual_seed(2)
    logits = torch.rand(64, 16, generator=gen) * 2 - 1        # cosine logits, as a DINO head's
    logits[:, 0] += 0.5                                       # one prototype favoured everywhere
    q = sinkhorn_knopp(logits, 0.1, n_iters=3)
    assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-5)
    softmax = torch.softmax(logits / 0.1, dim=1)
    spread = lambda p: (p.sum(0) - 64 / 16).abs().max().item()   # noqa: E731 - prototype imbalance
    assert spread(q) < 0.5 * spread(softmax)
    long = sinkhorn_knopp(logits, 0.1, n_iters=200)
    assert torch.allclose(long.sum(0), torch.full((16,), 4.0), atol=1e-3)


def test_sinkhorn_ignores_a_constant_shift_and_survives_small_temperatures():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(8, 4, generator=gen)
    shifted = (logits.double() + 1000.0)                       # exact in float64
    assert torch.allclose(sinkhorn_knopp(logits.double(), 0.2), sinkhorn_knopp(shifted, 0.2),
                          atol=1e-6)
    cosines = torch.rand(32, 16, generator=gen) * 2 - 1       # a DINO head's logits, in [-1, 1]
    assert torch.isinf(torch.exp(cosines.max() / 0.005))     # what the official float32 code takes
    hot = sinkhorn_knopp(cosines, 0.005)
    assert torch.isfinite(hot).all() and torch.allclose(hot.sum(1), torch.ones(32), atol=1e-5)
    assert torch.isfinite(sinkhorn_knopp(logits.bfloat16(), 0.1)).all()
    with pytest.raises(ValueError, match="teacher_temp must be positive"):
        sinkhorn_knopp(logits, 0.0)
    with pytest.raises(ValueError, match="n_iters must be a positive int"):
        sinkhorn_knopp(logits, 0.1, n_iters=0)


def test_dino_loss_with_sinkhorn_targets_uses_them_and_leaves_the_center_alone():
    from course_lib.dino import DINOLoss
    gen = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(4 * 3, 8, generator=gen), torch.randn(2 * 3, 8, generator=gen)
    loss_fn = DINOLoss(8, student_temp=0.1, sinkhorn_iters=3)
    loss = loss_fn(student, teacher, teacher_temp=0.05)
    targets = sinkhorn_by_loop(teacher, 0.05, 3).float().chunk(2)            # G x (B, K)
    log_p = torch.log_softmax(student / 0.1, dim=1).chunk(4)                 # V x (B, K)
    pairs = [-(targets[i] * log_p[j]).sum(1).mean() for i in range(2) for j in range(4) if i != j]
    assert loss.item() == pytest.approx(torch.stack(pairs).mean().item(), rel=1e-5)
    assert torch.count_nonzero(loss_fn.center) == 0                         # no center in this mode
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        DINOLoss(8, sinkhorn_iters=-1)

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_lib.simclr import info_nce, similarity_matrix


def nt_xent_loop(z1, z2, tau):
    """Oracle: one anchor at a time, the denominator summed explicitly over k != i."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n2) if k != i)
        total += -(float(z[i] @ z[pos]) / tau - math.log(denom))
    return total / n2


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 9), st.integers(1, 8), st.sampled_from([0.05, 0.1, 0.5, 1.0]), st.integers(0, 999))
def test_info_nce_matches_loop(n, d, tau, seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert info_nce(z1, z2, tau).item() == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("n", [2, 5, 64])
def test_uniform_embeddings_give_log_2n_minus_1(n):
    z = torch.ones(n, 4)
    assert info_nce(z, z, 0.3).item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_invariant_to_batch_order_and_scale():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    perm = torch.randperm(8, generator=g)
    base = info_nce(z1, z2)
    torch.testing.assert_close(info_nce(z1[perm], z2[perm]), base)
    torch.testing.assert_close(info_nce(3 * z1, 0.5 * z2), base)
    torch.testing.assert_close(info_nce(z2, z1), base)  # symmetric in the two views


def test_similarity_matrix_diagonal_masked():
    sim = similarity_matrix(torch.randn(3, 4), torch.randn(3, 4), 0.1)
    assert sim.shape == (6, 6) and torch.isinf(sim.diagonal()).all()
    off = sim[~torch.eye(6, dtype=torch.bool)]
    assert (off.abs() <= 10 + 1e-5).all()  # |cos| / tau <= 1 / 0.1


def test_bfloat16_and_gradient():
    z1 = torch.randn(6, 8, dtype=torch.bfloat16, requires_grad=True)
    z2 = torch.randn(6, 8, dtype=torch.bfloat16)
    loss = info_nce(z1, z2)
    loss.backward()
    assert loss.dtype == torch.float32 and z1.grad.dtype == torch.bfloat16
    assert torch.isfinite(z1.grad.float()).all()
    assert abs(loss.item() - info_nce(z1.float(), z2.float()).item()) < 0.05


@pytest.mark.parametrize("z1,z2,tau,match", [
    (torch.randn(4, 3), torch.randn(5, 3), 0.1, "same shape"),
    (torch.randn(4), torch.randn(4), 0.1, "2-D"),
    (torch.randn(1, 3), torch.randn(1, 3), 0.1, "B >= 2"),
    (torch.randn(4, 3), torch.randn(4, 3), 0.0, "temperature"),
    (torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long), 0.1, "floating"),
])
def test_bad_inputs(z1, z2, tau, match):
    with pytest.raises(ValueError, match=match):
        info_nce(z1, z2, tau)

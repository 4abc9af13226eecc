import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from course_lib import diagnostics as dg


def test_entropy_uniform_and_onehot():
    k = 16
    uniform = dg.entropy(torch.full((3, k), 1 / k))
    assert uniform.shape == (3,) and torch.allclose(uniform, torch.full((3,), math.log(k)))
    assert dg.entropy(F.one_hot(torch.arange(3), k).float()).abs().max().item() < 1e-6
    # by hand: H(1/2, 1/4, 1/4) = 1/2 log 2 + 2 * 1/4 log 4 = 1.5 log 2; any leading shape
    p = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    assert dg.entropy(p).tolist() == pytest.approx([1.5 * math.log(2), 0.0], abs=1e-6)
    assert dg.entropy(p[0]).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)
    # one-hot rows on different classes: each row has entropy 0, their average log 2
    two = F.one_hot(torch.tensor([0, 1]), 4).float()
    assert dg.entropy(two).sum().item() == 0.0
    assert dg.entropy(two.mean(0)).item() == pytest.approx(math.log(2), abs=1e-6)


def test_kl_against_loop():
    torch.manual_seed(0)
    p, q = torch.rand(5, 7).softmax(-1), torch.rand(5, 7).softmax(-1)
    loop = sum(sum(p[i, j] * math.log(p[i, j] / q[i, j]) for j in range(7)) for i in range(5)) / 5
    assert dg.kl_divergence(p, q).item() == pytest.approx(float(loop), rel=1e-5)
    assert dg.kl_divergence(p, p).item() == pytest.approx(0.0, abs=1e-6)


def test_alignment_uniformity_by_hand():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # distances^2: sqrt(2)^2 = 2 and 0 -> mean 1
    assert dg.alignment(z1, z2).item() == pytest.approx(1.0)
    # two antipodal points: one pair at squared distance 4 -> log exp(-2 * 4) = -8
    assert dg.uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(-8.0)


def test_uniformity_against_double_loop():
    torch.manual_seed(1)
    z = F.normalize(torch.randn(6, 3), dim=1)
    vals = [math.exp(-2 * float(((z[i] - z[j]) ** 2).sum())) for i in range(6) for j in range(i + 1, 6)]
    assert dg.uniformity(z).item() == pytest.approx(math.log(sum(vals) / len(vals)), rel=1e-5)


def test_effective_rank_extremes():
    torch.manual_seed(0)
    rank_one = torch.randn(100, 1) @ torch.randn(1, 8)
    assert dg.effective_rank(rank_one).item() == pytest.approx(1.0, abs=1e-3)
    iso = torch.randn(5000, 8)
    assert dg.effective_rank(iso).item() > 7.5


def test_feature_std_collapsed_dimension():
    z = torch.randn(256, 4)
    z[:, 2] = 3.0
    std = dg.feature_std(z, normalize=False)
    assert std[2].item() == pytest.approx(0.0, abs=1e-6) and (std[[0, 1, 3]] > 0.5).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 20), st.integers(2, 12), st.integers(0, 2**16))
def test_bounds(b, d, seed):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    assert 0.0 <= dg.alignment(z1, z2).item() <= 4.0 + 1e-5
    assert -8.0 - 1e-5 <= dg.uniformity(z1).item() <= 1e-6  # squared distances lie in [0, 4]
    p = torch.randn(b, d, generator=g).softmax(-1)
    h = dg.entropy(p)
    assert (h >= -1e-6).all() and (h <= math.log(d) + 1e-5).all()


def test_bfloat16_inputs_and_errors():
    z = torch.randn(8, 4, dtype=torch.bfloat16)
    assert torch.isfinite(dg.uniformity(z)) and torch.isfinite(dg.alignment(z, z))
    with pytest.raises(ValueError, match="z1 and z2"):
        dg.alignment(torch.randn(3, 4), torch.randn(4, 4))
    with pytest.raises(ValueError, match="probs must be a tensor"):
        dg.entropy(torch.tensor(0.5))


def nmi_by_counting(a, b):
    """I(a; b) / mean(H(a), H(b)) from a dictionary of pair counts: the independent check."""
    n, pairs, count_a, count_b = len(a), {}, {}, {}
    for x, y in zip(a, b):
        pairs[x, y] = pairs.get((x, y), 0) + 1
        count_a[x] = count_a.get(x, 0) + 1
        count_b[y] = count_b.get(y, 0) + 1
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    mutual = sum(c / n * math.log(c * n / (count_a[x] * count_b[y])) for (x, y), c in pairs.items())
    return mutual / ((h(count_a) + h(count_b)) / 2)


def test_normalized_mutual_information_by_hand_and_against_counting():
    nmi = dg.normalized_mutual_information
    a = torch.tensor([0, 0, 1, 1])
    assert nmi(a, torch.tensor([7, 7, 3, 3])) == pytest.approx(1.0)     # same partition, renamed
    assert nmi(a, torch.tensor([0, 1, 0, 1])) == pytest.approx(0.0, abs=1e-7)   # independent
    assert nmi(a, torch.tensor([5, 5, 5, 5])) == 0.0                      # a constant says nothing
    # by hand: H(a) = ln 2, H(b) = H(3/4, 1/4), H(a, b) = H(1/2, 1/4, 1/4)
    b = torch.tensor([0, 0, 0, 1])
    h_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_ab = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert nmi(a, b) == pytest.approx((math.log(2) + h_b - h_ab) / ((math.log(2) + h_b) / 2), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (500,), generator=g)
    y = (x + torch.randint(0, 3, (500,), generator=g)) % 7
    assert nmi(x, y) == pytest.approx(nmi_by_counting(x.tolist(), y.tolist()), abs=1e-5)
    assert nmi(x, y) == pytest.approx(nmi(y, x))
    for bad in [(a.float(), b), (a, b[:3]), (a.view(2, 2), b.view(2, 2)), ([0, 1], [1, 0])]:
        with pytest.raises(ValueError, match="^a and b must"):
            nmi(*bad)

"""Lecture 06's lab (course_lib.labs.dinov2) against independent computations: the bound table's
entries recomputed by hand, the spread statistics by a loop, the frozen-feature runs' switches, and
the token norms against a forward pass written out block by block."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.backbones import build_vit
from course_lib.labs import dinov2 as lab


def test_the_bound_table_recomputes_by_hand_and_sinkhorn_respects_the_bound():
    table = lab.sinkhorn_bound_table((4, 64, 512), out_dim=128, teacher_temp=0.05, seed=1)
    assert list(table) == [4, 64, 512]
    for batch, row in table.items():
        assert row["bound"] == pytest.approx(max(math.log(128 / batch), 0.0))
        assert row["sinkhorn_exact"] >= row["bound"] - 1e-6
        assert row["sinkhorn_marginal"] == pytest.approx(math.log(128), abs=0.01)
    gen = torch.Generator().manual_seed(1)                     # the first batch, redrawn
    prototypes = torch.nn.functional.normalize(torch.randn(128, 32, generator=gen), dim=1)
    logits = torch.nn.functional.normalize(torch.randn(4, 32, generator=gen), dim=1) @ prototypes.T
    p = torch.softmax((logits - logits.mean(0)).double() / 0.05, dim=1)
    assert table[4]["softmax"] == pytest.approx(-(p * p.log()).sum(1).mean().item(), abs=1e-4)
    assert table[4]["softmax"] < table[4]["bound"]


def test_spread_matches_a_loop():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(7, 3, generator=gen)
    got = lab.spread(z)
    unit = [v / v.norm() for v in z.double()]
    nearest = [min((a - b).norm().item() for j, b in enumerate(unit) if j != i)
               for i, a in enumerate(unit)]
    assert torch.allclose(got["nn_distance"].double(), torch.tensor(nearest, dtype=torch.float64),
                          atol=1e-5)
    index = [min((j for j in range(len(unit)) if j != i), key=lambda j: (unit[i] - unit[j]).norm().item())
             for i in range(len(unit))]
    assert got["nn_index"].tolist() == index
    pairs = [math.exp(-2 * (a - b).norm().item() ** 2) for i, a in enumerate(unit)
             for j, b in enumerate(unit) if i < j]
    assert got["uniformity"] == pytest.approx(math.log(sum(pairs) / len(pairs)), abs=1e-4)


def _features(n=64, views=4, dim=8, seed=3):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, dim, generator=gen) * 3
    labels = torch.arange(n) % 4
    clean = centres[labels] + torch.randn(n, dim, generator=gen)
    return lab.FrozenFeatures(clean[:, None] + 0.3 * torch.randn(n, views, dim, generator=gen),
                              clean, labels, clean[:32] + 0.1, labels[:32], "synthetic")


def test_head_only_runs_record_every_step_and_sinkhorn_keeps_prototypes_in_use():
    features = _features()
    sk = lab.head_only_run(features, centering="sinkhorn_knopp", batch_size=16, steps=12,
                           out_dim=32, window=4)
    assert len(sk["entropy"]) == len(sk["marginal_entropy"]) == 12
    assert sk["bound"] == pytest.approx(0.0) and sk["log_k"] == pytest.approx(math.log(32))
    assert min(sk["marginal_entropy"]) > math.log(32) - 0.1
    assert sk["nn_distance"].shape == (32,) and 0.0 <= sk["knn"] <= 1.0
    small = lab.head_only_run(features, centering="sinkhorn_knopp", batch_size=4, steps=3,
                              out_dim=64)
    assert small["bound"] == pytest.approx(math.log(64 / 8))
    assert min(small["entropy"]) >= small["bound"] - 1e-4     # the bound, during training
    with pytest.raises(ValueError, match="centering must be one of"):
        lab.head_only_run(features, centering="sinkhorn")


def test_koleo_weight_changes_the_run_and_zero_is_the_plain_loss():
    features = _features()
    plain = lab.head_only_run(features, koleo_weight=0.0, batch_size=16, steps=5, out_dim=32)
    again = lab.head_only_run(features, koleo_weight=0.0, batch_size=16, steps=5, out_dim=32)
    spread = lab.head_only_run(features, koleo_weight=1.0, batch_size=16, steps=5, out_dim=32)
    assert torch.equal(plain["nn_distance"], again["nn_distance"])           # seeded
    assert not torch.equal(plain["nn_distance"], spread["nn_distance"])


def test_register_norms_match_a_forward_pass_written_out():
    torch.manual_seed(0)
    vit = build_vit("tiny", stem="patch", patch_size=8, img_size=32, depth=3,
                    num_register_tokens=2).train()
    images = torch.randn(5, 3, 32, 32)
    norms = lab.register_norms(vit, images)
    assert vit.training                                       # put back as it was
    assert norms["patch"].shape == (3, 5, 16) and norms["registers"].shape == (3, 5, 2)
    assert norms["cls"].shape == (3, 5)
    vit.eval()
    with torch.no_grad():
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
        for depth, block in enumerate(vit.blocks):
            x = block(x)
            assert torch.allclose(norms["registers"][depth], x[:, 1:3].norm(dim=-1), atol=1e-4)
            assert torch.allclose(norms["patch"][depth], x[:, 3:].norm(dim=-1), atol=1e-4)
    rows = lab.norm_summary(norms)
    last = norms["patch"][-1]
    assert [row["block"] for row in rows] == [1, 2, 3]
    assert rows[-1]["max_over_median"] == pytest.approx((last.max() / last.median()).item())
    assert rows[-1]["outlier_share"] == pytest.approx((last > 3 * last.median()).float().mean().item())
    plain = lab.norm_summary(lab.register_norms(build_vit("tiny", img_size=32, depth=1),
                                                torch.randn(2, 3, 32, 32)))
    assert plain[0]["register_median"] is None


def test_frozen_view_features_come_from_the_checkpoint():
    from course_lib import zoo
    from course_lib.data import make_shapes
    features = lab.frozen_view_features("simclr", n_train=16, n_test=8, n_views=2)
    assert features.views.shape == (16, 2, 96) and features.test.shape == (8, 96)
    model = zoo.load("simclr")
    images, labels, _ = make_shapes(16, image_size=32, seed=0, clutter=0.0)
    assert torch.equal(features.train_labels, labels)
    assert torch.allclose(features.train, model.features(images), atol=1e-5)
    assert not torch.allclose(features.views[:, 0], features.train, atol=1e-2)   # augmented
    with pytest.raises(ValueError, match="n_views must be an even number"):
        lab.frozen_view_features("simclr", n_views=3)


def test_plot_centering_draws_each_run_and_the_bound_of_sinkhorn_runs():
    import matplotlib
    matplotlib.use("Agg")
    features = _features()
    runs = {"sk": lab.head_only_run(features, centering="sinkhorn_knopp", batch_size=4, steps=2,
                                    out_dim=64),
            "ema": lab.head_only_run(features, centering="centering", batch_size=4, steps=2,
                                     out_dim=64)}
    left, right = lab.plot_centering(runs)
    assert len(left.lines) == 2 + 1 + 1 and len(right.lines) == 2 + 1    # runs, SK bound, log K
    assert [line.get_ydata()[0] for line in left.lines[1:2]] == [pytest.approx(math.log(8))]

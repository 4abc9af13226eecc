import copy
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.backbones import build_vit
from course_lib.data import make_shapes
from course_lib.evaluate import (Pooled, attention_jaccard, attention_masks, dense_probe,
                                 evaluate_backbone, extract_features, held_out_head_jaccard, jaccard,
                                 knn_accuracy, linear_probe, token_labels)


def knn_loop(train_x, train_y, test_x, k, T):
    """Slow oracle: one test point at a time, explicit vote dictionary."""
    preds = []
    tr = F.normalize(train_x, dim=1)
    for x in F.normalize(test_x, dim=1):
        sims = [(float(x @ t), int(y)) for t, y in zip(tr, train_y)]
        sims.sort(key=lambda s: -s[0])
        votes = {}
        for s, y in sims[:k]:
            votes[y] = votes.get(y, 0.0) + math.exp(s / T)
        preds.append(max(votes, key=votes.get))
    return preds


def test_knn_matches_slow_loop():
    g = torch.Generator().manual_seed(0)
    train_x, test_x = torch.randn(60, 5, generator=g), torch.randn(25, 5, generator=g)
    train_y, test_y = torch.randint(0, 4, (60,), generator=g), torch.randint(0, 4, (25,), generator=g)
    preds = torch.tensor(knn_loop(train_x, train_y, test_x, k=7, T=0.07))
    expected = (preds == test_y).float().mean().item()
    assert knn_accuracy(train_x, train_y, test_x, test_y, k=7, chunk_size=4) == pytest.approx(expected)


def test_knn_separable_clusters_perfect_and_scale_invariant():
    g = torch.Generator().manual_seed(1)
    centers = torch.eye(3) * 10
    y = torch.arange(90) % 3
    x = centers[y] + torch.randn(90, 3, generator=g)
    acc = knn_accuracy(x[:60], y[:60], x[60:] * 7.0, y[60:], k=5)
    assert acc == 1.0


def test_linear_probe_learns_linear_rule_and_is_deterministic():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 10, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    a = linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=30, seed=3)
    b = linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=30, seed=3)
    assert a == b and a > 0.95


def test_extract_features_batches_and_restores_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    model.train()
    images = torch.randn(10, 3, 2, 2)
    feats = extract_features(model, images, batch_size=3)
    torch.testing.assert_close(feats, model(images))
    assert model.training


def test_extract_features_default_batch_on_a_cpu_is_64_and_changes_no_feature():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(12, 3)

        def forward(self, x):
            seen.append(x.shape[0])
            return self.linear(x.flatten(1))

    model, images = Recorder(), torch.randn(150, 3, 2, 2)
    default = extract_features(model, images)
    assert seen == [64, 64, 22]
    torch.testing.assert_close(default, extract_features(model, images, batch_size=512))
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(model, images, batch_size=0)


@pytest.mark.parametrize("args,match", [
    ((torch.randn(5, 3), torch.zeros(4, dtype=torch.long), torch.randn(2, 3), torch.zeros(2, dtype=torch.long)), "train_y"),
    ((torch.randn(5, 3), torch.zeros(5, dtype=torch.long), torch.randn(2, 4), torch.zeros(2, dtype=torch.long)), "width"),
    ((torch.randn(5, 3), torch.zeros(5), torch.randn(2, 3), torch.zeros(2, dtype=torch.long)), "integer"),
])
def test_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        knn_accuracy(*args, k=2)


def test_knn_k_out_of_range():
    x, y = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(x, y, x, y, k=6)


# --- CLS attention against object masks -------------------------------------------------------
def test_attention_masks_keep_the_fewest_patches_holding_the_mass():
    att = torch.tensor([[0.5, 0.1], [0.3, 0.1]])             # sorted: 0.5, 0.3, 0.1, 0.1
    keep = attention_masks(att, mass=0.6)            # 0.5 < 0.6, 0.5 + 0.3 crosses it
    assert keep.tolist() == [[True, False], [True, False]]
    assert attention_masks(att, mass=0.5).tolist() == [[True, False], [False, False]]
    assert attention_masks(att, mass=1.0).all()
    scaled = attention_masks(7 * att, mass=0.6)      # maps need not sum to 1
    assert torch.equal(scaled, keep)


def test_attention_masks_match_dinos_ascending_cumsum_rule():
    gen = torch.Generator().manual_seed(0)
    att = torch.rand(4, 3, 5, 5, generator=gen)
    for mass in (0.3, 0.6, 0.9):
        flat = att.flatten(-2) / att.flatten(-2).sum(-1, keepdim=True)
        val, idx = torch.sort(flat, dim=-1)                   # visualize_attention.py, ascending
        th = torch.cumsum(val, dim=-1) > (1 - mass)
        dino = torch.zeros_like(th).scatter(-1, idx, th).reshape(att.shape)
        assert torch.equal(attention_masks(att, mass), dino)


def test_jaccard_by_hand():
    a = torch.tensor([[True, True], [False, False]])
    b = torch.tensor([[True, False], [True, False]])
    assert jaccard(a, b).item() == pytest.approx(1 / 3)
    assert jaccard(a, a).item() == 1.0
    empty = torch.zeros(2, 2, dtype=torch.bool)
    assert jaccard(empty, empty).item() == 1.0 and jaccard(a, empty).item() == 0.0


def test_attention_jaccard_shapes_and_bounds():
    torch.manual_seed(0)
    model = build_vit("cpu-fine")
    images, _, masks = make_shapes(6, 32, seed=0)
    out = attention_jaccard(model, images, masks, batch_size=4)
    assert len(out["per_head"]) == model.blocks[-1].attn.num_heads
    assert out["best_head"] == max(out["per_head"])
    for key in ("mean_over_heads", "best_head", "head_average"):
        assert 0.0 <= out[key] <= 1.0
    with pytest.raises(ValueError, match="masks"):
        attention_jaccard(model, images, masks.float())


def test_the_held_out_head_is_chosen_on_the_first_half_and_scored_on_the_second():
    torch.manual_seed(0)
    model = build_vit("cpu-fine").eval()
    images, _, masks = make_shapes(12, 32, seed=1)
    got = held_out_head_jaccard(model, images, masks)
    first = attention_jaccard(model, images[:6], masks[:6])["per_head"]
    second = attention_jaccard(model, images[6:], masks[6:])["per_head"]
    assert got["head"] == first.index(max(first))
    assert got["chosen_on"] == max(first) and got["held_out"] == second[got["head"]]
    # The second half cannot change which head is chosen: empty its masks and only the score moves.
    empty = masks.clone()
    empty[6:] = False
    again = held_out_head_jaccard(model, images, empty)
    assert again["head"] == got["head"] and again["held_out"] == 0.0
    with pytest.raises(ValueError, match="images must hold at least 2"):
        held_out_head_jaccard(model, images[:1], masks[:1])


# --- the one evaluator ---------------------------------------------------------------------------
def test_pooled_cls_is_the_forward_and_mean_averages_the_patch_tokens():
    torch.manual_seed(0)
    vit = build_vit("cpu", depth=1).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = vit.forward_features(x)                  # (2, 1 + 16, D), after the final norm
    torch.testing.assert_close(Pooled(vit, "cls")(x), vit(x))
    torch.testing.assert_close(Pooled(vit, "cls")(x), tokens[:, 0])
    torch.testing.assert_close(Pooled(vit, "mean")(x), tokens[:, 1:].mean(1))
    with pytest.raises(ValueError, match="pooling"):
        Pooled(vit, "max")


def test_evaluate_backbone_keys_and_knn_match_the_direct_computation():
    torch.manual_seed(0)
    vit = build_vit("cpu", depth=1)
    train_x, train_y, _ = make_shapes(60, 32, seed=0)
    test_x, test_y, _ = make_shapes(20, 32, seed=0, split="test")
    before = [p.detach().clone() for p in vit.parameters()]
    report = evaluate_backbone(vit, train_x, train_y, test_x, test_y, pooling="mean", k=5,
                               probe_epochs=2, finetune_steps=2)
    assert set(report) == {"knn_accuracy", "knn_stderr", "linear_probe", "finetune_accuracy",
                           "uniformity", "effective_rank", "feature_std"}
    from course_lib.data import normalize
    bank = extract_features(Pooled(vit, "mean"), train_x, transform=normalize)
    query = extract_features(Pooled(vit, "mean"), test_x, transform=normalize)
    knn = knn_accuracy(bank, train_y, query, test_y, k=5)
    assert report["knn_accuracy"] == knn
    assert report["knn_stderr"] == pytest.approx((knn * (1 - knn) / 20) ** 0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, vit.parameters()))  # fine-tuned a copy
    small = evaluate_backbone(vit, train_x, train_y, test_x, test_y, k=5, probe_epochs=0,
                              diagnostics=False)
    assert set(small) == {"knn_accuracy", "knn_stderr"}
    with pytest.raises(ValueError, match="finetune_steps"):
        evaluate_backbone(vit, train_x, train_y, test_x, test_y, finetune_steps=-1)



def test_finetune_depends_on_its_seed_alone_and_leaves_the_callers_random_state(monkeypatch):
    """Two calls with one seed train the same weights whatever the global random state before
    them (the head's initial weights and the crops used to draw from it), and the caller's state
    is as it was."""
    import course_lib.train
    from course_lib.evaluate import finetune
    trained = []
    real_train = course_lib.train.train

    def keep_weights(method, *args, **kwargs):
        result = real_train(method, *args, **kwargs)
        trained.append({k: v.detach().clone() for k, v in method.state_dict().items()})
        return result

    monkeypatch.setattr(course_lib.train, "train", keep_weights)
    torch.manual_seed(0)
    vit = build_vit("cpu", depth=1)
    train_x, train_y, _ = make_shapes(64, 32, seed=0)
    test_x, test_y, _ = make_shapes(32, 32, seed=0, split="test")
    accuracies = []
    for disturbance in (1, 2):
        torch.manual_seed(disturbance)
        state = torch.get_rng_state()
        accuracies.append(finetune(vit, train_x, train_y, test_x, test_y, steps=3, seed=7))
        assert torch.equal(torch.get_rng_state(), state)
    finetune(vit, train_x, train_y, test_x, test_y, steps=3, seed=8)
    first, second, other = trained
    assert accuracies[0] == accuracies[1]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_centre_bump_keeps_the_patches_a_hand_count_gives():
    """On a 4x4 grid the bump exp(-d^2/2) has 4 central patches at e^-0.25, 8 edge ones at e^-1.25
    and 4 corners at e^-2.25 (total 5.829). The 4 central hold 0.534 < 0.6 of the mass, so the
    next two edge patches are added (0.583, then 0.632 >= 0.6 stops): 6 of 16 patches kept. With
    an object covering the whole image the Jaccard is the kept area, 6/16; with no object, 0."""
    from course_lib.evaluate import centre_bump_jaccard
    everywhere = torch.ones(3, 32, 32, dtype=torch.bool)
    assert centre_bump_jaccard(everywhere, (4, 4)) == pytest.approx(6 / 16)
    assert centre_bump_jaccard(~everywhere, (4, 4)) == 0.0


# --- the dense probe -------------------------------------------------------------------------------
def test_token_labels_are_the_majority_of_each_patch_by_a_loop():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 16, 16, generator=gen) > 0.6
    labels = token_labels(masks, (4, 4))
    for b in range(3):
        for i in range(4):
            for j in range(4):
                share = masks[b, 4 * i:4 * i + 4, 4 * j:4 * j + 4].float().mean().item()
                assert labels[b, 4 * i + j].item() == int(share >= 0.5)
    with pytest.raises(ValueError, match=r"grid \(3, 3\) must divide"):
        token_labels(masks, (3, 3))
    with pytest.raises(ValueError, match="masks must be a bool tensor"):
        token_labels(masks.float(), (4, 4))


class _Oracle(torch.nn.Module):
    """A stand-in ViT whose patch tokens say, in their first coordinate, whether the patch is
    bright: with object pixels bright and background dark, a linear probe can be perfect."""

    num_prefix_tokens = 1

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.patch_embed = type("PatchEmbed", (), {"grid_size": (4, 4)})()

    def forward_features(self, x):
        cells = F.avg_pool2d(x.mean(1, keepdim=True), 8).flatten(1)     # (B, 16)
        tokens = torch.stack([cells, torch.zeros_like(cells)], dim=-1) * self.scale
        return torch.cat([torch.zeros(x.shape[0], 1, 2), tokens], dim=1)


def test_dense_probe_is_perfect_when_the_tokens_carry_the_label(monkeypatch):
    import course_lib.backbones as backbones
    monkeypatch.setattr(backbones, "patch_tokens", lambda model, x: model.forward_features(x)[:, 1:])
    gen = torch.Generator().manual_seed(1)
    masks = torch.zeros(40, 32, 32, dtype=torch.bool)
    for b in range(40):
        i, j = torch.randint(0, 3, (2,), generator=gen).tolist()
        masks[b, 8 * i:8 * i + 16, 8 * j:8 * j + 8] = True               # two object cells
    images = (masks[:, None].expand(-1, 3, -1, -1) * 200 + 20).to(torch.uint8)
    scores = dense_probe(_Oracle(), images[:20], masks[:20], images[20:], masks[20:], epochs=30)
    assert scores["dense_accuracy"] == 1.0 and scores["dense_iou"] == 1.0
    assert scores["dense_majority"] == pytest.approx(14 / 16)
    # two object cells at random places: no position holds object in most images
    assert scores["dense_position_iou"] == 0.0


def test_finetune_trains_at_the_rate_it_is_given_and_rejects_a_bad_one(monkeypatch):
    import course_lib.train
    from course_lib.evaluate import finetune
    rates = []
    real_train = course_lib.train.train

    def record_rate(method, images, config, **kwargs):
        rates.append(config.lr)
        return real_train(method, images, config, **kwargs)

    monkeypatch.setattr(course_lib.train, "train", record_rate)
    vit = build_vit("cpu", depth=1)
    train_x, train_y, _ = make_shapes(32, 32, seed=0)
    for lr in (1e-4, 1e-3):
        finetune(vit, train_x, train_y, train_x, train_y, steps=1, lr=lr)
    finetune(vit, train_x, train_y, train_x, train_y, steps=1)
    assert rates == [1e-4, 1e-3, 1e-3]                         # 1e-3 unless told otherwise
    for bad in (0.0, -1e-3, 1):
        with pytest.raises(ValueError, match="lr must be a positive float"):
            finetune(vit, train_x, train_y, train_x, train_y, steps=1, lr=bad)


def test_finetune_head_first_starts_from_the_linear_probes_classifier(monkeypatch):
    """With ``head_first`` the new head starts as linear_probe's classifier on the frozen features
    of the training images, its standardisation folded in: before any step it predicts what the
    probe predicts (checked against linear_probe itself); without it the head starts at random."""
    import course_lib.train
    from course_lib.data import normalize
    from course_lib.evaluate import Pooled, extract_features, finetune, linear_probe
    starts = []
    real_train = course_lib.train.train

    def record_start(method, images, config, **kwargs):
        starts.append(copy.deepcopy(method.head))
        return real_train(method, images, config, **kwargs)

    monkeypatch.setattr(course_lib.train, "train", record_start)
    torch.manual_seed(0)
    vit = build_vit("cpu", depth=1)
    train_x, train_y, _ = make_shapes(96, 32, seed=0)
    features = extract_features(Pooled(vit, "cls"), train_x, transform=normalize)
    for head_first in (True, False):
        finetune(vit, train_x, train_y, train_x, train_y, steps=1, seed=3, head_first=head_first)
    probed, random_head = starts
    with torch.no_grad():
        agree = (probed(features).argmax(1) == train_y).float().mean().item()
        chance = (random_head(features).argmax(1) == train_y).float().mean().item()
    assert agree == pytest.approx(linear_probe(features, train_y, features, train_y, seed=3), abs=1 / 96)
    assert agree > chance + 0.2
    with pytest.raises(ValueError, match="head_first must be a bool"):
        finetune(vit, train_x, train_y, train_x, train_y, steps=1, head_first=1)


def test_finetune_rotation_turns_each_view_after_its_crop_and_flip(monkeypatch):
    """With ``rotation=(90, 90)`` every fine-tuning view is the unturned view (same seed, same
    crop and flip) turned a quarter anticlockwise, checked against ``torch.rot90``; bad ranges
    are refused by name."""
    import course_lib.train
    from course_lib.evaluate import finetune
    views = []
    real_train = course_lib.train.train

    def record_views(method, images, config, **kwargs):
        torch.manual_seed(5)
        views.append(method.augment(images[:8]))
        return real_train(method, images, config, **kwargs)

    monkeypatch.setattr(course_lib.train, "train", record_views)
    vit = build_vit("cpu", depth=1)
    train_x, train_y, _ = make_shapes(32, 32, seed=0)
    for rotation in ((0.0, 0.0), (90.0, 90.0)):
        finetune(vit, train_x, train_y, train_x, train_y, steps=1, rotation=rotation)
    unturned, turned = views
    assert torch.allclose(torch.rot90(unturned, 1, dims=(-2, -1)), turned, atol=1e-4)
    assert not torch.allclose(unturned, turned, atol=1e-2)
    for bad in ((180.0, -180.0), [0.0, 90.0], (90.0,), ("a", 1.0), (True, 2.0)):
        with pytest.raises(ValueError, match="rotation must be a \\(low, high\\) tuple"):
            finetune(vit, train_x, train_y, train_x, train_y, steps=1, rotation=bad)

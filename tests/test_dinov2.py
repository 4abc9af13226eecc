"""course_lib.dinov2 against loops written from the official dinov2 code, float64: KoLeo with a
brute-force nearest neighbour, Sinkhorn-Knopp with explicit row and column sums; plus the cases
the official code gets wrong (duplicates and half precision for KoLeo, overflow for SK)."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.backbones import build_vit, embed_tokens, encode_tokens, num_prefix_tokens
from course_lib.dinov2 import DINOv2, DINOv2Config, koleo_loss, masked_patch_loss, sinkhorn_knopp
from course_lib.ibot import ibot_masks
from course_lib.train import TrainConfig, train


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


# --- the combined objective ------------------------------------------------------------------------
def _loop_masked_loss(student, targets, mask, tau_s):
    """Per image, the mean cross-entropy over its masked tokens (0 with none), then the mean over
    all images; student and targets (M, K) in patches[mask] order. float64."""
    rows = iter(range(student.shape[0]))
    per_image = []
    for b in range(mask.shape[0]):
        terms = []
        for _ in range(int(mask[b].sum())):
            i = next(rows)
            log_p = torch.log_softmax(student[i].double() / tau_s, dim=0)
            terms.append(-(targets[i].double() * log_p).sum().item())
        per_image.append(sum(terms) / len(terms) if terms else 0.0)
    return sum(per_image) / len(per_image)


def test_masked_patch_loss_weighs_each_image_by_its_own_masked_count():
    gen = torch.Generator().manual_seed(5)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[0, :1], mask[1, :5], mask[2, 2:4] = True, True, True     # 1, 5, 2 and 0 masked tokens
    student = torch.randn(8, 7, generator=gen)
    targets = torch.softmax(torch.randn(8, 7, generator=gen), dim=1)
    got = masked_patch_loss(student, targets, mask, 0.1)
    assert got.item() == pytest.approx(_loop_masked_loss(student, targets, mask, 0.1), rel=1e-6)
    pooled = -(targets * torch.log_softmax(student / 0.1, 1)).sum(1).mean()   # one mean over M
    assert abs(got.item() - pooled.item()) > 0.05                # the common mistake differs here
    with pytest.raises(ValueError, match="M = 8 masked tokens"):
        masked_patch_loss(student[:7], targets[:7], mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        masked_patch_loss(student, targets, mask.float())


def test_masked_patch_loss_equals_ibots_loss_on_the_full_grid():
    from course_lib.dino import teacher_distribution
    from course_lib.ibot import ibot_patch_loss
    gen = torch.Generator().manual_seed(6)
    student, teacher = torch.randn(3, 9, 5, generator=gen), torch.randn(3, 9, 5, generator=gen)
    mask = torch.rand(3, 9, generator=gen) < 0.4
    center = torch.randn(1, 5, generator=gen)
    full = ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center)
    masked = masked_patch_loss(student[mask], teacher_distribution(teacher[mask], center, 0.04),
                               mask, 0.1)
    assert masked.item() == pytest.approx(full.item(), rel=1e-5)


def _small_dinov2(steps=2, registers=0, **overrides):
    torch.manual_seed(0)
    vit = build_vit("tiny", stem="patch", patch_size=8, img_size=32, depth=2, drop_path_rate=0.0,
                    num_register_tokens=registers)
    config = DINOv2Config(out_dim=64, hidden_dim=32, bottleneck_dim=16, **overrides)
    return DINOv2(vit, vit.embed_dim, steps=steps, config=config,
                  crops=lambda x: [x.float() / 255, x.flip(-1).float() / 255])


def _step_inputs(method, images):
    """The crops and masks the next training step will draw, from a copy of its generator."""
    gen = torch.Generator()
    gen.set_state(method.generator.get_state())
    globals_ = torch.cat(method.crops(images)[:2])
    grid = 32 // 8
    return globals_, ibot_masks(globals_.shape[0], grid, ratio_range=method.config.mask_ratio_range,
                                p_unmasked=method.config.p_unmasked, generator=gen)


def test_the_step_adds_the_three_weighted_losses_with_koleo_on_the_student_cls():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    method = _small_dinov2(p_unmasked=0.0, dino_weight=0.5, ibot_weight=2.0, koleo_weight=0.3)
    globals_, mask = _step_inputs(method, images)
    with torch.no_grad():
        tokens = method.student.backbone.forward_features(globals_)      # unmasked: differs
        masked = encode_tokens(method.backbone, embed_tokens(method.backbone, globals_, mask=mask,
                                                             mask_token=method.mask_token))
    loss, metrics = method.training_step(images, None, 0)
    koleo = sum(koleo_by_loop(part) for part in masked[:, 0].chunk(2))
    assert metrics["loss_koleo"] == pytest.approx(koleo, rel=1e-4)
    assert metrics["loss_koleo"] != pytest.approx(
        sum(koleo_by_loop(part) for part in tokens[:, 0].chunk(2)), rel=1e-4)
    assert loss.item() == pytest.approx(0.5 * metrics["loss_dino"] + 2.0 * metrics["loss_ibot"]
                                        + 0.3 * metrics["loss_koleo"], rel=1e-5)
    assert metrics["masked_fraction"] == pytest.approx(mask.float().mean().item())
    loss.backward()
    assert method.mask_token.grad.abs().sum() > 0


def test_only_masked_tokens_reach_the_patch_head_and_the_patch_center_averages_them():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    method = _small_dinov2(p_unmasked=0.0, shared_head=False)
    globals_, mask = _step_inputs(method, images)
    with torch.no_grad():
        teacher_patches = method.teacher.backbone.forward_features(globals_)[:, 1:]
        expected = 0.1 * method.teacher.patch_head(teacher_patches[mask]).mean(0)   # (1 - 0.9) x
        everywhere = 0.1 * method.teacher.patch_head(teacher_patches.flatten(0, 1)).mean(0)
    rows = []
    hook = method.student.patch_head.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    method.training_step(images, None, 0)
    hook.remove()
    assert rows == [int(mask.sum())] and 0 < rows[0] < mask.numel()
    assert torch.allclose(method.patch_center[0], expected, atol=1e-5)
    assert not torch.allclose(method.patch_center[0], everywhere, atol=1e-3)


def test_sinkhorn_mode_balances_both_objectives_and_moves_no_center():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    method = _small_dinov2(p_unmasked=0.0, centering="sinkhorn_knopp")
    _, metrics = method.training_step(images, None, 0)
    assert torch.count_nonzero(method.patch_center) == 0
    assert torch.count_nonzero(method.dino_loss.center) == 0 and method.dino_loss.sinkhorn_iters == 3
    logits = torch.randn(40, 64) * 3
    assert torch.allclose(method.patch_targets(logits), sinkhorn_by_loop(logits, 0.04, 3).float(),
                          atol=1e-5)
    centred = _small_dinov2(p_unmasked=0.0)
    centred.training_step(images, None, 0)
    assert centred.patch_center.abs().sum() > 0 and centred.dino_loss.center.abs().sum() > 0
    assert metrics["patch_batch_mean_entropy"] > metrics["patch_entropy"]


def test_registers_are_trained_but_no_loss_reads_them():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    method = _small_dinov2(registers=2, p_unmasked=0.0)
    assert num_prefix_tokens(method.backbone) == 3
    loss, metrics = method.training_step(images, None, 0)
    loss.backward()
    registers = method.backbone.reg_token
    assert registers.grad is not None and registers.grad.abs().sum() > 0   # through attention
    assert math.isfinite(metrics["loss_ibot"])


def test_a_batch_without_masks_has_no_patch_loss_and_a_short_run_follows_by_ema():
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    loss, metrics = _small_dinov2(p_unmasked=1.0).training_step(images[:4], None, 0)
    assert metrics["loss_ibot"] == 0.0 and "patch_entropy" not in metrics and torch.isfinite(loss)
    method = _small_dinov2(4)
    before = [p.clone() for p in method.teacher.parameters()]
    history = train(method, images, TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup_steps=1,
                                                log_every=1, progress=False))
    assert all(math.isfinite(v) for v in history["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_dinov2_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="centering must be one of"):
        DINOv2Config(centering="sinkhorn")
    with pytest.raises(ValueError, match="koleo_weight must be >= 0"):
        DINOv2Config(koleo_weight=-0.1)
    with pytest.raises(ValueError, match="sinkhorn_iters"):
        DINOv2Config(sinkhorn_iters=0)
    with pytest.raises(ValueError, match="config must be a DINOv2Config"):
        DINOv2(build_vit("tiny"), 8, steps=2, config=object())


def test_each_step_returns_the_freed_heap_the_varying_masked_tensors_leave(monkeypatch):
    import sys

    import course_lib.dinov2 as dinov2
    from course_lib.runtime import release_freed_memory
    calls = []
    monkeypatch.setattr(dinov2, "release_freed_memory", lambda: calls.append(1))
    method = _small_dinov2(2)
    method.after_step(0)
    method.after_step(1)
    assert calls == [1, 1]          # benchmarks/dinov2_memory.py measures what it saves
    assert release_freed_memory() is sys.platform.startswith("linux")

"""course_lib.ibot against independent computations: a float64 loop for the patch loss, the
official averaging (per image, then over ALL images) against the common mistakes, the centers
against their closed forms, and the method on the shared loop."""
from __future__ import annotations

import math

import pytest
import torch

from course_lib.backbones import build_vit
from course_lib.ema import update_center
from course_lib.ibot import IBOT, IBOTConfig, ema_centers, ibot_masks, ibot_patch_loss
from course_lib.train import TrainConfig, train


def _loop_patch_loss(student, teacher, mask, tau_s, tau_t, center):
    """The patch loss one image and one patch at a time, in float64 with math.exp / math.log."""
    B, N, K = student.shape
    c = center.reshape(-1).double().tolist() if torch.is_tensor(center) else [center] * K
    per_image = []
    for b in range(B):
        total, count = 0.0, 0
        for i in range(N):
            if not mask[b, i]:
                continue
            t = [(float(teacher[b, i, k]) - c[k]) / tau_t for k in range(K)]
            s = [float(student[b, i, k]) / tau_s for k in range(K)]
            t_max, s_max = max(t), max(s)
            z_t = sum(math.exp(v - t_max) for v in t)
            log_z_s = s_max + math.log(sum(math.exp(v - s_max) for v in s))
            total += -sum(math.exp(t[k] - t_max) / z_t * (s[k] - log_z_s) for k in range(K))
            count += 1
        per_image.append(total / max(count, 1))
    return sum(per_image) / B


def _example(B=4, N=6, K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, N, K, generator=g)
    teacher = torch.randn(B, N, K, generator=g)
    mask = torch.zeros(B, N, dtype=torch.bool)
    mask[0, :1] = True            # one masked patch
    mask[1, :5] = True            # five
    mask[2, 2:4] = True           # two; image 3 has none
    center = 0.3 * torch.randn(1, K, generator=g)
    return student, teacher, mask, center


def test_patch_loss_matches_a_float64_loop():
    student, teacher, mask, center = _example()
    got = ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center)
    want = _loop_patch_loss(student, teacher, mask, 0.1, 0.04, center)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_an_unmasked_image_counts_zero_in_the_mean_over_all_images():
    student, teacher, mask, center = _example()
    full = ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center).item()
    first_three = ibot_patch_loss(student[:3], teacher[:3], mask[:3], 0.1, 0.04, center).item()
    assert full == pytest.approx(first_three * 3 / 4, rel=1e-6)   # divided by B = 4, not by 3
    # the common mistake, one mean over all masked patches of the batch, gives another number
    # (the loop on a single patch is that patch's cross-entropy)
    pooled = sum(_loop_patch_loss(student[b:b + 1, i:i + 1], teacher[b:b + 1, i:i + 1],
                                  mask[b:b + 1, i:i + 1], 0.1, 0.04, center)
                 for b in range(4) for i in range(6) if mask[b, i]) / int(mask.sum())
    assert abs(full - pooled) > 1e-3


def test_no_masked_patch_anywhere_gives_zero_and_the_teacher_gets_no_gradient():
    student, teacher, mask, center = _example()
    assert ibot_patch_loss(student, teacher, torch.zeros_like(mask), 0.1, 0.04, center).item() == 0
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center).backward()
    assert teacher.grad is None
    assert student.grad[3].abs().sum() == 0 and student.grad[~mask].abs().sum() == 0
    assert student.grad[mask].abs().sum() > 0


def test_shifting_the_teacher_and_its_center_together_changes_nothing():
    student, teacher, mask, center = _example()
    shift = torch.linspace(-2, 3, 5)
    a = ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center)
    b = ibot_patch_loss(student, teacher + shift, mask, 0.1, 0.04, center + shift)
    assert torch.allclose(a, b, atol=1e-5)


def test_patch_loss_follows_the_input_dtype_into_float32_and_rejects_bad_arguments():
    student, teacher, mask, center = _example()
    low = ibot_patch_loss(student.bfloat16(), teacher.bfloat16(), mask, 0.1, 0.04, center)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(
        _loop_patch_loss(student.bfloat16().float(), teacher.bfloat16().float(), mask, 0.1, 0.04,
                         center), rel=1e-4)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        ibot_patch_loss(student, teacher, mask.float(), 0.1, 0.04, center)
    with pytest.raises(ValueError, match="same shape"):
        ibot_patch_loss(student, teacher[:, :5], mask, 0.1, 0.04, center)
    with pytest.raises(ValueError, match="student_patch_logits must be a floating-point tensor"):
        ibot_patch_loss(student[0], teacher, mask, 0.1, 0.04, center)
    with pytest.raises(ValueError, match="student_temp must be positive"):
        ibot_patch_loss(student, teacher, mask, 0.0, 0.04, center)
    with pytest.raises(ValueError, match="temperature must be positive"):
        ibot_patch_loss(student, teacher, mask, 0.1, -1.0, center)


@pytest.mark.gpu
def test_patch_loss_on_cuda_matches_the_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    student, teacher, mask, center = _example()
    cpu = ibot_patch_loss(student, teacher, mask, 0.1, 0.04, center)
    gpu = ibot_patch_loss(student.cuda(), teacher.cuda(), mask.cuda(), 0.1, 0.04, center.cuda())
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-5)


# --- masks ------------------------------------------------------------------------------------------
def test_masks_are_empty_half_the_time_and_otherwise_blocks_of_ten_to_fifty_percent():
    masks = ibot_masks(400, 8, generator=torch.Generator().manual_seed(0))
    assert masks.dtype == torch.bool and masks.shape == (400, 64)
    counts = masks.sum(1)
    empty = (counts == 0).float().mean().item()
    assert abs(empty - 0.5) < 4 * math.sqrt(0.25 / 400)                 # 4 standard errors
    masked = counts[counts > 0]
    assert masked.min() >= 64 - int(64 * 0.9) and masked.max() <= 64 - int(64 * 0.5)
    assert masked.float().std() > 3                                    # the ratio varies
    again = ibot_masks(400, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert ibot_masks(5, 8, p_unmasked=1.0).sum() == 0
    with pytest.raises(ValueError, match="ratio_range"):
        ibot_masks(2, 8, ratio_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="p_unmasked"):
        ibot_masks(2, 8, p_unmasked=1.5)


# --- centers ----------------------------------------------------------------------------------------
def test_update_center_is_the_ema_of_the_mean_over_rows_and_patches():
    g = torch.Generator().manual_seed(1)
    center = torch.randn(1, 1, 4, generator=g)
    before = center.clone()
    patches = torch.randn(3, 5, 4, generator=g)
    out = update_center(center, patches, 0.9)
    assert out is center
    want = 0.9 * before + 0.1 * patches.mean(dim=(0, 1), keepdim=True)
    assert torch.allclose(center, want, atol=1e-6)
    cls_center = torch.zeros(1, 4)
    update_center(cls_center, patches[:, 0], 0.5)
    assert torch.allclose(cls_center, 0.5 * patches[:, 0].mean(0, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="teacher_logits must be"):
        update_center(cls_center, torch.zeros(3, 5), 0.9)
    with pytest.raises(ValueError, match="momentum must be in"):
        update_center(cls_center, patches, 1.5)


def test_ema_centers_unrolls_and_tracks_the_mean_as_derived():
    lam = 0.9
    g = torch.Generator().manual_seed(2)
    means = torch.randn(12, 3, generator=g, dtype=torch.float64)
    c0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    got = ema_centers(means, lam, c0)
    for t in range(1, 13):                      # c_t = lam^t c0 + (1 - lam) sum lam^(t-k) m_k
        closed = lam**t * c0 + (1 - lam) * sum(lam**(t - k) * means[k - 1] for k in range(1, t + 1))
        assert torch.allclose(got[t - 1], closed, atol=1e-12)
    # constant means: the error shrinks by lam each step, c_k - mu = lam^k (c0 - mu)
    mu = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    steady = ema_centers(mu.expand(30, 3), lam, c0)
    assert torch.allclose(steady[-1] - mu, lam**30 * (c0 - mu), atol=1e-12)
    # independent means of variance 1: Var c -> (1 - lam) / (1 + lam) = 1/19
    noise = torch.randn(4000, 200, generator=g, dtype=torch.float64)
    variance = ema_centers(noise, lam)[200:].var().item()
    assert variance == pytest.approx((1 - lam) / (1 + lam), rel=0.05)
    # a mean drifting by a per step is trailed by a * lam / (1 - lam)
    drift = 0.01 * torch.arange(1, 301, dtype=torch.float64)
    lag = (drift - ema_centers(drift, lam))[-1].item()
    assert lag == pytest.approx(0.01 * lam / (1 - lam), rel=1e-6)


# --- the method ---------------------------------------------------------------------------------------
def _small_ibot(steps, **overrides):
    torch.manual_seed(0)
    vit = build_vit("cpu", stem="patch", patch_size=4, embed_dim=32, depth=1, num_heads=2)
    config = IBOTConfig(out_dim=64, hidden_dim=64, bottleneck_dim=32, **overrides)
    return IBOT(vit, vit.embed_dim, steps=steps, config=config)


def test_the_teacher_never_sees_a_mask_and_both_centers_move_after_the_loss():
    method = _small_ibot(3, p_unmasked=0.0, n_local_crops=2)
    seen = []
    original = method.teacher.forward
    method.teacher.forward = lambda view, mask=None, mask_token=None, **kw: (
        seen.append(mask), original(view, mask, mask_token, **kw))[1]
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    loss, metrics = method.training_step(images, None, 0)
    assert seen == [None, None]                                       # two unmasked global crops
    assert torch.isfinite(loss) and metrics["loss_mim"] > 0 and metrics["masked_fraction"] > 0.05
    assert loss.item() == pytest.approx(metrics["loss_cls"] + metrics["loss_mim"], rel=1e-5)
    assert method.patch_center.abs().sum() > 0 and method.cls_loss.center.abs().sum() > 0
    loss.backward()
    assert method.mask_token.grad is not None and method.mask_token.grad.abs().sum() > 0


def test_the_ablation_switches_weigh_the_losses_and_freeze_the_patch_center():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    for overrides, expected in ((dict(lambda_cls=0.0), lambda m: m["loss_mim"]),
                                (dict(lambda_patch=0.0), lambda m: m["loss_cls"]),
                                (dict(lambda_cls=0.5, lambda_patch=2.0),
                                 lambda m: 0.5 * m["loss_cls"] + 2.0 * m["loss_mim"])):
        loss, metrics = _small_ibot(2, p_unmasked=0.0, **overrides).training_step(images, None, 0)
        assert loss.item() == pytest.approx(expected(metrics), rel=1e-5), overrides
    frozen = _small_ibot(2, patch_centering=False)
    frozen.training_step(images, None, 0)
    assert torch.count_nonzero(frozen.patch_center) == 0 and frozen.cls_loss.center.abs().sum() > 0
    with pytest.raises(ValueError, match="lambda_cls must be >= 0"):
        IBOTConfig(lambda_cls=-1.0)


def test_patch_stats_are_the_entropies_of_the_centred_sharpened_targets():
    method = _small_ibot(2)
    method.patch_center.normal_()
    logits = torch.randn(3, 4, 64, dtype=torch.float64)
    stats = method.patch_stats(logits)
    targets = torch.softmax((logits - method.patch_center.double()) / 0.04, dim=-1)
    per_patch = -(targets * targets.clamp_min(1e-300).log()).sum(-1)
    mean_target = targets.reshape(12, 64).mean(0)
    assert stats["patch_entropy"] == pytest.approx(per_patch.mean().item(), abs=1e-5)
    assert stats["patch_batch_mean_entropy"] == pytest.approx(
        -(mean_target * mean_target.log()).sum().item(), abs=1e-5)


def test_a_short_run_trains_the_student_and_the_teacher_follows_by_ema():
    method = _small_ibot(6)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    before = [p.clone() for p in method.teacher.parameters()]
    history = train(method, images, TrainConfig(steps=6, batch_size=8, lr=1e-3, warmup_steps=1,
                                                log_every=1, progress=False))
    assert all(math.isfinite(v) for v in history["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))
    assert method.student.cls_head is method.student.patch_head       # shared head by default
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_separate_heads_train_apart_and_each_reads_only_its_own_tokens():
    """``shared_head=False``: two heads on each side, the CLS loss reaches only the CLS head and the
    patch loss only the patch head; the teacher's two heads are EMA copies of the student's."""
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    method = _small_ibot(2, shared_head=False, p_unmasked=0.0)
    student = method.student
    assert student.cls_head is not student.patch_head
    assert method.teacher.cls_head is not method.teacher.patch_head
    for term, alive, idle in (("loss_cls", student.cls_head, student.patch_head),
                              ("loss_mim", student.patch_head, student.cls_head)):
        method.zero_grad()
        weights = dict(lambda_cls=float(term == "loss_cls"), lambda_patch=float(term == "loss_mim"))
        method.config = IBOTConfig(**{**vars(method.config), **weights})
        loss, metrics = method.training_step(images, None, 0)
        assert loss.item() == pytest.approx(metrics[term], rel=1e-5)
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in alive.mlp.parameters()), term
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in idle.parameters()), term
    student_patch = [p.clone() for p in student.patch_head.parameters()]
    teacher_patch = [p.clone() for p in method.teacher.patch_head.parameters()]
    with torch.no_grad():
        for p in student.patch_head.parameters():
            p.add_(1.0)
    method.after_step(0)
    m = float(method.momentum_schedule[0])
    for t, t0, s0 in zip(method.teacher.patch_head.parameters(), teacher_patch, student_patch):
        assert torch.allclose(t, m * t0 + (1 - m) * (s0 + 1.0), atol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_the_first_steps_leave_the_prototypes_of_both_heads_alone(shared):
    """``freeze_last_layer_steps`` (iBOT's ``--freeze_last_layer``, one epoch there): during those
    steps the prototypes of the CLS and patch heads get no gradient, while the rest of each head
    and the ViT do; the step after, they train."""
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    method = _small_ibot(3, freeze_last_layer_steps=1, shared_head=shared, p_unmasked=0.0)
    heads = {method.student.cls_head, method.student.patch_head}
    assert len(heads) == (1 if shared else 2)
    for step, frozen in ((0, True), (1, False)):
        method.zero_grad()
        loss, _ = method.training_step(images, None, step)
        loss.backward()
        for head in heads:
            prototypes = head.last_layer.parametrizations.weight.original1
            assert (prototypes.grad is None) == frozen, (step, head is method.student.cls_head)
            assert head.mlp[0].weight.grad.abs().sum() > 0
        assert method.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="freeze_last_layer_steps"):
        IBOTConfig(freeze_last_layer_steps=-1)


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_norm_last_layer_false_trains_the_prototypes_gains_and_the_teacher_follows(norm_last_layer):
    """iBOT's ViT-S run sets ``--norm_last_layer false``: each prototype's gain g trains, so a
    logit is g_k times a cosine instead of the cosine; with the default the gains stay at 1."""
    method = _small_ibot(4, norm_last_layer=norm_last_layer, shared_head=False, p_unmasked=0.0)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1.0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    loss, _ = method.training_step(images, None, 0)
    loss.backward()
    optimizer.step()
    method.after_step(0)
    for side in (method.student, method.teacher):
        for head in (side.cls_head, side.patch_head):
            gain = head.last_layer.parametrizations.weight.original0
            moved = (gain - 1.0).abs().max().item()
            if norm_last_layer:
                assert not gain.requires_grad and moved == 0.0
            else:
                assert moved > 0.0, (side is method.student, head is side.cls_head)
    if not norm_last_layer:
        student = method.student.cls_head.last_layer.parametrizations.weight.original0
        teacher = method.teacher.cls_head.last_layer.parametrizations.weight.original0
        momentum = float(method.momentum_schedule[0])                  # the EMA of the gains too
        torch.testing.assert_close(teacher - 1.0, (1 - momentum) * (student - 1.0))
    with pytest.raises(TypeError, match="norm_last_layer must be a bool"):
        IBOTConfig(norm_last_layer=0)
    with pytest.raises(TypeError, match="shared_head must be a bool"):
        IBOTConfig(shared_head="yes")


def _record_masks(method: IBOT) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Wrap ``method`` so that every step's masks are kept twice: as drawn (``method.masks``) and as
    the student received them with each global crop (its ``forward``; the local crops get none)."""
    drawn, received = [], []
    draw, forward = method.masks, method.student.forward

    def drawing(view):
        drawn.append(draw(view))
        return drawn[-1]

    def receiving(view, mask=None, *args, **kwargs):
        if mask is not None:
            received.append(mask.clone())
        return forward(view, mask, *args, **kwargs)
    method.masks, method.student.forward = drawing, receiving
    return drawn, received


def test_masked_prediction_starts_at_pred_start_step_with_the_masks_the_recipe_draws():
    """``pred_start_step`` (iBOT's ``--pred_start_epoch``): before it no crop is masked and the
    patch loss is exactly zero; from it on the masks are those a run starting at step 0 draws at
    the same step, because every step draws them."""
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    late, recipe = _small_ibot(3, pred_start_step=2, p_unmasked=0.0), _small_ibot(3, p_unmasked=0.0)
    records = {}
    for name, method in (("late", late), ("recipe", recipe)):
        records[name] = _record_masks(method)
        for step in range(3):
            torch.manual_seed(step)                          # the same crops in both runs
            _, metrics = method.training_step(images, None, step)
            if name == "late" and step < 2:
                assert metrics["masked_fraction"] == 0.0 and metrics["loss_mim"] == 0.0
            else:
                assert metrics["masked_fraction"] > 0.0 and metrics["loss_mim"] > 0.0
    (late_drawn, late_received), (recipe_drawn, recipe_received) = records["late"], records["recipe"]
    assert len(late_drawn) == len(recipe_drawn) == len(late_received) == len(recipe_received) == 6  # 3 steps x 2 crops
    assert all(not mask.any() for mask in late_received[:4])           # steps 0 and 1
    assert all(torch.equal(a, b) for a, b in zip(late_drawn, recipe_drawn))
    assert all(torch.equal(a, b) for a, b in zip(late_received[4:], recipe_received[4:]))
    with pytest.raises(ValueError, match="pred_start_step"):
        IBOTConfig(pred_start_step=-1)


def test_config_errors_name_the_setting():
    with pytest.raises(ValueError, match="mask_ratio_range"):
        IBOTConfig(mask_ratio_range=(0.0, 0.5))
    with pytest.raises(ValueError, match="teacher_patch_temp must be positive"):
        IBOTConfig(teacher_patch_temp=0.0)
    with pytest.raises(ValueError, match="steps"):
        _small_ibot(0)

"""Tests of course_lib.dino: the loss against a float64 loop written with the math module, the
centering and sharpening on hand-worked 2-class numbers, the head's weight norm, the schedules,
and a tiny training run of the DINO method on the cpu ViT."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.backbones import build_vit
from course_lib.data import make_shapes
from course_lib.diagnostics import entropy
from course_lib.dino import DINO, DINOConfig, DINOHead, DINOLoss, teacher_distribution
from course_lib.schedules import teacher_temperature_schedule
from course_lib.train import TrainConfig, param_groups, train


# --- an independent oracle: python floats, one (teacher crop, student crop, image) at a time -------
def _log_softmax(row, tau):
    scaled = [x / tau for x in row]
    top = max(scaled)
    log_z = top + math.log(sum(math.exp(v - top) for v in scaled))
    return [v - log_z for v in scaled]


def oracle(student, teacher, center, n_global, tau_s, tau_t, include_same_view=False):
    """DINO's loss, teacher entropy and KL(teacher || student) by explicit loops in float64."""
    s, t, c = student.double().tolist(), teacher.double().tolist(), center.double().reshape(-1).tolist()
    batch = len(t) // n_global
    n_crops = len(s) // batch
    teacher_log_p = [_log_softmax([x - ck for x, ck in zip(row, c)], tau_t) for row in t]
    entropy = -sum(math.exp(lp) * lp for row in teacher_log_p for lp in row) / len(t)
    loss = kl = 0.0
    n_pairs = 0
    for i in range(n_global):
        for j in range(n_crops):
            if i == j and not include_same_view:
                continue
            ce_pair = kl_pair = 0.0
            for b in range(batch):
                log_p_t = teacher_log_p[i * batch + b]
                log_p_s = _log_softmax(s[j * batch + b], tau_s)
                ce_pair += -sum(math.exp(lt) * ls for lt, ls in zip(log_p_t, log_p_s))
                kl_pair += sum(math.exp(lt) * (lt - ls) for lt, ls in zip(log_p_t, log_p_s))
            loss += ce_pair / batch
            kl += kl_pair / batch
            n_pairs += 1
    return {"loss": loss / n_pairs, "kl": kl / n_pairs, "teacher_entropy": entropy}


def random_logits(n_crops, n_global, batch, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n_crops * batch, k, generator=g)
    teacher = torch.randn(n_global * batch, k, generator=g)
    center = 0.5 * torch.randn(1, k, generator=g)
    return student, teacher, center


# --- head ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("use_bn", [False, True])
def test_head_has_n_layers_linear_layers_ending_in_the_bottleneck(n_layers, use_bn):
    head = DINOHead(12, 10, hidden_dim=16, bottleneck_dim=6, n_layers=n_layers, use_bn=use_bn)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert len(linears) == n_layers
    assert linears[0].in_features == 12 and linears[-1].out_features == 6
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == n_layers - 1
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.mlp) == (n_layers - 1 if use_bn else 0)
    assert head.last_layer.bias is None
    assert head(torch.randn(4, 12)).shape == (4, 10)


def test_head_gain_lives_at_original0_filled_with_one_and_frozen():
    head = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4)
    gain = head.last_layer.parametrizations.weight.original0
    direction = head.last_layer.parametrizations.weight.original1
    assert gain.shape == (10, 1) and torch.equal(gain, torch.ones(10, 1))
    assert not gain.requires_grad, "norm_last_layer=True must freeze the gain g"
    assert direction.shape == (10, 4) and direction.requires_grad
    assert not hasattr(head.last_layer, "weight_g"), "use torch.nn.utils.parametrizations.weight_norm"
    head(torch.randn(3, 8)).sum().backward()
    assert gain.grad is None and direction.grad is not None
    free = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_bottleneck_is_unit_norm_and_logits_are_gain_times_cosines():
    torch.manual_seed(0)
    head = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    x = 5 * torch.randn(6, 8)
    z = head.bottleneck(x)                                                    # (6, 4)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    direction = head.last_layer.parametrizations.weight.original1.detach()   # v (10, 4)
    prototypes = direction / direction.norm(dim=1, keepdim=True)
    logits = head(x)
    torch.testing.assert_close(logits, z @ prototypes.T)
    assert logits.abs().max() <= 1 + 1e-6, "with g = 1 every logit is a cosine similarity"
    with torch.no_grad():
        head.last_layer.parametrizations.weight.original0.fill_(2.0)
    torch.testing.assert_close(head(x), 2 * z @ prototypes.T)


def test_head_init_truncated_normal_std_002_and_zero_bias():
    torch.manual_seed(0)
    head = DINOHead(512, 16, hidden_dim=512, bottleneck_dim=256)
    for layer in (m for m in head.mlp if isinstance(m, nn.Linear)):
        assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))


def test_frozen_last_layer_gets_no_gradient_but_passes_one_through():
    torch.manual_seed(0)
    head, x = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4), torch.randn(5, 8)
    target = torch.randn(5, 10)
    ((head(x) - target) ** 2).sum().backward()
    grads = [p.grad.clone() for p in head.mlp.parameters()]
    head.zero_grad(set_to_none=True)
    out = head(x, freeze_last_layer=True)
    torch.testing.assert_close(out, head(x))
    ((out - target) ** 2).sum().backward()
    assert head.last_layer.parametrizations.weight.original1.grad is None
    for before, p in zip(grads, head.mlp.parameters()):
        torch.testing.assert_close(p.grad, before)


def test_freeze_last_layer_leaves_the_prototypes_without_gradient():
    head = DINOHead(8, 10, hidden_dim=16, bottleneck_dim=4)
    model = nn.Sequential(nn.Linear(3, 8), head)
    direction = head.last_layer.parametrizations.weight.original1
    x = torch.randn(4, 3)
    head(model[0](x), freeze_last_layer=True).sum().backward()
    assert direction.grad is None                                    # the prototypes: no gradient
    assert model[0].weight.grad is not None and head.mlp[0].weight.grad is not None
    frozen = [p.grad.clone() for p in (model[0].weight, head.mlp[0].weight)]
    model.zero_grad()
    head(model[0](x)).sum().backward()                               # the same values flow back
    assert direction.grad is not None
    torch.testing.assert_close(model[0].weight.grad, frozen[0])
    torch.testing.assert_close(head.mlp[0].weight.grad, frozen[1])


# --- loss ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_global,n_local", [(2, 0), (2, 3), (1, 2)])
def test_loss_and_diagnostics_match_the_float64_loop(n_global, n_local):
    student, teacher, center = random_logits(n_global + n_local, n_global, batch=3, k=7)
    loss_fn = DINOLoss(7, n_global_crops=n_global, student_temp=0.1)
    loss_fn.center.copy_(center)
    loss = loss_fn(student, teacher, teacher_temp=0.04)
    expected = oracle(student, teacher, center, n_global, tau_s=0.1, tau_t=0.04)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-5)
    assert loss_fn.last_stats["teacher_entropy"] == pytest.approx(expected["teacher_entropy"],
                                                                  rel=1e-4, abs=1e-6)
    assert loss_fn.last_stats["kl"] == pytest.approx(expected["kl"], rel=1e-4, abs=1e-6)


def test_same_view_pairs_are_skipped_hand_worked():
    # K = 2, no sharpening (tau_t = tau_s = 0.1), center 0. Global 1 and global 2 predict
    # (3/4, 1/4) and (1/4, 3/4), and the student sees each global crop exactly as the teacher.
    a = 0.1 * math.log(3)
    teacher = torch.tensor([[a, 0.0], [0.0, a]])
    student = teacher.clone()
    loss = DINOLoss(2, use_sharpening=False)(student, teacher, teacher_temp=0.04).item()
    cross = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))   # H(P_t(g1), P_s(g2)) = ln 4 - ln(3)/4
    same = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))    # H(P_t(g1), P_s(g1)) = ln 4 - 3 ln(3)/4
    assert loss == pytest.approx(cross, rel=1e-6)
    assert loss == pytest.approx(math.log(4) - math.log(3) / 4, rel=1e-6)
    included = (2 * cross + 2 * same) / 4
    assert abs(loss - included) > 0.2, "pairs (i, i) of the same view must be skipped"
    student, teacher, center = random_logits(4, 2, batch=3, k=5, seed=1)
    with_same = oracle(student, teacher, torch.zeros(1, 5), 2, 0.1, 0.04, include_same_view=True)
    assert DINOLoss(5)(student, teacher, 0.04).item() != pytest.approx(with_same["loss"], rel=1e-3)


def test_centering_and_sharpening_hand_worked_two_classes():
    logits = torch.tensor([[0.2, 0.1]])
    both = DINOLoss(2, student_temp=0.1)
    both.center.copy_(torch.tensor([[0.1, 0.0]]))
    # centred: (0.1, 0.1) -> uniform, whatever the temperature
    torch.testing.assert_close(both.teacher_probs(logits, 0.05), torch.tensor([[0.5, 0.5]]))
    # no centering, tau_t = 0.05: softmax(4, 2), p_0 = 1 / (1 + e^-2) = 0.8808
    sharpening_only = DINOLoss(2, student_temp=0.1, use_centering=False)
    sharpening_only.center.copy_(torch.tensor([[0.1, 0.0]]))
    p0 = 1 / (1 + math.exp(-2))
    torch.testing.assert_close(sharpening_only.teacher_probs(logits, 0.05),
                               torch.tensor([[p0, 1 - p0]]))
    # no sharpening: tau_t is tau_s = 0.1 whatever teacher_temp says; centred (0.2, 0.1) -> (2, 1)
    centering_only = DINOLoss(2, student_temp=0.1, use_sharpening=False)
    centering_only.center.copy_(torch.tensor([[0.1, 0.0]]))
    p0 = 1 / (1 + math.exp(-1))
    for teacher_temp in (0.05, 0.5):
        torch.testing.assert_close(centering_only.teacher_probs(torch.tensor([[0.3, 0.1]]), teacher_temp),
                                   torch.tensor([[p0, 1 - p0]]))
    # neither: (0.2, 0.1) / 0.1 -> (2, 1)
    neither = DINOLoss(2, student_temp=0.1, use_centering=False, use_sharpening=False)
    torch.testing.assert_close(neither.teacher_probs(logits, 0.04), torch.tensor([[p0, 1 - p0]]))
    assert torch.equal(both.center, torch.tensor([[0.1, 0.0]])), "teacher_probs must not update c"


def test_center_update_uses_raw_logits_of_both_global_crops_after_the_loss():
    student, teacher, old_center = random_logits(4, 2, batch=3, k=5)
    teacher[3:] += 2.0                            # global crop 2 has a different mean
    loss_fn = DINOLoss(5, center_momentum=0.9)
    loss_fn.center.copy_(old_center)
    loss = loss_fn(student, teacher, 0.04).item()
    new_center = loss_fn.center.clone()
    expected = 0.9 * old_center + 0.1 * teacher.mean(dim=0, keepdim=True)
    torch.testing.assert_close(new_center, expected)
    for wrong in (0.9 * old_center + 0.1 * teacher[:3].mean(0, keepdim=True),          # crop 1 only
                  0.9 * old_center + 0.1 * (teacher - old_center).mean(0, keepdim=True)):  # centred
        assert not torch.allclose(new_center, wrong, atol=1e-3)
    assert loss == pytest.approx(oracle(student, teacher, old_center, 2, 0.1, 0.04)["loss"], rel=1e-5)
    assert loss != pytest.approx(oracle(student, teacher, new_center, 2, 0.1, 0.04)["loss"], rel=1e-3), \
        "the loss must use the center from before this batch"


def test_no_centering_ignores_and_keeps_the_center():
    student, teacher, center = random_logits(4, 2, batch=3, k=5)
    loss_fn = DINOLoss(5, use_centering=False)
    loss_fn.center.copy_(center)
    loss = loss_fn(student, teacher, 0.04).item()
    assert torch.equal(loss_fn.center, center)
    assert loss == pytest.approx(oracle(student, teacher, torch.zeros(1, 5), 2, 0.1, 0.04)["loss"], rel=1e-5)


def test_no_sharpening_uses_the_student_temperature():
    student, teacher, center = random_logits(4, 2, batch=3, k=5)
    losses = []
    for teacher_temp in (0.04, 0.5):
        loss_fn = DINOLoss(5, student_temp=0.2, use_sharpening=False)
        loss_fn.center.copy_(center)
        losses.append(loss_fn(student, teacher, teacher_temp).item())
    expected = oracle(student, teacher, center, 2, tau_s=0.2, tau_t=0.2)["loss"]
    assert losses[0] == pytest.approx(expected, rel=1e-5) and losses[1] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(oracle(student, teacher, center, 2, 0.2, 0.04)["loss"], rel=1e-3)


def test_gradient_reaches_the_student_only_and_matches_closed_form():
    student, teacher, center = random_logits(4, 2, batch=3, k=5)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss_fn = DINOLoss(5)
    loss_fn.center.copy_(center)
    loss_fn(student, teacher, 0.04).backward()
    assert teacher.grad is None, "stop-gradient: no gradient may reach the teacher logits"
    # dL/ds_j = sum_{i != j} (softmax(s_j / tau_s) - P_t(i)) / (tau_s * B * n_pairs)
    p_t = F.softmax((teacher.detach().double() - center.double()) / 0.04, dim=1).chunk(2)
    p_s = F.softmax(student.detach().double() / 0.1, dim=1).chunk(4)
    n_pairs = 2 * 3
    expected = torch.cat([sum(p_s[j] - p_t[i] for i in range(2) if i != j) / (0.1 * 3 * n_pairs)
                          for j in range(4)])
    torch.testing.assert_close(student.grad.double(), expected, rtol=1e-4, atol=1e-7)


def test_uniform_outputs_closed_form():
    loss_fn = DINOLoss(6)
    loss = loss_fn(torch.zeros(4 * 2, 6), torch.zeros(2 * 2, 6), 0.04)
    assert loss.item() == pytest.approx(math.log(6), rel=1e-6)
    assert loss_fn.last_stats["teacher_entropy"] == pytest.approx(math.log(6), rel=1e-6)
    assert loss_fn.last_stats["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_center_invariant_to_batch_order(seed):
    student, teacher, center = random_logits(5, 2, batch=4, k=6, seed=seed)
    order = torch.randperm(4, generator=torch.Generator().manual_seed(seed))
    shuffle = lambda x: x.reshape(-1, 4, 6)[:, order].reshape(-1, 6)   # same images in every crop
    results = []
    for s, t in ((student, teacher), (shuffle(student), shuffle(teacher))):
        loss_fn = DINOLoss(6)
        loss_fn.center.copy_(center)
        results.append((loss_fn(s, t, 0.04).item(), loss_fn.center.clone()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1])


def test_bfloat16_logits_give_a_float32_loss_close_to_float32():
    student, teacher, _ = random_logits(4, 2, batch=3, k=5)
    exact = DINOLoss(5)(student, teacher, 0.07)
    low = DINOLoss(5)(student.bfloat16(), teacher.bfloat16(), 0.07)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(exact.item(), rel=0.05)


@pytest.mark.parametrize("student_shape,teacher_shape,teacher_temp,match", [
    ((8, 6), (4, 5), 0.04, "student_logits"),          # K != out_dim
    ((8, 5), (4, 6), 0.04, "teacher_logits"),
    ((8, 5), (5, 5), 0.04, "n_global_crops"),          # teacher rows not G * B
    ((7, 5), (4, 5), 0.04, "student_logits"),          # not V * B rows
    ((2, 5), (4, 5), 0.04, "student_logits"),          # fewer crops than global crops
    ((40,), (4, 5), 0.04, "student_logits"),
    ((8, 5), (4, 5), 0.0, "teacher_temp"),
    ((8, 5), (4, 5), "cold", "teacher_temp"),
])
def test_bad_shapes_raise_naming_the_argument(student_shape, teacher_shape, teacher_temp, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(5)(torch.randn(student_shape), torch.randn(teacher_shape), teacher_temp)


@pytest.mark.parametrize("kwargs,match", [
    (dict(out_dim=0), "out_dim"), (dict(out_dim=5, n_global_crops=0), "n_global_crops"),
    (dict(out_dim=5, student_temp=0.0), "student_temp"),
    (dict(out_dim=5, center_momentum=1.5), "center_momentum")])
def test_bad_loss_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DINOLoss(**kwargs)


# --- schedules -------------------------------------------------------------------------------------
def test_teacher_temperature_schedule_is_per_epoch_linspace_then_constant():
    s = teacher_temperature_schedule(0.04, 0.07, 3, 5, steps_per_epoch=2)
    hand = [0.04, 0.04, 0.055, 0.055, 0.07, 0.07, 0.07, 0.07, 0.07, 0.07]
    assert s.dim() == 1 and s.is_floating_point()
    np.testing.assert_allclose(s.numpy(), hand, rtol=1e-12)
    dino = np.concatenate((np.linspace(0.04, 0.07, 30), np.ones(100 - 30) * 0.07))  # main_dino.py
    np.testing.assert_allclose(teacher_temperature_schedule(0.04, 0.07, 30, 100, 7).numpy(),
                               np.repeat(dino, 7), rtol=1e-12)
    assert (teacher_temperature_schedule(0.04, 0.07, 0, 4).numpy() == 0.07).all()


@pytest.mark.parametrize("args,match", [
    ((0.04, 0.07, 3, 0), "epochs"), ((0.04, 0.07, 6, 5), "warmup_epochs"),
    ((0.04, 0.07, 1, 5, 0), "steps_per_epoch"), ((-0.04, 0.07, 1, 5), "warmup_temp"),
    ((0.04, 0.0, 1, 5), "final_temp")])
def test_teacher_temperature_schedule_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        teacher_temperature_schedule(*args)


# --- the method --------------------------------------------------------------------------------------
def tiny_dino(steps=3, **overrides):
    torch.manual_seed(0)
    config = DINOConfig(out_dim=32, hidden_dim=32, bottleneck_dim=16, n_local_crops=2, **overrides)
    backbone = build_vit("cpu")
    return DINO(backbone, backbone.embed_dim, steps=steps, config=config)


@pytest.fixture(scope="module")
def images():
    return make_shapes(8, image_size=32, seed=0)[0]


def quick_train(method, images, steps):
    return train(method, images, TrainConfig(steps=steps, batch_size=4, warmup_steps=0, lr=1e-3,
                                             progress=False, log_every=1))


def test_momentum_schedule_is_cosine_from_0996_to_1():
    method = tiny_dino(steps=50)
    m = method.momentum_schedule
    assert m[0].item() == pytest.approx(0.996) and method.momentum(0) == pytest.approx(0.996)
    assert m[-1].item() == pytest.approx(1.0, abs=1e-5)
    assert m[25].item() == pytest.approx(0.998), "the midpoint of a half cosine is the average"
    assert (m[1:] >= m[:-1]).all()
    assert tiny_dino(steps=50, use_ema=False).momentum(0) == 0.0


def test_student_sees_every_crop_and_teacher_only_the_globals(images):
    method = tiny_dino()
    seen = {"student": [], "teacher": []}
    for name in seen:
        getattr(method, name).backbone.register_forward_hook(
            lambda module, inputs, output, name=name: seen[name].append(tuple(inputs[0].shape)))
    loss, metrics = method.training_step(images[:4], None, 0)
    assert seen["student"] == [(8, 3, 32, 32), (8, 3, 16, 16)]   # 2 globals, then 2 locals
    assert seen["teacher"] == [(8, 3, 32, 32)]
    assert torch.isfinite(loss) and {"teacher_entropy", "kl", "teacher_temp"} <= metrics.keys()


def test_one_step_by_hand_teacher_moves_by_ema_not_by_gradient(images):
    method = tiny_dino()
    method.train()
    assert all(not p.requires_grad for p in method.teacher.parameters())
    trainable = {id(p) for group in param_groups(method, 0.05) for p in group["params"]}
    assert not trainable & {id(p) for p in method.teacher.parameters()}
    optimizer = torch.optim.AdamW(param_groups(method, 0.05), lr=1e-3)
    loss, _ = method.training_step(images[:4], None, 0)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    optimizer.step()
    before = {n: p.clone() for n, p in method.teacher.named_parameters()}
    student = dict(method.student.named_parameters())
    method.after_step(0)
    moved = 0
    for name, p in method.teacher.named_parameters():
        torch.testing.assert_close(p, 0.996 * before[name] + 0.004 * student[name].detach())
        moved += not torch.equal(p, before[name])
    assert moved > 0


def test_tiny_training_run_learns_with_a_lagging_teacher(images):
    method = tiny_dino(steps=3, warmup_teacher_temp=0.04, teacher_temp=0.07,
                       warmup_teacher_temp_steps=3)
    start = {n: p.clone() for n, p in method.teacher.named_parameters()}
    history = quick_train(method, images, steps=3)
    assert all(math.isfinite(v) for v in history["loss"])
    assert history["teacher_temp"] == pytest.approx([0.04, 0.055, 0.07])
    assert all(0 <= h <= math.log(32) + 1e-6 for h in history["teacher_entropy"])
    teacher, student = dict(method.teacher.named_parameters()), dict(method.student.named_parameters())
    assert any(not torch.equal(teacher[n], start[n]) for n in teacher), "the teacher never moved"
    assert any(not torch.equal(teacher[n], student[n]) for n in teacher), "EMA teacher should lag"
    assert method.loss.center.abs().sum() > 0


def test_no_ema_teacher_is_an_exact_copy_of_the_student(images):
    method = tiny_dino(steps=2, use_ema=False)
    quick_train(method, images, steps=2)
    student = dict(method.student.named_parameters())
    for name, p in method.teacher.named_parameters():
        assert torch.equal(p, student[name]), name


@pytest.mark.parametrize("freeze_steps,frozen", [(2, True), (1, False)])
def test_last_layer_freeze_in_the_training_loop(images, freeze_steps, frozen):
    method = tiny_dino(steps=2, freeze_last_layer_steps=freeze_steps)
    direction = method.student.head.last_layer.parametrizations.weight.original1
    first = method.student.head.mlp[0].weight
    direction_0, first_0 = direction.detach().clone(), first.detach().clone()
    quick_train(method, images, steps=2)
    assert torch.equal(direction, direction_0) == frozen
    assert not torch.equal(first, first_0)


def test_teacher_backbone_gets_the_student_weights():
    torch.manual_seed(0)
    student_backbone, teacher_backbone = build_vit("cpu"), build_vit("cpu")
    config = DINOConfig(out_dim=32, hidden_dim=32, bottleneck_dim=16, n_local_crops=2)
    method = DINO(student_backbone, 96, steps=2, config=config, teacher_backbone=teacher_backbone)
    assert method.teacher.backbone is teacher_backbone
    student = dict(method.student.named_parameters())
    for name, p in method.teacher.named_parameters():
        assert torch.equal(p, student[name]) and not p.requires_grad
    with pytest.raises(ValueError, match="teacher_backbone"):
        DINO(build_vit("cpu"), 96, steps=2, config=config, teacher_backbone=build_vit("cpu", depth=2))


def test_bad_method_arguments(images):
    with pytest.raises(ValueError, match="out_dim"):
        DINOConfig(out_dim=0)
    with pytest.raises(ValueError, match="momentum_teacher"):
        DINOConfig(momentum_teacher=1.5)
    with pytest.raises(ValueError, match="steps"):
        tiny_dino(steps=0)
    with pytest.raises(ValueError, match="warmup_teacher_temp_steps"):
        tiny_dino(steps=2, warmup_teacher_temp_steps=3)
    with pytest.raises(ValueError, match="step"):
        tiny_dino(steps=2).training_step(images[:4], None, 2)


def test_teacher_distribution_sharpens_and_centers():
    logits = torch.tensor([2.0, 1.0, 0.0])
    soft = teacher_distribution(logits, 0.0, 1.0)
    assert soft.tolist() == pytest.approx((torch.exp(logits) / torch.exp(logits).sum()).tolist())
    sharp = teacher_distribution(logits, 0.0, 0.04)
    assert sharp[0] > 0.999 and entropy(sharp) < entropy(soft)
    flat = teacher_distribution(logits, logits, 0.04)   # the centre equals the logits
    assert flat.tolist() == pytest.approx([1 / 3] * 3)
    assert entropy(flat).item() == pytest.approx(math.log(3))

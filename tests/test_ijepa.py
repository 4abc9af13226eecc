"""course_lib.ijepa against independent computations: the block masks' geometry (and the official
collator's quirks behind its flag), smooth L1 written out, the predictor's inputs, the EMA on the
encoder only, and the ablation's target switch."""
from __future__ import annotations

import pytest
import torch

from course_lib.backbones import build_vit, embed_tokens
from course_lib.data import normalize
from course_lib.ijepa import IJEPA, IJEPAConfig, Predictor, jepa_loss, multiblock_batch, multiblock_masks


def _rows_cols(idx: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    return idx // grid, idx % grid


def test_target_blocks_are_rectangles_in_row_major_order_and_the_context_avoids_them():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        context, targets = multiblock_batch(16, 14, generator=gen)
        n_targets, batch, kt = targets.shape
        assert (n_targets, batch) == (4, 16) and context.shape[0] == 16
        for b in range(batch):
            for block in targets[:, b]:
                rows, cols = _rows_cols(block, 14)
                h, w = len(rows.unique()), len(cols.unique())
                assert h * w == kt and torch.equal(block, block.sort().values)       # a full block
                assert rows.max() - rows.min() + 1 == h and cols.max() - cols.min() + 1 == w
            assert len(context[b].unique()) == context.shape[1]
            # 13x13 or 14x14 context minus four blocks of about 30 keeps far more than min_keep:
            # no relaxation happens, so the context and the targets never overlap
            assert not set(context[b].tolist()) & set(targets[:, b].flatten().tolist())


def test_block_sizes_follow_scale_and_aspect():
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        _, targets = multiblock_batch(1, 16, n_targets=1, target_scale=(0.15, 0.2),
                                      target_aspect=(0.75, 1.5), generator=gen)
        rows, cols = _rows_cols(targets[0, 0], 16)
        h, w = len(rows.unique()), len(cols.unique())
        assert 0.15 * 256 - 8 <= h * w <= 0.2 * 256 + 8 and 0.5 <= h / w <= 2.0


def test_the_official_collator_pins_the_context_to_the_top_left_and_the_fixed_one_does_not():
    gen = torch.Generator().manual_seed(2)
    seen = {True: torch.zeros(14, 14), False: torch.zeros(14, 14)}
    for official in (True, False):
        for _ in range(20):
            context, _ = multiblock_batch(8, 14, official=official, generator=gen)
            for row in context:
                seen[official].view(-1)[row] += 1
    assert seen[True][-1].sum() == 0 and seen[True][:, -1].sum() == 0     # last row and column
    assert seen[False][-1].sum() > 0 and seen[False][:, -1].sum() > 0


def test_the_official_cut_keeps_each_images_first_context_indices():
    """Cut to the batch's smallest context, the official collator keeps the first (top) indices:
    the largest index it keeps is below the fixed sampler's, which keeps a random subset."""
    gen = torch.Generator().manual_seed(3)
    top_official, top_fixed = [], []
    for _ in range(20):
        top_official.append(multiblock_batch(16, 14, official=True, generator=gen)[0].float().mean())
        top_fixed.append(multiblock_batch(16, 14, official=False, generator=gen)[0].float().mean())
    assert sum(top_official) / 20 < sum(top_fixed) / 20 - 20        # rows higher up on average


def test_small_grids_raise_instead_of_looping_and_bad_arguments_are_named():
    gen = torch.Generator().manual_seed(4)
    with pytest.raises(ValueError, match="loops forever"):
        multiblock_batch(4, 8, official=True, min_keep=12, generator=gen)   # blocks of 9-12 patches
    context, targets = multiblock_batch(4, 8, generator=gen)            # the fixed sampler works
    assert context.shape[1] > 10 and targets.shape[:2] == (4, 4)
    with pytest.raises(ValueError, match="no context of more than min_keep=40"):
        multiblock_batch(2, 6, min_keep=40, generator=gen)
    with pytest.raises(ValueError, match="target_scale must be a pair"):
        multiblock_batch(2, 8, target_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="grid"):
        multiblock_batch(2, 0)
    one_context, blocks = multiblock_masks(8, generator=gen)
    assert one_context.dim() == 1 and len(blocks) == 4 and all(b.dim() == 1 for b in blocks)


def test_jepa_loss_is_smooth_l1_with_beta_one_written_out():
    gen = torch.Generator().manual_seed(5)
    pred, target = torch.randn(2, 3, 4, generator=gen) * 2, torch.randn(2, 3, 4, generator=gen)
    total = 0.0
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        d = abs(p - t)
        total += 0.5 * d * d if d < 1 else d - 0.5
    assert jepa_loss(pred, target).item() == pytest.approx(total / 24, rel=1e-6)
    squared = sum((p - t) ** 2 for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()))
    assert jepa_loss(pred, target, "l2").item() == pytest.approx(squared / 24, rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        jepa_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="kind must be"):
        jepa_loss(pred, target, "l1")


def test_the_predictor_gives_each_mask_token_its_target_position():
    torch.manual_seed(0)
    predictor = Predictor(dim=8, grid=4, pred_dim=16, depth=1, num_heads=2).eval()
    context = torch.randn(1, 3, 8)
    context_idx = torch.tensor([[0, 1, 2]])
    near, far = predictor(context, context_idx, torch.tensor([[5, 6]])), predictor(
        context, context_idx, torch.tensor([[6, 5]]))
    assert near.shape == (1, 2, 8)
    assert torch.allclose(near, far.flip(1), atol=1e-5)      # the same positions, swapped order
    assert not torch.allclose(near, predictor(context, context_idx, torch.tensor([[14, 15]])))


def _ijepa(target="ema", steps=4, augment=None):
    torch.manual_seed(0)
    vit = build_vit("cpu", stem="patch", patch_size=4, embed_dim=32, depth=1, num_heads=2,
                    class_token=False)
    return IJEPA(vit, steps=steps, config=IJEPAConfig(target=target, pred_dim=16, pred_depth=1,
                                                       pred_heads=2), augment=augment)


def test_both_encoders_see_the_augmented_view():
    """A step with ``augment`` equals a step without it on the images ``augment`` makes: the
    same weights and masks, the flipped images given to the context and the target encoder."""
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    calls = []

    def flip(x):
        calls.append(x.shape)
        return normalize(torch.flip(x, dims=[-1]))
    augmented, _ = _ijepa(augment=flip).training_step(images, None, 0)
    by_hand, _ = _ijepa().training_step(torch.flip(images, dims=[-1]), None, 0)
    unflipped, _ = _ijepa().training_step(images, None, 0)
    assert calls == [images.shape]
    assert torch.allclose(augmented, by_hand) and not torch.allclose(augmented, unflipped)


def test_positions_are_added_before_the_context_is_gathered():
    method = _ijepa()
    x = torch.randn(2, 3, 32, 32)
    idx = torch.tensor([[3, 9, 40], [0, 63, 7]])
    tokens = embed_tokens(method.encoder, x)
    by_hand = method.encoder.patch_embed(x).flatten(1, 2) + method.encoder.pos_embed  # (2, 64, D)
    gathered = torch.gather(tokens, 1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    assert torch.allclose(gathered, torch.stack([by_hand[b, idx[b]] for b in range(2)]), atol=1e-6)


def test_ema_moves_the_target_encoder_only_and_the_momentum_is_linear():
    method = _ijepa(steps=5)
    assert torch.allclose(method.momentum_schedule,     # the official generator's first 5 of 6
                          torch.tensor([0.996, 0.9968, 0.9976, 0.9984, 0.9992], dtype=torch.float64))
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    loss, metrics = method.training_step(images, None, 0)
    loss.backward()
    assert all(p.grad is None for p in method.target_encoder.parameters())
    assert metrics["target_std"] > 0 and metrics["target_rank"] > 1
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)
    before = {n: p.clone() for n, p in method.target_encoder.named_parameters()}
    online = dict(method.encoder.named_parameters())
    predictor_before = [p.clone() for p in method.predictor.parameters()]
    method.after_step(0)
    for name, p in method.target_encoder.named_parameters():
        assert torch.allclose(p, 0.996 * before[name] + 0.004 * online[name], atol=1e-6), name
    assert all(torch.equal(a, b) for a, b in zip(predictor_before, method.predictor.parameters()))


def test_the_online_target_sends_gradient_through_the_targets_and_the_detached_one_does_not():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    grads = {}
    for target in ("online", "online_detached"):
        method = _ijepa(target)
        loss, _ = method.training_step(images, None, 0)
        loss.backward()
        grads[target] = method.encoder.blocks[0].mlp.fc1.weight.grad.clone()
        assert method.backbone is method.encoder
    assert not torch.allclose(grads["online"], grads["online_detached"])
    ema = _ijepa("ema")
    assert ema.backbone is ema.target_encoder


def test_configuration_errors_name_the_setting():
    with pytest.raises(ValueError, match="target must be one of"):
        IJEPAConfig(target="none")
    with pytest.raises(ValueError, match="loss must be"):
        IJEPAConfig(loss="l1")
    with pytest.raises(ValueError, match="class_token=False"):
        IJEPA(build_vit("cpu", stem="patch", patch_size=4), steps=2)
    with pytest.raises(ValueError, match="augment must be a callable"):
        _ijepa(augment="crop")

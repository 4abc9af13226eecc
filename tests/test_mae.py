"""Tests of course_lib.mae: patches against pixel-by-pixel loops, the sin-cos table against a
numpy transcription of the MAE code's meshgrid recipe and hand-worked values, masking counts and
the unshuffle, the loss against a float64 loop, and the model's asymmetry (the encoder sees the
visible tokens only, the decoder puts them back where they were)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.backbones import build_vit, embed_tokens, encode_tokens
from course_lib.data import make_shapes
from course_lib.mae import (MAE, MAEConfig, information, mae_loss, optimal_ratio, patchify,
                            random_masking, reconstruct, sincos_2d, unpatchify)
from course_lib.train import TrainConfig, train


def tiny_mae(**config) -> MAE:
    torch.manual_seed(0)
    encoder = build_vit("cpu", stem="patch", patch_size=8, depth=2)       # 4x4 = 16 patches
    defaults = dict(decoder_dim=32, decoder_depth=1, decoder_heads=2)
    return MAE(encoder, MAEConfig(**{**defaults, **config}))


# --- patches ----------------------------------------------------------------------------------------
def test_patchify_matches_a_pixel_loop():
    imgs = torch.randn(2, 3, 8, 12)
    p = 4
    patches = patchify(imgs, p)
    assert patches.shape == (2, 6, 48)
    for b in range(2):
        for row in range(2):
            for col in range(3):
                n = row * 3 + col                                  # row-major patches
                for i in range(p):
                    for j in range(p):
                        for c in range(3):                         # (row, col, channel) inside
                            assert patches[b, n, (i * p + j) * 3 + c] == imgs[b, c, row * p + i, col * p + j]


def test_patchify_equals_the_mae_einsum_layout():
    imgs = torch.randn(3, 3, 16, 16)
    x = imgs.reshape(3, 3, 4, 4, 4, 4)
    expected = torch.einsum("nchpwq->nhwpqc", x).reshape(3, 16, 48)
    torch.testing.assert_close(patchify(imgs, 4), expected, rtol=0, atol=0)


@given(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 4), st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_unpatchify_inverts_patchify(batch, p, side, channels):
    imgs = torch.randn(batch, channels, side * p, side * p)
    torch.testing.assert_close(unpatchify(patchify(imgs, p), p, channels), imgs, rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda: patchify(torch.randn(1, 3, 10, 10), 4), "multiples of patch_size"),
    (lambda: patchify(torch.randn(3, 8, 8), 4), "4-D"),
    (lambda: patchify(torch.randn(1, 3, 8, 8), 0), "patch_size"),
    (lambda: unpatchify(torch.randn(1, 5, 48), 4), "square grid"),
    (lambda: unpatchify(torch.randn(1, 4, 40), 4), "p\\*p\\*C"),
])
def test_patch_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- position embeddings ----------------------------------------------------------------------------
def mae_code_sincos(dim, grid_size):
    """The MAE repository's util/pos_embed.py recipe, transcribed in numpy (float64)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0)           # here w goes first
    emb_h = one_d(dim // 2, grid[0])
    emb_w = one_d(dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def test_sincos_matches_the_mae_code_and_hand_values():
    table = sincos_2d(16, 4, cls_token=True)
    assert table.shape == (17, 16)
    assert torch.equal(table[0], torch.zeros(16))                  # the CLS row
    np.testing.assert_allclose(table[1:].numpy(), mae_code_sincos(16, 4), atol=1e-6)
    # Patch n = 1 is row 0, column 1: the first half of channels encodes the column.
    # dim/2 = 8 channels per axis, frequencies w_k = 10000^(-k/4), k = 0..3.
    first = table[1 + 1]
    assert first[0].item() == pytest.approx(math.sin(1.0), abs=1e-6)        # sin(col * w_0)
    assert first[4].item() == pytest.approx(math.cos(1.0), abs=1e-6)        # cos(col * w_0)
    assert first[8].item() == pytest.approx(0.0, abs=1e-6)                  # sin(row 0)
    assert first[12].item() == pytest.approx(1.0, abs=1e-6)                 # cos(row 0)
    assert first[1].item() == pytest.approx(math.sin(10000 ** -0.25), abs=1e-6)


def test_sincos_needs_a_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d(18, 4)


# --- masking --------------------------------------------------------------------------------------
@given(st.integers(1, 4), st.integers(1, 70), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9]))
@settings(max_examples=60, deadline=None)
def test_random_masking_keeps_int_n_times_one_minus_ratio(batch, n, ratio):
    if int(n * (1 - ratio)) < 1:
        with pytest.raises(ValueError, match="keeps no token"):
            random_masking(torch.randn(batch, n, 3), ratio)
        return
    x = torch.randn(batch, n, 3)
    visible, mask, ids_restore = random_masking(x, ratio)
    n_keep = int(n * (1 - ratio))
    assert visible.shape == (batch, n_keep, 3)
    assert torch.equal(mask.sum(1), torch.full((batch,), float(n - n_keep)))
    # The visible tokens are exactly x's tokens where mask == 0, and ids_restore undoes the order.
    for b in range(batch):
        kept = x[b][mask[b] == 0]
        assert sorted(map(tuple, kept.tolist())) == sorted(map(tuple, visible[b].tolist()))
    filled = torch.cat([visible, torch.zeros(batch, n - n_keep, 3)], dim=1)
    restored = torch.gather(filled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 3))
    torch.testing.assert_close(restored, x * (1 - mask).unsqueeze(-1), rtol=0, atol=0)


def test_random_masking_hand_counts_and_determinism():
    x = torch.randn(2, 64, 4)
    assert random_masking(x, 0.75)[0].shape[1] == 16
    assert random_masking(torch.randn(1, 16, 4), 0.1)[0].shape[1] == 14    # int(14.4)
    assert random_masking(torch.randn(1, 196, 4), 0.75)[0].shape[1] == 49  # ViT-B/16 at 224 px
    a = random_masking(x, 0.5, generator=torch.Generator().manual_seed(3))
    b = random_masking(x, 0.5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("ratio", [1.0, -0.1, "0.5", True])
def test_random_masking_rejects_bad_ratios(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(torch.randn(1, 16, 4), ratio)


# --- the loss --------------------------------------------------------------------------------------
def loss_loop(pred, target, mask, norm_pix):
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if mask[b, n] == 0:
                continue
            t = target[b, n].double().tolist()
            if norm_pix:
                mean = sum(t) / len(t)
                var = sum((v - mean) ** 2 for v in t) / (len(t) - 1)            # unbiased
                t = [(v - mean) / math.sqrt(var + 1e-6) for v in t]
            p = pred[b, n].double().tolist()
            total += sum((u - v) ** 2 for u, v in zip(p, t)) / len(t)
            count += 1
    return total / count


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_matches_a_loop_over_masked_patches(norm_pix):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 10, 12, generator=g), 2 + 3 * torch.randn(3, 10, 12, generator=g)
    mask = (torch.rand(3, 10, generator=g) < 0.6).float()
    got = mae_loss(pred, target, mask, norm_pix=norm_pix).item()
    assert got == pytest.approx(loss_loop(pred, target, mask, norm_pix), rel=1e-5)


def test_mae_loss_ignores_visible_patches_and_hand_value():
    pred = torch.zeros(1, 2, 4)
    target = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 2.0]]])
    mask = torch.tensor([[0.0, 1.0]])
    # Masked patch: mean 1, unbiased var 4/3 -> targets +-1/sqrt(4/3 + 1e-6); MSE against 0.
    assert mae_loss(pred, target, mask).item() == pytest.approx(1 / (4 / 3 + 1e-6), rel=1e-6)
    assert mae_loss(pred, target, mask, norm_pix=False).item() == pytest.approx(2.0)
    changed = pred.clone()
    changed[0, 0] = 100.0                                   # a visible patch: no effect
    assert mae_loss(changed, target, mask).item() == mae_loss(pred, target, mask).item()
    with pytest.raises(ValueError, match="bool"):
        mae_loss(pred, target, mask.bool())
    with pytest.raises(ValueError, match="no masked patch"):
        mae_loss(pred, target, torch.zeros(1, 2))


# --- the model -------------------------------------------------------------------------------------
def test_encoder_sees_only_the_visible_tokens_plus_cls():
    mae = tiny_mae()
    seen = []
    mae.encoder.blocks[0].register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape))
    images = torch.randn(3, 3, 32, 32)
    for ratio, n_keep in ((0.75, 4), (0.5, 8), (0.1, 14)):
        seen.clear()
        loss, pred, mask = mae(images, ratio)
        assert seen == [torch.Size([3, 1 + n_keep, 96])]
        assert pred.shape == (3, 16, 192) and torch.isfinite(loss)
        assert (mask.sum(1) == 16 - n_keep).all()


def test_position_is_added_before_masking_and_cls_after():
    """The encoder output equals the blocks run on [CLS + pos_0, (patch + pos)[visible]]."""
    mae = tiny_mae()
    images = torch.randn(2, 3, 32, 32)
    latent, mask, ids_restore = mae.forward_encoder(images, 0.5,
                                                    generator=torch.Generator().manual_seed(1))
    enc = mae.encoder
    patches = enc.patch_embed(images).reshape(2, 16, 96) + enc.pos_embed[:, 1:]
    cls = enc.cls_token + enc.pos_embed[:, :1]
    expected = []
    for b in range(2):
        visible = patches[b][mask[b] == 0]                  # patch order: gather order differs
        order = ids_restore[b].argsort()[: visible.shape[0]]
        expected.append(torch.cat([cls[0], patches[b][order]]))
    torch.testing.assert_close(latent, encode_tokens(enc, torch.stack(expected)))
    # The encoder's table is MAE's fixed sin-cos one, and it does not train.
    torch.testing.assert_close(enc.pos_embed[0], sincos_2d(96, 4, cls_token=True))
    assert not enc.pos_embed.requires_grad


def test_decoder_unshuffles_and_adds_its_own_positions():
    """A slow decoder input, built by placing each visible token at its patch index, gives the
    same prediction as forward_decoder."""
    mae = tiny_mae().eval()
    images = torch.randn(2, 3, 32, 32)
    latent, mask, ids_restore = mae.forward_encoder(images, 0.75)
    x = mae.decoder_embed(latent)
    slow = mae.mask_token.expand(2, 16, 32).clone()
    for b in range(2):
        positions = ids_restore[b].argsort().tolist()[:4]        # visible, in the order kept
        for slot, n in enumerate(positions):
            slow[b, n] = x[b, 1 + slot]
        assert all(mask[b, n] == 0 for n in positions)
    slow = torch.cat([x[:, :1], slow], dim=1) + sincos_2d(32, 4, cls_token=True)
    expected = mae.decoder_pred(mae.decoder_norm(mae.decoder_blocks(slow)))[:, 1:]
    torch.testing.assert_close(mae.forward_decoder(latent, ids_restore), expected)


def test_conv_stem_and_registers_are_refused():
    with pytest.raises(ValueError, match="stem='patch'"):
        MAE(build_vit("cpu"), MAEConfig(decoder_dim=32, decoder_heads=2, decoder_depth=1))
    with pytest.raises(ValueError, match="register"):
        MAE(build_vit("cpu", stem="patch", num_register_tokens=2),
            MAEConfig(decoder_dim=32, decoder_heads=2, decoder_depth=1))
    with pytest.raises(ValueError, match="masking"):
        MAEConfig(masking="checkerboard")
    with pytest.raises(ValueError, match="1 - 1/s"):
        MAEConfig(masking="grid", mask_ratio=0.5)


@pytest.mark.parametrize("masking", ["random", "block", "grid"])
def test_every_masking_trains_the_encoder_and_the_decoder(masking):
    mae = tiny_mae(masking=masking)
    loss, _, mask = mae(torch.randn(4, 3, 32, 32))
    loss.backward()
    assert mae.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert mae.mask_token.grad.abs().sum() > 0
    assert (mask.sum(1) == 12).all()


def test_reconstruct_pastes_visible_patches_and_undoes_normalisation():
    mae = tiny_mae()
    images = torch.randn(2, 3, 32, 32)
    masked, recon, pasted = reconstruct(mae, images, 0.75, generator=torch.Generator().manual_seed(0))
    mae.eval()
    _, pred, mask = mae(images, 0.75, generator=torch.Generator().manual_seed(0))
    mae.train()
    visible = (1 - mask).bool()
    p_img, p_pasted, p_masked = (patchify(t, 8) for t in (images, pasted, masked))
    torch.testing.assert_close(p_pasted[visible], p_img[visible])
    assert (p_masked[~visible] == 0).all()
    # Denormalised with each true patch's own mean and unbiased std, one patch at a time.
    p_recon = patchify(recon, 8)
    for b, n in ((0, 0), (1, 5), (1, 15)):
        true = p_img[b, n]
        expected = pred[b, n] * (true.var() + 1e-6).sqrt() + true.mean()
        torch.testing.assert_close(p_recon[b, n], expected)
    assert mae.training                                      # put back in train mode


def test_reconstruct_with_visible_statistics_never_reads_the_masked_patches():
    mae = tiny_mae()
    images = torch.randn(2, 3, 32, 32)
    _, pred, mask = mae.eval()(images, 0.75, generator=torch.Generator().manual_seed(0))
    mae.train()
    # Change every masked patch's pixels: what the model was not given.
    patches = patchify(images, 8)
    changed = unpatchify(patches + 5.0 * torch.randn_like(patches) * mask.unsqueeze(-1), 8, 3)
    draw = lambda x, stats: reconstruct(mae, x, 0.75, statistics=stats,  # noqa: E731
                                        generator=torch.Generator().manual_seed(0))
    for stats, same in (("visible", True), ("true", False)):
        before, after = draw(images, stats)[2], draw(changed, stats)[2]
        assert torch.allclose(before, after) == same, stats
    # One image, written out: the average mean and unbiased std of its visible patches.
    recon = patchify(draw(images, "visible")[1], 8)
    b = 1
    visible = [n for n in range(patches.shape[1]) if mask[b, n] == 0]
    mean = sum(patches[b, n].mean() for n in visible) / len(visible)
    std = sum((patches[b, n].var() + 1e-6).sqrt() for n in visible) / len(visible)
    for n in range(patches.shape[1]):
        torch.testing.assert_close(recon[b, n], pred[b, n] * std + mean)


def test_reconstruct_rejects_unknown_statistics():
    with pytest.raises(ValueError, match="statistics must be 'true' or 'visible'"):
        reconstruct(tiny_mae(), torch.randn(1, 3, 32, 32), 0.75, statistics="mean")


def test_bfloat16_forward_runs():
    mae = tiny_mae().to(torch.bfloat16)
    loss, pred, _ = mae(torch.randn(2, 3, 32, 32, dtype=torch.bfloat16))
    assert torch.isfinite(loss) and pred.dtype == torch.bfloat16


def test_a_short_training_run_lowers_the_loss():
    images, _, _ = make_shapes(256, seed=0)
    mae = tiny_mae()
    history = train(mae, images, TrainConfig(steps=40, batch_size=64, lr=2e-3, warmup_steps=5,
                                             log_every=5, progress=False))
    assert history["loss"][-1] < 0.8 * history["loss"][0]


# --- the information model ---------------------------------------------------------------------------
@pytest.mark.parametrize("decay", [1.0, 4 / 3, 2.5, 6.7, 10.0])
def test_optimal_ratio_is_the_numeric_argmax(decay):
    grid = [i / 100000 for i in range(1, 100001)]
    numeric = max(grid, key=lambda r: r * math.exp(-decay * r))
    assert optimal_ratio(decay) == pytest.approx(numeric, abs=2e-5)
    assert information(0.5, 2.0, decay).item() == pytest.approx(2.0 * math.exp(-decay / 2))


def test_optimal_ratio_orders_text_below_images_and_clips():
    text, images = optimal_ratio(6.7), optimal_ratio(4 / 3)       # fast vs slow decay
    assert text == pytest.approx(0.149, abs=1e-3) and images == pytest.approx(0.75)
    assert optimal_ratio(0.5) == 1.0                               # r cannot exceed 1
    for bad in (0, -1.0, "2", True):
        with pytest.raises(ValueError, match="decay"):
            optimal_ratio(bad)

"""course_lib.backbones: pins the timm behaviour the course relies on (token layout, register
tokens, dynamic image size, attention extraction with fused and unfused attention)."""
import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from course_lib.backbones import (PRESETS, ViTConfig, build_vit, cls_attention, cls_attention_row,
                                  cls_token, embed_tokens, encode_tokens, num_prefix_tokens,
                                  num_register_tokens, patch_grid, patch_tokens, split_tokens)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
HEADS = PRESETS["cpu"].num_heads


def small_vit(**kwargs) -> VisionTransformer:
    """cpu-fine at depth 2: 32 px, conv stem to 4 px cells -> an 8x8 grid of 64 tokens."""
    torch.manual_seed(0)
    return build_vit("cpu-fine", depth=2, **kwargs).eval()


def images(b=2, size=32, seed=0, dtype=torch.float32):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(dtype)


# --- construction --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_with_the_documented_shape(name):
    config = PRESETS[name]
    model = build_vit(name)
    assert isinstance(model, VisionTransformer)
    assert model.embed_dim == config.embed_dim and len(model.blocks) == config.depth
    assert model.blocks[0].attn.num_heads == config.num_heads
    assert model.patch_embed.patch_size == (config.patch_size, config.patch_size)
    assert num_prefix_tokens(model) == 1 and model.num_classes == 0
    assert config.img_size % config.patch_size == 0


def test_cpu_preset_forward_gives_cls_features():
    model = build_vit("cpu").eval()
    x = images(3)
    out = model(x)
    assert out.shape == (3, PRESETS["cpu"].embed_dim)
    torch.testing.assert_close(out, model.forward_features(x)[:, 0])   # global_pool="token"
    torch.testing.assert_close(out, cls_token(model, x))


@pytest.mark.parametrize("n_reg", [0, 1, 4])
def test_register_tokens_sit_between_cls_and_patches(n_reg):
    model = small_vit(num_register_tokens=n_reg)
    assert num_prefix_tokens(model) == 1 + n_reg == model.num_prefix_tokens
    assert num_register_tokens(model) == n_reg
    if n_reg:
        assert model.reg_token.shape == (1, n_reg, model.embed_dim)
    x = images()
    tokens = model.forward_features(x)
    assert tokens.shape == (2, 1 + n_reg + 64, model.embed_dim)          # (B, 1 + R + N, D)
    cls, reg, patches = split_tokens(model, tokens)
    assert cls.shape == (2, model.embed_dim) and reg.shape == (2, n_reg, model.embed_dim)
    torch.testing.assert_close(patches, patch_tokens(model, x))
    # Layout [CLS, registers, patches]: the first embedded tokens are the learned parameters.
    embedded = embed_tokens(model, x)
    if not n_reg:
        torch.testing.assert_close(embedded[:, 0],
                                   (model.cls_token + model.pos_embed[:, :1])[0].expand(2, -1))
    else:   # as DINOv2: registers (and the CLS token) carry no position, the patches do
        assert model.pos_embed.shape[1] == 64
        torch.testing.assert_close(embedded[:, 0], model.cls_token[0].expand(2, -1))
        torch.testing.assert_close(embedded[:, 1:1 + n_reg], model.reg_token.expand(2, -1, -1))
        patches_in = model.patch_embed(x).flatten(1, 2) + model.pos_embed
        torch.testing.assert_close(embedded[:, 1 + n_reg:], patches_in)


def test_overrides_and_config_reach_timm():
    model = build_vit("cpu", img_size=64, depth=3, drop_path_rate=0.2, num_classes=10)
    assert model.patch_embed.img_size == (64, 64) and len(model.blocks) == 3
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)  # linear decay, last = max
    assert model(images(2, 64)).shape == (2, 10)
    config = ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    assert build_vit(config).patch_embed.grid_size == (4, 4)


@pytest.mark.parametrize("kwargs, name", [
    (dict(preset="nope"), "preset"), (dict(preset=3), "preset"),
    (dict(img_size=30), "img_size"), (dict(embed_dim=90, num_heads=4), "embed_dim"),
    (dict(num_register_tokens=-1), "num_register_tokens"), (dict(depth=0), "depth"),
    (dict(drop_path_rate=1.0), "drop_path_rate"), (dict(num_classes=-1), "num_classes"),
    (dict(emb_dim=64), "emb_dim"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        build_vit(**kwargs)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ValueError) as err:
        build_vit("huge")
    for name in PRESETS:
        assert name in str(err.value)


def test_bad_images_raise_value_error():
    model = small_vit()
    with pytest.raises(ValueError, match="floating"):
        patch_tokens(model, torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="channels"):
        cls_attention(model, torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples"):
        cls_token(model, torch.zeros(2, 3, 30, 30))
    with pytest.raises(ValueError, match="bfloat16"):
        cls_token(model, images(dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="tokens"):
        split_tokens(model, torch.zeros(2, 1, model.embed_dim))


# --- token helpers -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_reg", [0, 2])
def test_embed_then_encode_equals_forward_features(n_reg):
    model = small_vit(num_register_tokens=n_reg)
    x = images()
    torch.testing.assert_close(encode_tokens(model, embed_tokens(model, x)), model.forward_features(x))


def test_mask_token_replaces_patches_before_the_positional_embedding():
    model = small_vit(num_register_tokens=1)
    x, prefix = images(), 2
    mask_token = torch.randn(model.embed_dim)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    torch.testing.assert_close(embed_tokens(model, x, mask=mask, mask_token=mask_token),
                               embed_tokens(model, x))
    mask[0, 5] = mask[1, 63] = True
    out = embed_tokens(model, x, mask=mask, mask_token=mask_token)
    plain = embed_tokens(model, x)
    # with a register the positions cover the patches only (as DINOv2): patch i has row i
    torch.testing.assert_close(out[0, prefix + 5], mask_token + model.pos_embed[0, 5])
    torch.testing.assert_close(out[1, prefix + 63], mask_token + model.pos_embed[0, 63])
    keep = ~mask
    torch.testing.assert_close(out[:, prefix:][keep], plain[:, prefix:][keep])
    with pytest.raises(ValueError, match="mask"):
        embed_tokens(model, x, mask=mask[:, :10], mask_token=mask_token)
    with pytest.raises(ValueError, match="mask_token"):
        embed_tokens(model, x, mask=mask)


def test_cpu_preset_has_a_4x4_token_grid():
    model = build_vit("cpu").eval()
    assert model.patch_embed.patch_size == (8, 8)
    assert patch_tokens(model, images()).shape == (2, 16, PRESETS["cpu"].embed_dim)
    assert cls_attention(model, images()).shape == (2, HEADS, 4, 4)


def test_conv_stem_is_three_stride_2_convolutions_with_batchnorm_and_relu():
    """Oracle: the stem written out with F.conv2d / F.batch_norm / F.relu (eval-mode BN)."""
    torch.manual_seed(0)
    model = build_vit("cpu", depth=1).eval()
    convs = [m for m in model.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.patch_embed.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [24, 48, 96] and len(norms) == 2
    with torch.no_grad():
        for bn in norms:                                               # non-trivial statistics
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        x = images(2)
        h = x
        for i, conv in enumerate(convs):
            h = F.conv2d(h, conv.weight, conv.bias, stride=2, padding=1)
            if i < 2:
                bn = norms[i]
                h = F.relu(F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias))
        expected = h.flatten(2).transpose(1, 2)                        # (B, 16, 96)
        torch.testing.assert_close(model.patch_embed(x).flatten(1, 2), expected)


@pytest.mark.parametrize("patch_size", [3, 6, 1])
def test_conv_stem_needs_a_power_of_two_patch(patch_size):
    with pytest.raises(ValueError, match="stem='conv' needs a patch_size that is a power of two"):
        ViTConfig(img_size=48, patch_size=patch_size, embed_dim=96, num_heads=3, stem="conv")


def test_unknown_stem_is_rejected():
    with pytest.raises(ValueError, match="stem must be 'patch' or 'conv'"):
        ViTConfig(stem="resnet")


def test_dynamic_img_size_takes_local_crops_and_is_free_at_native_size():
    model = small_vit(num_register_tokens=2)
    local = images(2, 16)
    assert model.forward_features(local).shape == (2, 3 + 16, model.embed_dim)
    assert patch_grid(model, local) == (4, 4)
    assert cls_attention(model, local).shape == (2, HEADS, 4, 4)
    static = build_vit("cpu-fine", depth=2, num_register_tokens=2, dynamic_img_size=False).eval()
    static.load_state_dict(model.state_dict())
    x = images()
    torch.testing.assert_close(model.forward_features(x), static.forward_features(x))


def test_bfloat16_forward_on_cpu_is_finite():
    model = small_vit(num_register_tokens=1).to(torch.bfloat16)
    x = images(dtype=torch.bfloat16)
    out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    maps = cls_attention(model, x)
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()


# --- CLS attention -------------------------------------------------------------------------------
def manual_cls_attention_row(model, x):
    """Oracle: the ViT written out by hand, explicit softmax(q k^T / sqrt(d)) in the last block."""
    B = x.shape[0]
    patches = model.patch_embed(x).flatten(1, 2)                       # (B, gh, gw, D) -> (B, N, D)
    prefix = [model.cls_token.expand(B, -1, -1)]
    if model.reg_token is not None:
        prefix.append(model.reg_token.expand(B, -1, -1))
    if model.no_embed_class:                                           # registers: no position
        tokens = torch.cat(prefix + [patches + model.pos_embed], 1)    # (B, P + N, D)
    else:
        tokens = torch.cat(prefix + [patches], 1) + model.pos_embed
    for block in model.blocks[:-1]:
        tokens = block(tokens)
    last = model.blocks[-1]
    y = last.norm1(tokens)
    heads, head_dim = last.attn.num_heads, model.embed_dim // last.attn.num_heads
    q, k, _ = F.linear(y, last.attn.qkv.weight, last.attn.qkv.bias).chunk(3, dim=-1)
    q = q.reshape(B, -1, heads, head_dim).transpose(1, 2)              # (B, h, P + N, hd)
    k = k.reshape(B, -1, heads, head_dim).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1)
    return weights[:, :, 0]                                            # (B, h, P + N)


def timm_unfused_cls_attention_row(model, x):
    """Oracle: timm's own unfused attention matrix, caught at its ``attn_drop`` (after softmax)."""
    caught = []
    attn = model.blocks[-1].attn
    saved = [block.attn.fused_attn for block in model.blocks]
    for block in model.blocks:
        block.attn.fused_attn = False
    handle = attn.attn_drop.register_forward_hook(lambda m, i, o: caught.append(o))
    try:
        model.forward_features(x)
    finally:
        handle.remove()
        for block, fused in zip(model.blocks, saved):
            block.attn.fused_attn = fused
    return caught[0][:, :, 0]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n_reg", [0, 4])
def test_cls_attention_matches_independent_computations(fused, n_reg):
    model = small_vit(num_register_tokens=n_reg)
    for block in model.blocks:
        block.attn.fused_attn = fused
    x = images(3)
    row = cls_attention_row(model, x)                                  # (B, h, P + N)
    assert row.shape == (3, HEADS, 1 + n_reg + 64)
    with torch.no_grad():
        torch.testing.assert_close(row, manual_cls_attention_row(model, x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(row, timm_unfused_cls_attention_row(model, x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(row.sum(-1), torch.ones(3, HEADS))          # softmax over all tokens
    maps = cls_attention(model, x)                                     # (B, h, gh, gw)
    assert maps.shape == (3, HEADS, 8, 8)
    torch.testing.assert_close(maps.flatten(2), row[:, :, 1 + n_reg:])  # raw, not renormalised
    torch.testing.assert_close(maps.sum((2, 3)) + row[:, :, :1 + n_reg].sum(-1), torch.ones(3, HEADS))


def test_cls_attention_leaves_the_model_as_it_was():
    model = small_vit(drop_path_rate=0.5).train()
    x = images()
    torch.manual_seed(1)
    a = cls_attention(model, x)
    assert model.training                                              # mode restored
    assert not model.blocks[-1].attn.qkv._forward_hooks                # hook removed
    torch.testing.assert_close(cls_attention(model, x), a)             # eval mode: no drop-path
    model.eval()
    torch.testing.assert_close(model(x), cls_token(model, x))


def test_cls_attention_with_qk_norm():
    model = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                              num_classes=0, qk_norm=True).eval()
    with torch.no_grad():
        model.blocks[0].attn.q_norm.weight.mul_(3.0)                   # make the norm matter
    for fused in (True, False):
        model.blocks[0].attn.fused_attn = fused
        x = images()
        with torch.no_grad():
            torch.testing.assert_close(cls_attention_row(model, x),
                                       timm_unfused_cls_attention_row(model, x), atol=1e-5, rtol=1e-4)


@cuda
def test_cuda_autocast_bfloat16():
    from course_lib.runtime import autocast
    device = torch.device("cuda")
    model = small_vit(num_register_tokens=2).to(device)
    x = images(4).to(device)
    with autocast(device):
        out = model(x)
        maps = cls_attention(model, x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert maps.shape == (4, HEADS, 8, 8) and maps.device.type == "cuda"
    reference = cls_attention(model, x)                                # float32
    torch.testing.assert_close(maps, reference, atol=2e-2, rtol=0)

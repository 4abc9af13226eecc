"""Vision Transformer backbones for every unit: timm's ``VisionTransformer`` plus the few token
helpers the methods need. ViT: Dosovitskiy et al. 2021; register tokens: Darcet et al. 2024
("Vision Transformers Need Registers"); CLS attention maps: Caron et al. 2021 (DINO), section 4.2.1.
Lectures 02 (attention maps), 03-05 (token-level methods), 06 (registers).

This is the only module that touches timm's internals (COURSE_STYLE): ``tests/test_backbones.py``
pins what we rely on, so a timm upgrade breaks one test file, not seven notebooks.

Token layout of ``model.forward_features(images)`` (B, P + N, D), with P = 1 + R prefix tokens:

    [CLS, reg_1 ... reg_R, patch_1 ... patch_N]     N = (H / p) * (W / p), row-major patches

    model = build_vit("cpu")                       # 32x32 images, 8x8 cells -> N = 16
    features = model(images)                       # (B, D) final-norm CLS token
    maps = cls_attention(model, images)            # (B, h, 4, 4) last-block CLS -> patch attention

Token-level methods build on three steps that together equal ``model.forward_features``:

    tokens = embed_tokens(model, images, mask=mask, mask_token=t)  # (B, P + N, D), iBOT/DINOv2
    tokens = torch.cat([tokens[:, :P], visible_patches], dim=1)    # MAE / I-JEPA keep a subset
    out = encode_tokens(model, tokens)                             # blocks + final norm
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block, VisionTransformer
from timm.models.vision_transformer_hybrid import ConvStem
from torch import nn

Tensor = torch.Tensor


# --- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ViTConfig:
    """A ViT's shape. Defaults are ViT-S/16 at 224 px (Touvron et al. 2021, DeiT-S)."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    # "patch": one linear map per p x p patch (the ViT paper). "conv": log2(p) stride-2 3x3
    # convolutions (timm's ConvStem, BatchNorm + ReLU between them) turn the image into the same
    # (H / p) x (W / p) token grid (Xiao et al. 2021, "Early Convolutions Help Transformers See
    # Better"). Neighbouring tokens then share a few border pixels, so MAE-style masking, which
    # assumes a token sees only its own patch, should use "patch".
    stem: str = "patch"
    # Positional embeddings are resampled for other input sizes, so one model takes DINO's
    # global and local crops (timm's early-out makes this free at the native size).
    dynamic_img_size: bool = True
    # False: no CLS token (I-JEPA); the tokens are the patches (and registers), model(images)
    # returns their mean, and the CLS-attention functions refuse the model.
    class_token: bool = True

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size must be a multiple of patch_size={self.patch_size}, "
                             f"got {self.img_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads={self.num_heads}, "
                             f"got {self.embed_dim}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if (not isinstance(self.num_register_tokens, int) or isinstance(self.num_register_tokens, bool)
                or self.num_register_tokens < 0):
            raise ValueError(f"num_register_tokens must be an int >= 0, got {self.num_register_tokens!r}")
        if self.stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {self.stem!r}")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ValueError(f"stem='conv' needs a patch_size that is a power of two >= 2, "
                             f"got {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


PRESETS: dict[str, ViTConfig] = {
    # CPU scale (CI, laptops): 32 px images, a conv stem down to 8 px cells -> 4x4 = 16 tokens.
    # Measured on the shapes data, supervised, 400 steps at batch 128 on 2 cores (held-out
    # accuracy, chance 0.10): plain 4 px patches (64 tokens) 0.12 in 110 s; the same with a conv
    # stem 0.27-0.29 in 90 s; this preset 0.34 in 34 s. Plain ViTs need many more steps than a CPU
    # notebook has to leave chance on small data; the conv stem fixes that (Xiao et al. 2021).
    "cpu": ViTConfig(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=3, stem="conv"),
    # The same width and depth with 4 px patches (8x8 tokens): finer attention maps, ~3.5x slower.
    "cpu-fine": ViTConfig(img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, stem="conv"),
    # GPU scale (Colab): ViT-Ti (DeiT-Ti, Touvron et al. 2021: 192 wide, 12 deep, 3 heads) with
    # 8 px patches at STL-10's 96 px -> 12x12 = 144 tokens (DINO's ViT/16 at 224 px has 14x14).
    # For CIFAR-10 (32 px) use build_vit("tiny", img_size=32, patch_size=4): 8x8 = 64 tokens.
    # drop_path 0.1 as in DINO's ViT-S recipe (Caron et al. 2021, main_dino.py).
    "tiny": ViTConfig(img_size=96, patch_size=8, embed_dim=192, depth=12, num_heads=3,
                      drop_path_rate=0.1),
    # ViT-S (DeiT-S: 384 wide, 12 deep, 6 heads), same token grid as "tiny".
    "small": ViTConfig(img_size=96, patch_size=8, embed_dim=384, depth=12, num_heads=6,
                       drop_path_rate=0.1),
}


def build_vit(preset: str | ViTConfig = "cpu", *, img_size: int | None = None,
              num_register_tokens: int | None = None, num_classes: int = 0,
              **overrides) -> VisionTransformer:
    """A randomly initialised timm ViT from a preset name or a :class:`ViTConfig`.

    ``overrides`` are other ViTConfig fields (``depth=6``, ``patch_size=4``, ...). With
    ``num_classes=0`` (default) ``model(images)`` returns the final-norm CLS token (B, D);
    otherwise logits (B, num_classes) from a linear head on it.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)} or a ViTConfig, got {preset!r}")
        config = PRESETS[preset]
    elif isinstance(preset, ViTConfig):
        config = preset
    else:
        raise ValueError(f"preset must be a str or a ViTConfig, got {type(preset).__name__}")
    known = {f.name for f in fields(ViTConfig)}
    for name in overrides:
        if name not in known:
            raise ValueError(f"unknown argument {name!r}; ViTConfig fields are {sorted(known)}")
    if img_size is not None:
        overrides["img_size"] = img_size
    if num_register_tokens is not None:
        overrides["num_register_tokens"] = num_register_tokens
    config = replace(config, **overrides)  # re-runs ViTConfig's checks
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
    kwargs = asdict(config)
    kwargs["reg_tokens"] = kwargs.pop("num_register_tokens")
    # With registers, positions go on the patches only, as DINOv2 inserts its registers after the
    # positional embedding (Darcet et al. 2024). timm's no_embed_class leaves the CLS token
    # without one too, which costs nothing: a constant added to a learned token is that token.
    kwargs["no_embed_class"] = config.num_register_tokens > 0
    if kwargs.pop("stem") == "conv":
        kwargs["embed_layer"] = ConvPatchEmbed
    # Without a CLS token the head averages the final-norm patch tokens (fc_norm=False keeps the
    # final norm in forward_features, where every other function of this module expects it).
    model = VisionTransformer(num_classes=num_classes, fc_norm=False,
                              global_pool="token" if config.class_token else "avg", **kwargs)
    model.course_config = config  # what built it, for checkpoints and printing
    return model


class ConvPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` with its p x p linear projection replaced by timm's ``ConvStem``:
    log2(p) stride-2 3x3 convolutions, widths D / 2^(k-1) ... D / 2, D (BatchNorm + ReLU between,
    none after the last). Same token grid, patch_size and dynamic-size handling as ``PatchEmbed``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        in_chans, dim = self.proj.in_channels, self.proj.out_channels
        depth = self.patch_size[0].bit_length() - 1                 # p = 2 ** depth
        self.proj = ConvStem(in_chans=in_chans, depth=depth, channels=dim, stride=(2,) * depth)
        self.in_chans = in_chans


def in_channels(model: VisionTransformer) -> int:
    """Image channels ``model`` takes (3 for RGB)."""
    embed = model.patch_embed
    return embed.in_chans if isinstance(embed, ConvPatchEmbed) else embed.proj.in_channels


# --- tokens --------------------------------------------------------------------------------------
def num_prefix_tokens(model: VisionTransformer) -> int:
    """P = 1 (CLS) + R (registers): the tokens before the patches in every token sequence."""
    return int(model.num_prefix_tokens)


def num_register_tokens(model: VisionTransformer) -> int:
    """R, the register tokens of ``model`` (Darcet et al. 2024)."""
    return int(model.num_reg_tokens)


def patch_grid(model: VisionTransformer, images: Tensor) -> tuple[int, int]:
    """(H / p, W / p): the patch grid of ``images`` (B, C, H, W)."""
    _check_images(model, images)
    p_h, p_w = model.patch_embed.patch_size
    return images.shape[-2] // p_h, images.shape[-1] // p_w


def _check_images(model: VisionTransformer, images: Tensor) -> None:
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"model must be a timm VisionTransformer (see build_vit), got "
                         f"{type(model).__name__}")
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a 4-D tensor (B, C, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (normalise uint8 first, e.g. "
                         f"course_lib.data.normalize), got {images.dtype}")
    if images.shape[1] != in_channels(model):
        raise ValueError(f"images must have {in_channels(model)} channels, got {images.shape[1]}")
    p_h, p_w = model.patch_embed.patch_size
    if images.shape[-2] % p_h or images.shape[-1] % p_w:
        raise ValueError(f"image height and width must be multiples of the patch size {p_h}, "
                         f"got {tuple(images.shape[-2:])}")
    param = next(model.patch_embed.parameters())
    if images.device != param.device:
        raise ValueError(f"images are on {images.device} but the model is on {param.device}")
    if images.dtype != param.dtype and not torch.is_autocast_enabled(images.device.type):
        raise ValueError(f"images are {images.dtype} but the model is {param.dtype}; use "
                         f"model.to(images.dtype) or course_lib.runtime.autocast on CUDA")


def split_tokens(model: VisionTransformer, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split ``forward_features`` output (B, P + N, D) into CLS (B, D), registers (B, R, D) and
    patches (B, N, D)."""
    _check_class_token(model)
    prefix = num_prefix_tokens(model)
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[1] <= prefix:
        raise ValueError(f"tokens must be (B, {prefix} + N, D) with N > 0, got "
                         f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__}")
    return tokens[:, 0], tokens[:, 1:prefix], tokens[:, prefix:]


def _check_class_token(model: VisionTransformer) -> None:
    if not getattr(model, "has_class_token", True):
        raise ValueError("the model has no CLS token (built with class_token=False): use its "
                         "patch tokens")


def cls_token(model: VisionTransformer, images: Tensor) -> Tensor:
    """Final-norm CLS token (B, D) of ``images`` (B, C, H, W); equals ``model(images)`` when
    ``num_classes=0``."""
    _check_images(model, images)
    _check_class_token(model)
    return model.forward_features(images)[:, 0]


def patch_tokens(model: VisionTransformer, images: Tensor) -> Tensor:
    """Final-norm patch tokens (B, N, D), row-major over the patch grid, CLS and registers
    dropped."""
    _check_images(model, images)
    return model.forward_features(images)[:, num_prefix_tokens(model):]


def embed_tokens(model: VisionTransformer, images: Tensor, *, mask: Tensor | None = None,
                 mask_token: Tensor | None = None) -> Tensor:
    """Patch embeddings plus positional embeddings, with CLS and registers prepended: the input
    of the first block, (B, P + N, D).

    With ``mask`` (B, N) bool and ``mask_token`` (D,), masked patch embeddings are replaced by the
    learned mask token *before* the positional embedding is added, as in iBOT (Zhou et al. 2022,
    ``masked_im_modeling``) and DINOv2. MAE and I-JEPA instead drop tokens after this step.
    """
    _check_images(model, images)
    x = model.patch_embed(images)                   # (B, gh, gw, D) if dynamic else (B, N, D)
    if mask is not None or mask_token is not None:
        if mask is None or mask_token is None:
            raise ValueError("mask and mask_token must be given together")
        n_patches = x.shape[1:-1].numel()
        if mask.dtype != torch.bool or tuple(mask.shape) != (x.shape[0], n_patches):
            raise ValueError(f"mask must be a bool tensor (B, N) = ({x.shape[0]}, {n_patches}), "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if tuple(mask_token.shape) != (x.shape[-1],):
            raise ValueError(f"mask_token must be (D,) = ({x.shape[-1]},), got {tuple(mask_token.shape)}")
        keep = mask.reshape(x.shape[:-1]).unsqueeze(-1)  # (B, gh, gw, 1) or (B, N, 1)
        x = torch.where(keep, mask_token.to(x.dtype), x)
    x = model._pos_embed(x)                         # (B, P + N, D): prefix prepended, pos added
    x = model.patch_drop(x)
    return model.norm_pre(x)


def encode_tokens(model: VisionTransformer, tokens: Tensor) -> Tensor:
    """The transformer blocks and the final norm on any token sequence (B, n, D) -> (B, n, D).

    ``encode_tokens(model, embed_tokens(model, images))`` equals ``model.forward_features(images)``.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[-1] != model.embed_dim:
        raise ValueError(f"tokens must be (B, n, D={model.embed_dim}), got "
                         f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__}")
    return model.norm(model.blocks(tokens))


def freeze_pos_embed(model: VisionTransformer, table: Tensor) -> None:
    """Replace ``model``'s learned position embeddings by a fixed ``table`` (1 + N, D), row 0 for
    the CLS token, e.g. MAE's 2-D sin-cos table (``course_lib.mae.sincos_2d``); it stops training.
    Models with register tokens are refused (their positions are not defined by MAE)."""
    if num_register_tokens(model):
        raise ValueError("freeze_pos_embed needs a model without register tokens")
    expected = tuple(model.pos_embed.shape[1:])
    if not isinstance(table, Tensor) or tuple(table.shape) != expected:
        raise ValueError(f"table must be (1 + N, D) = {expected}, got "
                         f"{tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__}")
    with torch.no_grad():
        model.pos_embed.copy_(table[None])
    model.pos_embed.requires_grad_(False)


def transformer_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0) -> nn.Sequential:
    """``depth`` pre-norm transformer blocks of width ``dim`` (timm's ``Block``, the one the ViTs
    use): MAE's decoder, I-JEPA's predictor."""
    for name, value in (("dim", dim), ("depth", depth), ("num_heads", num_heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if dim % num_heads:
        raise ValueError(f"dim must be divisible by num_heads={num_heads}, got {dim}")
    return nn.Sequential(*[Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True)
                           for _ in range(depth)])


# --- attention maps ------------------------------------------------------------------------------
def cls_attention_row(model: VisionTransformer, images: Tensor) -> Tensor:
    """The last block's attention row of the CLS token over all tokens, per head: (B, h, P + N),
    float32, each row summing to 1 (softmax over CLS, registers and patches).

    timm's fused attention (``F.scaled_dot_product_attention``) never materialises the weights,
    so a forward hook on the last block's ``attn.qkv`` catches its output and we recompute
    ``softmax(q_cls k^T * scale)`` (after ``q_norm`` / ``k_norm``) ourselves; the model's forward
    path is untouched. The model runs in eval mode (no drop-path) and is put back as it was.
    """
    _check_images(model, images)
    _check_class_token(model)
    attn = model.blocks[-1].attn
    if not (hasattr(attn, "qkv") and hasattr(attn, "head_dim") and hasattr(attn, "scale")):
        raise ValueError(f"the last block's attention ({type(attn).__name__}) has no fused qkv "
                         f"projection; cls_attention needs timm's Attention")
    captured: list[Tensor] = []
    handle = attn.qkv.register_forward_hook(lambda module, inputs, output: captured.append(output))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model.forward_features(images)
    finally:
        handle.remove()
        model.train(was_training)
    qkv = captured[-1]                                            # (B, P + N, 3 * h * hd)
    B, n_tokens, _ = qkv.shape
    qkv = qkv.reshape(B, n_tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])               # (B, h, P + N, hd) each
    q_cls = q[:, :, :1].float() * attn.scale                      # (B, h, 1, hd)
    logits = q_cls @ k.float().transpose(-2, -1)                  # (B, h, 1, P + N)
    return logits.softmax(dim=-1).squeeze(2)                      # (B, h, P + N)


def cls_attention(model: VisionTransformer, images: Tensor) -> Tensor:
    """Last-block attention from the CLS token to the patches, per head, on the patch grid:
    (B, h, H / p, W / p), float32.

    Not renormalised: as in DINO's visualisation (Caron et al. 2021, ``visualize_attention.py``)
    the values are the raw softmax row with the CLS and register columns dropped, so a map sums to
    1 minus the attention the CLS token pays to itself and the registers. Lecture 02, section 5.
    """
    row = cls_attention_row(model, images)                        # (B, h, P + N)
    grid_h, grid_w = patch_grid(model, images)
    patches = row[:, :, num_prefix_tokens(model):]                # (B, h, N)
    return patches.reshape(row.shape[0], row.shape[1], grid_h, grid_w)  # (B, h, gh, gw)


def use_fused_attention(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch timm's fused attention (``F.scaled_dot_product_attention``) on or off in every
    block of ``model``; the result is the same up to rounding. On a CPU the fused kernel's
    backward costs more than the plain softmax(QK^T)V for sequences of a few tokens (measured on
    2 cores, MAE step at batch 128: 83 ms fused, 64 ms plain), so the CPU scale turns it off."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = enabled
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

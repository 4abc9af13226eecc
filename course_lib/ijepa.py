"""I-JEPA: predicting the representations of masked blocks (Assran et al. 2023, "Self-Supervised
Learning from Images with a Joint-Embedding Predictive Architecture", section 3). Unit 5.

A context encoder sees one large block of the image with several target blocks cut out of it; a
narrow predictor, given the context tokens and mask tokens at a target block's positions, predicts
what a target encoder (an EMA of the context encoder, on the whole image) outputs at those
positions. The loss lives in representation space: no pixels, no decoder, no colour jitter; the
official code crops each image (30-100 % of it) before the masks, here an optional ``augment``.

    s_y   = LN(f_target(x))[targets]          target encoder on the full image, layer norm without
                                              affine, then the target patches; no gradient
    s_x   = f_context(x[context])             positions added, then the context patches gathered
    s^_y  = g(s_x, mask tokens + pos[targets])    the predictor, once per target block
    L     = mean over blocks of smooth_L1(s^_y, s_y)      (beta 1, as the official code)
    f_target <- m f_target + (1 - m) f_context,  m linear from 0.996 to 1 (the encoder only)

Nothing in the loss pushes two images apart: collapse (every patch the same vector) is a
minimum of it. The EMA target with its stop-gradient is what avoids it in practice; the
``target`` switch of :class:`IJEPAConfig` removes one or both for the lecture's ablation, and
every step logs the target features' per-dimension std and effective rank to watch for it.

The file reads in order: the multi-block masks (with the official collator's behaviour behind
a flag), the predictor, the method on the shared training loop.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, describe
from .backbones import embed_tokens, encode_tokens, freeze_pos_embed, transformer_blocks
from .data import normalize
from .diagnostics import effective_rank, feature_std
from .ema import ema_update
from .mae import sincos_2d
from .train import Method

Tensor = torch.Tensor


# --- 1. the masks ------------------------------------------------------------------------------------
def _check_range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not low < float(value[0]) <= float(value[1]) <= high):
        raise ValueError(f"{name} must be a pair (a, b) with {low} < a <= b <= {high}, got {value!r}")
    return float(value[0]), float(value[1])


def _uniform(gen: torch.Generator, low: float, high: float, u: float | None = None) -> float:
    u = float(torch.rand((), generator=gen)) if u is None else u
    return low + u * (high - low)


def _block_size(gen: torch.Generator, grid: int, scale: tuple[float, float],
                aspect: tuple[float, float], official: bool) -> tuple[int, int]:
    """(h, w) of a block covering about scale * grid^2 patches with height / width ~ aspect. The
    official collator draws ONE uniform number for both (a larger block is always a taller one)
    and caps h and w at grid - 1; the fixed sampler draws them independently and caps at grid."""
    u = float(torch.rand((), generator=gen))
    area = int(grid * grid * _uniform(gen, *scale, u=u))
    ratio = _uniform(gen, *aspect, u=u if official else None)
    cap = grid - 1 if official else grid
    h = min(max(int(round(math.sqrt(area * ratio))), 1), cap)
    w = min(max(int(round(math.sqrt(area / ratio))), 1), cap)
    return h, w


def _place(gen: torch.Generator, grid: int, h: int, w: int, official: bool) -> Tensor:
    """A (grid, grid) bool block of h x w at a random corner. The official collator draws the
    corner with ``randint(0, grid - h)``, which excludes its upper bound: a block of grid - 1 rows
    can only start at row 0. The fixed sampler lets every position happen."""
    extra = 0 if official else 1
    top = int(torch.randint(0, grid - h + extra, (), generator=gen))
    left = int(torch.randint(0, grid - w + extra, (), generator=gen))
    block = torch.zeros(grid, grid, dtype=torch.bool)
    block[top:top + h, left:left + w] = True
    return block


def _context(gen: torch.Generator, grid: int, size: tuple[int, int], targets: list[Tensor],
             min_keep: int, official: bool, tries_per_relaxation: int = 20) -> Tensor:
    """The context block minus the targets, as the official collator: after every 20 draws that
    keep min_keep patches or fewer, one more target stops being cut out. (grid * grid,) bool."""
    relaxed = 0
    while True:
        for _ in range(tries_per_relaxation):
            block = _place(gen, grid, *size, official)
            for target in targets[:max(len(targets) - relaxed, 0)]:
                block &= ~target
            if int(block.sum()) > min_keep:
                return block.flatten()
        if relaxed >= len(targets):
            raise ValueError(f"no context of more than min_keep={min_keep} patches fits a "
                             f"{size[0]}x{size[1]} block on a {grid}x{grid} grid")
        relaxed += 1


def multiblock_batch(batch: int, grid: int, n_targets: int = 4,
                     target_scale: tuple[float, float] = (0.15, 0.2),
                     target_aspect: tuple[float, float] = (0.75, 1.5),
                     context_scale: tuple[float, float] = (0.85, 1.0), *, min_keep: int = 10,
                     official: bool = False,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """I-JEPA's masks for a batch: ``context`` (B, Kc) and ``targets`` (n_targets, B, Kt), long
    indices into the grid * grid patches in row-major order (block-major, as the official code).

    As the official collator: one target size and one context size for the whole batch (so
    every target block has Kt = h * w patches), positions per image, targets first, the context a
    square block (aspect 1) with the targets cut out, relaxed one target at a time when it keeps
    ``min_keep`` patches or fewer. Every image must have the same number of context indices, so
    they are cut to the batch's smallest count Kc.

    ``official=True`` keeps the official collator's behaviour (ijepa ``src/masks/multiblock.py``):
    one uniform draw sets both the scale and the aspect of a block; h and w are capped at
    grid - 1 and the corner drawn with an exclusive bound, so a context block of grid - 1 rows
    always starts at the top-left corner; the cut keeps each image's FIRST Kc indices (it drops
    the bottom of the context); a target block of min_keep patches or fewer would make it loop
    forever, which here raises instead. ``official=False`` (default) draws scale and aspect
    independently, lets blocks reach the grid's edge and sit anywhere, and cuts each image's
    context to a random subset of Kc (sorted), so no region is dropped more than another."""
    for name, value in (("batch", batch), ("grid", grid), ("n_targets", n_targets)):
        check_int(name, value)
    check_int("min_keep", min_keep, 0)
    target_scale = _check_range("target_scale", target_scale, 0.0, 1.0)
    context_scale = _check_range("context_scale", context_scale, 0.0, 1.0)
    target_aspect = _check_range("target_aspect", target_aspect, 0.0, math.inf)
    gen = generator if generator is not None else torch.Generator().manual_seed(
        int(torch.randint(0, 2**31 - 1, ())))
    target_size = _block_size(gen, grid, target_scale, target_aspect, official)
    context_size = _block_size(gen, grid, context_scale, (1.0, 1.0), official)
    if official and target_size[0] * target_size[1] <= min_keep:
        raise ValueError(f"a {target_size[0]}x{target_size[1]} target block has no more than "
                         f"min_keep={min_keep} patches: the official collator loops forever here "
                         f"(grid {grid}x{grid}); lower min_keep or use official=False")
    targets, contexts = [], []
    for _ in range(batch):
        blocks = [_place(gen, grid, *target_size, official) for _ in range(n_targets)]
        targets.append(torch.stack([b.flatten().nonzero().squeeze(1) for b in blocks]))
        contexts.append(_context(gen, grid, context_size, blocks, min_keep, official)
                        .nonzero().squeeze(1))
    keep = min(len(c) for c in contexts)
    if official:
        context = torch.stack([c[:keep] for c in contexts])
    else:
        context = torch.stack([c[torch.randperm(len(c), generator=gen)[:keep].sort().values]
                               for c in contexts])
    return context, torch.stack(targets, dim=1)                        # (B, Kc), (M, B, Kt)


def multiblock_masks(grid: int, n_targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                     target_aspect: tuple[float, float] = (0.75, 1.5),
                     context_scale: tuple[float, float] = (0.85, 1.0),
                     generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
    """One image's masks: the context indices (Kc,) with the target blocks removed, and one index
    set (Kt,) per target block (:func:`multiblock_batch` with a batch of one, fixed sampler)."""
    context, targets = multiblock_batch(1, grid, n_targets, target_scale, target_aspect,
                                        context_scale, generator=generator)
    return context[0], list(targets[:, 0])


# --- 2. the predictor -------------------------------------------------------------------------------
class Predictor(nn.Module):
    """I-JEPA's narrow predictor: Linear D -> Dp, fixed 2-D sin-cos positions, ``depth`` blocks,
    LayerNorm, Linear Dp -> D. One sequence per target block: the context tokens (with their
    positions) followed by a shared mask token plus each target patch's position."""

    def __init__(self, dim: int, grid: int, pred_dim: int = 64, depth: int = 2,
                 num_heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(pred_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("pos", sincos_2d(pred_dim, grid))         # (N, Dp)
        self.blocks = transformer_blocks(pred_dim, depth, num_heads)
        self.norm = nn.LayerNorm(pred_dim)
        self.proj = nn.Linear(pred_dim, dim)

    def forward(self, context_tokens: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        """context tokens (B, Kc, D) at ``context_idx`` (B, Kc), one target block ``target_idx``
        (B, Kt) -> predictions (B, Kt, D) for the target patches."""
        x = self.embed(context_tokens) + self.pos[context_idx]                 # (B, Kc, Dp)
        holes = self.mask_token + self.pos[target_idx]                          # (B, Kt, Dp)
        x = self.norm(self.blocks(torch.cat([x, holes.to(x.dtype)], dim=1)))   # (B, Kc + Kt, Dp)
        return self.proj(x[:, context_idx.shape[1]:])                          # (B, Kt, D)


# --- 3. the method -----------------------------------------------------------------------------------
TARGETS = ("ema", "online_detached", "online")


@dataclass(frozen=True)
class IJEPAConfig:
    """I-JEPA's settings. Masks as the released configs (4 targets of 15-20 %, aspect 0.75-1.5,
    context 85-100 %, min_keep 10); the predictor narrow (the official ViT-H predictor is 384
    wide against 1280); loss smooth L1 as the official code (``"l2"``: the mean squared error).

    ``target`` is the ablation switch: ``"ema"`` (I-JEPA: an EMA target encoder, no gradient),
    ``"online_detached"`` (no EMA: the context encoder itself makes the targets, detached) or
    ``"online"`` (neither: the targets are the context encoder's output with their gradient)."""

    n_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_keep: int = 10
    official_masks: bool = False
    pred_dim: int = 64
    pred_depth: int = 2
    pred_heads: int = 4
    loss: str = "smooth_l1"
    momentum: tuple[float, float] = (0.996, 1.0)          # linear over training
    target: str = "ema"

    def __post_init__(self) -> None:
        for name in ("n_targets", "pred_dim", "pred_depth", "pred_heads"):
            check_int(name, getattr(self, name))
        if self.loss not in ("smooth_l1", "l2"):
            raise ValueError(f"loss must be 'smooth_l1' or 'l2', got {self.loss!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        _check_range("momentum", self.momentum, -1e-12, 1.0)


def jepa_loss(pred: Tensor, target: Tensor, kind: str = "smooth_l1") -> Tensor:
    """Mean over every element of smooth L1 (beta 1, ``F.smooth_l1_loss``) or of the squared
    error, between predictions and targets of the same shape; float32."""
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor) or pred.shape != target.shape:
        raise ValueError(f"pred and target must be tensors of one shape, got {describe(pred)} "
                         f"and {describe(target)}")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred.float(), target.float())
    if kind == "l2":
        return F.mse_loss(pred.float(), target.float())
    raise ValueError(f"kind must be 'smooth_l1' or 'l2', got {kind!r}")


def _patch_tokens(encoder: nn.Module, images: Tensor, idx: Tensor | None = None) -> Tensor:
    """Positions added to every patch, THEN the ``idx`` patches gathered (B, K), then the blocks:
    (B, K, D) (all N patches without ``idx``). The encoder has no CLS token."""
    tokens = embed_tokens(encoder, images)                                     # (B, N, D)
    if idx is not None:
        tokens = torch.gather(tokens, 1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return encode_tokens(encoder, tokens)


class IJEPA(Method):
    """Context encoder (a course ViT with ``stem="patch"`` and ``class_token=False``), its EMA
    target encoder and a :class:`Predictor`, on the shared training loop.

        ijepa = IJEPA(build_vit("cpu", stem="patch", patch_size=4, class_token=False), steps=300)
        history = train(ijepa, uint8_images, TrainConfig(steps=300))
        ijepa.backbone        # the target encoder: evaluate it with pooling="mean"

    ``augment`` maps the uint8 batch to the normalised float images both encoders see (one view
    per image, e.g. a random crop); without it the images are only normalised.
    """

    def __init__(self, encoder: nn.Module, *, steps: int, config: IJEPAConfig = IJEPAConfig(),
                 seed: int = 0, augment: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        check_int("steps", steps)
        if augment is not None and not callable(augment):
            raise ValueError(f"augment must be a callable or None, got {type(augment).__name__}")
        self.augment = augment
        if not isinstance(config, IJEPAConfig):
            raise ValueError(f"config must be an IJEPAConfig, got {type(config).__name__}")
        if getattr(encoder, "has_class_token", True) or type(encoder.patch_embed).__name__ != "PatchEmbed":
            raise ValueError("encoder must be built with class_token=False and stem='patch' "
                             "(I-JEPA has no CLS token, and a conv stem leaks masked pixels)")
        self.config, self.steps, self.encoder = config, steps, encoder
        self.grid = encoder.patch_embed.grid_size[0]
        freeze_pos_embed(encoder, sincos_2d(encoder.embed_dim, self.grid))
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.predictor = Predictor(encoder.embed_dim, self.grid, config.pred_dim,
                                   config.pred_depth, config.pred_heads)
        self.generator = torch.Generator().manual_seed(seed)
        # The official generator's first ``steps`` values: m_i = low + i (high - low) / steps, so
        # the last step uses one increment below ``high`` (torch.linspace would end on it).
        low, high = config.momentum
        self.momentum_schedule = low + (high - low) * torch.arange(steps, dtype=torch.float64) / steps

    @property
    def backbone(self) -> nn.Module:
        """The target encoder (I-JEPA evaluates it; without EMA, the context encoder)."""
        return self.target_encoder if self.config.target == "ema" else self.encoder

    def masks(self, batch: int) -> tuple[Tensor, Tensor]:
        cfg = self.config
        return multiblock_batch(batch, self.grid, cfg.n_targets, cfg.target_scale,
                                cfg.target_aspect, cfg.context_scale, min_keep=cfg.min_keep,
                                official=cfg.official_masks, generator=self.generator)

    def targets(self, images: Tensor) -> Tensor:
        """Layer-normed (no affine) features of every patch (B, N, D) from the target encoder, or
        the context encoder when ``target`` is not "ema" (with gradient for "online")."""
        if self.config.target == "online":
            return F.layer_norm(_patch_tokens(self.encoder, images), (self.encoder.embed_dim,))
        encoder = self.target_encoder if self.config.target == "ema" else self.encoder
        with torch.no_grad():
            return F.layer_norm(_patch_tokens(encoder, images), (encoder.embed_dim,))

    def training_step(self, images, labels, step):
        """uint8 images (B, C, H, W) -> (loss, metrics); labels are ignored."""
        if not 0 <= step < self.steps:
            raise ValueError(f"step must be in [0, steps={self.steps}), got {step}")
        x = self.augment(images) if self.augment is not None else normalize(images)
        context_idx, target_idx = (m.to(x.device) for m in self.masks(x.shape[0]))
        all_targets = self.targets(x)                                            # (B, N, D)
        context = _patch_tokens(self.encoder, x, context_idx)                    # (B, Kc, D)
        loss = 0.0
        for block in target_idx:                                                 # M x (B, Kt)
            pred = self.predictor(context, context_idx, block)                   # (B, Kt, D)
            wanted = torch.gather(all_targets, 1, block.unsqueeze(-1).expand(-1, -1, pred.shape[-1]))
            loss = loss + jepa_loss(pred, wanted, self.config.loss)
        loss = loss / len(target_idx)
        with torch.no_grad():
            flat = all_targets.detach().flatten(0, 1).float()                    # (B N, D)
            stats = {"target_std": feature_std(flat, normalize=False).mean().item(),
                     "target_rank": effective_rank(flat[:2048]).item(),
                     "context_patches": float(context_idx.shape[1])}
        return loss, stats

    @torch.no_grad()
    def after_step(self, step):
        if self.config.target == "ema":
            ema_update(self.target_encoder, self.encoder, float(self.momentum_schedule[step]))

"""iBOT: masked image modelling with an online tokenizer (Zhou et al. 2022, "iBOT: Image BERT
Pre-Training with Online Tokenizer", section 3 and Algorithm 1). Unit 4.

iBOT is DINO with a second, dense objective. The student sees the two global crops with some patch
embeddings replaced by a learned mask embedding; the teacher (EMA of the student, as in DINO) sees
them unmasked. For every masked patch the student predicts the teacher's distribution over K
"visual words" at that patch: the teacher is the tokenizer, trained online, instead of BEiT's
frozen dVAE. The targets are soft distributions in feature space, not MAE's pixels.

    P_t^i = softmax((g_t(u)_i - c') / tau_t')         teacher, unmasked view u, patch i
    L_mim = mean over images of [ sum_i m_i H(P_t^i, softmax(g_s(u~)_i / tau_s)) / max(sum_i m_i, 1) ]
    L_cls = DINO's loss on the CLS token, over pairs of different crops
    L     = L_cls + L_mim

Same view only for L_mim (patch i of view u predicts patch i of view u), while L_cls pairs
different views. Two centers, one per objective, each an EMA of the teacher's head logits
(momentum 0.9), updated after the loss. An image with no masked patch adds 0 to the mean over
images (the official code divides by max(sum_i m_i, 1) and then takes the mean over all B).

The file reads in order: masks, the patch loss, the centers (and the EMA recursion the
centering derivation studies), the method on the shared training loop.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, describe
from .augment import batched_multi_crop
from .backbones import embed_tokens, encode_tokens, patch_grid, split_tokens
from .diagnostics import entropy
from .dino import DINOHead, DINOLoss, teacher_distribution
from .ema import ema_update, update_center
from .masking import block_mask
from .schedules import cosine_schedule
from .train import Method

Tensor = torch.Tensor


# --- 1. which patches the student does not see ---------------------------------------------------
def ibot_masks(batch: int, grid_size: int, *, ratio_range: tuple[float, float] = (0.1, 0.5),
               p_unmasked: float = 0.5, min_block: int = 4,
               generator: torch.Generator | None = None) -> Tensor:
    """iBOT's masks for one global crop of ``batch`` images: bool (batch, grid_size**2), True =
    masked.

    Per image, as the official loader with ``--pred_ratio 0 0.3 --pred_ratio_var 0 0.2``: with
    probability ``p_unmasked`` nothing is masked; otherwise a ratio r is drawn uniformly from
    ``ratio_range`` and BEiT-style blocks cover int-rounded r * N patches
    (:func:`course_lib.masking.block_mask`, blocks of at least ``min_block`` patches). The official
    loader stops at the first count >= r * N; this mask hits the count exactly. CPU, from
    ``generator``."""
    check_int("batch", batch)
    check_int("grid_size", grid_size)
    check_int("min_block", min_block)
    low, high = ratio_range
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"ratio_range must satisfy 0 < low <= high < 1, got {ratio_range!r}")
    if not 0.0 <= p_unmasked <= 1.0:
        raise ValueError(f"p_unmasked must be in [0, 1], got {p_unmasked!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(
        int(torch.randint(0, 2**31 - 1, ())))
    masks = torch.zeros(batch, grid_size * grid_size, dtype=torch.bool)
    for b in range(batch):
        if float(torch.rand((), generator=gen)) < p_unmasked:
            continue
        ratio = low + (high - low) * float(torch.rand((), generator=gen))
        masks[b] = block_mask(1, grid_size, ratio, generator=gen, min_block=min_block)[0]
    return masks


def global_crop_masks(backbone: nn.Module, views: Tensor, config, generator: torch.Generator) -> Tensor:
    """:func:`ibot_masks` for a batch of global crops (B, 3, H, W) seen by ``backbone``, with the
    ratios of ``config`` (an iBOT or DINOv2 config), on the crops' device."""
    height, width = patch_grid(backbone, views)
    if height != width:
        raise ValueError(f"global crops must give a square patch grid, got {height}x{width}")
    return ibot_masks(views.shape[0], height, ratio_range=config.mask_ratio_range,
                      p_unmasked=config.p_unmasked, generator=generator).to(views.device)


def default_crops(config) -> Callable[[Tensor], list[Tensor]]:
    """``batched_multi_crop`` with the sizes, scales and local-crop count of ``config``."""
    return partial(batched_multi_crop, global_size=config.global_size,
                   local_size=config.local_size, n_local_crops=config.n_local_crops,
                   global_scale=config.global_scale, local_scale=config.local_scale)


# --- 2. the patch loss -----------------------------------------------------------------------------
def _check_patch_logits(name: str, logits: object) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (B, N, K), got {describe(logits)}")


def ibot_patch_loss(student_patch_logits: Tensor, teacher_patch_logits: Tensor, mask: Tensor,
                    student_temp: float = 0.1, teacher_temp: float = 0.04,
                    center: Tensor | float = 0.0) -> Tensor:
    """Cross-entropy from the teacher's patch distributions to the student's, on masked patches.

    ``student_patch_logits`` (B, N, K) come from the masked view, ``teacher_patch_logits``
    (B, N, K) from the same view unmasked; ``mask`` (B, N) bool, True where the student saw the
    mask embedding; ``center`` broadcasts against (B, N, K) (the patch center, (1, K) or
    (1, 1, K)). Returns a float32 scalar:

        P_t = softmax((t - center) / teacher_temp)     no gradient
        CE  = -sum_k P_t log softmax(s / student_temp)  per patch, (B, N)
        L   = mean_b [ sum_i m_bi CE_bi / max(sum_i m_bi, 1) ]

    The per-image mean comes first, so an image with few masked patches weighs as much as one
    with many, and an image with none contributes 0 to the mean over all B images."""
    _check_patch_logits("student_patch_logits", student_patch_logits)
    _check_patch_logits("teacher_patch_logits", teacher_patch_logits)
    if student_patch_logits.shape != teacher_patch_logits.shape:
        raise ValueError(f"student_patch_logits {tuple(student_patch_logits.shape)} and "
                         f"teacher_patch_logits {tuple(teacher_patch_logits.shape)} must have the "
                         "same shape (B, N, K)")
    if (not isinstance(mask, Tensor) or mask.dtype != torch.bool
            or tuple(mask.shape) != tuple(student_patch_logits.shape[:2])):
        raise ValueError(f"mask must be a bool tensor (B, N) = {tuple(student_patch_logits.shape[:2])}, "
                         f"got {describe(mask)}")
    if mask.device != student_patch_logits.device:
        raise ValueError(f"mask is on {mask.device} but the logits are on "
                         f"{student_patch_logits.device}")
    if not student_temp > 0:
        raise ValueError(f"student_temp must be positive, got {student_temp!r}")
    with torch.no_grad():
        targets = teacher_distribution(teacher_patch_logits.detach().float(), center,
                                       teacher_temp)                        # (B, N, K)
    log_probs = F.log_softmax(student_patch_logits.float() / student_temp, dim=-1)
    cross_entropy = -(targets * log_probs).sum(dim=-1)                      # (B, N)
    m = mask.float()
    per_image = (cross_entropy * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B,)
    return per_image.mean()


# --- 3. the centers, and the recursion the centering derivation studies -------------------------
def ema_centers(batch_means: Tensor, momentum: float = 0.9,
                initial: Tensor | float = 0.0) -> Tensor:
    """The centers c_1 ... c_T of the recursion c_t = lambda c_{t-1} + (1 - lambda) m_t from c_0 =
    ``initial``, for the batch means ``batch_means`` (T, ...) in order; returns (T, ...).

    Unrolled: c_t = lambda^t c_0 + (1 - lambda) sum_{k=1..t} lambda^(t-k) m_k. With means of a
    fixed expectation mu, E c_t - mu = lambda^t (c_0 - mu); with independent means of variance
    s^2, Var c_t tends to s^2 (1 - lambda) / (1 + lambda); when mu drifts by a per step, c_t
    trails it by a lambda / (1 - lambda). ``tests/test_ibot.py`` checks each against this loop."""
    if not isinstance(batch_means, Tensor) or batch_means.dim() < 1 or batch_means.shape[0] == 0:
        raise ValueError(f"batch_means must be a tensor (T, ...) with T >= 1, got "
                         f"{describe(batch_means)}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    center = torch.as_tensor(initial, dtype=batch_means.dtype,
                             device=batch_means.device).expand_as(batch_means[0]).clone()
    centers = []
    for mean in batch_means:
        center = momentum * center + (1.0 - momentum) * mean
        centers.append(center)
    return torch.stack(centers)


# --- 4. the method on the shared training loop ---------------------------------------------------
@dataclass(frozen=True)
class IBOTConfig:
    """iBOT's hyperparameters. Defaults follow the official ``main_ibot.py`` README run (shared
    head, teacher temperatures 0.04 for CLS and patches, mask ratio 0 or U(0.1, 0.5)) except the
    sizes, which are the course's (32 px crops, a narrow head)."""

    out_dim: int = 1024                      # K, for CLS and patches (iBOT: 8192)
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    use_bn_in_head: bool = False
    shared_head: bool = True
    norm_last_layer: bool = True             # False: the prototypes' gains train (iBOT's ViT-S run)
    n_local_crops: int = 0
    global_size: int = 32
    local_size: int = 16
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    mask_ratio_range: tuple[float, float] = (0.1, 0.5)
    p_unmasked: float = 0.5
    student_temp: float = 0.1
    teacher_temp: float = 0.04               # tau_t for the CLS token
    teacher_patch_temp: float = 0.04         # tau_t' for the patches
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996          # cosine to 1
    lambda_patch: float = 1.0                # weight of L_mim
    lambda_cls: float = 1.0                  # weight of L_cls (the ablation's "MIM only" sets 0)
    patch_centering: bool = True             # False: the patch center stays 0 (the ablation)
    freeze_last_layer_steps: int = 0         # the heads' prototypes get no update (iBOT: 1 epoch)
    pred_start_step: int = 0                 # no crop masked, so no patch loss, before this step
                                             # (iBOT's --pred_start_epoch: 0, "50 for swin")

    def __post_init__(self) -> None:
        for name in ("out_dim", "hidden_dim", "bottleneck_dim", "global_size", "local_size"):
            check_int(name, getattr(self, name))
        check_int("n_local_crops", self.n_local_crops, 0)
        check_int("freeze_last_layer_steps", self.freeze_last_layer_steps, 0)
        check_int("pred_start_step", self.pred_start_step, 0)
        low, high = self.mask_ratio_range
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"mask_ratio_range must satisfy 0 < low <= high < 1, got "
                             f"{self.mask_ratio_range!r}")
        for name in ("student_temp", "teacher_temp", "teacher_patch_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("center_momentum", "momentum_teacher", "p_unmasked"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("lambda_patch", "lambda_cls"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("use_bn_in_head", "shared_head", "norm_last_layer", "patch_centering"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")


class _Networks(nn.Module):
    """One side of iBOT: a timm ViT, the CLS head and the patch head (the same module when
    shared)."""

    def __init__(self, backbone: nn.Module, cls_head: DINOHead, patch_head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.cls_head, self.patch_head = backbone, cls_head, patch_head

    def forward(self, images: Tensor, mask: Tensor | None = None, mask_token: Tensor | None = None,
                with_patches: bool = True, freeze_last_layer: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, 3, H, W) -> CLS logits (B, K) and patch logits (B, N, K) (None without
        ``with_patches``: the local crops need only their CLS token). ``freeze_last_layer``: no
        gradient reaches either head's prototypes (:meth:`course_lib.dino.DINOHead.forward`)."""
        tokens = encode_tokens(self.backbone, embed_tokens(self.backbone, images, mask=mask,
                                                           mask_token=mask_token))
        cls, _, patches = split_tokens(self.backbone, tokens)           # (B, D), _, (B, N, D)
        cls_logits = self.cls_head(cls, freeze_last_layer)
        if not with_patches:
            return cls_logits, None
        patch_logits = self.patch_head(patches.flatten(0, 1), freeze_last_layer)
        return cls_logits, patch_logits.view(*patches.shape[:2], -1)


class IBOT(Method):
    """Student (ViT, mask embedding, heads) on masked global crops and unmasked local crops;
    teacher (a copy, EMA) on the unmasked global crops.

    ``L = lambda_cls * L_cls + lambda_patch * L_mim``: L_cls is :class:`course_lib.dino.DINOLoss` on the CLS
    logits (its own center), L_mim is :func:`ibot_patch_loss` per global crop (same view), with
    the patch center updated after the loss by :func:`course_lib.ema.update_center`. ``crops`` maps a uint8
    batch to [global 1, global 2, locals...] (default ``batched_multi_crop`` with the config's
    sizes); ``masks(batch, grid, generator)`` draws the (B, N) bool masks of one global crop
    (default :func:`ibot_masks` with the config's ratios). For the first
    ``config.freeze_last_layer_steps`` steps the heads' prototypes get no gradient; before step
    ``config.pred_start_step`` no crop is masked, so the patch loss is zero.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, *, steps: int,
                 config: IBOTConfig = IBOTConfig(),
                 crops: Callable[[Tensor], list[Tensor]] | None = None, seed: int = 0) -> None:
        super().__init__()
        check_int("feature_dim", feature_dim)
        check_int("steps", steps)
        if not isinstance(config, IBOTConfig):
            raise ValueError(f"config must be an IBOTConfig, got {type(config).__name__}")
        self.config, self.steps = config, steps
        make_head = partial(DINOHead, feature_dim, config.out_dim, config.hidden_dim,
                            config.bottleneck_dim, use_bn=config.use_bn_in_head,
                            norm_last_layer=config.norm_last_layer)
        cls_head = make_head()
        self.student = _Networks(backbone, cls_head, cls_head if config.shared_head else make_head())
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)             # the teacher moves by EMA only
        # iBOT's masked_embed: zero-initialised, learned with the student.
        self.mask_token = nn.Parameter(torch.zeros(feature_dim))
        self.cls_loss = DINOLoss(config.out_dim, 2, config.student_temp, config.center_momentum)
        self.register_buffer("patch_center", torch.zeros(1, 1, config.out_dim))   # (1, 1, K)
        self.crops = crops or default_crops(config)
        self.generator = torch.Generator().manual_seed(seed)
        self.momentum_schedule = cosine_schedule(config.momentum_teacher, 1.0, steps)

    @property
    def backbone(self) -> nn.Module:
        """The student's ViT (evaluate it, or ``teacher.backbone``, with k-NN or a probe)."""
        return self.student.backbone

    def masks(self, view: Tensor) -> Tensor:
        """The (B, N) bool masks of one global crop (B, 3, H, W), on its device."""
        return global_crop_masks(self.backbone, view, self.config, self.generator)

    def training_step(self, images, labels, step):
        """uint8 images (B, 3, H, W) -> (loss, metrics); labels are ignored."""
        if not 0 <= step < self.steps:
            raise ValueError(f"step must be in [0, steps={self.steps}), got {step}")
        crops = self.crops(images)
        globals_, locals_ = crops[:2], crops[2:]
        masks = [self.masks(view) for view in globals_]      # drawn every step: the same stream
        if step < self.config.pred_start_step:                # masked prediction not started yet
            masks = [torch.zeros_like(mask) for mask in masks]
        frozen = step < self.config.freeze_last_layer_steps
        student = [self.student(view, mask, self.mask_token, freeze_last_layer=frozen)
                   for view, mask in zip(globals_, masks)]
        student_cls = [cls for cls, _ in student] + [self.student(view, with_patches=False,
                                                                  freeze_last_layer=frozen)[0]
                                                    for view in locals_]
        with torch.no_grad():
            self.teacher.train(self.training)
            teacher = [self.teacher(view) for view in globals_]         # never masked
        cfg = self.config
        loss_cls = self.cls_loss(torch.cat(student_cls), torch.cat([c for c, _ in teacher]),
                                 cfg.teacher_temp)
        loss_mim = sum(ibot_patch_loss(s_patch, t_patch, mask, cfg.student_temp,
                                       cfg.teacher_patch_temp, self.patch_center)
                       for (_, s_patch), (_, t_patch), mask in zip(student, teacher, masks))
        loss_mim = loss_mim / len(globals_)
        teacher_patches = torch.cat([p for _, p in teacher])                 # (2B, N, K)
        patch_stats = self.patch_stats(teacher_patches)      # with the center this loss used
        if cfg.patch_centering:
            update_center(self.patch_center, teacher_patches, cfg.center_momentum)
        loss = cfg.lambda_cls * loss_cls + cfg.lambda_patch * loss_mim
        masked = torch.stack(masks).float().mean().item()
        return loss, {"loss_cls": loss_cls.item(), "loss_mim": loss_mim.item(),
                      "masked_fraction": masked, **self.cls_loss.last_stats, **patch_stats}

    @torch.no_grad()
    def patch_stats(self, teacher_patch_logits: Tensor) -> dict[str, float]:
        """The collapse readings of the patch targets (B, N, K) -> floats: ``patch_entropy``, the
        mean over patches of H(P_t^i), and ``patch_batch_mean_entropy``, H of their average over
        every patch of the batch (uniform collapse: both log K; one-hot: both 0)."""
        targets = teacher_distribution(teacher_patch_logits.float(), self.patch_center,
                                       self.config.teacher_patch_temp)
        return {"patch_entropy": entropy(targets).mean().item(),
                "patch_batch_mean_entropy": entropy(targets.flatten(0, 1).mean(0)).item()}

    @torch.no_grad()
    def after_step(self, step):
        ema_update(self.teacher, self.student, float(self.momentum_schedule[step]))

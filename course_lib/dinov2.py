"""DINOv2's additions to DINO and iBOT (Oquab et al. 2024, "DINOv2: Learning Robust Visual
Features without Supervision", section 4): the KoLeo regulariser and Sinkhorn-Knopp centering.
Unit 6.

    KoLeo:    L_koleo = -(1/n) sum_i log(min_{j != i} ||x_i - x_j||),  x L2-normalised
    SK:       Q = exp(t / tau)^T (K x B), scaled so that every prototype receives the same mass
              and every sample a distribution: a few alternating row and column normalisations

KoLeo (Sablayrolles et al. 2019, "Spreading vectors for similarity search") pushes every feature
away from its nearest neighbour in the batch, which spreads the batch over the sphere. Sinkhorn-
Knopp (Cuturi 2013; SwAV, Caron et al. 2020) replaces the teacher's running center: instead of
subtracting a mean, it rescales the batch's teacher scores until the prototypes are used
equally, an equipartition constraint on the batch itself.

Both follow the official ``dinov2/loss`` code (``KoLeoLoss``, ``sinkhorn_knopp_teacher``) with two
deliberate differences, each in its docstring: KoLeo casts its input to float32 first (in half
precision the official eps underflows and the loss is inf), and Sinkhorn-Knopp shifts the scores
by their maximum and iterates in float64 (a constant shift changes nothing after the
normalisations, and small temperatures no longer overflow).

The combined objective (``ssl_meta_arch.py``) is DINO on the CLS token, iBOT on the masked patches
and KoLeo on the student's CLS features, one center (or Sinkhorn-Knopp) per objective:

    L = w_dino L_dino + w_ibot L_ibot + w_koleo sum_{global crops} L_koleo(CLS)     (1, 1, 0.1)

Only the masked tokens go through the patch head (M of them, not B x N), and the patch center
averages the masked teacher tokens only (iBOT averages every patch). The file reads in order:
KoLeo, Sinkhorn-Knopp, the masked-token patch loss, the method on the shared training loop.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ._checks import check_int, describe
from .backbones import embed_tokens, encode_tokens, split_tokens
from .diagnostics import entropy
from .dino import DINOHead, DINOLoss, teacher_distribution
from .ema import ema_update, update_center
from .ibot import default_crops, global_crop_masks
from .runtime import release_freed_memory
from .schedules import cosine_schedule
from .train import Method

Tensor = torch.Tensor


# --- 1. KoLeo ---------------------------------------------------------------------------------------
def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """KoLeo on the rows of ``x`` (n, D), n >= 2: L2-normalise, find each row's nearest other row
    by cosine similarity (the diagonal excluded), and return -mean_i log(||x_i - x_nn(i)|| + eps),
    a float32 scalar whatever the input dtype.

    As the official ``KoLeoLoss``: the distance is ``F.pairwise_distance`` (eps added to the
    difference) and the gradient flows through both rows of each pair, the neighbour index does
    not. Two identical rows give a distance of about eps * sqrt(D) and a large finite term
    (about 15.4 for D = 384), never inf; a negative loss is normal (neighbours further than 1)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point() or x.shape[0] < 2:
        raise ValueError(f"x must be a floating-point tensor (n, D) with n >= 2, got {describe(x)}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    x = F.normalize(x.float(), dim=-1, eps=eps)                       # (n, D), float32
    with torch.no_grad():
        similarity = x @ x.T                                          # (n, n), cosines in [-1, 1]
        similarity.fill_diagonal_(-2.0)                               # never one's own neighbour
        nearest = similarity.argmax(dim=1)                            # (n,)
    distance = F.pairwise_distance(x, x[nearest], eps=eps)            # (n,)
    return -torch.log(distance + eps).mean()


# --- 2. Sinkhorn-Knopp -----------------------------------------------------------------------------
@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iters: int = 3) -> Tensor:
    """Balanced soft assignments of B samples to K prototypes: (B, K) -> (B, K) float32, each row a
    distribution, each prototype (column) with about B / K of the total mass.

    As the official ``sinkhorn_knopp_teacher``: Q = exp(logits / tau)^T (K x B), divided by its
    sum; then ``n_iters`` times: each prototype's row to total 1 / K, each sample's column to total
    1 / B; finally times B, so that each sample's assignment sums to 1. B counts the samples of
    every process when ``torch.distributed`` is initialised (the sums are all-reduced) and this
    process's otherwise. The logits are shifted by their (global) maximum before the exponential,
    which the normalisations cancel exactly, and the iterations run in float64, so scores spread
    over up to about 700 (cosine logits at a temperature down to 0.003) neither overflow, as the
    official float32 code does from about 88, nor underflow; a row or column that still
    underflows stays zero instead of becoming NaN. No gradient (the teacher's targets)."""
    if (not isinstance(teacher_logits, Tensor) or teacher_logits.dim() != 2
            or not teacher_logits.is_floating_point()):
        raise ValueError(f"teacher_logits must be a floating-point tensor (B, K), got "
                         f"{describe(teacher_logits)}")
    if not teacher_temp > 0:
        raise ValueError(f"teacher_temp must be positive, got {teacher_temp!r}")
    if not isinstance(n_iters, int) or isinstance(n_iters, bool) or n_iters < 1:
        raise ValueError(f"n_iters must be a positive int, got {n_iters!r}")
    scores = teacher_logits.double() / teacher_temp                    # (B, K)
    top = scores.max()
    if _distributed():
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    q = torch.exp(scores - top).T                                      # (K, B)
    n_samples, n_prototypes = q.shape[1], q.shape[0]
    total = q.sum()
    if _distributed():
        dist.all_reduce(total)
        n_samples *= dist.get_world_size()
    tiny = torch.finfo(q.dtype).tiny
    q /= total.clamp_min(tiny)
    for _ in range(n_iters):
        rows = q.sum(dim=1, keepdim=True)                              # (K, 1) mass per prototype
        if _distributed():
            dist.all_reduce(rows)
        q /= rows.clamp_min(tiny) * n_prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(tiny) * n_samples   # (1, B) mass per sample
    return (q * n_samples).T.float()                                   # (B, K), rows sum to 1


# --- 3. the patch loss on masked tokens only -------------------------------------------------------
def masked_patch_loss(student_logits: Tensor, targets: Tensor, mask: Tensor,
                      student_temp: float = 0.1) -> Tensor:
    """iBOT's loss as DINOv2 computes it, on the M masked tokens only: ``student_logits`` (M, K)
    are the student's patch-head outputs at the masked positions, ``targets`` (M, K) the teacher's
    distributions there (centered or Sinkhorn-Knopp, rows summing to 1), ``mask`` (B, N) bool with
    M True entries, in row-major order (``patches[mask]``). Returns a float32 scalar:

        CE_i = -sum_k targets_ik log softmax(s_i / student_temp)_k
        w_i  = 1 / (number of masked tokens in token i's image)
        L    = sum_i w_i CE_i / B

    the same number as :func:`course_lib.ibot.ibot_patch_loss` on full (B, N, K) logits: each
    image's masked tokens are averaged, and an image with none adds 0 to the mean over all B."""
    if (not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2
            or mask.shape[0] == 0):
        raise ValueError(f"mask must be a bool tensor (B, N) with B >= 1, got {describe(mask)}")
    n_masked = int(mask.sum())
    for name, value in (("student_logits", student_logits), ("targets", targets)):
        if (not isinstance(value, Tensor) or value.dim() != 2 or not value.is_floating_point()
                or value.shape[0] != n_masked):
            raise ValueError(f"{name} must be a floating-point tensor (M, K) with M = {n_masked} "
                             f"masked tokens, got {describe(value)}")
    if student_logits.shape != targets.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and targets "
                         f"{tuple(targets.shape)} must have the same shape (M, K)")
    if not student_temp > 0:
        raise ValueError(f"student_temp must be positive, got {student_temp!r}")
    per_image = mask.sum(dim=1, keepdim=True).expand_as(mask)[mask]         # (M,) counts
    weights = 1.0 / per_image.float()
    log_probs = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    cross_entropy = -(targets.detach().float() * log_probs).sum(dim=-1)     # (M,)
    return (weights * cross_entropy).sum() / mask.shape[0]


# --- 4. the method on the shared training loop ---------------------------------------------------
CENTERINGS: tuple[str, ...] = ("centering", "sinkhorn_knopp")


@dataclass(frozen=True)
class DINOv2Config:
    """DINOv2's hyperparameters (``ssl_default_config.yaml``) at the course's sizes: one head
    shared by DINO and iBOT, loss weights 1, 1 and KoLeo 0.1, masks on half the images at ratios
    U(0.1, 0.5), temperatures 0.1 / 0.04, center momentum 0.9, EMA 0.992 -> 1.
    ``centering`` is the one switch between EMA centers ("centering") and Sinkhorn-Knopp
    ("sinkhorn_knopp", ``sinkhorn_iters`` iterations) for both objectives.

    Simplified, and said here: the teacher temperature stays at ``teacher_temp`` (DINOv2 warms it
    from 0.04 to 0.07), and masks are drawn per image as iBOT's (DINOv2 masks exactly half the
    crops, with stratified ratios: the same expectation)."""

    out_dim: int = 1024                      # K (DINOv2: 65536)
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    use_bn_in_head: bool = False
    shared_head: bool = True
    n_local_crops: int = 0
    global_size: int = 32
    local_size: int = 16
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    mask_ratio_range: tuple[float, float] = (0.1, 0.5)
    p_unmasked: float = 0.5
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    center_momentum: float = 0.9
    momentum_teacher: float = 0.992          # cosine to 1
    centering: str = "centering"             # or "sinkhorn_knopp"
    sinkhorn_iters: int = 3
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("out_dim", "hidden_dim", "bottleneck_dim", "global_size", "local_size",
                     "sinkhorn_iters"):
            check_int(name, getattr(self, name))
        check_int("n_local_crops", self.n_local_crops, 0)
        if self.centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {CENTERINGS}, got {self.centering!r}")
        low, high = self.mask_ratio_range
        if not 0.0 < low <= high < 1.0:
            raise ValueError(f"mask_ratio_range must satisfy 0 < low <= high < 1, got "
                             f"{self.mask_ratio_range!r}")
        for name in ("student_temp", "teacher_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("center_momentum", "momentum_teacher", "p_unmasked"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("dino_weight", "ibot_weight", "koleo_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


class _Side(nn.Module):
    """One side of DINOv2: a timm ViT (registers allowed), the CLS head and the patch head (the
    same module when shared)."""

    def __init__(self, backbone: nn.Module, cls_head: DINOHead, patch_head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.cls_head, self.patch_head = backbone, cls_head, patch_head

    def forward(self, images: Tensor, mask: Tensor | None = None,
                mask_token: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> the final-norm CLS features (B, D) and patch tokens (B, N, D); register
        outputs are dropped (no loss reads them)."""
        tokens = encode_tokens(self.backbone, embed_tokens(self.backbone, images, mask=mask,
                                                           mask_token=mask_token))
        cls, _registers, patches = split_tokens(self.backbone, tokens)
        return cls, patches


class DINOv2(Method):
    """DINO + iBOT + KoLeo: the student (ViT, mask embedding, heads) sees the two global crops
    masked (and any local crops unmasked); the teacher (a copy, EMA) sees the global crops whole.

    Per step, with G = 2 global crops of B images each, batched crop-major as (G*B, ...):
    ``loss_dino`` is :class:`course_lib.dino.DINOLoss` on the CLS logits (pairs of different crops
    averaged, its own center or Sinkhorn-Knopp over the G*B teacher rows); ``loss_ibot`` is
    :func:`masked_patch_loss` over the G*B crops, the M masked tokens only, the targets centered
    by the patch center (an EMA of the masked teacher tokens' logits) or balanced by
    Sinkhorn-Knopp over the M tokens; ``loss_koleo`` sums :func:`koleo_loss` of the student's CLS
    features (backbone output, before the head) over the global crops. ``crops`` maps a uint8
    batch to [global 1, global 2, locals...] (default ``batched_multi_crop`` with the config's
    sizes). The teacher runs in the student's mode (training: batch statistics in a BatchNorm
    head), as the course's DINO and iBOT."""

    def __init__(self, backbone: nn.Module, feature_dim: int, *, steps: int,
                 config: DINOv2Config = DINOv2Config(),
                 crops: Callable[[Tensor], list[Tensor]] | None = None, seed: int = 0) -> None:
        super().__init__()
        check_int("feature_dim", feature_dim)
        check_int("steps", steps)
        if not isinstance(config, DINOv2Config):
            raise ValueError(f"config must be a DINOv2Config, got {type(config).__name__}")
        self.config, self.steps = config, steps
        make_head = partial(DINOHead, feature_dim, config.out_dim, config.hidden_dim,
                            config.bottleneck_dim, use_bn=config.use_bn_in_head)
        cls_head = make_head()
        self.student = _Side(backbone, cls_head, cls_head if config.shared_head else make_head())
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)             # the teacher moves by EMA only
        self.mask_token = nn.Parameter(torch.zeros(feature_dim))
        self.sinkhorn = config.centering == "sinkhorn_knopp"
        self.dino_loss = DINOLoss(config.out_dim, 2, config.student_temp, config.center_momentum,
                                  sinkhorn_iters=config.sinkhorn_iters if self.sinkhorn else 0)
        self.register_buffer("patch_center", torch.zeros(1, config.out_dim))   # (1, K)
        self.crops = crops or default_crops(config)
        self.generator = torch.Generator().manual_seed(seed)
        self.momentum_schedule = cosine_schedule(config.momentum_teacher, 1.0, steps)

    @property
    def backbone(self) -> nn.Module:
        """The student's ViT."""
        return self.student.backbone

    def masks(self, views: Tensor) -> Tensor:
        """The (B, N) bool masks of a batch of global crops (B, 3, H, W), on its device."""
        return global_crop_masks(self.backbone, views, self.config, self.generator)

    def patch_targets(self, teacher_masked_logits: Tensor) -> Tensor:
        """The teacher's distributions (M, K) at the masked tokens: Sinkhorn-Knopp over the M
        tokens, or softmax((t - patch center) / tau_t); does not update the center."""
        cfg = self.config
        if self.sinkhorn:
            return sinkhorn_knopp(teacher_masked_logits, cfg.teacher_temp, cfg.sinkhorn_iters)
        return teacher_distribution(teacher_masked_logits.float(), self.patch_center,
                                    cfg.teacher_temp)

    def training_step(self, images, labels, step):
        """uint8 images (B, 3, H, W) -> (loss, metrics); labels are ignored."""
        if not 0 <= step < self.steps:
            raise ValueError(f"step must be in [0, steps={self.steps}), got {step}")
        cfg = self.config
        crops = self.crops(images)
        globals_, locals_ = torch.cat(crops[:2]), crops[2:]            # (2B, 3, H, W)
        mask = self.masks(globals_)                                      # (2B, N)
        s_cls, s_patches = self.student(globals_, mask, self.mask_token)
        s_cls_logits = [self.student.cls_head(s_cls)]
        s_cls_logits += [self.student.cls_head(self.student(view)[0]) for view in locals_]
        with torch.no_grad():
            self.teacher.train(self.training)
            t_cls, t_patches = self.teacher(globals_)                    # never masked
            t_cls_logits = self.teacher.cls_head(t_cls)                  # (2B, K)
            t_masked = self.teacher.patch_head(t_patches[mask])          # (M, K), masked only
        loss_dino = self.dino_loss(torch.cat(s_cls_logits), t_cls_logits, cfg.teacher_temp)
        if mask.any():
            targets = self.patch_targets(t_masked)
            loss_ibot = masked_patch_loss(self.student.patch_head(s_patches[mask]), targets, mask,
                                          cfg.student_temp)
            patch_stats = {"patch_entropy": entropy(targets).mean().item(),
                           "patch_batch_mean_entropy": entropy(targets.mean(0)).item()}
            if not self.sinkhorn:
                update_center(self.patch_center, t_masked, cfg.center_momentum)
        else:                                  # no masked token in the batch: no patch loss
            loss_ibot, patch_stats = s_patches.sum() * 0.0, {}
        loss_koleo = sum(koleo_loss(part) for part in s_cls.chunk(2))
        loss = (cfg.dino_weight * loss_dino + cfg.ibot_weight * loss_ibot
                + cfg.koleo_weight * loss_koleo)
        return loss, {"loss_dino": loss_dino.item(), "loss_ibot": loss_ibot.item(),
                      "loss_koleo": loss_koleo.item(), "masked_fraction": mask.float().mean().item(),
                      **self.dino_loss.last_stats, **patch_stats}

    @torch.no_grad()
    def after_step(self, step):
        ema_update(self.teacher, self.student, float(self.momentum_schedule[step]))
        release_freed_memory()     # the masked-token tensors change size every step

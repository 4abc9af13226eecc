"""DINO: self-distillation with no labels (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", section 3.1 and Algorithm 1). Lecture 02.

A student g_s and a teacher g_t share one architecture: a backbone, then a DINO head with K
outputs. Multi-crop turns each image into V views: 2 global crops, seen by both networks, and
V - 2 smaller local crops, seen by the student only. From every crop the student predicts the
teacher's distribution on a *different* global crop:

    P_t(x)  = softmax((g_t(x) - c) / tau_t)        teacher: centred, sharpened, no gradient
    P_s(x)  = softmax(g_s(x) / tau_s)              student
    L       = mean over pairs (i global, j any crop, j != i) of H(P_t(x_i), P_s(x_j))
    H(p, q) = -sum_k p_k log q_k

The teacher learns nothing by gradient. After each optimizer step

    theta_t <- m theta_t + (1 - m) theta_s         m: cosine schedule 0.996 -> 1
    c       <- m_c c + (1 - m_c) mean_b g_t(x_b)   over the batch's global crops, m_c = 0.9

Two opposite forces keep the pair from collapsing to a constant output: centering stops one
dimension from dominating but pushes towards the uniform distribution; sharpening (tau_t < tau_s)
pushes away from uniform. The collapse ablation turns each off (``use_centering``,
``use_sharpening``) and tracks the teacher's entropy and the teacher-student KL (Figure 7).

The file reads in the lecture's order: head, multi-crop encoder, loss, the method (its
schedules, for the EMA momentum and the teacher temperature, are in ``course_lib.schedules``).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ._checks import check_int, describe
from .augment import batched_multi_crop
from .diagnostics import entropy
from .ema import ema_update, update_center
from .schedules import cosine_schedule, teacher_temperature_schedule
from .train import Method

Tensor = torch.Tensor


# --- 1. the head ---------------------------------------------------------------------------------
class DINOHead(nn.Module):
    """Projection head g: MLP -> L2-normalised bottleneck -> weight-normalised linear layer.

    (B, in_dim) -> (B, out_dim). The MLP has ``n_layers`` linear layers (GELU between them, and
    BatchNorm when ``use_bn``), the last one to ``bottleneck_dim``. The last layer has no bias and
    is weight-normalised, W_k = g_k v_k / ||v_k||, with the gain g filled with 1: with
    ``norm_last_layer=True`` g stays frozen at 1, so every output is a cosine similarity between
    the bottleneck and a prototype v_k, in [-1, 1]; DINO needs this for stable ViT training
    (official code, ``vision_transformer.py``). torch's parametrisation stores g at
    ``last_layer.parametrizations.weight.original0`` (shape (out_dim, 1)) and v at ``.original1``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim),
                            ("bottleneck_dim", bottleneck_dim), ("n_layers", n_layers)):
            check_int(name, value)
        widths = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for k, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if k < n_layers - 1:  # no norm or activation after the bottleneck layer
                if use_bn:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():  # DINO's _init_weights: truncated normal, zero bias
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # The last layer keeps nn.Linear's default init for v, as in the official code.
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0      # (out_dim, 1)
        with torch.no_grad():
            gain.fill_(1.0)
        gain.requires_grad_(not norm_last_layer)

    def bottleneck(self, x: Tensor) -> Tensor:
        """The L2-normalised bottleneck features: (B, in_dim) -> (B, bottleneck_dim)."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: Tensor, freeze_last_layer: bool = False) -> Tensor:
        """(B, in_dim) -> (B, out_dim). With ``freeze_last_layer`` no gradient reaches the last
        layer (its ``.grad`` stays None, so the optimizer leaves the prototypes alone); the
        gradient still flows through it to the bottleneck and the backbone. DINO's code gets
        this by setting the grads to None after backward during the first epoch
        (``--freeze_last_layer 1``, ``utils.cancel_gradients_last_layer``); the shared loop has
        no call between backward and step, so :class:`DINO` asks the head instead."""
        z = self.bottleneck(x)                                        # (B, bottleneck_dim)
        if freeze_last_layer:
            return F.linear(z, self.last_layer.weight.detach())       # (B, out_dim)
        return self.last_layer(z)                                     # (B, out_dim)


# --- 2. multi-crop: one encoder, crops of several sizes -----------------------------------------
class MultiCropWrapper(nn.Module):
    """backbone + head on a list of crops: V tensors (B, C, H_v, W_v) -> logits (V*B, K).

    Rows are crop-major: rows v*B ... (v+1)*B - 1 belong to crop v. Consecutive crops of the same
    size go through the backbone as one batch (two calls for 2 globals + locals), as DINO's
    ``MultiCropWrapper``; the ViT resamples its positional embeddings for the smaller crops.
    ``freeze_last_layer`` is passed to :meth:`DINOHead.forward`.
    """

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: list[Tensor], freeze_last_layer: bool = False) -> Tensor:
        if not isinstance(crops, (list, tuple)) or not crops:
            raise ValueError(f"crops must be a non-empty list of (B, C, H, W) tensors, got "
                             f"{describe(crops)}")
        features = [self.backbone(torch.cat(list(same_size)))        # (n*B, D) per size
                    for _, same_size in itertools.groupby(crops, key=lambda c: c.shape[-2:])]
        return self.head(torch.cat(features), freeze_last_layer)      # (V*B, K)


# --- 3. the loss ---------------------------------------------------------------------------------
def teacher_distribution(logits: Tensor, center: Tensor | float = 0.0,
                         temperature: float = 0.04) -> Tensor:
    """P_t = softmax((logits - center) / temperature) over the last axis: the teacher's target.

    Centering subtracts a running mean (it pulls every output towards the same score, against
    one-hot collapse); a temperature below the student's sharpens (against uniform collapse).
    :meth:`DINOLoss.teacher_probs` is this with the loss's own center and flags."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return F.softmax((logits - center) / temperature, dim=-1)


class DINOLoss(nn.Module):
    """Cross-entropy from the teacher's global crops to the student's other crops, with centering.

        P_t = softmax((t - c) / tau_t)          no gradient (stop-gradient on the teacher)
        L   = 1 / |pairs| sum_{i < G} sum_{j != i} mean_b H(P_t[i, b], softmax(s[j, b] / tau_s))
        c  <- m c + (1 - m) mean of the raw teacher logits t over all G*B rows   (after L)

    ``student_logits`` (V*B, K) and ``teacher_logits`` (G*B, K) are crop-major (crop 0 of all B
    images, then crop 1, ...), with the G = ``n_global_crops`` global crops first in both, so
    student crop i and teacher crop i are the same view and that pair is skipped. The loss uses
    the center from before this batch; the center is then updated (``use_centering`` only).

    ``sinkhorn_iters > 0`` replaces the center by DINOv2's Sinkhorn-Knopp targets
    (:func:`course_lib.dinov2.sinkhorn_knopp`, sharpened by tau_t; c is neither used nor updated).
    Ablation flags: ``use_centering=False`` never subtracts nor updates c. ``use_sharpening=False``
    replaces tau_t by tau_s: the teacher is then no sharper than the student (any ``teacher_temp``
    passed is ignored). After each call ``last_stats`` holds floats for the collapse plots:
    ``teacher_entropy`` = mean_b H(P_t) over the G*B teacher rows, ``batch_mean_entropy`` =
    H(mean_b P_t) (the entropy of the average target) and ``kl`` = KL(P_t || P_s) averaged over
    the same pairs as the loss. Since H(p, q) = H(p) + KL(p || q) and every teacher crop appears
    in V - 1 pairs, kl = L - teacher_entropy. The two entropies together tell the failures apart:
    both near log K is uniform collapse, both near 0 is one-hot collapse, and a low per-image
    entropy under a high batch-mean entropy is a target that depends on the image.

    Example:
        >>> loss_fn = DINOLoss(out_dim=65536)
        >>> loss = loss_fn(student(crops), teacher(crops[:2]), teacher_temp=0.04)
        >>> loss_fn.last_stats  # {"teacher_entropy": ..., "batch_mean_entropy": ..., "kl": ...}
    """

    def __init__(self, out_dim: int, n_global_crops: int = 2, student_temp: float = 0.1,
                 center_momentum: float = 0.9, use_centering: bool = True,
                 use_sharpening: bool = True, sinkhorn_iters: int = 0) -> None:
        super().__init__()
        check_int("out_dim", out_dim)
        check_int("n_global_crops", n_global_crops)
        if not student_temp > 0:
            raise ValueError(f"student_temp must be positive, got {student_temp!r}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum!r}")
        self.out_dim, self.n_global_crops = out_dim, n_global_crops
        self.student_temp, self.center_momentum = float(student_temp), float(center_momentum)
        self.use_centering, self.use_sharpening = use_centering, use_sharpening
        check_int("sinkhorn_iters", sinkhorn_iters, 0)
        self.sinkhorn_iters = sinkhorn_iters   # > 0: DINOv2's Sinkhorn-Knopp targets, no center
        self.register_buffer("center", torch.zeros(1, out_dim))        # (1, K)
        self.last_stats: dict[str, float] = {}

    def _check(self, name: str, logits: Tensor) -> None:
        if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] != self.out_dim:
            raise ValueError(f"{name} must be (rows, K={self.out_dim}), got {describe(logits)}")
        if logits.device != self.center.device:
            raise ValueError(f"{name} is on {logits.device} but the center is on "
                             f"{self.center.device}; move the loss with .to(device)")

    def teacher_probs(self, teacher_logits: Tensor, teacher_temp: float) -> Tensor:
        """P_t = softmax((t - c) / tau_t) per row, detached; (rows, K) -> (rows, K) float32.

        Does not update the center."""
        self._check("teacher_logits", teacher_logits)
        try:
            tau_t = float(teacher_temp)
        except (TypeError, ValueError):
            tau_t = float("nan")
        if not tau_t > 0:
            raise ValueError(f"teacher_temp must be a positive number, got {teacher_temp!r}")
        if not self.use_sharpening:
            tau_t = self.student_temp  # "no sharpening": the teacher is no sharper than the student
        with torch.no_grad():
            if self.sinkhorn_iters:
                from .dinov2 import sinkhorn_knopp
                return sinkhorn_knopp(teacher_logits, tau_t, self.sinkhorn_iters)
            center = self.center if self.use_centering else 0.0
            return teacher_distribution(teacher_logits.detach().float(), center, tau_t)  # (rows, K)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor,
                teacher_temp: float) -> Tensor:
        """Scalar float32 loss; then the center update. Shapes: see the class docstring."""
        self._check("student_logits", student_logits)
        self._check("teacher_logits", teacher_logits)
        n_global = self.n_global_crops
        if teacher_logits.shape[0] == 0 or teacher_logits.shape[0] % n_global:
            raise ValueError(f"teacher_logits must have n_global_crops * B = {n_global} * B rows, "
                             f"got {teacher_logits.shape[0]}")
        batch_size = teacher_logits.shape[0] // n_global
        n_crops, rest = divmod(student_logits.shape[0], batch_size)
        if rest or n_crops < n_global or n_crops < 2:
            raise ValueError(f"student_logits must have V * B rows with B = {batch_size} (from "
                             f"teacher_logits) and V >= max(2, n_global_crops={n_global}) crops, "
                             f"global crops first; got {student_logits.shape[0]} rows")

        probs_t = self.teacher_probs(teacher_logits, teacher_temp)                  # (G*B, K)
        p_t = probs_t.chunk(n_global)                                                # G x (B, K)
        log_p_s = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)  # (V*B, K)
        log_p_s = log_p_s.chunk(n_crops)                                             # V x (B, K)
        total, n_pairs = 0.0, 0
        for i, target in enumerate(p_t):
            for j, log_pred in enumerate(log_p_s):
                if i == j:
                    continue  # the same view: trivially predictable, teaches nothing
                total = total + (-(target * log_pred).sum(dim=-1)).mean()
                n_pairs += 1
        loss = total / n_pairs

        with torch.no_grad():
            teacher_entropy = entropy(probs_t).mean()                 # mean over images of H(P_t)
            self.last_stats = {"teacher_entropy": teacher_entropy.item(),
                               "batch_mean_entropy": entropy(probs_t.mean(0)).item(),
                               "kl": (loss.detach() - teacher_entropy).item()}
        if self.use_centering and not self.sinkhorn_iters:
            self.update_center(teacher_logits)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_logits: Tensor) -> None:
        """c <- m c + (1 - m) * (mean of the raw teacher logits (G*B, K) over rows); in place
        (:func:`course_lib.ema.update_center`)."""
        self._check("teacher_logits", teacher_logits)
        update_center(self.center, teacher_logits, self.center_momentum)



# --- 4. the method on the shared training loop ---------------------------------------------------
@dataclass(frozen=True)
class DINOConfig:
    """DINO's hyperparameters. Defaults are the official ``main_dino.py`` defaults except the
    crop sizes (the course's 32 px images), out_dim (the code's 65536 is far too wide for a CPU)
    and the last-layer freeze (the code's is one epoch; set the steps of one epoch here). The
    paper's ViT-S/16 recipe raises ``teacher_temp`` to 0.07, warmed up over 30 epochs.
    """

    out_dim: int = 4096                      # K prototypes (DINO: 65536)
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    n_layers: int = 3
    use_bn_in_head: bool = False
    norm_last_layer: bool = True
    n_local_crops: int = 8
    global_size: int = 32                    # DINO: 224 px globals, 96 px locals
    local_size: int = 16
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    student_temp: float = 0.1                # tau_s
    warmup_teacher_temp: float = 0.04        # tau_t at step 0
    teacher_temp: float = 0.04               # tau_t after the warm-up
    warmup_teacher_temp_steps: int = 0
    center_momentum: float = 0.9             # m_c
    momentum_teacher: float = 0.996          # m at step 0, cosine to 1
    freeze_last_layer_steps: int = 0         # DINO: the first epoch
    use_centering: bool = True
    use_sharpening: bool = True
    use_ema: bool = True                     # False: the teacher is a copy of the student

    def __post_init__(self) -> None:
        for name in ("out_dim", "hidden_dim", "bottleneck_dim", "n_layers", "global_size",
                     "local_size"):
            check_int(name, getattr(self, name))
        for name in ("n_local_crops", "warmup_teacher_temp_steps", "freeze_last_layer_steps"):
            check_int(name, getattr(self, name), 0)
        for name in ("student_temp", "warmup_teacher_temp", "teacher_temp"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("center_momentum", "momentum_teacher"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


class DINO(Method):
    """Student (backbone + DINOHead) trained on all crops; teacher (a copy) sees the 2 global crops
    and follows the student by EMA in ``after_step``.

    ``steps`` is the length of the training run (``TrainConfig.steps``): the momentum and teacher
    temperature schedules are built for it. ``crops`` maps a uint8 batch (B, 3, H, W) to the list
    [global 1, global 2, local 1, ...] of normalised float tensors; default
    ``course_lib.augment.batched_multi_crop`` with the config's sizes. ``teacher_backbone``, if
    given, is a second backbone with the same parameters (e.g. built without drop-path, as the
    DINO code builds its teacher); it gets the student's weights. Default: a deep copy.

        method = DINO(build_vit("cpu"), 96, steps=300, config=DINOConfig(out_dim=1024))
        history = train(method, images, TrainConfig(steps=300))   # course_lib.train
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, *, steps: int,
                 config: DINOConfig = DINOConfig(),
                 crops: Callable[[Tensor], list[Tensor]] | None = None,
                 teacher_backbone: nn.Module | None = None) -> None:
        super().__init__()
        check_int("feature_dim", feature_dim)
        check_int("steps", steps)
        if not isinstance(config, DINOConfig):
            raise ValueError(f"config must be a DINOConfig, got {type(config).__name__}")
        if config.warmup_teacher_temp_steps > steps:
            raise ValueError(f"config.warmup_teacher_temp_steps must be <= steps={steps}, got "
                             f"{config.warmup_teacher_temp_steps}")
        self.config, self.steps = config, steps
        head = DINOHead(feature_dim, config.out_dim, config.hidden_dim, config.bottleneck_dim,
                        config.n_layers, use_bn=config.use_bn_in_head,
                        norm_last_layer=config.norm_last_layer)
        self.student = MultiCropWrapper(backbone, head)
        if teacher_backbone is None:
            self.teacher = copy.deepcopy(self.student)
        else:
            self.teacher = MultiCropWrapper(teacher_backbone, copy.deepcopy(head))
            try:
                self.teacher.load_state_dict(self.student.state_dict())
            except RuntimeError as error:
                raise ValueError(f"teacher_backbone must have the student backbone's parameters: "
                                 f"{error}") from None
        self.teacher.requires_grad_(False)  # the teacher moves by EMA only (stop-gradient)
        self.loss = DINOLoss(config.out_dim, 2, config.student_temp, config.center_momentum,
                             use_centering=config.use_centering,
                             use_sharpening=config.use_sharpening)
        self.crops = crops or partial(batched_multi_crop, global_size=config.global_size,
                                      local_size=config.local_size,
                                      n_local_crops=config.n_local_crops,
                                      global_scale=config.global_scale,
                                      local_scale=config.local_scale)
        # Per-step schedules, kept on the CPU (read with float(...), no device sync).
        self.momentum_schedule = cosine_schedule(config.momentum_teacher, 1.0, steps)
        self.teacher_temp_schedule = teacher_temperature_schedule(
            config.warmup_teacher_temp, config.teacher_temp,
            warmup_epochs=config.warmup_teacher_temp_steps, epochs=steps)  # one "epoch" per step

    @property
    def backbone(self) -> nn.Module:
        """The student's backbone (evaluate it, or ``teacher.backbone``, with k-NN / a probe)."""
        return self.student.backbone

    def momentum(self, step: int) -> float:
        """The EMA momentum m used after ``step``: the cosine schedule, or 0 without EMA."""
        return float(self.momentum_schedule[step]) if self.config.use_ema else 0.0

    def training_step(self, images, labels, step):
        """uint8 images (B, 3, H, W) -> (loss, metrics); labels are ignored (no labels in DINO)."""
        if not 0 <= step < self.steps:
            raise ValueError(f"step must be in [0, steps={self.steps}) (the schedules' length), "
                             f"got {step}")
        crops = self.crops(images)                 # [2 x (B, 3, G, G)] + [n_local x (B, 3, L, L)]
        if len(crops) < 2:
            raise ValueError(f"crops must return [global 1, global 2, locals...], got {len(crops)}")
        # Last-layer freeze: the shared loop has no call between backward and optimizer.step, so
        # instead of cancelling the gradient afterwards the head never produces one.
        frozen = step < self.config.freeze_last_layer_steps
        student_logits = self.student(crops, freeze_last_layer=frozen)   # (V*B, K): every crop
        with torch.no_grad():
            # Train mode like DINO's teacher: any BatchNorm (the conv stem's) uses batch statistics.
            self.teacher.train(self.training)
            teacher_logits = self.teacher(crops[:2])   # (2*B, K): global crops only
        teacher_temp = float(self.teacher_temp_schedule[step])
        loss = self.loss(student_logits, teacher_logits, teacher_temp)
        return loss, {**self.loss.last_stats, "teacher_temp": teacher_temp,
                      "momentum": self.momentum(step)}

    @torch.no_grad()
    def after_step(self, step):
        # m = 0 copies the student exactly: the "no EMA" teacher of the ablation.
        ema_update(self.teacher, self.student, self.momentum(step))

"""Experiment runners and figures of Lecture 06 (DINOv2): Sinkhorn-Knopp against the center, the
small-batch bound, KoLeo's spread, and token norms with and without registers.

:func:`sinkhorn_bound_table` needs no training: it applies both kinds of target to the same
logits at several batch sizes and sets the mean per-sample entropy beside log(K/B).

:func:`head_only_run` is DINO reduced to what centering and KoLeo act on: frozen features of four
augmented views of every image (from a shipped checkpoint, :func:`frozen_view_features`), a
trainable last layer (linear, then LayerNorm: the "backbone output" KoLeo spreads) and a DINO
head, its EMA teacher, two views per image and step. A run of 300 steps takes about two seconds
on one core, so the lecture trains every variant live.

:func:`register_norms` reads the residual stream of a ViT after every block and returns the norms
of its patch, register and CLS tokens: the measurement of Darcet et al. (2024), "Vision
Transformers Need Registers".
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import num_prefix_tokens, num_register_tokens
from ..data import make_shapes, normalize
from ..diagnostics import entropy, uniformity
from ..dino import DINOHead, DINOLoss, teacher_distribution
from ..dinov2 import CENTERINGS, koleo_loss, sinkhorn_knopp
from ..ema import ema_update
from ..evaluate import Pooled, extract_features, knn_accuracy

Tensor = torch.Tensor


# --- 1. the small-batch bound ----------------------------------------------------------------------
def sinkhorn_bound_table(batch_sizes: tuple[int, ...] = (4, 16, 64, 256, 1024), *,
                         out_dim: int = 256, teacher_temp: float = 0.04, n_iters: int = 3,
                         seed: int = 0) -> dict[int, dict[str, float]]:
    """B -> the mean per-sample entropy of three targets for the same B x K cosine logits (random
    unit features against random unit prototypes, as a DINO head's weight-normalised last layer
    gives), with log(K / B), the floor Sinkhorn-Knopp cannot go below once it is exact:

    ``softmax``: softmax((t - mean t) / tau), the batch's own center; ``sinkhorn``: ``n_iters``
    iterations; ``sinkhorn_exact``: 200 iterations. Also ``sinkhorn_marginal``, the entropy of the
    batch-mean target after ``n_iters`` iterations (log K when exact)."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = F.normalize(torch.randn(out_dim, 32, generator=gen), dim=1)
    table = {}
    for batch in batch_sizes:
        logits = F.normalize(torch.randn(batch, 32, generator=gen), dim=1) @ prototypes.T
        softmax = teacher_distribution(logits, logits.mean(0, keepdim=True), teacher_temp)
        few = sinkhorn_knopp(logits, teacher_temp, n_iters)
        exact = sinkhorn_knopp(logits, teacher_temp, 200)
        table[batch] = {"softmax": entropy(softmax).mean().item(),
                        "sinkhorn": entropy(few).mean().item(),
                        "sinkhorn_exact": entropy(exact).mean().item(),
                        "sinkhorn_marginal": entropy(few.mean(0)).item(),
                        "bound": max(math.log(out_dim / batch), 0.0)}
    return table


# --- 2. DINO on frozen features --------------------------------------------------------------------
@dataclass(frozen=True)
class FrozenFeatures:
    """Features of a frozen checkpoint: ``views`` (n, V, D) of V augmented views per training image,
    ``train`` (n, D) of the clean images with ``train_labels``, ``test`` (m, D) with
    ``test_labels``; ``source`` names the checkpoint."""

    views: Tensor
    train: Tensor
    train_labels: Tensor
    test: Tensor
    test_labels: Tensor
    source: str


def frozen_view_features(name: str = "simclr", *, n_train: int = 1024, n_test: int = 512,
                         n_views: int = 4, seed: int = 0) -> FrozenFeatures:
    """The shipped checkpoint ``name``'s pooled features of ``n_views`` augmented views (its own
    training views, as its metadata records them: :func:`course_lib.labs.pretrain.recorded_views`)
    of ``n_train`` training images of its data, and of ``n_train`` clean training and ``n_test``
    held-out images."""
    from .. import zoo
    from .pretrain import recorded_views, shapes_kwargs
    if n_views < 2 or n_views % 2:
        raise ValueError(f"n_views must be an even number >= 2, got {n_views!r}")
    model = zoo.load(name)
    kwargs = shapes_kwargs(model.meta["data"])
    images, labels, _ = make_shapes(n_train, **kwargs)
    test_images, test_labels, _ = make_shapes(n_test, split="test", **kwargs)
    gen = torch.Generator().manual_seed(seed)
    pooled = Pooled(model.backbone, model.meta["pooling"]).eval()
    views = []
    with torch.no_grad():
        for _ in range(n_views // 2):
            views += [extract_features(pooled, view) for view in recorded_views(model.meta, images, generator=gen)]
    return FrozenFeatures(torch.stack(views, 1), extract_features(pooled, images, transform=normalize),
                          labels, extract_features(pooled, test_images, transform=normalize),
                          test_labels, name)


def spread(z: Tensor) -> dict:
    """How a set of features (n, D) fills the sphere once L2-normalised: ``nn_index`` (n,), each
    row's nearest other row, ``nn_distance`` (n,), the Euclidean distance to it, its median, and
    the uniformity log E exp(-2 ||z_i - z_j||^2) of :func:`course_lib.diagnostics.uniformity`."""
    z = F.normalize(z.float(), dim=1)
    similarity = z @ z.T
    similarity.fill_diagonal_(-2.0)
    best = similarity.max(1)
    distance = (2 - 2 * best.values).clamp_min(0).sqrt()
    return {"nn_index": best.indices, "nn_distance": distance, "nn_median": distance.median().item(),
            "uniformity": uniformity(z).item()}


def _side(dim: int, out_dim: int) -> nn.ModuleDict:
    return nn.ModuleDict({"layer": nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim)),
                          "head": DINOHead(dim, out_dim, 256, 64, use_bn=True)})


def head_only_run(features: FrozenFeatures, *, centering: str = "centering",
                  koleo_weight: float = 0.0, batch_size: int = 128, steps: int = 300,
                  out_dim: int = 256, teacher_temp: float = 0.04, momentum: float = 0.99,
                  lr: float = 1e-3, window: int = 20, seed: int = 0,
                  device: torch.device | str = "cpu") -> dict:
    """DINO's loss (and KoLeo) on frozen features: each step takes ``batch_size`` images and two
    of their views, the student's last layer and head see both, the teacher (EMA, ``momentum``)
    targets them with ``centering`` ("centering": the EMA center; "sinkhorn_knopp": 3 iterations
    over the 2B teacher rows; "none"); KoLeo acts on the last layer's output per view.

    Returns per step ``entropy`` (mean per-sample target entropy) and ``marginal_entropy`` (of the
    mean target over the last ``window`` batches: how evenly the prototypes are used), and at the
    end the teacher's last-layer features of the held-out images: :func:`spread` and the 20-NN
    accuracy from the clean training features (``knn``); ``log_k``, ``bound`` = log(K / 2B).
    Trains on ``device``; the batches are drawn on the CPU from ``seed``, so a run is the same
    wherever it trains, up to floating point."""
    if centering not in CENTERINGS + ("none",):
        raise ValueError(f"centering must be one of {CENTERINGS + ('none',)}, got {centering!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, n_views, dim = features.views.shape
    student = _side(dim, out_dim).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    loss_fn = DINOLoss(out_dim, 2, 0.1, 0.9, use_centering=centering != "none",
                       sinkhorn_iters=3 if centering == "sinkhorn_knopp" else 0).to(device)
    views = features.views.to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.04)
    record, recent = {"entropy": [], "marginal_entropy": []}, []
    for _ in range(steps):
        images = torch.randint(0, n, (batch_size,), generator=gen)
        pair = torch.rand(batch_size, n_views, generator=gen).argsort(dim=1)[:, :2]
        x = torch.cat([views[images, pair[:, 0]], views[images, pair[:, 1]]])
        z = student["layer"](x)                                      # (2B, D), crop-major
        with torch.no_grad():
            teacher_logits = teacher["head"](teacher["layer"](x))
            targets = loss_fn.teacher_probs(teacher_logits, teacher_temp)   # before the update
        loss = loss_fn(student["head"](z), teacher_logits, teacher_temp)
        if koleo_weight:
            loss = loss + koleo_weight * sum(koleo_loss(part) for part in z.chunk(2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema_update(teacher, student, momentum)
        recent = (recent + [targets])[-window:]
        record["entropy"].append(loss_fn.last_stats["teacher_entropy"])
        record["marginal_entropy"].append(entropy(torch.cat(recent).mean(0)).item())
    with torch.no_grad():
        teacher.eval()
        test = teacher["layer"](features.test.to(device)).cpu()
        train = teacher["layer"](features.train.to(device)).cpu()
    return {**record, **spread(test), "centering": centering, "koleo_weight": koleo_weight,
            "knn": knn_accuracy(train, features.train_labels, test, features.test_labels),
            "log_k": math.log(out_dim), "bound": max(math.log(out_dim / (2 * batch_size)), 0.0)}


def plot_centering(runs: dict, axes=None):
    """Two panels for :func:`head_only_run` results (label -> run): mean per-sample target entropy
    and marginal entropy over training, with log K and each run's bound log(K / 2B) dotted."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for label, run in runs.items():
        line, = axes[0].plot(run["entropy"], label=label)
        if run["centering"] == "sinkhorn_knopp" and run["bound"] > 0:
            axes[0].axhline(run["bound"], color=line.get_color(), ls=":", lw=1)
        axes[1].plot(run["marginal_entropy"], label=label)
    for ax, title in zip(axes, ("per-sample target entropy", "marginal (prototype use)")):
        ax.axhline(next(iter(runs.values()))["log_k"], color="k", ls="--", lw=1)
        ax.set(xlabel="step", ylabel="nats", title=title)
        ax.legend(fontsize=8)
    return axes


# --- 3. token norms and registers ------------------------------------------------------------------
@torch.no_grad()
def register_norms(model: nn.Module, images: Tensor) -> dict:
    """Token norms of a course ViT on normalised ``images`` (B, 3, H, W), in eval mode: the
    residual stream after every block (before the final norm, where Darcet et al. read it).
    Returns ``patch`` (depth, B, N), ``registers`` (depth, B, R) and ``cls`` (depth, B)."""
    was_training = model.training
    model.eval()
    outputs = []
    hooks = [block.register_forward_hook(lambda module, args, out: outputs.append(out))
             for block in model.blocks]
    try:
        model.forward_features(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    norms = torch.stack(outputs).norm(dim=-1)                       # (depth, B, P + N)
    prefix, registers = num_prefix_tokens(model), num_register_tokens(model)
    return {"patch": norms[..., prefix:], "registers": norms[..., 1:1 + registers],
            "cls": norms[..., 0]}


def norm_summary(norms: dict) -> list[dict]:
    """One row per block of :func:`register_norms`: the median and the largest patch-token norm,
    their ratio, the share of patch tokens above 3 x the median (the high-norm outliers), and the
    median register and CLS norms."""
    rows = []
    for depth, patch in enumerate(norms["patch"]):
        median = patch.median().item()
        registers = norms["registers"][depth]
        rows.append({"block": depth + 1, "patch_median": median, "patch_max": patch.max().item(),
                     "max_over_median": patch.max().item() / median,
                     "outlier_share": (patch > 3 * median).float().mean().item(),
                     "register_median": registers.median().item() if registers.numel() else None,
                     "cls": norms["cls"][depth].median().item()})
    return rows

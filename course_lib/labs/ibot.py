"""Experiment runners and figures of Lecture 04 (iBOT): the feedback loop centering breaks, and
the ablation of iBOT's two objectives and its patch center.

:func:`feedback_loop` is the smallest system in which the loop runs: a linear student and its EMA
teacher on fixed random features, trained with the self-distillation cross-entropy, one output
dimension favoured by a small bias at the start. Without centering that dimension's share of the
teacher's targets grows until every image gets it (one-hot collapse); with the centre subtracted
the bias cancels and the share stays where the features put it.

:func:`ibot_ablation` trains ``course_lib.ibot.IBOT`` several times from one seeded
initialisation on the embedded shapes, switching its parts off (:data:`VARIANTS`), and reads each
run three ways: the entropies of the teacher's CLS and patch targets (per image or patch, and of
their batch mean: the collapse readings of Lecture 02), the weighted k-NN of the CLS token, and
the dense probe of the patch tokens against the object masks (``course_lib.evaluate.dense_probe``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from ..backbones import build_vit, freeze_pos_embed
from ..data import N_CLASSES, make_shapes
from ..diagnostics import entropy
from ..dino import teacher_distribution
from ..evaluate import dense_probe, evaluate_backbone
from ..ibot import IBOT, IBOTConfig
from ..mae import sincos_2d
from ..runtime import at_scale
from . import ablation_runs
from ..train import TrainConfig, train

Tensor = torch.Tensor


# --- 1. the feedback loop, in a linear student -----------------------------------------------------
def feedback_loop(*, centering: bool, steps: int = 300, n_outputs: int = 8, n_features: int = 16,
                  batch_size: int = 256, favour: float = 0.05, signal: float = 0.1,
                  student_temp: float = 0.1,
                  teacher_temp: float = 0.04, lr: float = 0.05, ema: float = 0.9,
                  center_momentum: float = 0.9, seed: int = 0) -> dict:
    """Self-distillation of a linear head, logits = W x + b, on fixed Gaussian features.

    Each step draws ``batch_size`` images x ~ N(0, signal^2 I) in ``n_features`` dimensions (a
    small ``signal``: early in training the outputs differ little between images) and two noisy
    views of each; the teacher's targets on view 1 are ``teacher_distribution(logits_t, c,
    teacher_temp)`` with c the EMA of its logits (``centering``) or 0; the student's cross-entropy
    on view 2 takes one SGD step; the teacher follows by EMA. Output 0 starts with a bias
    ``favour`` higher than the others. Float64, seeded. Returns per step: ``favoured_share`` (the
    batch-mean target's probability of output 0), ``batch_mean_entropy`` and ``entropy`` (mean per
    image), ``bias_gap`` (the teacher's b_0 minus the mean of its other biases); and ``log_k``."""
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    weight = torch.randn(n_outputs, n_features, generator=gen, dtype=dtype) / math.sqrt(n_features)
    bias = torch.zeros(n_outputs, dtype=dtype)
    bias[0] = favour
    student_w, student_b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    teacher_w, teacher_b = weight.clone(), bias.clone()
    center = torch.zeros(n_outputs, dtype=dtype)
    record = {"favoured_share": [], "batch_mean_entropy": [], "entropy": [], "bias_gap": []}
    for _ in range(steps):
        x = signal * torch.randn(batch_size, n_features, generator=gen, dtype=dtype)
        view1 = x + 0.1 * signal * torch.randn(x.shape, generator=gen, dtype=dtype)
        view2 = x + 0.1 * signal * torch.randn(x.shape, generator=gen, dtype=dtype)
        teacher_logits = view1 @ teacher_w.T + teacher_b                      # (B, K)
        targets = teacher_distribution(teacher_logits, center if centering else 0.0, teacher_temp)
        log_q = F.log_softmax((view2 @ student_w.T + student_b) / student_temp, dim=-1)
        loss = -(targets * log_q).sum(-1).mean()
        grad_w, grad_b = torch.autograd.grad(loss, (student_w, student_b))
        with torch.no_grad():
            student_w -= lr * grad_w
            student_b -= lr * grad_b
            teacher_w.mul_(ema).add_(student_w, alpha=1 - ema)
            teacher_b.mul_(ema).add_(student_b, alpha=1 - ema)
            if centering:                               # after the loss, from the raw logits
                center.mul_(center_momentum).add_(teacher_logits.mean(0), alpha=1 - center_momentum)
        mean_target = targets.mean(0)
        record["favoured_share"].append(mean_target[0].item())
        record["batch_mean_entropy"].append(entropy(mean_target).item())
        record["entropy"].append(entropy(targets).mean().item())
        record["bias_gap"].append((teacher_b[0] - teacher_b[1:].mean()).item())
    return {**record, "log_k": math.log(n_outputs), "centering": centering}


def plot_feedback_loop(runs: dict, axes=None):
    """Two panels for :func:`feedback_loop` runs (label -> result): the favoured output's share of
    the batch-mean target, and the batch-mean entropy against log K."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for label, run in runs.items():
        axes[0].plot(run["favoured_share"], label=label)
        axes[1].plot(run["batch_mean_entropy"], label=label)
    first = next(iter(runs.values()))
    axes[0].axhline(1 / math.exp(first["log_k"]), color="gray", ls=":", lw=1, label="1 / K")
    axes[1].axhline(first["log_k"], color="k", ls="--", lw=1, label="log K")
    axes[0].set(xlabel="step", ylabel="share of output 0", title="the favoured output")
    axes[1].set(xlabel="step", ylabel="nats", title="entropy of the batch-mean target")
    for ax in axes:
        ax.legend(fontsize=8)
    return axes


# --- 2. the ablation -------------------------------------------------------------------------------
# IBOTConfig fields each variant changes. Masks are drawn in every run, so the student's input is
# the same everywhere and only the objectives and the patch center differ.
VARIANTS: dict[str, dict] = {
    "cls_only": dict(lambda_patch=0.0),
    "mim_only": dict(lambda_cls=0.0),
    "both": dict(),
    "no_patch_centering": dict(patch_centering=False),
}


@dataclass(frozen=True)
class AblationScale:
    """Data, model, iBOT and optimiser settings of one scale of the ablation."""

    n_train: int
    n_test: int
    n_dense: int                       # images (train and test each) of the dense probe
    vit: dict                          # build_vit keyword arguments
    ibot: IBOTConfig
    train: TrainConfig


ABLATION_SCALES: dict[str, AblationScale] = {
    # CPU: a 2-block ViT of width 64 on MAE's 8x8 grid of 4 px patches (a masked patch leaks
    # nothing into its neighbours), K = 256 with BatchNorm in the shared head, batch 32, 60
    # steps: 11 to 13 s a variant on one thread (lecture 04's saved run), and the patch-centering
    # collapse is clear by then
    # (one thread, seed 0: the patch targets' batch-mean entropy 3.85 without the patch center,
    # 5.22 with it, of log K = 5.55; 4.01 and 5.21 at 50 steps, 3.2 and 5.3 at 150).
    "cpu": AblationScale(
        n_train=2000, n_test=500, n_dense=300,
        vit=dict(preset="cpu", stem="patch", patch_size=4, embed_dim=64, depth=2, num_heads=2),
        ibot=IBOTConfig(out_dim=256, hidden_dim=256, bottleneck_dim=64, use_bn_in_head=True,
                        momentum_teacher=0.99),
        train=TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup_steps=10, log_every=5,
                          progress=False)),
    # GPU: ViT-Ti on the same grid, K = 4096, 2000 steps.
    "gpu": AblationScale(
        n_train=20000, n_test=2000, n_dense=2000,
        vit=dict(preset="tiny", img_size=32, patch_size=4, stem="patch"),
        ibot=IBOTConfig(out_dim=4096, hidden_dim=1024, bottleneck_dim=256, momentum_teacher=0.996),
        train=TrainConfig(steps=2000, batch_size=256, lr=1e-3, warmup_steps=100, log_every=20)),
}


def ablation_scale(scale: str, seed: int = 0) -> AblationScale:
    """``ABLATION_SCALES[scale]`` with its training seeded by ``seed``."""
    return at_scale(ABLATION_SCALES, scale, seed=seed)


def ablation_data(setup: AblationScale, seed: int = 0) -> dict:
    """The shapes one ablation trains and evaluates on: ``images``/``labels`` (training, also the
    k-NN bank), ``test_images``/``test_labels``, and the dense probe's images and object masks."""
    images, labels, masks = make_shapes(setup.n_train, image_size=32, seed=seed)
    test_images, test_labels, test_masks = make_shapes(setup.n_test, image_size=32, seed=seed,
                                                       split="test")
    n = setup.n_dense
    return {"images": images, "labels": labels, "test_images": test_images,
            "test_labels": test_labels,
            "dense": (images[:n], masks[:n], test_images[:n], test_masks[:n])}


def evaluate_network(backbone, data: dict, device: torch.device | str = "cpu") -> dict:
    """k-NN of the CLS token and the dense probe of the patch tokens of one backbone."""
    scores = evaluate_backbone(backbone, data["images"], data["labels"], data["test_images"],
                               data["test_labels"], probe_epochs=0, diagnostics=False,
                               device=device)
    return {"knn_accuracy": scores["knn_accuracy"], **dense_probe(backbone, *data["dense"])}


def run_variant(name: str, data: dict, setup: AblationScale, device: torch.device | str = "cpu",
                keep_model: bool = False) -> dict:
    """Train one variant from the seeded initialisation; final readings, curves and scores of the
    teacher's backbone (iBOT evaluates the teacher). ``keep_model`` adds the method as ``model``."""
    if name not in VARIANTS:
        raise ValueError(f"name must be one of {sorted(VARIANTS)}, got {name!r}")
    torch.manual_seed(setup.train.seed)          # every variant starts from the same weights
    backbone = build_vit(**setup.vit)
    method = IBOT(backbone, backbone.embed_dim, steps=setup.train.steps,
                  config=replace(setup.ibot, **VARIANTS[name]), seed=setup.train.seed)
    start = time.perf_counter()
    history = train(method, data["images"], setup.train, device=device)
    seconds = time.perf_counter() - start
    keys = ("teacher_entropy", "batch_mean_entropy", "patch_entropy", "patch_batch_mean_entropy",
            "loss_cls", "loss_mim")
    last = {key: sum(history[key][-5:]) / len(history[key][-5:]) for key in keys}
    return {**{f"final_{key}": value for key, value in last.items()},
            **evaluate_network(method.teacher.backbone, data, device),
            "train_seconds": round(seconds, 2),
            "curves": {"step": history.steps, **{key: history[key] for key in keys}},
            **({"model": method} if keep_model else {})}


def ibot_ablation(scale: str = "cpu", *, seed: int = 0, variants: list[str] | None = None,
                  steps: int | None = None, device: torch.device | str = "cpu",
                  progress: bool = True, keep_models: bool = False) -> dict:
    """Train every variant (default: all of :data:`VARIANTS`); JSON-able unless ``keep_models``.

    Top level: ``out_dim`` (K), ``log_k``, ``chance``, ``untrained`` (the scores of the network
    every run starts from), ``settings`` and ``variants``: name -> :func:`run_variant`."""
    setup = ablation_scale(scale, seed)
    setup, names = ablation_runs(setup, VARIANTS, steps, variants)
    data = ablation_data(setup, seed)
    torch.manual_seed(seed)
    untrained = evaluate_network(build_vit(**setup.vit).to(device), data, device)
    results = {name: run_variant(name, data, setup, device, keep_models)
               for name in tqdm(names, desc="iBOT ablation", disable=not progress)}
    return {"scale": scale, "seed": seed, "out_dim": setup.ibot.out_dim,
            "log_k": math.log(setup.ibot.out_dim), "chance": 1 / N_CLASSES, "untrained": untrained,
            "settings": {"n_train": setup.n_train, "n_dense": setup.n_dense, "vit": setup.vit,
                         "ibot": asdict(setup.ibot), "train": asdict(setup.train)},
            "variants": results}


def ablation_summary(result: dict) -> str:
    """One line per variant: the four entropies, k-NN and the dense probe; the untrained network
    first."""
    u = result["untrained"]
    lines = [f"K = {result['out_dim']}, log K = {result['log_k']:.2f}; entropies in nats "
             "(per image or patch / of the batch mean)",
             f"{'run':<20}{'CLS':>13}{'patch':>13}{'k-NN':>7}{'dense acc':>10}{'dense IoU':>10}",
             f"{'untrained':<20}{'':>26}{u['knn_accuracy']:7.3f}{u['dense_accuracy']:10.3f}"
             f"{u['dense_iou']:10.3f}"]
    for name, run in result["variants"].items():
        lines.append(f"{name:<20}{run['final_teacher_entropy']:6.2f} /{run['final_batch_mean_entropy']:5.2f}"
                     f"{run['final_patch_entropy']:6.2f} /{run['final_patch_batch_mean_entropy']:5.2f}"
                     f"{run['knn_accuracy']:7.3f}{run['dense_accuracy']:10.3f}{run['dense_iou']:10.3f}")
    lines.append(f"(always answering background: dense accuracy {u['dense_majority']:.3f}, IoU 0)")
    return "\n".join(lines)


COLOURS = {"cls_only": "tab:blue", "mim_only": "tab:orange", "both": "tab:green",
           "no_patch_centering": "tab:red"}


def plot_ablation(result: dict, axes=None):
    """The teacher's target entropies over training, CLS (left) and patches (right): solid per
    image or patch, dashed the batch mean, log K dashed black."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    for name, run in result["variants"].items():
        curves, colour = run["curves"], COLOURS.get(name, None)
        for ax, prefix in zip(axes, ("", "patch_")):
            key = "teacher_entropy" if not prefix else "patch_entropy"
            ax.plot(curves["step"], curves[key], color=colour, label=name)
            ax.plot(curves["step"], curves[f"{prefix}batch_mean_entropy"], color=colour, ls="--")
    for ax, title in zip(axes, ("the teacher's CLS targets", "the teacher's patch targets")):
        ax.axhline(result["log_k"], color="k", ls="--", lw=1)
        ax.set(xlabel="step", title=title)
    axes[0].set_ylabel("nats")
    axes[0].legend(fontsize=8)
    axes[0].figure.suptitle("entropy per image or patch (solid), of the batch mean (dashed), "
                            "log K (black)", fontsize=10)
    axes[0].figure.tight_layout()
    return axes


# --- 3. the shipped checkpoints' patch tokens ----------------------------------------------------
def checkpoint_dense_table(names: list[str] | tuple[str, ...], *, n_images: int = 500,
                           seed: int = 0) -> dict:
    """name -> the dense probe (and the checkpoint's own k-NN, steps and token grid) of shipped
    checkpoints, each on ``n_images`` training and ``n_images`` held-out images of its own data;
    plus ``"untrained"``, the 8x8-grid ViT the masked-modelling checkpoints start from, and
    ``"untrained sin-cos"``, the same weights with MAE's fixed sin-cos positions. The probe
    labels each patch of the checkpoint's own grid, so rows of different grids ask different
    questions (a 4x4 grid's patches are coarser): compare rows with the same ``grid``."""
    from .. import zoo
    from .pretrain import MAE_VIT, shapes_kwargs
    table, data = {}, None
    for name in names:
        model = zoo.load(name)
        kwargs = shapes_kwargs(model.meta["data"])
        images, _, masks = make_shapes(n_images, **kwargs)
        test_images, _, test_masks = make_shapes(n_images, split="test", **kwargs)
        data = data or (images, masks, test_images, test_masks, kwargs["image_size"])
        table[name] = {"steps": model.meta["steps"], "knn_accuracy": model.meta["metrics"]["knn_accuracy"],
                       "grid": tuple(model.backbone.patch_embed.grid_size),
                       **dense_probe(model.backbone, images, masks, test_images, test_masks, seed=seed)}
    images, masks, test_images, test_masks, size = data
    for label, fixed in (("untrained", False), ("untrained sin-cos", True)):
        torch.manual_seed(seed)
        untrained = build_vit(**MAE_VIT, img_size=size).eval()
        if fixed:                      # MAE's fixed positions, with the same random weights
            freeze_pos_embed(untrained, sincos_2d(untrained.embed_dim, 8, cls_token=True))
        table[label] = {"steps": 0, "grid": tuple(untrained.patch_embed.grid_size),
                        **dense_probe(untrained, images, masks, test_images, test_masks, seed=seed)}
    return table


def dense_table_text(table: dict) -> str:
    """:func:`checkpoint_dense_table` as text, one line per network."""
    lines = [f"{'network':<18}{'steps':>6}{'grid':>6}{'k-NN':>7}{'dense acc':>10}{'dense IoU':>10}"
             f"{'+-':>7}{'majority':>9}"]
    for name, row in table.items():
        knn = f"{row['knn_accuracy']:7.3f}" if "knn_accuracy" in row else f"{'':>7}"
        lines.append(f"{name:<18}{row['steps']:>6}{row['grid'][0]:>4}x{row['grid'][1]}{knn}"
                     f"{row['dense_accuracy']:10.3f}{row['dense_iou']:10.3f}"
                     f"{row['dense_iou_stderr']:7.3f}{row['dense_majority']:9.3f}")
    grids = {row["grid"]: row["dense_position_iou"] for row in table.values()}
    lines += [f"position alone ({g[0]}x{g[1]} grid): dense IoU {iou:.3f}" for g, iou in grids.items()]
    return "\n".join(lines)

"""Experiment runners and figures of Lecture 05 (I-JEPA): where the masks fall, what stops the
targets from collapsing, and I-JEPA against MAE on the same budget.

:func:`context_coverage` counts, over many batches of ``course_lib.ijepa.multiblock_batch``, how
often each patch is in the context and in a target, for the official collator's behaviour and
the course's fixed sampler. :func:`collapse_ablation` trains ``course_lib.ijepa.IJEPA`` from one
seeded initialisation with its anti-collapse parts removed (:data:`VARIANTS`) and reads the
target features' per-dimension std and effective rank (logged every step), the k-NN accuracy of
the mean-pooled encoder and the dense probe. :func:`jepa_vs_mae` puts the shipped I-JEPA and MAE
networks (same data, grid, width, depth and steps) through the same evaluations.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from ..backbones import build_vit
from ..data import N_CLASSES, make_shapes
from ..evaluate import dense_probe, evaluate_backbone
from ..ijepa import IJEPA, IJEPAConfig, multiblock_batch
from ..runtime import at_scale
from . import ablation_runs
from ..train import TrainConfig, train

Tensor = torch.Tensor


# --- 1. where the masks fall --------------------------------------------------------------------------
def context_coverage(grid: int = 14, *, official: bool, n_batches: int = 50, batch: int = 16,
                     min_keep: int = 10, seed: int = 0) -> dict:
    """Share of the context rows (after the cut to the batch minimum) that land on each patch,
    and of the target rows, over ``n_batches`` batches: ``context`` and ``targets`` (grid, grid)
    float tensors (1 = in every image's context), ``mean_context`` (patches kept per image) and
    ``uncovered`` (patches never in any context)."""
    gen = torch.Generator().manual_seed(seed)
    context_count = torch.zeros(grid * grid)
    target_count = torch.zeros(grid * grid)
    kept = []
    for _ in range(n_batches):
        context, targets = multiblock_batch(batch, grid, min_keep=min_keep, official=official,
                                            generator=gen)
        context_count += torch.bincount(context.flatten(), minlength=grid * grid)
        for block in targets:
            target_count += torch.bincount(block.flatten(), minlength=grid * grid)
        kept.append(context.shape[1])
    images = n_batches * batch
    return {"context": (context_count / images).view(grid, grid),
            "targets": (target_count / images).view(grid, grid),
            "mean_context": sum(kept) / len(kept), "uncovered": int((context_count == 0).sum()),
            "grid": grid, "official": official}


def plot_coverage(runs: dict, axes=None):
    """Heat maps of :func:`context_coverage` results (label -> result), one per run."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.4))
    for ax, (label, run) in zip(axes, runs.items()):
        image = ax.imshow(run["context"], vmin=0, vmax=1, cmap="viridis")
        ax.set(title=f"{label}\n{run['mean_context']:.0f} context patches kept",
               xticks=[], yticks=[])
    axes[-1].figure.colorbar(image, ax=list(axes), shrink=0.8, label="share of images")
    return axes


# --- 2. the collapse ablation ---------------------------------------------------------------------------
# IJEPAConfig fields each variant changes.
VARIANTS: dict[str, dict] = {
    "ijepa": dict(),
    "l2": dict(loss="l2"),
    "no_ema": dict(target="online_detached"),
    "no_ema_no_stopgrad": dict(target="online"),
}


@dataclass(frozen=True)
class AblationScale:
    """Data, model, I-JEPA and optimiser settings of one scale of the ablation."""

    n_train: int
    n_test: int
    n_dense: int
    vit: dict
    ijepa: IJEPAConfig
    train: TrainConfig


ABLATION_SCALES: dict[str, AblationScale] = {
    # CPU: a 2-block ViT of width 64 on the 8x8 grid of 4 px patches, no CLS token, a 1-block
    # predictor 32 wide, batch 32, 80 steps (about 5 s a variant on 2 cores).
    "cpu": AblationScale(
        n_train=2000, n_test=500, n_dense=300,
        vit=dict(preset="cpu", stem="patch", patch_size=4, embed_dim=64, depth=2, num_heads=2,
                 class_token=False),
        ijepa=IJEPAConfig(pred_dim=32, pred_depth=1, pred_heads=2),
        train=TrainConfig(steps=80, batch_size=32, lr=1e-3, warmup_steps=8, log_every=4,
                          progress=False)),
    # GPU: ViT-Ti on the same grid, a 4-block predictor 96 wide, 2000 steps.
    "gpu": AblationScale(
        n_train=20000, n_test=2000, n_dense=2000,
        vit=dict(preset="tiny", img_size=32, patch_size=4, stem="patch", class_token=False),
        ijepa=IJEPAConfig(pred_dim=96, pred_depth=4, pred_heads=4),
        train=TrainConfig(steps=2000, batch_size=256, lr=1e-3, warmup_steps=100, log_every=20)),
}


def ablation_scale(scale: str, seed: int = 0) -> AblationScale:
    """``ABLATION_SCALES[scale]`` with its training seeded by ``seed``."""
    return at_scale(ABLATION_SCALES, scale, seed=seed)


def _scores(backbone, data: dict, device) -> dict:
    scores = evaluate_backbone(backbone, data["images"], data["labels"], data["test_images"],
                               data["test_labels"], pooling="mean", probe_epochs=0,
                               diagnostics=False, device=device)
    return {"knn_accuracy": scores["knn_accuracy"], **dense_probe(backbone, *data["dense"])}


def run_variant(name: str, data: dict, setup: AblationScale,
                device: torch.device | str = "cpu") -> dict:
    """Train one variant from the seeded initialisation; the final readings (the mean of the last
    five logs), the curves and the scores of the network I-JEPA evaluates."""
    if name not in VARIANTS:
        raise ValueError(f"name must be one of {sorted(VARIANTS)}, got {name!r}")
    torch.manual_seed(setup.train.seed)
    method = IJEPA(build_vit(**setup.vit), steps=setup.train.steps,
                   config=replace(setup.ijepa, **VARIANTS[name]), seed=setup.train.seed)
    start = time.perf_counter()
    history = train(method, data["images"], setup.train, device=device)
    seconds = time.perf_counter() - start
    keys = ("loss", "target_std", "target_rank")
    return {**{f"final_{key}": sum(history[key][-5:]) / len(history[key][-5:]) for key in keys},
            "first_target_std": history["target_std"][0],
            "first_target_rank": history["target_rank"][0],
            **_scores(method.backbone, data, device), "train_seconds": round(seconds, 2),
            "curves": {"step": history.steps, **{key: history[key] for key in keys}}}


def collapse_ablation(scale: str = "cpu", *, seed: int = 0, variants: list[str] | None = None,
                      steps: int | None = None, device: torch.device | str = "cpu",
                      progress: bool = True) -> dict:
    """Train every variant (default: all of :data:`VARIANTS`) on the embedded shapes; JSON-able.
    Top level: ``untrained`` (the scores of the network every run starts from), ``chance``,
    ``settings`` and ``variants``: name -> :func:`run_variant`."""
    setup = ablation_scale(scale, seed)
    setup, names = ablation_runs(setup, VARIANTS, steps, variants)
    images, labels, masks = make_shapes(setup.n_train, image_size=32, seed=seed)
    test_images, test_labels, test_masks = make_shapes(setup.n_test, image_size=32, seed=seed,
                                                       split="test")
    n = setup.n_dense
    data = {"images": images, "labels": labels, "test_images": test_images,
            "test_labels": test_labels,
            "dense": (images[:n], masks[:n], test_images[:n], test_masks[:n])}
    torch.manual_seed(seed)             # every run's starting point, fixed sin-cos positions included
    start = IJEPA(build_vit(**setup.vit), steps=1, config=setup.ijepa).backbone
    untrained = _scores(start.to(device), data, device)
    results = {name: run_variant(name, data, setup, device)
               for name in tqdm(names, desc="I-JEPA ablation", disable=not progress)}
    return {"scale": scale, "seed": seed, "chance": 1 / N_CLASSES, "untrained": untrained,
            "settings": {"n_train": setup.n_train, "vit": setup.vit,
                         "ijepa": asdict(setup.ijepa), "train": asdict(setup.train)},
            "variants": results}


def ablation_summary(result: dict) -> str:
    """One line per variant: loss, target std and effective rank (first -> last), k-NN, dense."""
    u = result["untrained"]
    lines = [f"{'run':<20}{'loss':>8}{'target std':>17}{'target rank':>17}{'k-NN':>7}{'dense IoU':>10}",
             f"{'untrained':<20}{'':>42}{u['knn_accuracy']:7.3f}{u['dense_iou']:10.3f}"]
    for name, run in result["variants"].items():
        lines.append(f"{name:<20}{run['final_loss']:8.4f}"
                     f"{run['first_target_std']:8.3f} ->{run['final_target_std']:6.3f}"
                     f"{run['first_target_rank']:8.1f} ->{run['final_target_rank']:6.1f}"
                     f"{run['knn_accuracy']:7.3f}{run['dense_iou']:10.3f}")
    return "\n".join(lines)


def plot_ablation(result: dict, axes=None):
    """Loss, target std and target effective rank over training, one line per variant."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for name, run in result["variants"].items():
        curves = run["curves"]
        for ax, key in zip(axes, ("loss", "target_std", "target_rank")):
            ax.plot(curves["step"], curves[key], label=name)
    for ax, title in zip(axes, ("loss", "per-dimension std of the targets",
                                "effective rank of the targets")):
        ax.set(xlabel="step", title=title)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    return axes


# --- 3. I-JEPA against MAE, the shipped networks ---------------------------------------------------------
def jepa_vs_mae(*, n_images: int = 500, finetune_steps: int = 0, seed: int = 0) -> dict:
    """The shipped ``ijepa`` and ``mae`` networks and an untrained ViT of the same shape (with
    their fixed sin-cos positions), through
    the same evaluations on their own data: k-NN and linear probe on the mean patch token (from
    the checkpoints' metadata for the trained ones), the dense probe on ``n_images`` + ``n_images``
    images, and with ``finetune_steps`` a fine-tune on the first 1000 training images."""
    from .. import zoo
    from ..evaluate import finetune
    from .pretrain import MAE_VIT, shapes_for, shapes_kwargs
    table = {}
    models = {name: zoo.load(name) for name in ("ijepa", "mae")}
    meta = models["ijepa"].meta
    kwargs = shapes_kwargs(meta["data"])
    images, _, masks = make_shapes(n_images, **kwargs)
    test_images, _, test_masks = make_shapes(n_images, split="test", **kwargs)
    train_x, train_y, test_x, test_y = shapes_for(meta["data"])
    torch.manual_seed(seed)     # I-JEPA's starting point: random weights, fixed sin-cos positions
    untrained = IJEPA(build_vit(**MAE_VIT, img_size=kwargs["image_size"], class_token=False),
                      steps=1).backbone.eval()
    for name, backbone, row in (
            ("ijepa", models["ijepa"].backbone, dict(models["ijepa"].meta["metrics"])),
            ("mae", models["mae"].backbone, dict(models["mae"].meta["metrics"])),
            ("untrained", untrained, evaluate_backbone(untrained, train_x, train_y, test_x, test_y,
                                                       pooling="mean", diagnostics=False))):
        row = {k: row[k] for k in ("knn_accuracy", "knn_stderr", "linear_probe")}
        row.update(dense_probe(backbone, images, masks, test_images, test_masks, seed=seed))
        if finetune_steps:
            row["finetune_accuracy"] = finetune(backbone, train_x[:1000], train_y[:1000], test_x,
                                                test_y, steps=finetune_steps, pooling="mean",
                                                seed=seed)
        row["steps"] = models[name].meta["steps"] if name in models else 0
        table[name] = row
    return table


def jepa_vs_mae_text(table: dict) -> str:
    """:func:`jepa_vs_mae` as text."""
    fine = any("finetune_accuracy" in row for row in table.values())
    lines = [f"{'network':<11}{'steps':>6}{'k-NN':>7}{'+-':>6}{'probe':>7}{'dense IoU':>10}{'+-':>6}"
             + (f"{'fine-tune':>10}" if fine else "")]
    for name, row in table.items():
        lines.append(f"{name:<11}{row['steps']:>6}{row['knn_accuracy']:7.3f}{row['knn_stderr']:6.3f}"
                     f"{row['linear_probe']:7.3f}{row['dense_iou']:10.3f}{row['dense_iou_stderr']:6.3f}"
                     + (f"{row['finetune_accuracy']:10.3f}" if fine else ""))
    return "\n".join(lines)

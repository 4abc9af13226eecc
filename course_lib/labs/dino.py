"""Experiment runners and figures of Lecture 02 (DINO): the collapse ablation and attention maps.

:func:`collapse_ablation` trains DINO (Caron et al. 2021) several times from one seeded
initialisation, switching centering, sharpening and the EMA teacher on and off, and records what
the paper's Figure 7 plots: the entropy of the teacher's output distribution and the KL divergence
between teacher and student, over training. The two collapse modes read off those curves:

- **uniform collapse** (centering without sharpening): the teacher's entropy climbs to log K, the
  KL goes to 0 and the loss sits at log K: every image gets the same flat distribution;
- **one-hot collapse** (sharpening without centering): one output dimension wins for every image,
  the teacher's entropy falls to 0 and the KL goes to 0 too.

With both, the entropy settles in between and the KL stays positive: the student still has
something to learn. ``no_ema`` keeps both tricks but makes the teacher a copy of the student
after every step.

The ``cpu`` scale trains on shapes in one grey at one size, where what two views share is the
shape. :func:`teacher_sorting` measures what the teacher sorts images by, and :func:`shape_run`
trains ``both`` beside a supervised ViT on any version of the shapes (on the colourful default
DINO sorts by colour: ``benchmarks/dino_shortcuts.py``). :func:`plot_teacher` draws the lecture's
widget from ``course_lib.dino.teacher_distribution``; the attention scores come from
``course_lib.evaluate.attention_jaccard``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import torch
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from ..augment import augment_batch, batched_simclr_views, simclr_view_spec
from ..backbones import build_vit
from ..data import N_CLASSES, make_shapes, normalize
from ..diagnostics import entropy, normalized_mutual_information
from ..dino import DINO, DINOConfig, teacher_distribution
from ..evaluate import evaluate_backbone
from ..runtime import at_scale
from . import ablation_runs
from ..train import TrainConfig, train

Tensor = torch.Tensor

# The ablation's variants: DINOConfig fields each one changes (Figure 7 of the paper, plus no_ema).
VARIANTS: dict[str, dict] = {
    "none": dict(use_centering=False, use_sharpening=False),
    "centering": dict(use_centering=True, use_sharpening=False),
    "sharpening": dict(use_centering=False, use_sharpening=True),
    "both": dict(use_centering=True, use_sharpening=True),
    "no_ema": dict(use_centering=True, use_sharpening=True, use_ema=False),
}


@dataclass(frozen=True)
class AblationScale:
    """Everything one scale of the ablation needs: data (``make_shapes`` keyword arguments), views
    (``batched_simclr_views`` keyword arguments for two global crops, or None for DINO's multi-crop
    from ``dino``), model, DINO and optimiser settings."""

    n_train: int
    n_test: int
    data: dict
    views: dict | None
    vit: dict                          # build_vit keyword arguments
    dino: DINOConfig
    train: TrainConfig


# Both scales as data. CPU: about 30 s on 2 cores for all five variants; GPU: ViT-Ti, 3000 steps.
ABLATION_SCALES: dict[str, AblationScale] = {
    # CPU: found with benchmarks/course_scale.py and benchmarks/dino_shortcuts.py (COURSE_SCALE.md,
    # "Only the shape left"). Shapes in one grey at one size: on the default colourful shapes DINO
    # sorts by colour, at one colour by size, and its k-NN stays at chance. Two global crops turned
    # by any angle (no local crops: 16 px holds too little of the object); the teacher's momentum
    # from 0.9, so that within 100 steps it is no longer mostly its random start. BatchNorm in the
    # head (DINO's --use_bn_in_head): without it this 2-block ViT gives nearly the same logits to
    # every image and even "both" ends with a target that ignores the image (lecture 02 shows it).
    "cpu": AblationScale(
        n_train=5000, n_test=1000, data=dict(clutter=0.0, colour="grey", area=0.2),
        views=dict(strength=0.3, scale=(0.6, 1.0), rotation=(-180.0, 180.0)),
        vit=dict(preset="cpu", embed_dim=64, depth=2, num_heads=2),
        dino=DINOConfig(out_dim=256, hidden_dim=256, bottleneck_dim=64, n_local_crops=0,
                        use_bn_in_head=True, teacher_temp=0.04, warmup_teacher_temp=0.04,
                        momentum_teacher=0.9),
        train=TrainConfig(steps=100, batch_size=64, lr=3e-3, warmup_steps=10, log_every=5,
                          progress=False)),
    "gpu": AblationScale(
        n_train=20000, n_test=2000, data=dict(clutter=1.0), views=None,
        vit=dict(preset="tiny", img_size=32, patch_size=4, stem="conv"),
        dino=DINOConfig(out_dim=4096, n_local_crops=6, warmup_teacher_temp=0.04,
                        teacher_temp=0.07, warmup_teacher_temp_steps=300),
        train=TrainConfig(steps=3000, batch_size=256, lr=1e-3, warmup_steps=200, log_every=20)),
}


def ablation_scale(scale: str, seed: int = 0) -> AblationScale:
    """``ABLATION_SCALES[scale]`` with its training seeded by ``seed``."""
    return at_scale(ABLATION_SCALES, scale, seed=seed)


def ablation_views(setup: AblationScale):
    """The crops function of ``setup``: two SimCLR-style global views with ``setup.views``, or
    None (DINO's own multi-crop from ``setup.dino``)."""
    if setup.views is None:
        return None
    views = setup.views
    return lambda images: list(batched_simclr_views(images, **views))


def run_variant(name: str, images: Tensor, bank: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                setup: AblationScale, device: torch.device | str = "cpu",
                keep_model: bool = False) -> dict:
    """Train one variant from the seeded initialisation; curves, final statistics and k-NN.

    With ``keep_model`` the trained :class:`DINO` method is returned too, under ``"model"``."""
    if name not in VARIANTS:
        raise ValueError(f"name must be one of {sorted(VARIANTS)}, got {name!r}")
    torch.manual_seed(setup.train.seed)          # every variant starts from the same weights
    backbone = build_vit(**setup.vit)
    method = DINO(backbone, backbone.embed_dim, steps=setup.train.steps,
                  config=replace(setup.dino, **VARIANTS[name]), crops=ablation_views(setup))
    start = time.perf_counter()
    history = train(method, images, setup.train, device=device)
    seconds = time.perf_counter() - start
    scores = evaluate_backbone(method.teacher.backbone, *bank, *test, probe_epochs=0,  # DINO evaluates
                               diagnostics=False, device=device)                    # the teacher
    last = lambda key: sum(history[key][-5:]) / len(history[key][-5:])  # noqa: E731 - mean of the last 5 logs
    return {"final_teacher_entropy": last("teacher_entropy"),
            "final_batch_mean_entropy": last("batch_mean_entropy"), "final_kl": last("kl"),
            "final_loss": last("loss"),
            "knn_accuracy": scores["knn_accuracy"],
            "train_seconds": round(seconds, 2),
            "curves": {"step": history.steps, "teacher_entropy": history["teacher_entropy"],
                       "batch_mean_entropy": history["batch_mean_entropy"], "kl": history["kl"],
                       "loss": history["loss"]},
            **({"model": method} if keep_model else {})}


def collapse_ablation(scale: str = "cpu", *, seed: int = 0, variants: list[str] | None = None,
                      steps: int | None = None, device: torch.device | str = "cpu",
                      progress: bool = True, keep_models: bool = False) -> dict:
    """Train every variant (default: all of :data:`VARIANTS`) on the embedded shapes; JSON-able.

    ``steps`` shortens (or lengthens) the scale's run. Top level: ``out_dim`` (K), ``log_k``,
    ``chance``, ``random_init_knn``, ``settings`` and ``variants``: name -> :func:`run_variant`
    (JSON-able unless ``keep_models``, which adds each trained method under ``"model"``).
    """
    setup = ablation_scale(scale, seed)
    setup, names = ablation_runs(setup, VARIANTS, steps, variants)
    images, labels, _ = make_shapes(setup.n_train, image_size=32, seed=seed, **setup.data)
    test_x, test_y, _ = make_shapes(setup.n_test, image_size=32, seed=seed, split="test", **setup.data)
    bank, test = (images, labels), (test_x, test_y)
    torch.manual_seed(seed)
    init = build_vit(**setup.vit)
    init_knn = evaluate_backbone(init.to(device), *bank, *test, probe_epochs=0, diagnostics=False,
                                 device=device)["knn_accuracy"]
    results = {name: run_variant(name, images, bank, test, setup, device, keep_models)
               for name in tqdm(names, desc="DINO ablation", disable=not progress)}
    return {"scale": scale, "seed": seed, "out_dim": setup.dino.out_dim,
            "log_k": math.log(setup.dino.out_dim), "chance": 1 / N_CLASSES,
            "random_init_knn": init_knn,
            "settings": {"n_train": setup.n_train, "data": setup.data, "views": setup.views, "vit": setup.vit,
                         "dino": asdict(setup.dino),
                         "train": {k: v for k, v in asdict(setup.train).items()}},
            "variants": results}


def ablation_summary(result: dict) -> str:
    """The ablation as a table: one line per variant (what ``python -m course_lib dino-ablation``
    prints)."""
    lines = [f"{'variant':<11} {'teacher entropy':>15} {'batch-mean H':>12} {'KL':>7} {'k-NN':>6}   "
             f"(log K = {result['log_k']:.3f}, chance {result['chance']:.2f}, random init "
             f"{result['random_init_knn']:.3f})"]
    for name in (n for n in VARIANTS if n in result["variants"]):
        run = result["variants"][name]
        lines.append(f"{name:<11} {run['final_teacher_entropy']:>15.3f} "
                     f"{run['final_batch_mean_entropy']:>12.3f} {run['final_kl']:>7.3f} "
                     f"{run['knn_accuracy']:>6.3f}")
    if "total_seconds" in result:
        lines.append(f"total {result['total_seconds']} s")
    return "\n".join(lines)


# --- section 5: what DINO sorts by, on shapes where only the shape is left -----------------------
def image_properties(masks: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """What varies between shapes images besides the colour, each as a few classes: the shape
    (the label), the object's area (quartiles) and its position (a 3x3 grid of its centroid)."""
    ys, xs = torch.meshgrid(torch.arange(masks.shape[-2]).float(),
                            torch.arange(masks.shape[-1]).float(), indexing="ij")
    area = masks.float().sum((1, 2)).clamp_min(1)
    centre_x, centre_y = (masks * xs).sum((1, 2)) / area, (masks * ys).sum((1, 2)) / area

    def bins(values: Tensor, n: int) -> Tensor:
        return torch.bucketize(values, torch.quantile(values, torch.linspace(0, 1, n + 1)[1:-1]))
    return {"shape": labels, "area": bins(area, 4), "position": bins(centre_x, 3) * 3 + bins(centre_y, 3)}


@torch.no_grad()
def teacher_sorting(method: DINO, images: Tensor, masks: Tensor, labels: Tensor) -> dict:
    """Sort ``images`` by the DINO teacher's target (the argmax of its centred logits on the plain
    image) and say how much that sorting shares with each of :func:`image_properties`
    (normalised mutual information), with the number of prototypes used."""
    method.teacher.eval()
    device = next(method.teacher.parameters()).device
    logits = method.teacher([normalize(images).to(device)]).cpu()           # (n, K)
    clusters = (logits - method.loss.center.cpu()).argmax(1)
    shares = {name: normalized_mutual_information(clusters, values)
              for name, values in image_properties(masks, labels).items()}
    return {**shares, "prototypes_used": int(clusters.unique().numel())}


def supervised_baseline(images: Tensor, labels: Tensor, setup: AblationScale,
                        device: torch.device | str = "cpu"):
    """The labelled comparator of a DINO run: ``setup``'s ViT from the same seeded start, trained
    with cross-entropy for ``setup.train`` on the crops, flips and turns of its views (no colour
    jitter). Returns (the ViT, the training history)."""
    from ..supervised import Supervised
    views = setup.views or {}
    spec = simclr_view_spec(32, strength=0.0, scale=views.get("scale", (0.6, 1.0)),
                            rotation=views.get("rotation", (0.0, 0.0)))
    torch.manual_seed(setup.train.seed)
    vit = build_vit(**setup.vit)
    method = Supervised(vit, vit.embed_dim, N_CLASSES, augment=lambda x: augment_batch(x, [spec])[0])
    history = train(method, images, setup.train, labels=labels, device=device)
    return vit, history


def shape_run(scale: str = "cpu", *, seed: int = 0, steps: int | None = None, data: dict | None = None,
              device: torch.device | str = "cpu") -> dict:
    """The ablation's ``both`` run and, for the same steps from the same weights, a supervised ViT
    with the same crops (no colour jitter), on the scale's data or ``data`` (``make_shapes`` keyword
    arguments: ``benchmarks/dino_shortcuts.py`` gives the colour and the size back one at a time).
    Returns the k-NN of the untrained network, the DINO teacher and the supervised ViT, what the
    teacher sorts the held-out images by (:func:`teacher_sorting`) and the three backbones."""
    setup, _ = ablation_runs(ablation_scale(scale, seed), VARIANTS, steps, ["both"])
    if data is not None:
        setup = replace(setup, data=data)
    images, labels, _ = make_shapes(setup.n_train, seed=seed, **setup.data)
    test_images, test_labels, test_masks = make_shapes(setup.n_test, seed=seed, split="test", **setup.data)
    test = (test_images, test_labels)
    torch.manual_seed(seed)
    untrained = build_vit(**setup.vit)
    both = run_variant("both", images, (images, labels), test, setup, device, keep_model=True)
    supervised_vit, _ = supervised_baseline(images, labels, setup, device)
    models = {"untrained": untrained, "DINO": both["model"].teacher.backbone, "supervised": supervised_vit}
    knn = {name: evaluate_backbone(vit.to(device).eval(), images, labels, *test, probe_epochs=0,
                                   diagnostics=False, device=device)
           for name, vit in models.items()}
    return {"scale": scale, "steps": setup.train.steps, "dino_seconds": both["train_seconds"],
            "knn": {name: scores["knn_accuracy"] for name, scores in knn.items()},
            "knn_stderr": {name: scores["knn_stderr"] for name, scores in knn.items()},
            "teacher_entropy": both["final_teacher_entropy"],
            "batch_mean_entropy": both["final_batch_mean_entropy"],
            "sorting": teacher_sorting(both["model"], test_images, test_masks, test_labels),
            "test_images": test_images, "test_masks": test_masks, "models": models}


def plot_teacher(logits: Tensor, *, center: float | Tensor = 0.0, teacher_temp: float = 0.04,
                 student_temp: float = 0.1, ax=None):
    """Bars of one image's teacher distribution at ``teacher_temp`` after subtracting ``center``,
    next to the student's softmax at ``student_temp``; entropies in the title (log K marked)."""
    import matplotlib.pyplot as plt   # figures only: the grader imports this module without them
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.8))
    k = logits.shape[-1]
    teacher = teacher_distribution(logits, center, teacher_temp)
    student = teacher_distribution(logits, 0.0, student_temp)
    xs = torch.arange(k)
    ax.bar(xs - 0.2, student.numpy(), width=0.4, color="tab:gray", label=f"student, tau_s = {student_temp:g}")
    ax.bar(xs + 0.2, teacher.numpy(), width=0.4, color="tab:orange",
           label=f"teacher, tau_t = {teacher_temp:g}")
    ax.set(ylim=(0, 1), xlabel="output dimension k", ylabel="probability", xticks=xs.tolist(),
           title=f"H(teacher) = {entropy(teacher):.2f} nats, H(student) = {entropy(student):.2f}, "
                 f"log K = {math.log(k):.2f}")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_pairs(n_global: int = 2, n_crops: int = 6, ax=None):
    """The (teacher crop i, student crop j) grid of the multi-crop loss: which pairs count."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * n_crops + 1.5, 0.6 * n_global + 1.2))
    grid = torch.ones(n_global, n_crops)
    for i in range(n_global):
        grid[i, i] = 0
    ax.imshow(grid.numpy(), cmap="Greens", vmin=-0.5, vmax=1.2)
    for i in range(n_global):
        for j in range(n_crops):
            ax.text(j, i, "same view" if i == j else "pair", ha="center", va="center", fontsize=7)
    ax.set(xticks=range(n_crops), yticks=range(n_global),
           xticklabels=[f"g{j + 1}" if j < n_global else f"l{j - n_global + 1}" for j in range(n_crops)],
           yticklabels=[f"g{i + 1}" for i in range(n_global)], xlabel="student crop j",
           ylabel="teacher crop i",
           title=f"{n_global * (n_crops - 1)} pairs of {n_global * n_crops} count")
    return ax


# --- figures ---------------------------------------------------------------------------------------
COLOURS = {"none": "tab:gray", "centering": "tab:blue", "sharpening": "tab:red",
           "both": "tab:green", "no_ema": "tab:purple"}


def plot_collapse(result: dict, axes=None):
    """Teacher entropy per image (solid) and of the batch-mean target (dashed), teacher-student
    KL over training per variant (log K marked), and the k-NN bars."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    log_k = result["log_k"]
    for name, run in result["variants"].items():
        curves, colour = run["curves"], COLOURS.get(name)
        axes[0].plot(curves["step"], curves["teacher_entropy"], label=name, color=colour)
        axes[0].plot(curves["step"], curves["batch_mean_entropy"], color=colour, ls="--", lw=1)
        axes[1].plot(curves["step"], curves["kl"], label=name, color=colour)
    axes[0].axhline(log_k, color="k", ls="--", lw=1)
    axes[0].text(0, log_k, f"log K = {log_k:.2f}: uniform", va="bottom", fontsize=8)
    axes[0].set(xlabel="step", ylabel="teacher entropy (nats)", ylim=(-0.1, log_k * 1.12),
                title="teacher entropy\nper image (solid), of the batch mean (dashed)")
    axes[1].set(xlabel="step", ylabel="KL(teacher || student) (nats)",
                title="what the student still has to learn")
    names = list(result["variants"])
    accs = [100 * result["variants"][n]["knn_accuracy"] for n in names]
    axes[2].bar(names, accs, color=[COLOURS.get(n) for n in names])
    axes[2].axhline(100 * result["random_init_knn"], color="gray", ls="--", lw=1,
                    label="random init")
    axes[2].axhline(100 * result["chance"], color="gray", ls=":", lw=1, label="chance")
    axes[2].set(ylabel="k-NN accuracy of the teacher (%)", title="held-out k-NN")
    axes[2].tick_params(axis="x", labelrotation=30)
    axes[2].legend(fontsize=8)
    for ax in axes[:2]:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return axes

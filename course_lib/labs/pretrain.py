"""The recipes that train the checkpoints the course ships (``course_lib.zoo``).

Every method trains the same way on the same data so that their checkpoints can be compared:
the embedded shapes (5000 training images, a flat background), the views of the ``cpu`` recipe
of ``course_lib.labs.infonce.PRETRAIN_SCALES`` (crops of 60-100 %, any rotation, mild colour
jitter, grey with p = 0.8; 0.2 for the runs in :data:`METHOD_GRAYSCALE_P`), batch 128, AdamW
at a peak lr of 3e-3 (1e-3 for the runs in :data:`METHOD_LR`), and the same ViT width and depth.
What differs is only what makes each method itself:

- supervised: the views without colour jitter (crops, flips, turns, and grey as often as the
  others' views), a linear head on the CLS token, cross-entropy;
- SimCLR and MoCo: InfoNCE between two views (MoCo with its queue and momentum encoder);
  ``simclr-nocolour`` is SimCLR with every colour change of its views turned off (no jitter, no
  grayscale: crops, flips and rotations only): the ablation that shows which invariances the augmentations teach;
- DINO: the two views are the two global crops (no local crops: at 32 px a 16 px local crop
  holds too little of the object), a BatchNorm head with K = 256, teacher temperature 0.04 and
  EMA momentum from 0.99 (the settings that recur in small-data DINO runs); the checkpoint is the
  teacher's backbone, as DINO evaluates;
- ``<method>-plain``: the same recipe on shapes painted in one grey and drawn at one size
  (:data:`PLAIN_DATA`), where the shape is what two views share (Lecture 02, section 5), for
  every method above and below (DINOv2 without registers); ``supervised-patch-plain`` is the
  labelled reference on MAE's plain-patch ViT, which MAE, iBOT, I-JEPA and DINOv2 train
  (``supervised-patch`` the same on the default, colourful shapes); and
  ``dino-fine`` / ``supervised-fine`` are the DINO and supervised recipes on those shapes with
  8x8 tokens from the conv stem (``cpu-fine``), where attention maps can follow an outline;
- MAE: plain 4 px patches (8x8 tokens: a conv stem would leak masked pixels into visible tokens),
  75 % masked at random, a 2-block decoder 64 wide; features are the mean of the patch tokens.
- iBOT: DINO's settings and views on MAE's 8x8 grid of plain patches (a masked patch must not
  leak into its neighbours' tokens), one shared head for the CLS and patch objectives, masks as
  the official loader (none for half the images, else 10-50 % in blocks); the teacher's backbone.
  Three full 65-token passes a step, so its 1500 ``long`` steps take 25 to 80 minutes on one
  core, over the other methods' half-hour; unit 7 compares every method at the same steps.
  ``ibot-fine`` is the same recipe on ``dino-fine``'s conv-stem ViT (8x8 tokens, whose receptive
  fields overlap, so a masked patch is partly seen through its neighbours): there its CLS
  objective keeps learning, where on the plain patches its targets go uniform (lecture 04).
- I-JEPA: MAE's 8x8 grid without a CLS token, the released configs' masks (4 targets of 15-20 %,
  a context of 85-100 % with the targets cut out), a 2-block predictor 64 wide, smooth L1 on
  layer-normed targets, EMA momentum 0.996 -> 1 (linear; ``ijepa-plain`` from 0.99,
  :data:`IJEPA_CHANGES`); the target encoder's mean patch token.
  No augmentation: the paper uses no hand-made views, and the official code's one random crop per
  image (``IJEPA_VIEWS = "crops"``, the labelled run's crop, flip and turn) lowered the plain
  shapes' k-NN (benchmarks/COURSE_SCALE.md).
- DINOv2: iBOT's grid, views, masks and head with DINOv2's additions: KoLeo (weight 0.1) on the
  student's CLS features, Sinkhorn-Knopp instead of the centers (both objectives), EMA momentum
  from 0.99; ``dinov2-reg`` is the same run with 4 register tokens (as the released ``_reg``
  models), the pair lecture 06 compares token norms on. The teacher's backbone, like iBOT's.
  ``dinov2-nokoleo-plain`` is ``dinov2-plain`` with the KoLeo weight 0: on ten grey shapes
  KoLeo spreads the features until much of the shape is lost, and without it the run learns it;
  ``dinov2-lowkoleo-plain`` keeps KoLeo at a tenth of its weight (0.01), which helped on the
  seed it ships and did not learn on another (lecture 06, section 7). ``dinov2-fine`` is
  ``dinov2-plain``'s recipe (KoLeo 0.1 included) on ``dino-fine``'s conv-stem ViT, like ``ibot-fine``.

:func:`pretrain` trains one method at a scale and returns the backbone to evaluate with the
metadata ``course_lib.zoo.save`` writes next to its weights. ``python -m course_lib pretrain
METHOD --scale long --out FILE`` runs it from the command line. The tables the lectures draw from
the shipped checkpoints are in ``course_lib.labs.shipped``.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .._checks import check_int
from ..backbones import build_vit
from ..data import N_CLASSES, make_shapes
from ..dino import DINO, DINOConfig
from ..dinov2 import DINOv2, DINOv2Config
from ..evaluate import evaluate_backbone
from ..ibot import IBOT, IBOTConfig
from ..ijepa import IJEPA, IJEPAConfig
from ..mae import MAE, MAEConfig
from ..train import Method, TrainConfig, track_knn, train
from .infonce import PRETRAIN_SCALES, TEMPERATURES, PretrainScale

Tensor = torch.Tensor

METHODS: tuple[str, ...] = ("supervised", "simclr", "moco", "dino", "mae", "simclr-nocolour",
                             "ibot", "ijepa", "dinov2", "dinov2-reg", "supervised-plain", "simclr-plain",
                             "moco-plain", "dino-plain", "mae-plain", "supervised-fine", "dino-fine",
                             "supervised-patch-plain", "ibot-plain", "ijepa-plain", "dinov2-plain",
                             "dinov2-nokoleo-plain", "dinov2-lowkoleo-plain", "ibot-fine", "dinov2-fine",
                             "supervised-patch")
POOLING = {"supervised": "cls", "simclr": "cls", "moco": "cls", "dino": "cls", "mae": "mean",
           "simclr-nocolour": "cls", "ibot": "cls", "ijepa": "mean", "dinov2": "cls",
           "dinov2-reg": "cls"}
POOLING.update({f"{name}-plain": POOLING[name] for name in ("supervised", "simclr", "moco", "dino", "mae", "ibot",
                                                             "ijepa", "dinov2")})
POOLING.update({"supervised-fine": "cls", "dino-fine": "cls", "ibot-fine": "cls", "dinov2-fine": "cls",
                "supervised-patch-plain": "cls", "supervised-patch": "cls",
                "dinov2-nokoleo-plain": "cls", "dinov2-lowkoleo-plain": "cls"})
# "-plain", "-fine" and "supervised-patch(-plain)": see the module docstring. On the default data
# labels on the plain-patch ViT stay at chance at 3e-3 (loss log 10 after 1500 steps,
# benchmarks/results/supervised_patch_default_data.json) and learn at 1e-3, the rate they ship at.
PLAIN_DATA: dict = dict(colour="grey", area=0.2)
VARIANT_SUFFIXES: tuple[str, ...] = ("-plain", "-fine", "-patch")
ZOO_SCALE_NAMES: tuple[str, ...] = ("cpu", "long", "gpu")


@dataclass(frozen=True)
class ZooScale:
    """Data and optimiser of one scale of ``pretrain``: the views and steps of ``recipe`` on
    ``n_train`` training and ``n_test`` held-out shapes of ``image_size`` pixels."""

    recipe: PretrainScale
    n_train: int = 5000
    n_test: int = 1000
    image_size: int = 32


ZOO_SCALES: dict[str, ZooScale] = {
    "cpu": ZooScale(PRETRAIN_SCALES["cpu"]),
    # long: the checkpoints. 1500 steps (38 epochs of 5000 images) take 6 to 25 minutes a method
    # on one core; iBOT and DINOv2 (three passes of the 65-token ViT a step) take 38 to 50.
    "long": ZooScale(replace(PRETRAIN_SCALES["cpu"], steps=1500)),
    "gpu": ZooScale(PRETRAIN_SCALES["gpu"], n_train=20000, n_test=2000),
}

VIT: dict = dict(preset="cpu")                                 # conv stem, 4x4 tokens, 96 wide
FINE_VIT: dict = dict(preset="cpu-fine")                       # the same stem to 4 px: 8x8 tokens
MAE_VIT: dict = dict(preset="cpu", stem="patch", patch_size=4)  # same width and depth, 8x8 tokens
# n_local_crops=0: the two crops are the recipe's two views (build_method passes them as
# ``crops``); dino, dino-plain and dino-fine, trained before this was set, record DINOConfig's
# unused default of 8
DINO_CONFIG = DINOConfig(out_dim=256, hidden_dim=256, bottleneck_dim=64, use_bn_in_head=True, n_local_crops=0,
                         teacher_temp=0.04, warmup_teacher_temp=0.04, momentum_teacher=0.99)
MAE_CONFIG = MAEConfig(mask_ratio=0.75, decoder_dim=64, decoder_depth=2, decoder_heads=4)
IBOT_CONFIG = IBOTConfig(out_dim=256, hidden_dim=256, bottleneck_dim=64, use_bn_in_head=True,
                         teacher_temp=0.04, teacher_patch_temp=0.04, momentum_teacher=0.99)
IJEPA_CONFIG = IJEPAConfig(pred_dim=64, pred_depth=2, pred_heads=4)
# I-JEPA's EMA where the official start, 0.996 (linear to 1), was not the best measured: on the
# plain shapes at 1e-3 the target encoder from 0.99 (DINO's short-run start) reached k-NN 0.698
# against 0.612 (benchmarks/COURSE_SCALE.md); the colourful run keeps the official schedule
IJEPA_CHANGES: dict[str, dict] = {"ijepa-plain": {"momentum": (0.99, 1.0)}}
DINOV2_CONFIG = DINOv2Config(out_dim=256, hidden_dim=256, bottleneck_dim=64, use_bn_in_head=True,
                             teacher_temp=0.04, momentum_teacher=0.99, centering="sinkhorn_knopp")
# the DINOv2 runs: register tokens, and the DINOV2_CONFIG fields a run changes (without KoLeo,
# and with a tenth of its weight: lecture 06's ablation, where on ten grey shapes KoLeo at 0.1
# undoes what the rest learns and at 0.01 added to it on seed 0, not on seed 1)
DINOV2_REGISTERS = {"dinov2": 0, "dinov2-reg": 4, "dinov2-nokoleo": 0, "dinov2-lowkoleo": 0}
DINOV2_CHANGES: dict[str, dict] = {"dinov2-nokoleo": {"koleo_weight": 0.0},
                                   "dinov2-lowkoleo": {"koleo_weight": 0.01}}
# I-JEPA's views: "masks" (the masks are its only augmentation) or "crops" (before the masks, the
# labelled run's crop, flip and turn, no colour; the official code crops 30-100 % of each image)
IJEPA_VIEWS_CHOICES: tuple[str, ...] = ("masks", "crops")
IJEPA_VIEWS = "masks"
# A run's own peak learning rate, at every scale, where the scale's (``recipe.lr``: 3e-3 at cpu and
# long) was not its best of those tried on the plain-patch ViT at the long scale (5e-4, 1e-3, 3e-3;
# benchmarks/COURSE_SCALE.md): I-JEPA's, the official 1e-3, on either data (ijepa-plain's k-NN
# 0.515 / 0.612 / 0.495), and the labelled reference's (0.648 / 0.777 / 0.651; on the colourful
# shapes 1e-3 gave 0.386 where 3e-3 stayed at chance), so that a share of labels is a share of
# labels at their best. MAE's best is the shared 3e-3 (1e-3: 0.724 / 0.765).
# DINOv2's plain runs train at 1e-3 (without KoLeo 0.703 / 0.616). iBOT keeps 3e-3: 1e-3 won on
# seed 0 (0.603 / 0.514) but left seeds 1 and 2 near their untrained networks (0.280, 0.329).
METHOD_LR: dict[str, float] = {"ijepa": 1e-3, "ijepa-plain": 1e-3, "supervised-patch-plain": 1e-3,
                               "supervised-patch": 1e-3,
                               "dinov2-plain": 1e-3, "dinov2-nokoleo-plain": 1e-3,
                               "dinov2-lowkoleo-plain": 1e-3, "dinov2-fine": 1e-3}
# How often a run's views are made grey, where it is not its scale's (``recipe.grayscale_p``: 0.8
# at cpu and long, where the objects' random colours are otherwise what two views share most
# easily): the colourful iBOT and DINOv2 runs were trained with SimCLR's 0.2 before the recipe
# moved, and were not retrained (DINO, retrained with 0.8, moved only from 0.123 to 0.164). On
# the one-grey shapes of the -plain and -fine runs a view is grey already, so p changes nothing
# there (to float rounding); those runs, trained with 0.2, record no grayscale_p.
METHOD_GRAYSCALE_P: dict[str, float] = {"ibot": 0.2, "dinov2": 0.2, "dinov2-reg": 0.2}
# the linear warm-up to the peak rate, in steps, at most a tenth of the run
WARMUP_STEPS = 20
# what a run's record keeps of the teacher's targets, every log step (the methods with a teacher
# distribution return them): the mean per-image entropy and the entropy of the batch-mean target,
# of the class token and of the patches; uniform collapse puts both at log K, one-hot both at 0
COLLAPSE_READINGS = ("teacher_entropy", "batch_mean_entropy", "patch_entropy", "patch_batch_mean_entropy")


def zoo_scale(scale: str) -> ZooScale:
    """``ZOO_SCALES[scale]``, with a clear error for an unknown scale."""
    if scale not in ZOO_SCALES:
        raise ValueError(f"scale must be one of {ZOO_SCALE_NAMES}, got {scale!r}")
    return ZOO_SCALES[scale]


def method_recipe(name: str, scale: str, lr: float | None = None) -> PretrainScale:
    """The recipe run ``name`` trains with at ``scale``: the scale's, with the peak learning rate
    ``lr`` if given, else the run's own (:data:`METHOD_LR`) where it has one."""
    recipe = run_views(name, zoo_scale(scale).recipe)
    if lr is not None and not (isinstance(lr, float) and 0 < lr < float("inf")):
        raise ValueError(f"lr must be a positive float or None, got {lr!r}")
    return replace(recipe, lr=METHOD_LR.get(name, recipe.lr) if lr is None else lr)


def run_views(name: str, recipe: PretrainScale) -> PretrainScale:
    """``recipe`` with run ``name``'s own grey probability where it has one (:data:`METHOD_GRAYSCALE_P`)."""
    check_method(name)
    return replace(recipe, grayscale_p=METHOD_GRAYSCALE_P.get(name, recipe.grayscale_p))


def recipe_views(recipe: PretrainScale, images: Tensor, *,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two SimCLR views of uint8 ``images`` (B, 3, H, W) with ``recipe``'s colour strength, crops,
    turns and grey probability: the views the contrastive and self-distillation runs train on."""
    from ..augment import batched_simclr_views
    return batched_simclr_views(images, strength=recipe.view_strength, scale=recipe.crop_scale,
                                rotation=recipe.rotation, grayscale_p=recipe.grayscale_p, generator=generator)


def recorded_views(meta: dict, images: Tensor, *,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two views of uint8 ``images`` (B, 3, H, W) drawn as checkpoint ``meta``'s run drew its
    training views (``meta["config"]["recipe"]``; runs recorded before the grey probability was
    a field of the recipe made views grey with SimCLR's 0.2)."""
    from ..augment import batched_simclr_views
    recipe = meta["config"]["recipe"]
    return batched_simclr_views(images, strength=recipe["view_strength"], scale=tuple(recipe["crop_scale"]),
                                rotation=tuple(recipe["rotation"]), grayscale_p=recipe.get("grayscale_p", 0.2),
                                generator=generator)


def check_method(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    return name


def variant(name: str) -> tuple[str, tuple[str, ...]]:
    """A checkpoint name split into the method it trains and the :data:`VARIANT_SUFFIXES` that
    change its data or ViT: ``supervised-patch-plain`` -> ``("supervised", ("-patch", "-plain"))``."""
    base, suffixes = check_method(name), []
    while base.endswith(VARIANT_SUFFIXES):
        suffix = next(s for s in VARIANT_SUFFIXES if base.endswith(s))
        base, suffixes = base.removesuffix(suffix), [suffix, *suffixes]
    return base, tuple(suffixes)


def base_method(name: str) -> str:
    """The method a checkpoint name trains: ``dino-plain`` and ``dino-fine`` -> ``dino`` (only
    the data, and for ``-fine`` and ``-patch`` the ViT's stem, differ)."""
    return variant(name)[0]


def plain_data(name: str) -> bool:
    """Whether checkpoint ``name`` trains on :data:`PLAIN_DATA` (the ``-plain`` and ``-fine`` ones)."""
    return bool({"-plain", "-fine"} & set(variant(name)[1]))


def build_method(name: str, setup: ZooScale, *, steps: int, seed: int = 0,
                 mae_config: MAEConfig = MAE_CONFIG) -> Method:
    """The method ``name`` with a fresh backbone seeded by ``seed``, set up as the module says
    (``mae_config`` replaces MAE's, for example to train at another masking ratio)."""
    from ..augment import augment_batch, simclr_view_spec
    full_name, (name, suffixes) = name, variant(name)
    # iBOT and DINOv2 train on MAE's plain patches unless the name asks for the conv stem to 4 px
    on_patches = "-patch" in suffixes or name in ("ibot", *DINOV2_REGISTERS)
    vit = FINE_VIT if "-fine" in suffixes else MAE_VIT if on_patches else VIT
    recipe, size = run_views(full_name, setup.recipe), setup.image_size
    torch.manual_seed(seed)
    if name == "mae":
        return MAE(build_vit(**MAE_VIT, img_size=size), mae_config)
    spec = simclr_view_spec(size, strength=0.0, scale=recipe.crop_scale, rotation=recipe.rotation,
                            grayscale_p=recipe.grayscale_p)

    def label_views(x: Tensor) -> Tensor:        # crop, flip, turn and grey; no colour jitter
        return augment_batch(x, [spec])[0]
    if name == "ijepa":
        if IJEPA_VIEWS not in IJEPA_VIEWS_CHOICES:
            raise ValueError(f"IJEPA_VIEWS must be one of {IJEPA_VIEWS_CHOICES}, got {IJEPA_VIEWS!r}")
        return IJEPA(build_vit(**MAE_VIT, img_size=size, class_token=False), steps=steps,
                     config=ijepa_config(full_name), seed=seed,
                     augment=label_views if IJEPA_VIEWS == "crops" else None)
    registers = {"num_register_tokens": DINOV2_REGISTERS[name]} if name in DINOV2_REGISTERS else {}
    backbone = build_vit(**vit, img_size=size, **registers)
    if name == "supervised":
        from ..supervised import Supervised
        return Supervised(backbone, backbone.embed_dim, N_CLASSES, augment=label_views)

    no_colour = None
    if name == "simclr-nocolour":               # crops, flips, rotations: no jitter, no grey
        no_colour = replace(simclr_view_spec(size, strength=0.0, scale=recipe.crop_scale,
                                             rotation=recipe.rotation), jitter_p=0.0, grayscale_p=0.0)

    def views(x: Tensor) -> tuple[Tensor, Tensor]:
        if no_colour is not None:
            view1, view2 = augment_batch(x, [no_colour, no_colour])
            return view1, view2
        return recipe_views(recipe, x)
    if name in ("simclr", "simclr-nocolour"):
        from ..simclr import SimCLR
        return SimCLR(backbone, backbone.embed_dim, temperature=TEMPERATURES["simclr"], views=views)
    if name == "moco":
        from ..moco import MoCo
        return MoCo(backbone, backbone.embed_dim, momentum=recipe.moco.momentum,
                    queue_size=recipe.moco.queue_size, temperature=recipe.moco.temperature,
                    views=views, seed=seed)
    if name == "ibot":
        return IBOT(backbone, backbone.embed_dim, steps=steps, config=IBOT_CONFIG,
                    crops=lambda x: list(views(x)), seed=seed)
    if name in DINOV2_REGISTERS:
        return DINOv2(backbone, backbone.embed_dim, steps=steps, config=dinov2_config(name),
                      crops=lambda x: list(views(x)), seed=seed)
    return DINO(backbone, backbone.embed_dim, steps=steps, config=DINO_CONFIG,
                crops=lambda x: list(views(x)))


def ijepa_config(name: str) -> IJEPAConfig:
    """The I-JEPA run ``name``'s settings: :data:`IJEPA_CONFIG` with :data:`IJEPA_CHANGES`'s fields."""
    return replace(IJEPA_CONFIG, **IJEPA_CHANGES.get(name, {}))


def dinov2_config(name: str) -> DINOv2Config:
    """The DINOv2 run ``name``'s settings (``dinov2``, ``dinov2-reg``, ``dinov2-nokoleo``,
    ``dinov2-lowkoleo``):
    :data:`DINOV2_CONFIG` with the fields :data:`DINOV2_CHANGES` names replaced."""
    return replace(DINOV2_CONFIG, **DINOV2_CHANGES.get(name, {}))


def evaluated_backbone(name: str, method: Method) -> nn.Module:
    """The network a checkpoint keeps: the teacher backbone of DINO, iBOT and DINOv2, MAE's
    encoder, else the backbone."""
    name = base_method(name)
    if name in ("dino", "ibot", *DINOV2_REGISTERS):
        return method.teacher.backbone
    if name == "ijepa":
        return method.backbone                                  # the target encoder
    return method.encoder if name == "mae" else method.backbone


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def shapes_kwargs(data: dict) -> dict:
    """A checkpoint's ``meta["data"]`` without its image counts: the ``make_shapes`` keyword
    arguments (size, seed, clutter) that draw more images of the same data."""
    return {k: v for k, v in data.items() if k not in ("n_train", "n_test")}


def shapes_for(data: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images, train labels, test images, test labels) of a checkpoint's ``meta["data"]``:
    the training split of ``make_shapes(n_train, ...)`` and the held-out split of ``n_test``."""
    kwargs = shapes_kwargs(data)
    train_x, train_y, _ = make_shapes(data["n_train"], **kwargs)
    test_x, test_y, _ = make_shapes(data["n_test"], split="test", **kwargs)
    return train_x, train_y, test_x, test_y


def pretrain_data(name: str, scale: str = "cpu", *, seed: int = 0, n_train: int | None = None,
                  n_test: int | None = None) -> dict:
    """The ``make_shapes`` keyword arguments :func:`pretrain` trains and measures ``name`` on."""
    check_method(name)
    setup = zoo_scale(scale)
    return dict(n_train=n_train or setup.n_train, n_test=n_test or setup.n_test,
                image_size=setup.image_size, seed=seed, clutter=setup.recipe.clutter,
                **(PLAIN_DATA if plain_data(name) else {}))


def pretrain(name: str, scale: str = "cpu", *, steps: int | None = None, seed: int = 0,
             n_train: int | None = None, n_test: int | None = None,
             device: torch.device | str = "cpu", progress: bool = True,
             mae_config: MAEConfig = MAE_CONFIG, eval_every: int = 0,
             lr: float | None = None) -> tuple[nn.Module, dict]:
    """Train method ``name`` at ``scale`` (``steps``, ``n_train``, ``n_test``, the peak ``lr`` and,
    for MAE, ``mae_config`` override the scale's and the run's); return the backbone a
    checkpoint keeps (eval mode, on ``device``) and its metadata: method, steps, seed, commit,
    config (the ViT, the recipe, the method's settings), data (``make_shapes`` keyword arguments),
    pooling, wall time, the loss curve, the untrained backbone's k-NN for comparison and, for the
    runs with a teacher distribution, its entropies along the way (``collapse``).
    ``metrics`` is left for the caller, who measures the saved (half-precision) weights. With
    ``eval_every`` > 0 the held-out k-NN is also measured every ``eval_every`` steps during
    training (``meta["knn_trajectory"]``; its time is left out of ``train_seconds``)."""
    check_method(name)
    setup = zoo_scale(scale)
    recipe = method_recipe(name, scale, lr)
    if steps is None:
        steps = recipe.steps
    check_int("eval_every", eval_every, 0)
    data = pretrain_data(name, scale, seed=seed, n_train=n_train, n_test=n_test)
    train_x, train_y, test_x, test_y = shapes_for(data)
    method = build_method(name, setup, steps=steps, seed=seed, mae_config=mae_config)
    backbone = evaluated_backbone(name, method)
    untrained = evaluate_backbone(backbone, train_x, train_y, test_x, test_y, pooling=POOLING[name],
                                  probe_epochs=0, diagnostics=False, device=device)
    config = TrainConfig(steps=steps, batch_size=recipe.batch_size, lr=recipe.lr,
                         warmup_steps=min(WARMUP_STEPS, steps // 10), seed=seed, progress=progress)
    trajectory = (track_knn(method, backbone, (train_x, train_y, test_x, test_y), POOLING[name],
                            eval_every, device) if eval_every else None)
    commit, start = _commit(), time.perf_counter()   # the code the run started with
    history = train(method, train_x, config, labels=train_y, device=device)
    train_seconds = time.perf_counter() - start - (trajectory["seconds"] if trajectory else 0.0)
    meta = {"method": name, "scale": scale, "steps": steps, "seed": seed, "commit": commit,
            "pooling": POOLING[name], "data": data,
            "train_seconds": round(train_seconds, 1),
            "threads": torch.get_num_threads(), "device": str(device),
            "config": {"vit": asdict(backbone.course_config), "train": asdict(config),
                       "recipe": asdict(recipe),
                       "method": _method_settings(name, recipe, mae_config)},
            "loss": {"steps": history.steps, "values": history["loss"]},
            "untrained_knn_accuracy": untrained["knn_accuracy"]}
    readings = {key: history[key] for key in COLLAPSE_READINGS if key in history.metrics}
    if readings:
        meta["collapse"] = {"steps": history.steps, **readings}
    if trajectory:
        meta["knn_trajectory"] = {"steps": trajectory["steps"], "knn": trajectory["knn"]}
    return backbone.eval(), meta


def _method_settings(name: str, recipe: PretrainScale, mae_config: MAEConfig = MAE_CONFIG) -> dict:
    """The method's settings as its metadata records them. DINO, iBOT and DINOv2 record their
    whole config, ``global_scale`` and ``local_scale`` included, but take their two crops from the
    recipe's views (``config.recipe.crop_scale``): those two fields are not used by these runs."""
    full_name, name = name, base_method(name)
    if name == "simclr":
        return {"temperature": TEMPERATURES[name]}
    if name == "moco":
        return asdict(recipe.moco)
    if name == "simclr-nocolour":
        return {"temperature": TEMPERATURES["simclr"], "colour_jitter_p": 0.0, "grayscale_p": 0.0}
    if name == "dino":
        return asdict(DINO_CONFIG)
    if name == "ibot":
        return asdict(IBOT_CONFIG)
    if name == "ijepa":
        return {**asdict(ijepa_config(full_name)), "views": IJEPA_VIEWS}
    if name in DINOV2_REGISTERS:
        return {**asdict(dinov2_config(name)), "num_register_tokens": DINOV2_REGISTERS[name]}
    return asdict(mae_config) if name == "mae" else {}


def train_checkpoint(name: str, scale: str = "cpu", *, out: str | Path | None = None,
                     steps: int | None = None, seed: int = 0, probe_epochs: int = 100,
                     n_train: int | None = None, n_test: int | None = None,
                     device: torch.device | str = "cpu", progress: bool = True,
                     eval_every: int = 0, lr: float | None = None) -> dict:
    """:func:`pretrain`, then measure the half-precision weights (``course_lib.zoo.save``) and,
    with ``out``, write the checkpoint there. Returns the metadata, ``metrics`` included."""
    from .. import zoo
    backbone, meta = pretrain(name, scale, steps=steps, seed=seed, n_train=n_train,
                              n_test=n_test, device=device, progress=progress, eval_every=eval_every,
                              lr=lr)
    if out is None:
        model = zoo.Pretrained(backbone.cpu(), {**meta, "metrics": {}})
        model.meta["metrics"] = zoo.measure(model, probe_epochs=probe_epochs)
    else:
        model = zoo.save(out, backbone.cpu(), meta, probe_epochs=probe_epochs)
        model.meta["checkpoint"] = str(out)
    return model.meta


def checkpoint_summary(meta: dict) -> str:
    """One paragraph on a trained checkpoint: the k-NN it reached against the untrained network."""
    metrics = meta["metrics"]
    lines = [f"{meta['method']} at scale {meta['scale']}: {meta['steps']} steps in "
             f"{meta['train_seconds']:.0f} s on {meta['threads']} thread(s)",
             f"held-out weighted 20-NN accuracy {metrics['knn_accuracy']:.3f} +- "
             f"{metrics['knn_stderr']:.3f} (untrained {meta['untrained_knn_accuracy']:.3f}, "
             f"chance {1 / N_CLASSES:.3f})"]
    if "linear_probe" in metrics:
        lines.append(f"linear probe {metrics['linear_probe']:.3f}")
    if "checkpoint" in meta:
        lines.append(f"wrote {meta['checkpoint']} (half precision)")
    return "\n".join(lines)

"""Experiment runners and figures of Lecture 07 (evaluation): every shipped checkpoint through the
one evaluator, on its own data, under every protocol the course uses.

Protocols (``course_lib.evaluate`` holds each one's code):

- ``knn``: weighted 20-NN on frozen features (DINO's), with its binomial standard error;
- ``probe``: a linear classifier on frozen features whose one hyper-parameter, the weight decay,
  is chosen on a held-out fifth of the training images and never on the test images
  (:func:`fair_probe`), one run per seed;
- ``finetune``: the whole network trained with labels for a few hundred steps, one run per seed;
- ``probe_1pct`` / ``probe_10pct``: the probe trained on a class-balanced 1 % or 10 % of the
  training labels (:func:`balanced_subset`), a new subset per seed;
- ``dense``: the dense probe of Lecture 04 (object or background, per frozen patch token), its
  object IoU with a five-fold standard error.

:func:`compare` returns one row per checkpoint, with every seed's value and their mean and
standard deviation. ``python -m course_lib compare`` runs it; ``--scale cpu`` takes about a
minute on 2 cores (1000 training images, one seed, 30 fine-tuning steps).
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import N_CLASSES, make_shapes, normalize
from ..evaluate import Pooled, dense_probe, extract_features, finetune, knn_accuracy, linear_probe

Tensor = torch.Tensor

PROTOCOLS: tuple[str, ...] = ("knn", "probe", "finetune", "probe_1pct", "probe_10pct", "dense")
SEEDED: tuple[str, ...] = ("probe", "finetune", "probe_1pct", "probe_10pct")
WEIGHT_DECAYS: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class CompareScale:
    """How much of each checkpoint's data the comparison uses, and how many seeds."""

    n_train: int
    n_test: int
    seeds: tuple[int, ...]
    finetune_steps: int
    probe_epochs: int
    dense_images: int


COMPARE_SCALES: dict[str, CompareScale] = {
    "cpu": CompareScale(n_train=1000, n_test=500, seeds=(0,), finetune_steps=30, probe_epochs=50,
                        dense_images=200),
    "long": CompareScale(n_train=5000, n_test=1000, seeds=(0, 1, 2), finetune_steps=300,
                         probe_epochs=100, dense_images=500),
}


# --- 1. a fair probe, and fair low-label splits ------------------------------------------------------
def balanced_subset(labels: Tensor, fraction: float, *, seed: int = 0) -> Tensor:
    """Indices of a class-balanced ``fraction`` of ``labels`` (n,): the same number of images of
    every class, round(fraction * n / classes) and at least one, drawn from ``seed``. A plain random
    1 % of 5000 images would leave some of the 10 classes with one or no example."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    classes = labels.unique()
    per_class = max(1, round(fraction * labels.numel() / classes.numel()))
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for label in classes:
        members = (labels == label).nonzero().flatten()
        if members.numel() < per_class:
            raise ValueError(f"class {int(label)} has {members.numel()} images, fewer than the "
                             f"{per_class} a balanced {fraction:.0%} needs")
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[:per_class]])
    return torch.cat(chosen).sort().values


def fair_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
               weight_decays: tuple[float, ...] = WEIGHT_DECAYS, val_fraction: float = 0.2,
               epochs: int = 100, seed: int = 0) -> dict:
    """A linear probe whose weight decay is chosen without looking at the test set: hold out a
    class-balanced ``val_fraction`` of the training features, train one probe per weight decay on
    the rest, keep the decay with the best held-out accuracy (the smallest on a tie), retrain on
    all training features with it and score the test features once. Returns ``accuracy``,
    ``weight_decay`` and ``val_accuracy`` (decay -> held-out accuracy)."""
    held_out = balanced_subset(train_y, val_fraction, seed=seed)
    keep = torch.ones(train_y.numel(), dtype=torch.bool)
    keep[held_out] = False
    val_accuracy = {wd: linear_probe(train_x[keep], train_y[keep], train_x[held_out],
                                     train_y[held_out], epochs=epochs, weight_decay=wd, seed=seed)
                    for wd in weight_decays}
    best = max(weight_decays, key=lambda wd: (val_accuracy[wd], -wd))
    accuracy = linear_probe(train_x, train_y, test_x, test_y, epochs=epochs, weight_decay=best,
                            seed=seed)
    return {"accuracy": accuracy, "weight_decay": best, "val_accuracy": val_accuracy}


# --- 2. one checkpoint, every protocol ----------------------------------------------------------------
def checkpoint_data(meta: dict, setup: CompareScale) -> tuple[Tensor, ...]:
    """The training and held-out images, labels and object masks of the checkpoint with metadata
    ``meta``, as many as ``setup`` asks: (train_x, train_y, train_m, test_x, test_y, test_m)."""
    from .pretrain import shapes_kwargs
    kwargs = shapes_kwargs(meta["data"])
    train_x, train_y, train_m = make_shapes(setup.n_train, **kwargs)
    test_x, test_y, test_m = make_shapes(setup.n_test, split="test", **kwargs)
    return train_x, train_y, train_m, test_x, test_y, test_m


def evaluate_checkpoint(name: str, setup: CompareScale, *, directory: str | Path | None = None,
                        device: torch.device | str = "cpu") -> dict:
    """Every protocol of the module docstring on the shipped checkpoint ``name``: a row with each
    seed's value (``runs``), their mean and standard deviation (``mean``, ``sd``; sd 0 for one
    seed), the k-NN standard error, the dense IoU standard error, the checkpoint's training steps
    and wall time, and the seconds this row took. ``directory``: where the checkpoint lies
    (default: the shipped ones)."""
    from .. import zoo
    start = time.perf_counter()
    model = zoo.load(name, directory=directory or zoo.CHECKPOINT_DIR, device=device)
    train_x, train_y, train_m, test_x, test_y, test_m = checkpoint_data(model.meta, setup)
    pooled = Pooled(model.backbone, model.meta["pooling"])
    train_f, test_f = (extract_features(pooled, x, transform=normalize).cpu()
                       for x in (train_x, test_x))
    knn = knn_accuracy(train_f, train_y, test_f, test_y)
    runs: dict[str, list[float]] = {key: [] for key in SEEDED}
    for seed in setup.seeds:
        runs["probe"].append(fair_probe(train_f, train_y, test_f, test_y,
                                        epochs=setup.probe_epochs, seed=seed)["accuracy"])
        for key, fraction in (("probe_1pct", 0.01), ("probe_10pct", 0.1)):
            subset = balanced_subset(train_y, fraction, seed=seed)
            runs[key].append(linear_probe(train_f[subset], train_y[subset], test_f, test_y,
                                          epochs=setup.probe_epochs, seed=seed))
        runs["finetune"].append(finetune(model.backbone, train_x, train_y, test_x, test_y,
                                         steps=setup.finetune_steps, seed=seed, device=device,
                                         pooling=model.meta["pooling"]))
    dense = dense_probe(model.backbone, train_x[:setup.dense_images], train_m[:setup.dense_images],
                        test_x[:setup.dense_images], test_m[:setup.dense_images], seed=setup.seeds[0])
    runs["knn"], runs["dense"] = [knn], [dense["dense_iou"]]
    return {"method": model.meta["method"], "steps": model.meta["steps"],
            "grid": list(model.backbone.patch_embed.grid_size),
            "train_seconds": model.meta["train_seconds"], "runs": runs,
            "mean": {key: statistics.fmean(values) for key, values in runs.items()},
            "sd": {key: statistics.stdev(values) if len(values) > 1 else 0.0
                   for key, values in runs.items()},
            "knn_stderr": math.sqrt(knn * (1 - knn) / test_y.numel()),
            "dense_stderr": dense["dense_iou_stderr"], "dense_position": dense["dense_position_iou"],
            "seconds": round(time.perf_counter() - start, 1)}


DATA: tuple[str, ...] = ("colourful", "plain")


def same_data_checkpoints(names: list[str], data: str = "colourful") -> list[str]:
    """The checkpoints of ``names`` that one comparison ranks together, all trained on the same
    images: ``data="colourful"``, the course's default shapes (names without the
    ``labs.pretrain.VARIANT_SUFFIXES``); ``"plain"``, the shapes in one grey at one size (the
    ``-plain`` and ``-fine`` checkpoints, ``labs.pretrain.plain_data``)."""
    from .pretrain import plain_data
    if data not in DATA:
        raise ValueError(f"data must be one of {DATA}, got {data!r}")
    return [name for name in names if plain_data(name) == (data == "plain")]


def compare(names: list[str] | tuple[str, ...] | None = None, scale: str = "cpu", *,
            data: str = "colourful", retrain: bool = False, device: torch.device | str = "cpu",
            progress: bool = False) -> dict:
    """:func:`evaluate_checkpoint` for every name (default: every checkpoint in the zoo trained on
    ``data``, :func:`same_data_checkpoints`; each row uses its own checkpoint's data) at
    ``scale`` (``COMPARE_SCALES``); returns {"scale", "setup", "chance", "rows": name -> row,
    "retrained", "seconds"}. With ``retrain``, each method is first trained again by
    ``course_lib.labs.pretrain`` at the pretraining scale of the same name (``cpu``: 450 steps;
    ``long``: the shipped recipe) into a temporary folder, and those networks are compared."""
    from .. import zoo
    from .pretrain import train_checkpoint
    if scale not in COMPARE_SCALES:
        raise ValueError(f"scale must be one of {tuple(COMPARE_SCALES)}, got {scale!r}")
    if data not in DATA:
        raise ValueError(f"data must be one of {DATA}, got {data!r}")
    available = zoo.available()
    names = list(names) if names is not None else same_data_checkpoints(available, data)
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise ValueError(f"names must be checkpoints of the zoo {available}, got {names!r}")
    setup, start, rows = COMPARE_SCALES[scale], time.perf_counter(), {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            if retrain:
                train_checkpoint(name, scale, out=Path(folder) / f"{name}{zoo.SUFFIX}",
                                 probe_epochs=0, device=device, progress=progress)
            rows[name] = evaluate_checkpoint(name, setup, directory=folder if retrain else None,
                                             device=device)
            if progress:
                print(f"compare: {name} in {rows[name]['seconds']:.0f} s", flush=True)
    return {"scale": scale, "setup": asdict(setup), "chance": 1.0 / N_CLASSES, "rows": rows,
            "retrained": retrain, "seconds": round(time.perf_counter() - start, 1)}


# --- 3. reading the table -----------------------------------------------------------------------------
SHIPPED_TABLES: dict[str, str] = {"colourful": "compare_long.json", "plain": "compare_plain_long.json"}


def shipped_table(data: str = "colourful") -> dict:
    """The table ``python -m course_lib compare --scale long --data DATA`` wrote for the shipped
    checkpoints trained on ``data`` (:data:`DATA`), installed with them
    (``course_lib/checkpoints/``, :data:`SHIPPED_TABLES`)."""
    import json

    from .. import zoo
    if data not in SHIPPED_TABLES:
        raise ValueError(f"data must be one of {tuple(SHIPPED_TABLES)}, got {data!r}")
    return json.loads((zoo.CHECKPOINT_DIR / SHIPPED_TABLES[data]).read_text())


def vit_families(names: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """The checkpoints ``names`` grouped by the ViT they trained (one group per labelled network:
    ``labs.shipped.labelled_reference``, the same ViT, data, steps and seed), the labelled one
    first; each group is keyed by its ViT in words, e.g. ``"plain 4 px patches, 8x8 tokens"``.
    A name without a labelled network of its own goes in a group of its own ViT's words."""
    from .. import zoo
    from .pretrain import base_method
    from .shipped import labelled_reference
    groups: dict[str, list[str]] = {}
    for name in names:
        supervised = base_method(name) == "supervised"
        reference = name if supervised else labelled_reference(name) or name
        vit = zoo.metadata(reference)["config"]["vit"]
        stem = "conv stem" if vit["stem"] == "conv" else f"plain {vit['patch_size']} px patches"
        if vit["stem"] == "conv" and vit["patch_size"] < 8:
            stem = f"conv stem to {vit['patch_size']} px"
        grid = vit["img_size"] // vit["patch_size"]
        group = groups.setdefault(f"{stem}, {grid}x{grid} tokens", [])
        if supervised:
            group.insert(0, name)
        else:
            group.append(name)
    return groups


LABELS = {"knn": "k-NN", "probe": "linear probe", "finetune": "fine-tune",
          "probe_1pct": "probe, 1 % labels", "probe_10pct": "probe, 10 % labels",
          "dense": "dense IoU"}


def compare_text(table: dict, groups: dict[str, list[str]] | None = None) -> str:
    """:func:`compare`'s table as text: mean +- sd over seeds (k-NN and dense: +- standard error).
    ``groups`` (title -> row names, e.g. :func:`vit_families`): the rows in that order under a
    title line each; default: every row in the table's order."""
    groups = groups or {"": list(table["rows"])}
    width = max([len("checkpoint"), *map(len, table["rows"])]) + 2
    lines = [f"{'checkpoint':<{width}}{'steps':>6}{'grid':>6}" + "".join(f"{LABELS[p]:>20}" for p in PROTOCOLS)]
    for title, names in groups.items():
        lines += [title] if title else []
        for name in names:
            row, cells = table["rows"][name], []
            for protocol in PROTOCOLS:
                spread = {"knn": row["knn_stderr"], "dense": row["dense_stderr"]}.get(
                    protocol, row["sd"][protocol])
                cells.append(f"{row['mean'][protocol]:>13.3f} +-{spread:.3f}")
            grid = f"{row['grid'][0]}x{row['grid'][1]}"
            lines.append(f"{name:<{width}}{row['steps']:>6}{grid:>6}" + "".join(cells))
    seeds = len(table["setup"]["seeds"])
    lines.append(f"scale {table['scale']}: {seeds} seed(s); +- is the sd over seeds, for k-NN and "
                 f"dense IoU a standard error; chance {table['chance']:.2f}; dense IoU compares "
                 "only rows of the same grid")
    return "\n".join(lines)


def plot_compare(table: dict, protocols: tuple[str, ...] = ("knn", "probe", "finetune",
                                                           "probe_1pct", "dense"), ax=None,
                 names: list[str] | None = None):
    """Grouped bars: one group per checkpoint (``names``, default every row), one bar per
    protocol, error bars as in :func:`compare_text`; chance dotted."""
    import matplotlib.pyplot as plt   # figures only
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 3.5))
    names = list(table["rows"]) if names is None else names
    width = 0.8 / len(protocols)
    for i, protocol in enumerate(protocols):
        rows = [table["rows"][name] for name in names]
        errors = [{"knn": r["knn_stderr"], "dense": r["dense_stderr"]}.get(protocol, r["sd"][protocol])
                  for r in rows]
        ax.bar([j + (i - (len(protocols) - 1) / 2) * width for j in range(len(names))],
               [r["mean"][protocol] for r in rows], width, yerr=errors, label=LABELS[protocol],
               capsize=2)
    ax.axhline(table["chance"], color="gray", ls=":", lw=1, label="chance (classification)")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set(ylabel="accuracy / IoU", ylim=(0, 1))
    ax.legend(fontsize=7, ncol=3)
    return ax


# --- 4. the usual mistakes, measured --------------------------------------------------------------
def knn_variant(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *, k: int = 20,
                temperature: float = 0.07, normalise: bool = True, weighted: bool = True) -> float:
    """Weighted k-NN (``course_lib.evaluate.knn_accuracy``) with its two usual mistakes as
    switches: ``normalise=False`` ranks neighbours by raw dot products (long feature vectors win
    every vote) and ``weighted=False`` gives each of the k neighbours one vote."""
    if normalise:
        train_x, test_x = F.normalize(train_x.float(), dim=1), F.normalize(test_x.float(), dim=1)
    similarity, index = (test_x.float() @ train_x.float().T).topk(k, dim=1)      # (m, k)
    if not weighted:
        weights = torch.ones_like(similarity)
    elif normalise:
        weights = (similarity / temperature).exp()
    else:                       # raw dot products overflow exp: shift by the row's top (same vote)
        weights = ((similarity - similarity[:, :1]) / temperature).exp()
    votes = torch.zeros(test_x.shape[0], int(train_y.max()) + 1)
    votes.scatter_add_(1, train_y[index], weights)
    return (votes.argmax(1) == test_y).float().mean().item()


def tuning_on_the_test_set(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                           weight_decays: tuple[float, ...] = WEIGHT_DECAYS,
                           seeds: tuple[int, ...] = (0, 1, 2, 3, 4), epochs: int = 100) -> dict:
    """What picking the probe by its test accuracy (the mistake) reports, beside the fair protocol:
    every (weight decay, seed) configuration scored on the test set (``per_config``), their maximum
    (``tuned``: the number a paper tuned on its test set would print), and :func:`fair_probe`'s
    test accuracy per seed (``fair``), whose mean is the honest estimate."""
    per_config = {(wd, seed): linear_probe(train_x, train_y, test_x, test_y, epochs=epochs,
                                           weight_decay=wd, seed=seed)
                  for wd in weight_decays for seed in seeds}
    fair = [fair_probe(train_x, train_y, test_x, test_y, weight_decays=weight_decays,
                       epochs=epochs, seed=seed)["accuracy"] for seed in seeds]
    return {"per_config": per_config, "tuned": max(per_config.values()), "fair": fair}


def low_label_splits(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                     fraction: float = 0.01, seeds: tuple[int, ...] = tuple(range(10)),
                     epochs: int = 100) -> dict:
    """The probe on ``fraction`` of the labels, drawn plainly at random and class-balanced, one
    split per seed: ``random`` and ``balanced`` (lists of accuracies), and ``missing`` (per random
    split, how many classes it has no image of)."""
    n_classes = int(train_y.max()) + 1
    size = balanced_subset(train_y, fraction).numel()
    result = {"random": [], "balanced": [], "missing": []}
    for seed in seeds:
        plain = torch.randperm(train_y.numel(), generator=torch.Generator().manual_seed(seed))[:size]
        result["missing"].append(n_classes - train_y[plain].unique().numel())
        for key, subset in (("random", plain), ("balanced", balanced_subset(train_y, fraction,
                                                                             seed=seed))):
            result[key].append(linear_probe(train_x[subset], train_y[subset], test_x, test_y,
                                            epochs=epochs, seed=seed))
    return result

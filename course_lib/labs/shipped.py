"""The shipped checkpoints side by side: the tables and figures the lectures read from
``course_lib.zoo``.

:func:`compare_checkpoints` collects what each checkpoint recorded (and, if asked, how its CLS
attention overlaps the objects), :func:`checkpoint_table` and :func:`plot_checkpoints` show it,
:func:`labelled_reference` finds the supervised run each one is measured against (and
:func:`zoo_table` and :func:`zoo_text`, ``python -m course_lib zoo``, list every checkpoint's
share of it),
:func:`knn_trajectories` and :func:`plot_knn_trajectories` show the k-NN a checkpoint recorded
while it trained, :func:`collapse_runs`, :func:`shipped_collapse_run` and
:func:`plot_collapse_runs` the teacher's entropies of runs with a teacher, and
:func:`invariance_table` asks the same features for the shape and for the object's colour.
"""
from __future__ import annotations

import json
import math

import torch

from .. import zoo
from ..backbones import build_vit
from ..data import N_CLASSES, make_shapes
from ..evaluate import knn_accuracy
from .pretrain import base_method, shapes_kwargs

Tensor = torch.Tensor


def labelled_reference(name: str, metas: dict[str, dict] | None = None) -> str | None:
    """The shipped supervised checkpoint trained like ``name``: the same ViT, data, steps and
    seed, so that the two differ only in the labels (``dino-plain`` -> ``supervised-plain``,
    ``mae-plain`` -> ``supervised-patch-plain``, ``mae`` -> ``supervised-patch``); None when the
    zoo has none. The ViTs may differ in their extra tokens (:func:`same_vit`): the labelled
    network classifies from its CLS token, I-JEPA has none and ``dinov2-reg`` adds registers.
    ``metas``: every checkpoint's metadata by name, if already read (:func:`zoo_table`)."""
    metas = metas or {other: zoo.metadata(other) for other in zoo.available()}
    meta = metas[name]
    for other in _same_run(name, metas):
        if same_vit(metas[other], meta):
            return other
    return None


def _same_run(name: str, metas: dict[str, dict]) -> list[str]:
    """The labelled checkpoints trained on the same data, steps and seed as ``name``, any ViT."""
    return [other for other, meta in metas.items() if other != name and base_method(other) == "supervised"
            and all(meta[key] == metas[name][key] for key in ("data", "steps", "seed"))]


EXTRA_TOKENS = ("class_token", "num_register_tokens")   # tokens that carry no patch of the image


def same_vit(meta: dict, other: dict) -> bool:
    """Whether two checkpoints' ViT configs match in every field but :data:`EXTRA_TOKENS` (the CLS
    token, which I-JEPA's ViT lacks, and the registers ``dinov2-reg`` adds): the same stem, grid,
    width and depth read the same patches."""
    strip = lambda m: {k: v for k, v in m["config"]["vit"].items() if k not in EXTRA_TOKENS}  # noqa: E731
    return strip(meta) == strip(other)


TARGET_SHARE = 0.8     # the course's mark: 80 % of the labelled network's k-NN at the same budget


def zoo_table() -> list[dict]:
    """One row per shipped checkpoint, read from its metadata (nothing is loaded or measured):
    ``name``, ``data`` (``colourful``: the default shapes; ``plain``: one grey at one size),
    ``vit`` (token grid and stem: ``"4x4 conv"``, ``"8x8 conv"``, ``"8x8 patches"``),
    ``pooling``, ``steps``, ``untrained_knn`` and ``knn`` (held-out weighted 20-NN), and for a
    self-supervised one its labelled ``reference``, ``same_vit``, ``reference_knn``, ``share``
    (knn / reference_knn) and ``meets`` (share >= :data:`TARGET_SHARE`).

    The reference is :func:`labelled_reference`; where the zoo has no labelled network on the same
    ViT, it is the labelled network of the same data, steps and seed on another ViT (``same_vit``
    False); where it has none on the data at all, the reference and the figures that need it are
    None."""
    metas = {name: zoo.metadata(name) for name in zoo.available()}
    return [_zoo_row(name, metas) for name in metas]


def _zoo_row(name: str, metas: dict[str, dict]) -> dict:
    meta, vit = metas[name], metas[name]["config"]["vit"]
    side = vit["img_size"] // vit["patch_size"]
    row = {"name": name, "data": "plain" if meta["data"].get("colour") == "grey" else "colourful",
           "vit": f"{side}x{side} {'conv' if vit['stem'] == 'conv' else 'patches'}",
           "pooling": meta["pooling"], "steps": meta["steps"],
           "untrained_knn": meta["untrained_knn_accuracy"], "knn": meta["metrics"]["knn_accuracy"]}
    if base_method(name) == "supervised":
        return row
    reference = labelled_reference(name, metas)
    row.update(reference=reference or next(iter(_same_run(name, metas)), None), same_vit=reference is not None,
               reference_knn=None, share=None, meets=None)
    if row["reference"] is not None:
        row["reference_knn"] = metas[row["reference"]]["metrics"]["knn_accuracy"]
        row.update(share=row["knn"] / row["reference_knn"], meets=row["knn"] >= TARGET_SHARE * row["reference_knn"])
    return row


def zoo_text(rows: list[dict]) -> str:
    """:func:`zoo_table` as the text ``python -m course_lib zoo`` prints: the labelled networks,
    then the self-supervised checkpoints that reach :data:`TARGET_SHARE` of their labels, then those
    that do not; the footnote on ``*`` only where a row has one."""
    line = "{:<22} {:<9} {:<11} {:>5} -> {:<5}  {:<29} {:>5}"

    def row_line(r: dict) -> str:
        label = share = ""
        if r.get("reference"):
            label = f"{r['reference']} {r['reference_knn']:.3f}" + ("" if r["same_vit"] else " *")
            share = f"{100 * r['share']:.0f} %"
        return line.format(r["name"], r["data"], r["vit"], f"{r['untrained_knn']:.3f}", f"{r['knn']:.3f}",
                           label, share).rstrip()
    mark = f"{100 * TARGET_SHARE:.0f} %"
    groups = (("labelled networks (the references)", lambda r: "reference" not in r),
              (f"self-supervised, at least {mark} of their labels", lambda r: r.get("meets") is True),
              (f"self-supervised, below {mark} of their labels", lambda r: r.get("meets") is False),
              ("self-supervised, no labelled network on their data",
               lambda r: "reference" in r and r["meets"] is None))
    out = [line.format("checkpoint", "data", "ViT", "k-NN", "", "labels, same budget", "share")]
    for title, member in groups:
        members = [row_line(r) for r in rows if member(r)]
        out += [f"-- {title}", *members] if members else []
    out.append("k-NN: held-out weighted 20-NN, untrained -> trained; share: k-NN over the labels' k-NN")
    if any(r.get("reference") and not r["same_vit"] for r in rows):
        out.append("* no labelled network on this ViT and data: the one on the same data with another ViT")
    return "\n".join(out)


def compare_checkpoints(names: list[str] | tuple[str, ...], *, n_attention: int = 0) -> dict:
    """name -> what the lectures tabulate for each shipped checkpoint: ``steps``,
    ``train_seconds``, ``untrained_knn_accuracy`` and the metrics measured on its saved weights
    (``knn_accuracy``, ``knn_stderr``, ``linear_probe``). With ``n_attention``, also the Jaccard of
    its CLS attention with the object masks of the first ``n_attention`` held-out images
    (``course_lib.evaluate.attention_jaccard``, with ``grid``, its token grid), and the model-free
    centre bump on the same images, one row per token grid (its score depends on the grid):
    ``"centre bump"`` when every checkpoint has the same grid, else ``"centre bump 4x4"``, ..."""
    from ..evaluate import attention_jaccard, centre_bump_jaccard
    table, masks_of_grid = {}, {}
    for name in names:
        meta = zoo.metadata(name)
        row = {"steps": meta["steps"], "train_seconds": meta["train_seconds"],
               "untrained_knn_accuracy": meta["untrained_knn_accuracy"], **meta["metrics"]}
        if n_attention:
            images, _, masks = make_shapes(n_attention, split="test", **shapes_kwargs(meta["data"]))
            backbone = zoo.load(name).backbone
            row.update(attention_jaccard(backbone, images, masks))
            row["grid"] = tuple(backbone.patch_embed.grid_size)
            masks_of_grid.setdefault(row["grid"], masks)
        table[name] = row
    for grid, masks in masks_of_grid.items():
        key = "centre bump" if len(masks_of_grid) == 1 else f"centre bump {grid[0]}x{grid[1]}"
        table[key] = {"best_head": centre_bump_jaccard(masks, grid), "grid": grid}
    return table


def checkpoint_table(table: dict) -> str:
    """:func:`compare_checkpoints` as text: one line per checkpoint."""
    width = max([12] + [len(name) + 1 for name, row in table.items() if "steps" in row])
    lines = [f"{'checkpoint':<{width}}{'steps':>6}{'minutes':>8}{'k-NN untrained':>15}{'k-NN':>7}"
             f"{'+-':>6}{'probe':>7}" + (f"{'Jaccard best head':>18}" if any(
                 "best_head" in row for row in table.values()) else "")]
    for name, row in table.items():
        if "steps" not in row:      # the centre bump: attention only
            lines.append(f"{name:<{width + 49}}{row['best_head']:18.3f}")
            continue
        line = (f"{name:<{width}}{row['steps']:>6}{row['train_seconds'] / 60:8.1f}"
                f"{row['untrained_knn_accuracy']:15.3f}{row['knn_accuracy']:7.3f}"
                f"{row['knn_stderr']:6.3f}{row.get('linear_probe', float('nan')):7.3f}")
        lines.append(line + (f"{row['best_head']:18.3f}" if "best_head" in row else ""))
    return "\n".join(lines)


def plot_checkpoints(table: dict, ax=None):
    """Bars of each checkpoint's held-out k-NN accuracy (with two standard errors) over a marker
    at its untrained network's, and the chance level."""
    import matplotlib.pyplot as plt   # figures only
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(table) + 2.5, 3.2))
    names = [name for name, row in table.items() if "knn_accuracy" in row]
    xs = range(len(names))
    ax.bar(xs, [100 * table[n]["knn_accuracy"] for n in names],
           yerr=[200 * table[n]["knn_stderr"] for n in names], capsize=4, color="tab:blue",
           label="trained (2 standard errors)")
    ax.plot(xs, [100 * table[n]["untrained_knn_accuracy"] for n in names], "k_", ms=28, mew=2,
            label="untrained")
    ax.axhline(100 / N_CLASSES, color="gray", ls=":", lw=1, label="chance")
    ax.set(xticks=list(xs), xticklabels=[f"{n}\n{table[n]['steps']} steps" for n in names],
           ylabel="held-out k-NN accuracy (%)", title="the shipped checkpoints")
    ax.legend(fontsize=8)
    return ax


def knn_trajectories(names: list[str] | tuple[str, ...]) -> dict:
    """name -> the held-out k-NN each checkpoint recorded during training (``pretrain
    --eval-every``; step 0 is its untrained network): ``steps``, ``knn``, the k-NN of its saved
    weights (``final``), and ``labelled``, the k-NN of :func:`labelled_reference`'s run (None when
    the zoo has none). A checkpoint trained without ``--eval-every`` is a clear error."""
    table = {}
    for name in names:
        meta = zoo.metadata(name)
        if "knn_trajectory" not in meta:
            raise ValueError(f"checkpoint {name!r} recorded no k-NN during training (train it with "
                             "python -m course_lib pretrain NAME --eval-every N)")
        curve, reference = meta["knn_trajectory"], labelled_reference(name)
        table[name] = {"steps": [0, *curve["steps"]],
                       "knn": [meta["untrained_knn_accuracy"], *curve["knn"]],
                       "final": meta["metrics"]["knn_accuracy"], "reference": reference,
                       "labelled": zoo.metadata(reference)["metrics"]["knn_accuracy"] if reference else None}
    return table


def plot_knn_trajectories(table: dict, ax=None):
    """:func:`knn_trajectories` as curves, with each labelled reference and 80 % of it."""
    import matplotlib.pyplot as plt   # figures only
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for name, row in table.items():
        ax.plot(row["steps"], row["knn"], marker="o", ms=3, label=name)
    for reference, labelled in {(r["reference"], r["labelled"]) for r in table.values() if r["reference"]}:
        ax.axhline(labelled, color="k", lw=1, label=f"{reference} ({labelled:.3f})")
        ax.axhline(0.8 * labelled, color="k", lw=1, ls=":", label="80 % of it")
    ax.axhline(1 / N_CLASSES, color="gray", ls=":", lw=1, label="chance")
    ax.set(xlabel="training step", ylabel="held-out k-NN", ylim=(0, 1),
           title="k-NN during training (step 0: untrained)")
    ax.legend(fontsize=7)
    return ax


COLLAPSE_RUNS = "collapse_runs.json"
# DINO on iBOT's plain-patch ViT (seed 0, 3e-3), a probe run with no checkpoint: lecture 04 sets it
# beside ibot-plain and ibot-fine (benchmarks/collapse_runs.py installs it)
DINO_PATCH_RUN = "dino_patch_run.json"


def collapse_summary(meta: dict, source: str) -> dict:
    """What a run's metadata (a checkpoint's or a record's, from ``source``) holds of its teacher:
    method, seed, ``lr``, ``log_k``, the k-NN curve (``knn_steps``, ``knn``; step 0 untrained),
    ``final_knn`` and ``collapse``, the entropies every log step (mean per-image and batch-mean,
    of the CLS and of the patch targets). A run without them is a clear error."""
    if "collapse" not in meta or "knn_trajectory" not in meta:
        raise ValueError(f"{source} recorded no teacher entropies or k-NN curve (train it with "
                         "python -m course_lib pretrain NAME --eval-every N)")
    curve = meta["knn_trajectory"]
    return {"record": source, "method": meta["method"], "seed": meta["seed"],
            "lr": meta["config"]["train"]["lr"], "log_k": math.log(meta["config"]["method"]["out_dim"]),
            "knn_steps": [0, *curve["steps"]], "knn": [meta["untrained_knn_accuracy"], *curve["knn"]],
            "final_knn": meta["metrics"]["knn_accuracy"],
            "collapse": {key: values if key == "steps" else [round(v, 4) for v in values]
                         for key, values in meta["collapse"].items()}}


def with_information(run: dict) -> dict:
    """``run`` (:func:`collapse_summary`) with ``information`` and, where the patches have
    targets (iBOT, DINOv2; not DINO), ``patch_information``: H(batch mean) - mean H at every log
    step, how many nats a target tells about which image (or patch) of the batch it came from; 0
    at either collapse, at most log K."""
    readings, run = run["collapse"], dict(run)
    for prefix, per_image in (("", "teacher_entropy"), ("patch_", "patch_entropy")):
        if per_image in readings:
            run[f"{prefix}information"] = [m - h for m, h in zip(readings[f"{prefix}batch_mean_entropy"],
                                                                 readings[per_image])]
    return run


def collapse_runs() -> dict:
    """Three runs on the plain shapes, seed 1, that differ in one setting each, installed with
    the checkpoints (``course_lib/checkpoints/collapse_runs.json``, written from their records by
    ``benchmarks/collapse_runs.py``): label -> :func:`with_information` of each run."""
    runs = json.loads((zoo.CHECKPOINT_DIR / COLLAPSE_RUNS).read_text())
    return {label: with_information(run) for label, run in runs.items()}


def dino_patch_run() -> dict:
    """:func:`with_information` of DINO trained on iBOT's plain-patch ViT with ``ibot-plain``'s
    views, seed and rate (``benchmarks/plain_recipe_probe.py dino-patch-plain baseline``): iBOT
    without its masks and patch loss, installed as :data:`DINO_PATCH_RUN`."""
    return with_information(json.loads((zoo.CHECKPOINT_DIR / DINO_PATCH_RUN).read_text()))


def shipped_collapse_run(name: str) -> dict:
    """:func:`with_information` of shipped checkpoint ``name``'s own readings."""
    return with_information(collapse_summary(zoo.metadata(name), f"checkpoint {name}"))


def plot_collapse_runs(runs: dict, axes=None):
    """:func:`collapse_runs` in three panels: the CLS targets' mean per-image entropy (solid) and
    batch-mean entropy (dashed) against log K, the information of the CLS (solid) and patch
    (dotted) targets, and the held-out k-NN."""
    import matplotlib.pyplot as plt   # figures only
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for (label, run), colour in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        steps = run["collapse"]["steps"]
        axes[0].plot(steps, run["collapse"]["teacher_entropy"], color=colour, label=label)
        axes[0].plot(steps, run["collapse"]["batch_mean_entropy"], color=colour, ls="--", lw=1)
        axes[1].plot(steps, run["information"], color=colour, label=label)
        if "patch_information" in run:
            axes[1].plot(steps, run["patch_information"], color=colour, ls=":", lw=1)
        axes[2].plot(run["knn_steps"], run["knn"], color=colour, marker="o", ms=3, label=label)
    log_k = next(iter(runs.values()))["log_k"]
    axes[0].axhline(log_k, color="k", lw=1, ls=":", label=f"log K = {log_k:.2f}")
    axes[0].set(xlabel="training step", ylabel="nats", title="CLS targets: per image (—), batch mean (- -)")
    axes[1].set(xlabel="training step", ylabel="nats", title="information: CLS (—), patches (···)")
    axes[2].set(xlabel="training step", ylabel="held-out k-NN", title="k-NN (step 0: untrained)")
    for ax in axes:
        ax.legend(fontsize=7)
    return axes


HUE_BINS = 6


def object_hue_labels(images: Tensor, masks: Tensor, n_bins: int = HUE_BINS) -> Tensor:
    """The colour of each image's object as a class: the mean colour of the pixels under its mask
    (uint8 images (B, 3, H, W), bool masks (B, H, W)), its HSV hue, and which of ``n_bins`` equal
    sectors of the colour wheel that hue falls in (red = 0, green = n_bins / 3, ...). The shapes
    are painted in random colours, so this label says nothing about the class: a network whose
    features predict it keeps colour, one that cannot has become invariant to it."""
    if masks.shape != (images.shape[0], *images.shape[-2:]) or masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool (B, H, W) = {(images.shape[0], *images.shape[-2:])}, "
                         f"got {masks.dtype} {tuple(masks.shape)}")
    area = masks.sum((1, 2)).clamp_min(1).to(torch.float64)
    rgb = (images.to(torch.float64) * masks[:, None]).sum((2, 3)) / area[:, None] / 255
    r, g, b = rgb.unbind(1)
    high, low = rgb.max(1).values, rgb.min(1).values
    spread = (high - low).clamp_min(1e-12)
    hue = torch.where(high == r, ((g - b) / spread) % 6,
                      torch.where(high == g, (b - r) / spread + 2, (r - g) / spread + 4)) / 6
    hue = torch.where(high == low, torch.zeros_like(hue), hue)          # grey: hue 0 by convention
    return (hue * n_bins).floor().long().clamp(0, n_bins - 1)


def invariance_table(names: list[str] | tuple[str, ...]) -> dict:
    """What the features of shipped checkpoints keep: for each name, the weighted k-NN accuracy
    with the shape classes as labels (``shape``) and with the object's hue sector as labels
    (``colour``, :func:`object_hue_labels`), each with its standard error; the same for
    ``"untrained"``, the network the first checkpoint started from (its ViT config and seed), and
    ``"colour chance"``, the share of the most common hue sector among the test images."""
    models = {name: zoo.load(name) for name in names}
    first = models[names[0]].meta
    torch.manual_seed(first["seed"])
    untrained = zoo.Pretrained(build_vit(**first["config"]["vit"]).eval(),
                               {**first, "method": "untrained", "metrics": {}})
    table, shapes = {}, {}
    for name, model in {"untrained": untrained, **models}.items():
        data = model.meta["data"]
        key = tuple(sorted(data.items()))
        if key not in shapes:                       # the checkpoints usually share their data
            kwargs = shapes_kwargs(data)
            train_x, train_y, train_m = make_shapes(data["n_train"], **kwargs)
            test_x, test_y, test_m = make_shapes(data["n_test"], split="test", **kwargs)
            shapes[key] = (train_x, test_x, {
                "shape": (train_y, test_y),
                "colour": (object_hue_labels(train_x, train_m), object_hue_labels(test_x, test_m))})
        train_x, test_x, labels = shapes[key]
        train_f, test_f = model.features(train_x), model.features(test_x)
        row = {}
        for target, (y_train, y_test) in labels.items():
            accuracy = knn_accuracy(train_f, y_train, test_f, y_test, k=20)
            row[target] = accuracy
            row[f"{target}_stderr"] = (accuracy * (1 - accuracy) / len(y_test)) ** 0.5
        table[name] = row
    hues = labels["colour"][1]
    table["colour chance"] = {"colour": hues.bincount(minlength=HUE_BINS).max().item() / len(hues)}
    return table

"""MAE at the long scale, for Lecture 03: the shipped family of encoders at five masking ratios,
the fine-tune curve over seeds (section 4), and the lecture's own model trained longer, decoder
included, to draw reconstructions with (section 5).

The family and the curve come from ``benchmarks/mae_ratio_long.py``: the zoo's MAE recipe (``labs.pretrain``: 1500
steps, batch 128, 8x8 tokens of 4 px on the 32 px shapes) trained at r = 0.1, 0.25, 0.5, 0.75 and
0.9 with nothing else changed.

- :data:`FAMILY_DIR` holds one seed's five encoders, ``r<ratio>.pt`` in the format of
  ``course_lib.zoo`` (half precision, with metadata). :func:`judge_family` measures them again,
  with the untrained encoder of the same seed: frozen features are cheap to judge, so a lecture
  recomputes them rather than quoting them.
- :data:`CURVE_FILE` holds one JSON line per (ratio, seed) with the fine-tune accuracy (300 steps
  with labels), which is too slow to recompute in a lecture. :func:`ratio_curve` gives each
  ratio's mean, standard deviation and standard error over seeds; :func:`plot_ratio_curve` draws
  it with error bars.
- :data:`LONG_MODEL` is the whole MAE (encoder and decoder) of the lecture's CPU setup
  (``labs.mae.sweep_scale("cpu")``) trained for 1500 steps at r = 0.75 by
  ``benchmarks/mae_long_model.py``; :func:`save_mae` and :func:`load_mae` write and read it
  (half precision, with the settings that rebuild it).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from .. import zoo
from ..backbones import ViTConfig, build_vit
from ..evaluate import evaluate_backbone
from ..mae import MAE, MAEConfig
from .pretrain import build_method, evaluated_backbone, shapes_for, zoo_scale

FAMILY_DIR = zoo.CHECKPOINT_DIR / "mae_ratios"
CURVE_FILE = zoo.CHECKPOINT_DIR / "mae_ratio_long.jsonl"
CURVE_METRICS = ("finetune_accuracy", "linear_probe", "knn_accuracy")
UNTRAINED_STEPS = 1  # the benchmark's "untrained" rows: the same script after one step
LONG_MODEL = zoo.CHECKPOINT_DIR / "mae_long_model" / "r0.75.pt"


def family(directory: str | Path = FAMILY_DIR) -> dict[float, zoo.Pretrained]:
    """The encoders in ``directory``, keyed by the mask ratio their metadata records, in order."""
    models = {}
    for name in zoo.available(directory):
        model = zoo.load(name, directory=directory)
        ratio = model.meta["config"]["method"]["mask_ratio"]
        if name != f"r{ratio:g}":
            raise ValueError(f"checkpoint {name!r} in {directory} was trained at mask ratio {ratio}")
        models[ratio] = model
    if not models:
        raise ValueError(f"directory {str(directory)!r} holds no checkpoints (*{zoo.SUFFIX})")
    return dict(sorted(models.items()))


def untrained_like(model: zoo.Pretrained) -> zoo.Pretrained:
    """The encoder ``model`` started from, rebuilt the way ``labs.pretrain`` built it: the same
    seed, scale and MAE settings (MAE fixes the encoder's positions to sin-cos on construction)."""
    meta = model.meta
    method = build_method(meta["method"], zoo_scale(meta["scale"]), steps=meta["steps"],
                          seed=meta["seed"], mae_config=MAEConfig(**meta["config"]["method"]))
    return zoo.Pretrained(evaluated_backbone(meta["method"], method),
                          {**meta, "steps": 0, "metrics": {}})


def judge_family(models: dict[float, zoo.Pretrained], *, probe_epochs: int = 100) -> dict:
    """k-NN (with its standard error) and a linear probe for each encoder and for the untrained
    one, on the data of their metadata. Returns {"untrained": metrics, 0.1: metrics, ...}."""
    if not models:
        raise ValueError("models must hold at least one encoder")
    runs = {(m.meta["seed"], m.meta["scale"], m.meta["steps"],
             json.dumps(m.meta["data"], sort_keys=True)) for m in models.values()}
    if len(runs) > 1:
        raise ValueError("models must share one seed, scale, number of steps and data (they start "
                         f"from one untrained encoder), got {len(runs)} different runs")
    start = untrained_like(next(iter(models.values())))
    data = shapes_for(start.meta["data"])                 # shared: generated once, not per encoder

    def measure(model: zoo.Pretrained) -> dict[str, float]:   # zoo.measure on the shared data
        return evaluate_backbone(model.backbone, *data, pooling=model.meta["pooling"],
                                 probe_epochs=probe_epochs, diagnostics=False)

    table = {"untrained": measure(start)}
    for ratio, model in models.items():
        table[ratio] = measure(model)
    return table


def family_table(table: dict) -> str:
    """:func:`judge_family`'s result, one line per encoder."""
    lines = [f"{'encoder':<12}{'k-NN':>8}{'+-':>7}{'probe':>8}"]
    for key, row in table.items():
        name = key if key == "untrained" else f"r = {key:g}"
        lines.append(f"{name:<12}{row['knn_accuracy']:8.3f}{row['knn_stderr']:7.3f}"
                     f"{row['linear_probe']:8.3f}")
    return "\n".join(lines)


def _spread(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"mean": mean, "sd": sd, "se": sd / math.sqrt(n), "n": n}


def ratio_curve(path: str | Path = CURVE_FILE, metric: str = "finetune_accuracy") -> dict:
    """``metric`` over seeds per mask ratio from the benchmark's rows: ``{"ratios": {0.1: {"mean",
    "sd", "se", "n", "seeds", "values"}, ...}, "untrained": the same for the one-step rows (or None),
    "metric", "steps"}``. The sd is the sample sd (n - 1), the se is sd / sqrt(n)."""
    if metric not in CURVE_METRICS:
        raise ValueError(f"metric must be one of {CURVE_METRICS}, got {metric!r}")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be a JSON-lines file of the benchmark's rows, got {str(path)!r}")
    groups: dict[float | str, dict[int, float]] = {}
    steps = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        missing = [key for key in ("mask_ratio", "seed", "steps", metric) if key not in row]
        if missing:
            raise ValueError(f"{path.name} line {number} lacks {missing}")
        trained = row["steps"] > UNTRAINED_STEPS
        key = row["mask_ratio"] if trained else "untrained"
        steps.update([row["steps"]] if trained else [])
        seeds = groups.setdefault(key, {})
        if row["seed"] in seeds:
            raise ValueError(f"{path.name} line {number}: a second row for ratio "
                             f"{row['mask_ratio']} and seed {row['seed']}")
        seeds[row["seed"]] = row[metric]
    if len(steps) > 1:
        raise ValueError(f"{path.name} mixes runs of {sorted(steps)} steps")
    untrained = groups.pop("untrained", None)

    def summary(seeds: dict[int, float]) -> dict:
        values = [seeds[seed] for seed in sorted(seeds)]
        return {**_spread(values), "seeds": sorted(seeds), "values": values}

    return {"metric": metric, "steps": steps.pop() if steps else None,
            "ratios": {r: summary(groups[r]) for r in sorted(groups)},
            "untrained": summary(untrained) if untrained else None}


def plot_ratio_curve(curve: dict, ax=None):
    """Mean +- one standard error over seeds against the mask ratio, each seed as a dot, the
    untrained encoder as a dashed line. Returns the axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    ratios = list(curve["ratios"])
    means = [curve["ratios"][r]["mean"] for r in ratios]
    errors = [curve["ratios"][r]["se"] for r in ratios]
    n = min(curve["ratios"][r]["n"] for r in ratios)
    ax.errorbar(ratios, means, yerr=errors, fmt="o-", capsize=4, color="tab:red",
                label=f"mean +- se over {n} seeds")
    for r in ratios:
        values = curve["ratios"][r]["values"]
        ax.plot([r] * len(values), values, ".", color="tab:red", alpha=0.4)
    if curve["untrained"] is not None:
        ax.axhline(curve["untrained"]["mean"], color="gray", ls="--", lw=1, label="untrained encoder")
    ax.set(xlabel="masking ratio r", ylabel=curve["metric"].replace("_", " "),
           title=f"MAE at {curve['steps']} steps: {curve['metric'].replace('_', ' ')} against r")
    ax.set_xticks(ratios)
    ax.legend(fontsize=8)
    return ax


def save_mae(path: str | Path, mae: MAE, meta: dict) -> None:
    """Write a whole MAE in half precision with ``meta`` and the settings that rebuild it (the
    encoder's ViT config and the MAE config)."""
    path = Path(path)
    if not isinstance(mae, MAE) or not hasattr(mae.encoder, "course_config"):
        raise ValueError("mae must be a course_lib.mae.MAE around an encoder from build_vit")
    settings = {"vit": asdict(mae.encoder.course_config), "mae": asdict(mae.config)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {**meta, **settings}, "state_dict": zoo._half(mae.state_dict())}, path)


def load_mae(path: str | Path = LONG_MODEL) -> tuple[MAE, dict]:
    """The MAE :func:`save_mae` wrote, in float32 and eval mode, and its metadata."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be a file written by save_mae, got {str(path)!r}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    mae = MAE(build_vit(ViTConfig(**meta["vit"])), MAEConfig(**meta["mae"]))
    mae.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in blob["state_dict"].items()})
    return mae.eval(), meta

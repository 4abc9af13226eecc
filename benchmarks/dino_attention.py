"""How the CLS attention of lecture 02's ``both`` run overlaps the objects as it trains longer.

Trains the collapse ablation's ``both`` run (``course_lib.labs.dino``, the ``cpu`` scale: shapes in
one grey at one size) for each number of steps given and prints, with the teacher's k-NN, the
Jaccard of each head's CLS attention (60 % of its mass) with the object masks of 500 held-out
images, against the same rule on a fixed centre bump. Appends a JSON line per run to ``--out``.

    python benchmarks/dino_attention.py --threads 1 --steps 100 300 1000    # about 2 minutes
    python benchmarks/dino_attention.py --patch-size 4     # 8x8 tokens from the same conv stem

Each row also scores the untrained network (the weights every run starts from), and with
``--supervised`` the same ViT trained with labels for the same steps.

``--shipped SETTING`` (repeatable) takes one setting from the recipe of the shipped ``dino-plain``
(``course_lib.labs.pretrain``) instead of the ablation's, to see which one moves the heads:
``vit`` (4 blocks, 96 wide, 3 heads), ``batch`` (128), ``momentum`` (the teacher's EMA from 0.99)
or ``warmup`` (20 steps).

    python benchmarks/dino_attention.py --steps 1500 --shipped momentum
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.backbones import build_vit  # noqa: E402
from course_lib.data import make_shapes  # noqa: E402
from course_lib.evaluate import attention_jaccard, centre_bump_jaccard  # noqa: E402
from course_lib.labs import ablation_runs  # noqa: E402
from course_lib.labs.dino import VARIANTS, ablation_scale, run_variant, supervised_baseline  # noqa: E402
from course_lib.labs import pretrain as recipe  # noqa: E402

SHIPPED = ("vit", "batch", "momentum", "warmup")


def with_shipped(setup, settings: list[str]):
    """``setup`` (the ablation's scale) with each named setting taken from ``dino-plain``'s recipe."""
    for name in settings:
        if name == "vit":
            setup = replace(setup, vit=dict(recipe.VIT))
        elif name == "batch":
            setup = replace(setup, train=replace(setup.train,
                                                 batch_size=recipe.ZOO_SCALES["long"].recipe.batch_size))
        elif name == "momentum":
            setup = replace(setup, dino=replace(setup.dino,
                                                momentum_teacher=recipe.DINO_CONFIG.momentum_teacher))
        elif name == "warmup":
            setup = replace(setup, train=replace(setup.train, warmup_steps=recipe.WARMUP_STEPS))
        else:
            raise ValueError(f"settings must be among {SHIPPED}, got {name!r}")
    return setup


def _first(n: int, setup) -> tuple:
    """The first ``n`` held-out images and their masks."""
    images, _, masks = make_shapes(n, split="test", **setup.data)
    return images, masks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-attention", type=int, default=500)
    p.add_argument("--patch-size", type=int, default=0,
                   help="token size in pixels (default: the scale's 8 px, 4x4 tokens; 4 gives 8x8)")
    p.add_argument("--supervised", action="store_true",
                   help="also train the same ViT with labels for the same steps (the crops and turns "
                        "of DINO's views, no jitter) and score its best head")
    p.add_argument("--shipped", action="append", default=[], choices=SHIPPED,
                   help="take this setting from the shipped dino-plain's recipe (repeatable)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dino_attention.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    setup = with_shipped(ablation_scale("cpu"), args.shipped)
    if args.patch_size:
        setup = replace(setup, vit={**setup.vit, "patch_size": args.patch_size})
    torch.manual_seed(setup.train.seed)
    untrained = attention_jaccard(build_vit(**setup.vit), *_first(args.n_attention, setup))["best_head"]
    images, labels, _ = make_shapes(setup.n_train, **setup.data)
    test_x, test_y, test_masks = make_shapes(setup.n_test, split="test", **setup.data)
    shown, masks = test_x[:args.n_attention], test_masks[:args.n_attention]
    for steps in args.steps:
        run_setup, _ = ablation_runs(setup, VARIANTS, steps, ["both"])
        run = run_variant("both", images, (images, labels), (test_x, test_y), run_setup, keep_model=True)
        backbone = run["model"].teacher.backbone
        scores = attention_jaccard(backbone, shown, masks)
        row = {"steps": steps, "threads": args.threads, "vit": setup.vit, **({"shipped": args.shipped} if args.shipped else {}),
               "knn": run["knn_accuracy"],
               "untrained_best_head": untrained,
               "best_head": scores["best_head"], "per_head": scores["per_head"],
               "centre_bump": centre_bump_jaccard(masks, tuple(backbone.patch_embed.grid_size)),
               "train_seconds": run["train_seconds"]}
        if args.supervised:
            vit, _ = supervised_baseline(images, labels, run_setup)
            row["supervised_best_head"] = attention_jaccard(vit.eval(), shown, masks)["best_head"]
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

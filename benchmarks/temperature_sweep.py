"""Lecture 01's temperature sweep outside the notebook, to see how much its k-NN figures move.

    python benchmarks/temperature_sweep.py [--steps 200] [--threads 1] [--batch-size 64]
        [--clutter 0.0] [--gray 0.8] [--temperatures 0.05,0.2,1.0] [--out FILE.jsonl]

The same data, ViT, views and optimiser as section 5 of ``lectures/01_infonce.ipynb`` at the CPU
scale (its settings cell), one SimCLR run per temperature; prints one line per temperature and
appends one JSON row per run to ``--out``. The number of threads changes the order in which the
sums are added, and with it the trained network: rerun with ``--threads 2`` to see by how much.
``benchmarks/results/temperature_sweep_runs.jsonl`` holds the runs the lecture quotes.
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import torch

from course_lib.augment import batched_simclr_views
from course_lib.backbones import build_vit
from course_lib.data import make_shapes, normalize
from course_lib.labs import infonce as lab
from course_lib.train import TrainConfig

VIT = dict(preset="cpu", embed_dim=64, depth=2, num_heads=2)      # the lecture's CPU ViT
VIEWS = dict(strength=0.3, scale=(0.6, 1.0))                        # and its CPU views (with --gray)


def sweep(temperatures: list[float], *, steps: int, batch_size: int, clutter: float, gray: float = 0.8,
          n_train: int = 5000, n_test: int = 1000, seed: int = 0) -> dict:
    """The untrained network's metrics and one trained run per temperature, as the lecture."""
    images, labels, _ = make_shapes(n_train, image_size=32, seed=seed, clutter=clutter)
    test_x, test_y, _ = make_shapes(n_test, image_size=32, seed=seed, split="test", clutter=clutter)
    data = lab.EvalData(images, labels, test_x, test_y)
    common = dict(build_backbone=lambda: build_vit(**VIT), feature_dim=VIT["embed_dim"],
                  transform=normalize, views=functools.partial(batched_simclr_views, **VIEWS, grayscale_p=gray))
    untrained = lab.random_init_baseline(data, seed=seed, device="cpu", **common)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=3e-3, warmup_steps=min(10, steps),
                         seed=seed, progress=False)
    runs = lab.temperature_sweep(temperatures, images, data, config=config, device="cpu",
                                 **common)
    return {"untrained": untrained, "runs": runs}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python benchmarks/temperature_sweep.py")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clutter", type=float, default=0.0)
    parser.add_argument("--gray", type=float, default=0.8, help="how often a view is made grey")
    parser.add_argument("--temperatures", default="0.05,0.2,1.0")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--out", help="append one JSON row per temperature to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    temperatures = [float(t) for t in args.temperatures.split(",")]
    start = time.perf_counter()
    result = sweep(temperatures, steps=args.steps, batch_size=args.batch_size,
                   clutter=args.clutter, gray=args.gray, n_train=args.n_train, n_test=args.n_test)
    seconds = time.perf_counter() - start
    print(f"{len(temperatures)} runs x {args.steps} steps at batch {args.batch_size}, clutter "
          f"{args.clutter}, grey views {args.gray}, {args.threads} thread(s): {seconds:.0f} s; untrained k-NN "
          f"{result['untrained']['knn_accuracy']:.3f}")
    rows = []
    for tau, run in result["runs"].items():
        row = {"steps": args.steps, "threads": args.threads, "batch_size": args.batch_size,
               "clutter": args.clutter, "gray": args.gray, "temperature": tau,
               "untrained_knn": round(result["untrained"]["knn_accuracy"], 4),
               **{key: round(run[key], 4) for key in ("knn_accuracy", "alignment", "uniformity",
                                                       "positive_cosine", "negative_cosine")},
               "final_loss": round(run["loss"][-1], 4)}
        rows.append(row)
        print(f"  tau {tau:<5} k-NN {row['knn_accuracy']:.3f}  alignment {row['alignment']:.3f}  "
              f"uniformity {row['uniformity']:.3f}  final loss {row['final_loss']:.2f}")
    if args.out:
        with open(args.out, "a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    return rows


if __name__ == "__main__":
    main()

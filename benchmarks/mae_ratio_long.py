"""MAE's masking ratio at the long scale: ``python benchmarks/mae_ratio_long.py --ratios 0.1 0.5``.

Each ratio trains the zoo's MAE recipe (``course_lib.labs.pretrain``: 1500 steps, 8x8 tokens of
4 px, the same data as every shipped checkpoint) with only the masking ratio changed, then
evaluates the mean-pooled encoder through the course's one evaluator: weighted k-NN, a linear
probe, and fine-tuning for ``--finetune-steps`` steps. One JSON line per ratio is appended to
``--out`` (default ``course_lib/checkpoints/mae_ratio_long.jsonl``, which lecture 03 plots), so
two processes can split the ratios or the seeds. With ``--save-dir`` each encoder is also written
there as a checkpoint (``course_lib.zoo.save``: half precision, with its metadata), named
``r<ratio>.pt``: ``course_lib/checkpoints/mae_ratios/`` holds seed 1's.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from course_lib import zoo
from course_lib.evaluate import evaluate_backbone
from course_lib.labs.mae_ratios import CURVE_FILE
from course_lib.labs.pretrain import MAE_CONFIG, pretrain, shapes_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the long scale's")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--n-train", type=int, default=None, help="default: the long scale's")
    parser.add_argument("--n-test", type=int, default=None, help="default: the long scale's")
    parser.add_argument("--out", default=str(CURVE_FILE))
    parser.add_argument("--save-dir", default=None, help="also write each encoder there as r<ratio>.pt")
    args = parser.parse_args()
    for ratio in args.ratios:
        start = time.perf_counter()
        backbone, meta = pretrain("mae", "long", steps=args.steps, seed=args.seed, progress=False,
                                  n_train=args.n_train, n_test=args.n_test,
                                  mae_config=replace(MAE_CONFIG, mask_ratio=ratio))
        if args.save_dir is not None:
            zoo.save(Path(args.save_dir) / f"r{ratio:g}.pt", backbone, meta)
        train_x, train_y, test_x, test_y = shapes_for(meta["data"])
        metrics = evaluate_backbone(backbone, train_x, train_y, test_x, test_y, pooling="mean",
                                    probe_epochs=100, finetune_steps=args.finetune_steps,
                                    diagnostics=False, seed=args.seed)
        row = {"mask_ratio": meta["config"]["method"]["mask_ratio"], "seed": args.seed, "steps": meta["steps"],
               "finetune_steps": args.finetune_steps, "commit": meta["commit"],
               "threads": torch.get_num_threads(), "train_seconds": meta["train_seconds"],
               "total_seconds": round(time.perf_counter() - start, 1),
               "untrained_knn_accuracy": meta["untrained_knn_accuracy"],
               "final_loss": sum(meta["loss"]["values"][-10:]) / 10, **metrics}
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

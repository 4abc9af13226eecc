"""The shipped I-JEPA and MAE networks fine-tuned: ``python benchmarks/jepa_vs_mae.py``.

Lecture 05 compares the two checkpoints (same data, grid, width, depth and steps) by k-NN, linear
probe and the dense probe at the CPU scale, where three fine-tunes long enough to leave chance do
not fit in a notebook. This script adds the fine-tune (``course_lib.labs.ijepa.jepa_vs_mae`` with
``--finetune-steps``, on 1000 labelled training images, crop-and-flip augmentation, the mean patch
token) and writes the whole table to ``--out`` (JSON), with the wall time and thread count.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course_lib.labs.ijepa import jepa_vs_mae, jepa_vs_mae_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-images", type=int, default=500, help="images per split, dense probe")
    parser.add_argument("--out", default="benchmarks/results/jepa_vs_mae.json")
    args = parser.parse_args()
    start = time.perf_counter()
    table = jepa_vs_mae(n_images=args.n_images, finetune_steps=args.finetune_steps,
                        seed=args.seed)
    print(jepa_vs_mae_text(table))
    result = {"finetune_steps": args.finetune_steps, "finetune_images": 1000, "seed": args.seed,
              "threads": torch.get_num_threads(),
              "seconds": round(time.perf_counter() - start, 1), "table": table}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s on {result['threads']} thread(s))")


if __name__ == "__main__":
    main()

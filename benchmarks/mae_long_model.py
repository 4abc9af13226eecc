"""Lecture 03's MAE trained longer: ``python benchmarks/mae_long_model.py``.

Section 4 of the lecture trains an MAE for 100 steps at r = 0.75 on the CPU setup
(``course_lib.labs.mae.sweep_scale("cpu")``: 8x8 patches of 4 px, the CPU ViT with a plain patch
stem, a one-block decoder 64 wide). This script trains the same model from the same seed for
``--steps`` steps (default 1500, as every shipped checkpoint) and writes it whole, decoder
included, to ``--out`` (default ``course_lib/checkpoints/mae_long_model/r0.75.pt``), so that
section 5 can draw reconstructions from a trained model. It prints the training time and the
held-out masked-patch loss.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from course_lib.data import make_shapes
from course_lib.labs import mae as lab
from course_lib.labs.mae_ratios import LONG_MODEL, save_mae
from course_lib.labs.pretrain import _commit
from course_lib.mae import reconstruction_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--ratio", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="default: the CPU setup's")
    parser.add_argument("--out", default=str(LONG_MODEL))
    args = parser.parse_args()
    setup = lab.sweep_scale("cpu", seed=args.seed)
    setup = replace(setup, n_train=args.n_train or setup.n_train,
                    train=replace(setup.train, steps=args.steps,
                                  warmup_steps=min(setup.train.warmup_steps, args.steps)))
    images, _, _ = make_shapes(setup.n_train, image_size=32, seed=args.seed)
    test_images, _, _ = make_shapes(2000, image_size=32, seed=args.seed, split="test")
    commit, start = _commit(), time.perf_counter()   # the code the run started with
    mae, run = lab.pretrain(args.ratio, "random", images, setup)
    held_out = reconstruction_loss(mae, test_images, args.ratio, seed=args.seed)
    meta = {"steps": args.steps, "seed": args.seed, "commit": commit, "n_train": setup.n_train,
            "threads": torch.get_num_threads(), "train_seconds": run["train_seconds"],
            "total_seconds": round(time.perf_counter() - start, 1),
            "final_loss": run["final_loss"], "held_out_loss": held_out,
            "loss": {"steps": run["curves"]["step"], "values": run["curves"]["loss"]}}
    save_mae(args.out, mae, meta)
    print(f"{args.steps} steps at r = {args.ratio} in {run['train_seconds']:.0f} s "
          f"({meta['threads']} threads): final training loss {run['final_loss']:.3f}, held-out "
          f"masked-patch loss {held_out:.3f} -> {args.out}")


if __name__ == "__main__":
    main()

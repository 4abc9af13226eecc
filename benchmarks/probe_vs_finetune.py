"""Frozen features against fine-tuning for shipped checkpoints: ``python benchmarks/probe_vs_finetune.py``.

The "pattern of four numbers" of masked against contrastive pre-training: a contrastive network
(SimCLR) probes well and gains little from fine-tuning, a masked autoencoder (MAE) probes poorly
and gains a lot (He et al. 2022, section 5). For each checkpoint named, this runs the course's one
evaluator on the checkpoint's own data (5000 training and 1000 held-out shapes): the linear probe
on frozen features and ``--finetune-steps`` steps of fine-tuning of the whole network with labels,
the protocol of ``benchmarks/mae_ratio_long.py``. The table goes to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course_lib import zoo
from course_lib.evaluate import evaluate_backbone
from course_lib.labs.pretrain import shapes_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=["simclr", "mae"])
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="default: the checkpoint's data")
    parser.add_argument("--n-test", type=int, default=None, help="default: the checkpoint's data")
    parser.add_argument("--out", default="benchmarks/results/probe_vs_finetune.json")
    args = parser.parse_args()
    table = {}
    for name in args.names:
        start = time.perf_counter()
        model = zoo.load(name)
        data = {**model.meta["data"], **{k: v for k, v in (("n_train", args.n_train),
                                                             ("n_test", args.n_test)) if v}}
        scores = evaluate_backbone(model.backbone, *shapes_for(data),
                                   pooling=model.meta["pooling"], finetune_steps=args.finetune_steps,
                                   diagnostics=False, seed=args.seed)
        table[name] = {"linear_probe": scores["linear_probe"],
                       "finetune_accuracy": scores["finetune_accuracy"],
                       "knn_accuracy": scores["knn_accuracy"], "steps": model.meta["steps"],
                       "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name:<10} probe {scores['linear_probe']:.3f}  fine-tune "
              f"{scores['finetune_accuracy']:.3f}  ({table[name]['seconds']} s)", flush=True)
    result = {"finetune_steps": args.finetune_steps, "seed": args.seed,
              "threads": torch.get_num_threads(), "table": table}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Fine-tuning's learning rate on the plain-patch ViT: ``python benchmarks/finetune_rate.py``.

Unit 7's fine-tuning protocol (``course_lib.evaluate.finetune``: 300 steps, crops and flips, a new
linear head) trains every network at one peak rate, 1e-3. On the plain-patch ViT the labelled
network and the self-distilled ones end *below* their own linear probe under it, while MAE and
I-JEPA gain. This script fine-tunes the named checkpoints again at other rates, with the data,
steps and seed of the shipped table's first seed (``compare --scale long --data plain``), so each
row can be read beside that table's run (``protocol_finetune``: 1e-3, a random head). With
``--head-first`` the head starts as the linear probe's classifier (``finetune(head_first=True)``);
with ``--rotation`` the views also turn by any angle (``finetune(rotation=(-180, 180))``), as the
labelled network's and the self-distilled networks' pretraining views did.
It writes the rows, the wall time and the thread count to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from course_lib import zoo
from course_lib.evaluate import finetune
from course_lib.labs.evaluation import COMPARE_SCALES, checkpoint_data, shipped_table

NAMES = ("supervised-patch-plain", "mae-plain", "ibot-plain", "dinov2-nokoleo-plain",
         "dinov2-lowkoleo-plain")


def fine_tune_at(name: str, rates: tuple[float, ...], seed: int, head_first: bool,
                 rotation: tuple[float, float] = (0.0, 0.0)) -> dict:
    """``name`` fine-tuned at each of ``rates`` on the shipped table's data; rate -> accuracy."""
    setup = COMPARE_SCALES["long"]
    model = zoo.load(name)
    train_x, train_y, _, test_x, test_y, _ = checkpoint_data(model.meta, setup)
    return {str(lr): finetune(model.backbone, train_x, train_y, test_x, test_y, lr=lr, seed=seed,
                              steps=setup.finetune_steps, pooling=model.meta["pooling"],
                              head_first=head_first, rotation=rotation)
            for lr in rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="+", default=list(NAMES))
    parser.add_argument("--rates", nargs="+", type=float, default=[1e-4, 3e-4])
    parser.add_argument("--seed", type=int, default=0, help="the shipped table's seeds are 0, 1, 2")
    parser.add_argument("--head-first", action="store_true", help="start from the probe's classifier")
    parser.add_argument("--rotation", action="store_true", help="turn the views by any angle")
    parser.add_argument("--out", default="benchmarks/results/finetune_rate.json")
    args = parser.parse_args()
    rotation = (-180.0, 180.0) if args.rotation else (0.0, 0.0)
    start, table = time.perf_counter(), shipped_table("plain")["rows"]
    rows = {}
    for name in args.names:
        rows[name] = {"probe": table[name]["runs"]["probe"][args.seed],
                      "protocol_finetune": table[name]["runs"]["finetune"][args.seed],
                      "finetune": fine_tune_at(name, tuple(args.rates), args.seed, args.head_first, rotation)}
        print(name, json.dumps(rows[name]), flush=True)
    result = {"seed": args.seed, "steps": COMPARE_SCALES["long"].finetune_steps,
              "head_first": args.head_first, "rotation": list(rotation),
              "note": "probe and protocol_finetune (1e-3, a random head): the shipped plain table's "
                      "runs of this seed; finetune: this script's runs, rate -> accuracy",
              "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - start, 1),
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s on {result['threads']} thread(s))")


if __name__ == "__main__":
    main()

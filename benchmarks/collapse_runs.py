"""Install the teacher's entropies of three runs on one seed with the course:
``course_lib/checkpoints/collapse_runs.json``, the file lecture 04 plots.

The three runs train the plain shapes on seed 1 and differ in one setting each. Their records in
``benchmarks/results`` were written by ``python -m course_lib pretrain NAME --scale long
--eval-every 150 --seed 1 [--lr X] --json FILE``:

- iBOT at lr 1e-3, whose k-NN sank back to its untrained network;
- iBOT at its own 3e-3, which learned;
- the same recipe with Sinkhorn-Knopp targets in place of the centers
  (``dinov2-nokoleo-plain``) at 1e-3, which learned.

The seed records are not installed with the package, so this copies from each what the lecture
needs: the k-NN curve and the collapse readings, every log step.

    python benchmarks/collapse_runs.py
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "course_lib" / "checkpoints" / "collapse_runs.json"
# label -> the record in benchmarks/results
RUNS = {"centers, lr 1e-3": "ibot_plain_seed1_lr1e-3.json",
        "centers, lr 3e-3": "ibot_plain_seed1.json",
        "Sinkhorn-Knopp, lr 1e-3": "dinov2_nokoleo_plain_seed1.json"}


def run_summary(record: dict, name: str) -> dict:
    """What the lecture reads of one run's record (``name``, its file): the method, seed, rate,
    log K, the k-NN curve (step 0: untrained) and the four entropies with their steps."""
    if "collapse" not in record:
        raise ValueError(f"{name} has no collapse readings: rerun it with this course_lib")
    curve = record["knn_trajectory"]
    return {"record": name, "method": record["method"], "seed": record["seed"],
            "lr": record["config"]["train"]["lr"],
            "log_k": math.log(record["config"]["method"]["out_dim"]),
            "knn_steps": [0, *curve["steps"]],
            "knn": [record["untrained_knn_accuracy"], *curve["knn"]],
            "final_knn": record["metrics"]["knn_accuracy"],
            "collapse": {key: values if key == "steps" else [round(v, 4) for v in values]
                         for key, values in record["collapse"].items()}}


def build(results: Path = RESULTS) -> dict:
    """label -> :func:`run_summary` of each run in :data:`RUNS`."""
    return {label: run_summary(json.loads((results / name).read_text()), name)
            for label, name in RUNS.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    args.out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

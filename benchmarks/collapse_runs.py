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
needs: the k-NN curve and the collapse readings, every log step. It also installs, as
``course_lib/checkpoints/dino_patch_run.json``, the same readings of DINO on iBOT's plain-patch ViT
(seed 0, 3e-3; the ``baseline`` row of ``benchmarks/results/dino_patch_plain_probe.jsonl``, written
by ``python benchmarks/plain_recipe_probe.py dino-patch-plain baseline --steps 1500 --eval-every
150``), which lecture 04 sets beside ``ibot-plain`` and ``ibot-fine``.

    python benchmarks/collapse_runs.py
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.labs.pretrain import DINO_CONFIG  # noqa: E402
from course_lib.labs.shipped import DINO_PATCH_RUN, collapse_summary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "course_lib" / "checkpoints" / "collapse_runs.json"
# label -> the record in benchmarks/results
RUNS = {"centers, lr 1e-3": "ibot_plain_seed1_lr1e-3.json",
        "centers, lr 3e-3": "ibot_plain_seed1.json",
        "Sinkhorn-Knopp, lr 1e-3": "dinov2_nokoleo_plain_seed1.json"}


def build(results: Path = RESULTS) -> dict:
    """label -> ``labs.shipped.collapse_summary`` of each run in :data:`RUNS`."""
    return {label: collapse_summary(json.loads((results / name).read_text()), name)
            for label, name in RUNS.items()}


def build_dino_patch(results: Path = RESULTS) -> dict:
    """``collapse_summary`` of the 1500-step seed-0 ``baseline`` row of DINO on the plain-patch
    ViT. A probe row records its k-NN curve and readings under other keys than a run's metadata,
    and not its K: the run used :data:`DINO_CONFIG`, whose ``out_dim`` has not changed since."""
    lines = (results / "dino_patch_plain_probe.jsonl").read_text().splitlines()
    rows = [row for row in map(json.loads, lines)
            if (row["change"], row["seed"], row["steps"]) == ("baseline", 0, 1500)]
    if len(rows) != 1:
        raise ValueError(f"expected one 1500-step seed-0 baseline row, found {len(rows)}")
    row = rows[0]
    record = {"method": row["method"], "seed": row["seed"], "collapse": row["collapse"],
              "config": {"train": {"lr": row["lr"]}, "method": {"out_dim": DINO_CONFIG.out_dim}},
              "knn_trajectory": row["trajectory"], "untrained_knn_accuracy": row["untrained_knn"],
              "metrics": {"knn_accuracy": row["knn"]}}
    return collapse_summary(record, "dino_patch_plain_probe.jsonl")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    args.out.write_text(json.dumps(build(), indent=1) + "\n")
    dino_patch = args.out.parent / DINO_PATCH_RUN
    dino_patch.write_text(json.dumps(build_dino_patch(), indent=1) + "\n")
    print(f"wrote {args.out} and {dino_patch}")


if __name__ == "__main__":
    main()

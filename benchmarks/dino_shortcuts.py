"""What DINO sorts by: the 100-step ``both`` run of Lecture 02's collapse ablation, with the colour
and the size of the objects given back one at a time.

Each row trains ``course_lib.labs.dino.shape_run`` (DINO and a supervised ViT, same weights, same
steps) on one version of the shapes, with a flat background: random colours or one grey, sizes
drawn from the data's range or one size (a fifth of the image). It prints and writes the held-out
k-NN of the untrained, DINO-teacher and supervised networks and the NMI of the teacher's sorting
with the shape, the size and the position. A last row trains ``both`` on the lecture's images
with DINO's own views instead: multi-crop (2 global crops of 40-100 %, 4 local ones, no rotation)
and the teacher's momentum from the official 0.996.

    python benchmarks/dino_shortcuts.py            # about a minute on 2 cores
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.backbones import build_vit  # noqa: E402
from course_lib.data import make_shapes  # noqa: E402
from course_lib.evaluate import evaluate_backbone  # noqa: E402
from course_lib.labs.dino import ablation_scale, run_variant, shape_run  # noqa: E402

VERSIONS = {"random colours, sizes vary": dict(clutter=0.0),
            "one grey, sizes vary": dict(clutter=0.0, colour="grey"),
            "random colours, one size": dict(clutter=0.0, area=0.2),
            "one grey, one size (the lecture's)": dict(clutter=0.0, colour="grey", area=0.2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="default: the cpu scale's 100")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dino_shortcuts.json"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name, data in VERSIONS.items():
        start = time.perf_counter()
        run = shape_run("cpu", steps=args.steps, data=data)
        row = {"data": name, "make_shapes": data, "steps": run["steps"], "knn": run["knn"],
               "knn_stderr": run["knn_stderr"], "sorting_nmi": run["sorting"],
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        knn = ", ".join(f"{k} {v:.3f}" for k, v in run["knn"].items())
        nmi = ", ".join(f"{k} {run['sorting'][k]:.3f}" for k in ("shape", "area", "position"))
        print(f"{name:<36} k-NN: {knn}; NMI: {nmi}; "
              f"{run['sorting']['prototypes_used']} prototypes", flush=True)
    setup = ablation_scale("cpu")
    setup = replace(setup, views=None, dino=replace(setup.dino, n_local_crops=4, momentum_teacher=0.996))
    if args.steps is not None:
        setup = replace(setup, train=replace(setup.train, steps=args.steps,
                                             warmup_steps=min(args.steps, setup.train.warmup_steps)))
    images, labels, _ = make_shapes(setup.n_train, **setup.data)
    test = make_shapes(setup.n_test, split="test", **setup.data)[:2]
    torch.manual_seed(0)
    untrained = evaluate_backbone(build_vit(**setup.vit), images, labels, *test, probe_epochs=0,
                                  diagnostics=False)["knn_accuracy"]
    both = run_variant("both", images, (images, labels), test, setup)
    ablation = {"views": "multi-crop 2 + 4, momentum from 0.996", "steps": setup.train.steps,
                "knn_untrained": untrained, "knn_both": both["knn_accuracy"],
                "teacher_entropy": both["final_teacher_entropy"]}
    print(f"'both' with DINO's multi-crop and momentum 0.996, on the lecture's images: k-NN {both['knn_accuracy']:.3f} "
          f"(untrained {untrained:.3f})")
    result = {"threads": torch.get_num_threads(), "rows": rows, "multi_crop": ablation}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

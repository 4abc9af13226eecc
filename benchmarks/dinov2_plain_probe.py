"""Why ``dinov2-plain`` ends below its untrained network: short runs of its recipe, one change each.

Trains ``python -m course_lib pretrain dinov2-plain`` (the one-grey, one-size shapes, MAE's
plain-patch ViT, Sinkhorn-Knopp targets, KoLeo 0.1, the masked-patch term) for ``--steps`` steps
with one of DINOv2's differences from the shipped ``dino-plain`` changed, and appends the teacher's
held-out k-NN to ``--out``:

    python benchmarks/dinov2_plain_probe.py baseline        # about 5 minutes on one thread
    python benchmarks/dinov2_plain_probe.py conv_stem       # the cpu-fine ViT (conv stem, 8x8)
    python benchmarks/dinov2_plain_probe.py centering       # DINO's centering, not Sinkhorn-Knopp
    python benchmarks/dinov2_plain_probe.py no_koleo        # KoLeo weight 0
    python benchmarks/dinov2_plain_probe.py no_ibot         # no masked-patch term

``--eval-every N`` also measures the teacher's k-NN every N steps during training and records it
beside the logged loss terms at those steps (``trajectory``): when the features rise and when they
fall, next to what KoLeo and the teacher's entropies were doing then.
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

import course_lib.labs.pretrain as recipes  # noqa: E402
from course_lib.evaluate import evaluate_backbone  # noqa: E402
from course_lib.train import train  # noqa: E402

TRACKED = ("loss", "loss_dino", "loss_ibot", "loss_koleo", "teacher_entropy", "batch_mean_entropy")

# change -> the DINOv2Config fields it replaces (conv_stem replaces the ViT instead)
CHANGES: dict[str, dict] = {"baseline": {}, "conv_stem": {}, "centering": {"centering": "centering"},
                            "no_koleo": {"koleo_weight": 0.0}, "no_ibot": {"ibot_weight": 0.0}}


def knn(backbone, data: dict) -> float:
    """The held-out weighted k-NN accuracy of ``backbone``'s CLS token on the run's shapes."""
    train_x, train_y, test_x, test_y = recipes.shapes_for(data)
    return evaluate_backbone(backbone, train_x, train_y, test_x, test_y, pooling="cls",
                             probe_epochs=0, diagnostics=False)["knn_accuracy"]


def tracking_train(every: int, data_box: dict, trajectory: list):
    """A stand-in for ``course_lib.train.train`` that measures the teacher's k-NN after every
    ``every`` steps and keeps the logged metrics nearest each of those steps."""
    def run(method, images, config, **kwargs):
        after_step = method.after_step

        def measured_after_step(step):
            after_step(step)
            if (step + 1) % every == 0:
                teacher = method.teacher.backbone
                trajectory.append({"step": step + 1, "knn": knn(teacher, data_box["data"])})
                method.train()                                  # evaluate_backbone leaves eval mode
        method.after_step = measured_after_step
        history = train(method, images, config, **kwargs)
        for row in trajectory:                                  # the logged values at that step
            i = min(range(len(history.steps)), key=lambda j: abs(history.steps[j] - row["step"]))
            row.update({key: round(history[key][i], 4) for key in TRACKED if key in history.metrics})
        return history
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("change", choices=list(CHANGES))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=None, help="training images (default: the scale's)")
    p.add_argument("--n-test", type=int, default=None, help="held-out images (default: the scale's)")
    p.add_argument("--eval-every", type=int, default=0, help="k-NN every N steps (0: only at the end)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dinov2_plain_probe.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    saved = recipes.MAE_VIT, recipes.DINOV2_CONFIG, recipes.train   # module globals pretrain reads
    trajectory: list[dict] = []
    data_box: dict = {}
    try:
        if args.eval_every:
            recipes.train = tracking_train(args.eval_every, data_box, trajectory)
            data_box["data"] = recipes.pretrain_data("dinov2-plain", "long", n_train=args.n_train,
                                                     n_test=args.n_test)
        if args.change == "conv_stem":
            recipes.MAE_VIT = dict(preset="cpu-fine")
        recipes.DINOV2_CONFIG = replace(recipes.DINOV2_CONFIG, **CHANGES[args.change])
        backbone, meta = recipes.pretrain("dinov2-plain", "long", steps=args.steps, progress=False,
                                          n_train=args.n_train, n_test=args.n_test)
    finally:
        recipes.MAE_VIT, recipes.DINOV2_CONFIG, recipes.train = saved
    row = {"change": args.change, "commit": meta["commit"], "steps": args.steps, "threads": args.threads,
           "train_seconds": meta["train_seconds"], "untrained_knn": meta["untrained_knn_accuracy"],
           "knn": knn(backbone, meta["data"]), "stem": meta["config"]["vit"]["stem"],
           **{key: meta["config"]["method"][key] for key in ("centering", "koleo_weight", "ibot_weight")},
           "loss_first": meta["loss"]["values"][:2], "loss_last": meta["loss"]["values"][-2:],
           **({"trajectory": trajectory} if trajectory else {})}
    print(json.dumps(row))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

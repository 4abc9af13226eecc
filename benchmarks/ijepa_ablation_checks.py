"""Two questions lecture 05's collapse ablation (section 4) leaves to a longer look, answered at
its CPU scale (the ViT, data, batch and seed of ``course_lib.labs.ijepa.ABLATION_SCALES["cpu"]``):

1. **Smooth L1 against L2.** On layer-normed targets with every error below 1, smooth L1 is half
   the squared error, and AdamW cancels a constant factor. The lecture's two runs agree, but their
   losses differ by 2.2x, not 2x, and the training loop clips the gradient norm at 3: neither is
   a constant factor. This records, every step of each run, the share of prediction errors of 1
   or more (where smooth L1 grows linearly) and whether the clip was active, and trains both
   again without the clip.
2. **Does the EMA stop the collapse or delay it?** 80 steps cannot tell. All four variants are
   trained again for ``--long-steps`` steps, with the clip (the same recipe: the learning-rate
   and momentum schedules stretch to the longer run); ``l2`` among them shows whether the two
   losses part over the longer run.

    python benchmarks/ijepa_ablation_checks.py [--steps 80] [--long-steps 400] [--out FILE]

Writes ``benchmarks/results/ijepa_ablation_checks.json``.
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

import course_lib.ijepa as ijepa_module  # noqa: E402
from course_lib.labs import ijepa as lab  # noqa: E402
from course_lib.labs.ibot import ablation_data  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "ijepa_ablation_checks.json"


class Recorder:
    """Counts, while a run trains, the prediction errors of 1 or more and the clipped steps."""

    def __init__(self):
        self.large, self.total, self.norms = 0, 0, []
        self._loss, self._clip = ijepa_module.jepa_loss, torch.nn.utils.clip_grad_norm_

    def __enter__(self):
        def loss(pred, target, kind="smooth_l1"):
            with torch.no_grad():
                error = (pred.float() - target.float()).abs()
                self.large += int((error >= 1).sum())
                self.total += error.numel()
            return self._loss(pred, target, kind)

        def clip(parameters, max_norm, *args, **kwargs):
            norm = self._clip(parameters, max_norm, *args, **kwargs)
            self.norms.append(float(norm))
            return norm

        ijepa_module.jepa_loss, torch.nn.utils.clip_grad_norm_ = loss, clip
        return self

    def __exit__(self, *exc):
        ijepa_module.jepa_loss, torch.nn.utils.clip_grad_norm_ = self._loss, self._clip

    def summary(self, clip: float | None) -> dict:
        norms = self.norms
        return {"share_errors_at_least_1": self.large / max(self.total, 1),
                "grad_norm_median": sorted(norms)[len(norms) // 2] if norms else None,
                "grad_norm_max": max(norms) if norms else None,
                "steps_clipped": sum(n > clip for n in norms) if clip and norms else 0,
                "norms_recorded": len(norms)}


def one_run(name: str, data: dict, setup, *, clip: float | None) -> dict:
    setup = replace(setup, train=replace(setup.train, grad_clip=clip))
    start = time.perf_counter()
    with Recorder() as recorder:
        run = lab.run_variant(name, data, setup)
    run.pop("curves")
    return {"variant": name, "steps": setup.train.steps, "grad_clip": clip,
            **run, **recorder.summary(clip), "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of the short runs (default: the ablation's, 80)")
    parser.add_argument("--long-steps", type=int, default=400, help="steps of the longer runs")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training images (default: the ablation's, 2000; the dense probe "
                             "takes at most this many)")
    parser.add_argument("--n-test", type=int, default=None,
                        help="held-out images (default: the ablation's, 500)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file to write")
    args = parser.parse_args(argv)
    for flag in ("steps", "long_steps", "n_train", "n_test"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be a positive integer, got {value}")
    torch.set_num_threads(1)
    setup = lab.ablation_scale("cpu", args.seed)
    sizes = {"n_train": args.n_train, "n_test": args.n_test}
    setup = replace(setup, **{key: value for key, value in sizes.items() if value is not None})
    setup = replace(setup, n_dense=min(setup.n_dense, setup.n_train, setup.n_test))
    if args.steps is not None:
        setup = replace(setup, train=replace(setup.train, steps=args.steps,
                                             warmup_steps=min(setup.train.warmup_steps, args.steps)))
    data = ablation_data(setup, args.seed)     # iBOT's helper: the same fields, the same shapes
    clip = setup.train.grad_clip                 # the training loop's own (3.0)
    rows = [one_run(name, data, setup, clip=c) for c in (clip, None) for name in ("ijepa", "l2")]
    long = replace(setup, train=replace(setup.train, steps=args.long_steps,
                                        warmup_steps=min(setup.train.warmup_steps, args.long_steps)))
    rows += [one_run(name, data, long, clip=clip)
             for name in ("ijepa", "l2", "no_ema", "no_ema_no_stopgrad")]
    for row in rows:
        print(f"{row['variant']:<20}{row['steps']:5d} steps  clip {str(row['grad_clip']):>4}  "
              f"loss {row['final_loss']:.4f}  std {row['first_target_std']:.3f} -> "
              f"{row['final_target_std']:.3f}  k-NN {row['knn_accuracy']:.3f}  "
              f"IoU {row['dense_iou']:.3f}  errors >= 1: {row['share_errors_at_least_1']:.4f}  "
              f"clipped {row['steps_clipped']}/{row['norms_recorded']}  ({row['seconds']} s)", flush=True)
    sizes = {key: getattr(setup, key) for key in ("n_train", "n_test", "n_dense")}
    args.out.write_text(json.dumps({"seed": args.seed, **sizes, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Time the CPU-scale backbone and the augmentation: ``python benchmarks/backbone_step.py``.

1. For each candidate CPU-scale ViT (course_lib.backbones), one training step at batch 256 on
   32x32 images: forward, backward, AdamW (the shared loop's optimizer). The presets "cpu" (conv
   stem, 8 px cells, 16 tokens) and "cpu-fine" (conv stem, 4 px cells, 64 tokens) are rows of
   this table; the plain 4 px patch rows are what we started from. Width 96 was the fastest of
   four widths measured with 4 px patches (128 and 192 cost ~1.5x and ~2.7x).
2. Two SimCLR views of 256 images: the batched tensor path (course_lib.augment) against the
   per-sample torchvision v2 pipeline in a Python loop, and their ratio, in the same process.

Timings on a shared 2-core machine are noisy: the script reports the median and the minimum of
several repeats; compare rows within one run, not across runs.
"""
from __future__ import annotations

import argparse
import time
from statistics import median

import torch

from course_lib.augment import TwoViews, batched_simclr_views, simclr_transform
from course_lib.backbones import PRESETS, build_vit, count_parameters
from course_lib.data import make_shapes

CANDIDATES = {  # name -> overrides of the "cpu" preset (32 px, width 96, depth 4, 3 heads)
    "cpu (conv, p8)": dict(),
    "cpu-fine (conv, p4)": dict(patch_size=4),
    "plain p4": dict(patch_size=4, stem="patch"),
    "plain p4 w128": dict(patch_size=4, stem="patch", embed_dim=128, num_heads=4),
}


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median, min) seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times), min(times)


def make_step(overrides: dict, batch_size: int):
    """(parameter count, a closure doing one fwd + bwd + AdamW step)."""
    torch.manual_seed(0)
    model = build_vit("cpu", **overrides)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    images = torch.randn(batch_size, 3, 32, 32)

    def step() -> None:
        loss = model(images).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return count_parameters(model), step


def step_times(batch_size: int, repeats: int) -> dict[str, tuple[int, float, float]]:
    """Candidates timed round-robin (one step each per round), so that load from other
    processes drifting over the run hits every candidate alike."""
    steps = {name: make_step(overrides, batch_size) for name, overrides in CANDIDATES.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 1):                      # round 0 is the warm-up
        for name, (_, step) in steps.items():
            start = time.perf_counter()
            step()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: (steps[name][0], median(t), min(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"preset 'cpu' = {PRESETS['cpu']}")

    print(f"\n1. fwd + bwd + AdamW step, batch {args.batch_size}, 32x32 images")
    for name, (n_params, med, best) in step_times(args.batch_size, args.repeats).items():
        print(f"   {name:20s} {n_params / 1e6:5.2f} M params   median {med:6.3f} s   min {best:6.3f} s")

    print(f"\n2. two SimCLR views of {args.batch_size} uint8 32x32 images")
    images = make_shapes(args.batch_size, 32, seed=0)[0]
    generator = torch.Generator().manual_seed(0)
    batched = timed(lambda: batched_simclr_views(images, generator=generator), args.repeats)
    two_views = TwoViews(simclr_transform(32))
    per_sample = timed(lambda: [two_views(image) for image in images], max(1, args.repeats // 2))
    print(f"   batched tensor ops    median {batched[0]:6.3f} s   min {batched[1]:6.3f} s")
    print(f"   per-sample v2 loop    median {per_sample[0]:6.3f} s   min {per_sample[1]:6.3f} s")
    print(f"   ratio (v2 / batched)  median {per_sample[0] / batched[0]:6.1f}x")


if __name__ == "__main__":
    main()

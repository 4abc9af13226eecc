"""Feature extraction against its batch size: ``python benchmarks/feature_batch.py [--images N]``.

``course_lib.evaluate.extract_features`` runs a frozen network over thousands of images for every
k-NN, probe and checkpoint check. On a CPU its speed depends on the batch: a batch whose
activations fit the caches beats a large one. For the shipped 65-token ViT (MAE, 8x8 patches)
and the 17-token one (SimCLR, conv stem), on one thread, this prints the median of three timings
per batch size and its ratio to a batch of 512 (the GPU default), all in this process.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib import zoo
from course_lib.data import make_shapes, normalize
from course_lib.evaluate import Pooled, extract_features

BATCHES = (512, 256, 128, 64)


def time_batches(model: torch.nn.Module, images: torch.Tensor, batches=BATCHES,
                 repeats: int = 3) -> dict[int, float]:
    """Median seconds of ``extract_features`` over ``images`` per batch size."""
    extract_features(model, images[:64], batch_size=64)          # warm-up
    return {b: statistics.median(_seconds(model, images, b) for _ in range(repeats))
            for b in batches}


def _seconds(model, images, batch_size) -> float:
    start = time.perf_counter()
    extract_features(model, images, batch_size=batch_size)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python benchmarks/feature_batch.py")
    parser.add_argument("--images", type=int, default=2048, help="images per timing (default 2048)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images = normalize(make_shapes(args.images, 32, seed=0)[0])
    print(f"torch {torch.__version__}, 1 thread, {args.images} images of 32 px, median of "
          f"{args.repeats}")
    table = {}
    for name in ("mae", "simclr"):
        model = zoo.load(name)
        tokens = model.backbone.patch_embed.num_patches + 1
        pooled = Pooled(model.backbone, model.meta["pooling"])
        times = time_batches(pooled, images, repeats=args.repeats)
        table[name] = times
        cells = "  ".join(f"{b}: {t:5.2f} s ({times[512] / t:.2f}x)" for b, t in times.items())
        print(f"{name:7s} {tokens:3d} tokens  {cells}")
    return table


if __name__ == "__main__":
    main()

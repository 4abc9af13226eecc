"""Time the procedural shapes generator: ``python benchmarks/data_speed.py``.

Target (COURSE_SPEC, Data: "in seconds"): make_shapes(10000, 32) under 3 s on a 2-core CPU.
"""
import time

import torch

from course_lib.data import make_shapes


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    make_shapes(10, 32)  # warm-up: imports, canonical shape geometry
    for n, image_size in ((10_000, 32), (1_000, 96)):
        start = time.perf_counter()
        make_shapes(n, image_size, seed=0)
        print(f"make_shapes({n}, {image_size}): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()

"""Resident memory of DINOv2 training on the CPU with and without returning freed heap pages after
each step: ``python benchmarks/dinov2_memory.py [--steps 120]``.

DINOv2 sends only the masked tokens through its patch head, a different number every step. Without
``course_lib.runtime.release_freed_memory`` (glibc's ``malloc_trim``) after each step, the process
grows steadily (the shipped ``dinov2-reg`` run reached 14 GB in 1000 steps). Each variant runs in
its own process, the ``cpu`` recipe at batch 64 on one thread; the script prints the peak resident
memory every 10 % of the run and the time a step took, with iBOT (fixed shapes) as the baseline.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = r'''
import resource, sys, threading, time
import torch
import course_lib.dinov2 as dinov2
from course_lib.data import make_shapes
from course_lib.labs.pretrain import build_method, zoo_scale
from course_lib.train import TrainConfig, train
name, trim, steps = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
if not trim:
    dinov2.release_freed_memory = lambda: False
torch.set_num_threads(1)
images = make_shapes(1024, seed=0, clutter=0.0)[0]
method = build_method(name, zoo_scale("cpu"), steps=steps)
peaks, done = [], threading.Event()
def watch():
    while not done.is_set():
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        time.sleep(1)
threading.Thread(target=watch, daemon=True).start()
start = time.perf_counter()
train(method, images, TrainConfig(steps=steps, batch_size=64, lr=1e-3, warmup_steps=1, progress=False))
seconds = (time.perf_counter() - start) / steps
done.set()
shown = [round(p) for p in peaks[:: max(1, len(peaks) // 10)]]
print(f"{name:<7} trim={trim!s:<5} {seconds:.3f} s/step  peak MB over the run: {shown} "
      f"end {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    for name, trim in (("ibot", "0"), ("dinov2", "0"), ("dinov2", "1")):
        subprocess.run([sys.executable, "-c", CHILD, name, trim, str(args.steps)], check=True)


if __name__ == "__main__":
    main()

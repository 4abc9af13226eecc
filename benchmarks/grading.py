"""Time grading: one submission with and without the jail, and a batch of N copies.

    python benchmarks/grading.py                    # 4 copies of the solution, jail on and off
    python benchmarks/grading.py --copies 300       # the 300-submission batch (jail on only)

Every run is ``python -m autograder grade`` on copies of the unit-1 solution (from ``python -m
autograder samples``), in this process's machine, one after the other: the jail's cost is the
ratio of the two per-submission medians. Prints the figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def grade(subs: Path, out: Path, workers: int, sandbox: bool) -> tuple[float, list[float], str]:
    env = dict(os.environ, AUTOGRADER_SANDBOX="on" if sandbox else "off")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "01_infonce", str(subs),
                          "--out", str(out), "--workers", str(workers)], cwd=REPO, env=env,
                         capture_output=True, text=True)
    total = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    per = [float(m.group(1)) for m in re.finditer(r"\s([\d.]+) s  ", run.stdout)]
    with open(out / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    scores = sorted({f"{r['score']}/{r['max_score']} {r['status']}" for r in rows})
    return total, per, ", ".join(scores)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jail-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, "-m", "autograder", "samples", "01_infonce",
                        str(tmp / "samples")], cwd=REPO, check=True, capture_output=True)
        subs = tmp / "subs"
        for i in range(args.copies):
            shutil.copytree(tmp / "samples" / "solution", subs / f"student{i:03d}")
        modes = [True] if args.jail_only or args.copies > 20 else [False, True]
        medians = {}
        for sandbox in modes:
            total, per, scores = grade(subs, tmp / f"out-{sandbox}", args.workers, sandbox)
            label = "jail" if sandbox else "no jail"
            medians[label] = statistics.median(per)
            print(f"{label:>8}: {args.copies} submissions on {args.workers} workers in "
                  f"{total:.1f} s ({total / args.copies:.2f} s each, batch wall clock); "
                  f"one submission {statistics.median(per):.2f} s median, {max(per):.2f} s max "
                  f"(inside a worker, template excluded); scores: {scores}", flush=True)
        if len(medians) == 2:
            print(f"jail / no jail, per submission: {medians['jail'] / medians['no jail']:.2f}x")


if __name__ == "__main__":
    main()

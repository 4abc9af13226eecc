"""Time grading: one submission with and without the jail, against an older pipeline, and a batch.

    python benchmarks/grading.py                      # 4 copies of the solution, jail on and off
    python benchmarks/grading.py --baseline f82634b   # this tree against that commit, jail on
    python benchmarks/grading.py --copies 300         # the 300-submission batch (jail on only)

Every run is ``python -m autograder grade`` on copies of the unit-1 solution (from ``python -m
autograder samples`` of the tree being timed), on this machine, one after the other. The figure
that matters is the per-submission median inside a worker (template excluded); the ratios printed
are between runs of this one process. ``--baseline`` checks the commit out in a temporary git
worktree and runs its own ``autograder`` and ``course_lib`` (its jail is given ``PYTHONPATH`` to
that worktree, since the virtual environment's editable install points at this one). Prints the
figures; asserts nothing.
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


def grade(tree: Path, subs: Path, out: Path, workers: int,
          sandbox: bool) -> tuple[float, list[float], str]:
    env = dict(os.environ, AUTOGRADER_SANDBOX="on" if sandbox else "off",
               PYTHONPATH=str(tree))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "01_infonce", str(subs),
                          "--out", str(out), "--workers", str(workers)], cwd=tree, env=env,
                         capture_output=True, text=True)
    total = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(run.stdout + run.stderr)
    per = [float(m.group(1)) for m in re.finditer(r"\s([\d.]+) s  ", run.stdout)]
    with open(out / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    scores = sorted({f"{r['score']}/{r['max_score']} {r['status']}" for r in rows})
    return total, per, ", ".join(scores)


def copies_of_the_solution(tree: Path, tmp: Path, copies: int) -> Path:
    subprocess.run([sys.executable, "-m", "autograder", "samples", "01_infonce",
                    str(tmp / "samples")], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)),
                   check=True, capture_output=True)
    subs = tmp / "subs"
    for i in range(copies):
        shutil.copytree(tmp / "samples" / "solution", subs / f"student{i:03d}")
    return subs


def baseline_tree(commit: str, tmp: Path) -> Path:
    """A worktree of ``commit`` whose jail imports its own packages (see the module docstring)."""
    tree = tmp / f"baseline-{commit}"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO,
                   check=True, capture_output=True)
    grade_py = tree / "autograder" / "grade.py"
    text = grade_py.read_text()
    marker = '"COURSE_GRADING_JOURNAL": journal_path,'
    if marker not in text:
        raise SystemExit(f"{commit}: cannot find the jail environment in autograder/grade.py")
    grade_py.write_text(text.replace(marker, marker + f' "PYTHONPATH": {str(tree)!r},', 1))
    return tree


def report(label: str, copies: int, workers: int, total: float, per: list[float],
           scores: str) -> float:
    median = statistics.median(per)
    print(f"{label:>16}: {copies} submissions on {workers} workers in {total:.1f} s "
          f"({total / copies:.2f} s each, batch wall clock); one submission {median:.2f} s "
          f"median, {max(per):.2f} s max (inside a worker, template excluded); scores: {scores}",
          flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jail-only", action="store_true")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also time this commit's pipeline, jail on, and print the ratio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        trees = {"this tree": REPO}
        if args.baseline:
            trees[args.baseline] = baseline_tree(args.baseline, tmp)
        medians = {}
        try:
            for name, tree in trees.items():
                subs = copies_of_the_solution(tree, tmp / name.replace(" ", "-"), args.copies)
                jail_only = args.jail_only or args.copies > 20 or name != "this tree" \
                    or args.baseline
                for sandbox in [True] if jail_only else [False, True]:
                    label = f"{name}, {'jail' if sandbox else 'no jail'}"
                    out = tmp / f"out-{name.replace(' ', '-')}-{sandbox}"
                    medians[label] = report(label, args.copies, args.workers,
                                            *grade(tree, subs, out, args.workers, sandbox))
        finally:
            for name, tree in trees.items():
                if tree != REPO:
                    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                                   capture_output=True)
        if "this tree, no jail" in medians:
            print(f"jail / no jail, per submission: "
                  f"{medians['this tree, jail'] / medians['this tree, no jail']:.2f}x")
        if args.baseline:
            ratio = medians["this tree, jail"] / medians[f"{args.baseline}, jail"]
            print(f"this tree / {args.baseline}, per submission: {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""The k-NN of every shipped checkpoint read two ways: its CLS token and its mean patch token.

Each checkpoint records one pooling (``meta["pooling"]``: the CLS token for the image-level
methods, the mean patch token for MAE and I-JEPA). This script measures the other one beside it,
on the same held-out shapes and weights, with the course's weighted 20-NN:

    python benchmarks/zoo_pooling.py                 # every checkpoint, about a minute on 2 cores
    python benchmarks/zoo_pooling.py ibot-plain      # the ones named

A network without a CLS token (I-JEPA) gives the same number twice.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import zoo  # noqa: E402
from course_lib.evaluate import evaluate_backbone  # noqa: E402
from course_lib.labs.pretrain import shapes_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="checkpoints to read (default: all)")
    names = parser.parse_args().names or zoo.available()
    unknown = [name for name in names if name not in zoo.available()]
    if unknown:
        parser.error(f"NAME must be one of the checkpoints {zoo.available()}, got {unknown}")
    print(f"{'checkpoint':<26}{'pooling':>8}{'recorded':>10}{'cls':>8}{'mean':>8}")
    for name in names:
        model = zoo.load(name)
        shapes = shapes_for(model.meta["data"])
        knn = {pooling: evaluate_backbone(model.backbone, *shapes, pooling=pooling, probe_epochs=0,
                                          diagnostics=False)["knn_accuracy"] for pooling in ("cls", "mean")}
        print(f"{name:<26}{model.meta['pooling']:>8}{model.meta['metrics']['knn_accuracy']:10.3f}"
              f"{knn['cls']:8.3f}{knn['mean']:8.3f}", flush=True)


if __name__ == "__main__":
    main()

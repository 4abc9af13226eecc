"""Command line for the jobs a homework or an instructor runs outside a notebook.

    python -m course_lib --help
    python -m course_lib info                       # versions, device, scale
    python -m course_lib shapes --n 64 --out grid.png
    python -m course_lib supervised --json out.json # the learnability smoke run
    python -m course_lib simclr --temperature 0.1 --json out.json
    python -m course_lib moco --batch-size 32 --queue-size 4096 --json out.json

Each command prints a short human summary and, with ``--json``, writes its figures to a file.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


def cmd_info(args: argparse.Namespace) -> int:
    import timm
    import torch
    import torchvision

    from . import __version__
    from .runtime import default_device, default_scale, in_colab
    device = default_device()
    info = {"course_lib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "device": str(device), "scale": default_scale(device), "colab": in_colab(),
            "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    for key, value in info.items():
        print(f"{key:>15}: {value}")
    _write_json(args.json, info)
    return 0


def cmd_shapes(args: argparse.Namespace) -> int:
    from .data import SHAPE_CLASSES, make_shapes
    start = time.perf_counter()
    images, labels, masks = make_shapes(args.n, image_size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"make_shapes({args.n}, image_size={args.size}, seed={args.seed}): {seconds:.2f} s, "
          f"{len(SHAPE_CLASSES)} classes, mean mask fraction {masks.float().mean():.3f}")
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        from .viz import image_grid
        shown = min(args.n, 64)
        fig = image_grid(images[:shown], labels=[SHAPE_CLASSES[i] for i in labels[:shown]])
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0


def _shapes_split(n_train: int, n_test: int, size: int, seed: int):
    from .data import make_shapes
    images, labels, _ = make_shapes(n_train + n_test, image_size=size, seed=seed)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Shared body of the supervised / simclr / moco commands: train, then k-NN and probe."""
    import torch

    from .runtime import course_settings
    from .workflows import evaluate_backbone, make_method
    settings = course_settings(scale=args.scale, seed=args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_x, train_y, test_x, test_y = _shapes_split(args.n_train, args.n_test, args.size, args.seed)
    method, config = make_method(args.command, settings, steps=args.steps, batch_size=args.batch_size,
                                 temperature=args.temperature, queue_size=args.queue_size,
                                 image_size=args.size)
    from .train import train
    start = time.perf_counter()
    history = train(method, train_x, config, labels=train_y, device=settings.device)
    train_seconds = time.perf_counter() - start
    result = evaluate_backbone(method.backbone, train_x, train_y, test_x, test_y, device=settings.device)
    result.update(command=args.command, steps=config.steps, batch_size=config.batch_size,
                  train_seconds=round(train_seconds, 2), final_loss=history.last("loss"))
    print(json.dumps(result, indent=2, sort_keys=True))
    _write_json(args.json, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="library versions, device and the scale notebooks will use")
    p.add_argument("--json", help="also write the facts to this JSON file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("shapes", help="generate the embedded shapes dataset, time it, save a grid")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file for a grid of the first 64 images")
    p.set_defaults(func=cmd_shapes)

    helps = {"supervised": "train the backbone with labels (the learnability smoke run)",
             "simclr": "pretrain with SimCLR (NT-Xent), then k-NN and linear probe",
             "moco": "pretrain with MoCo (queue + momentum encoder), then k-NN and linear probe"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--scale", choices=["cpu", "gpu"], default=None,
                       help="default: gpu on CUDA, cpu otherwise ($COURSE_SCALE overrides)")
        p.add_argument("--steps", type=int, default=None, help="default: the scale's")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--temperature", type=float, default=None)
        p.add_argument("--queue-size", type=int, default=4096)
        p.add_argument("--n-train", type=int, default=5000)
        p.add_argument("--n-test", type=int, default=1000)
        p.add_argument("--size", type=int, default=32, help="image size in pixels")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", help="write the figures to this JSON file")
        p.set_defaults(func=cmd_pretrain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

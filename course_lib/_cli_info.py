"""The commands of ``python -m course_lib`` that describe the set-up rather than train: ``info``
(library versions, device, scale), ``shapes`` (the embedded dataset), ``zoo`` (the shipped
checkpoints against their labels) and the version ``--version`` prints."""
from __future__ import annotations

import argparse
import importlib.metadata
import platform
import time
from pathlib import Path

from . import __version__
from ._cli_types import json_option, output_file, positive_int, seed_option

# pyproject.toml of a source checkout: where the version is read when course_lib is imported
# from a folder rather than installed.
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def installed_version() -> str:
    """The version of the installed ``course_lib`` distribution; in a checkout that is not
    installed, pyproject.toml's; failing both, the package's ``__version__``."""
    try:
        return importlib.metadata.version("course_lib")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        import tomllib                       # Python 3.11+
        return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    except (ImportError, OSError, KeyError, ValueError):
        return __version__


def info_arguments(p: argparse.ArgumentParser) -> None:
    json_option(p)


def info_run(args: argparse.Namespace) -> dict:
    import timm
    import torch
    import torchvision

    from .runtime import default_device, default_scale, in_colab
    device = default_device()
    return {"course_lib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "device": str(device), "scale": default_scale(device), "colab": in_colab(),
            "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}


def info_summary(result: dict) -> str:
    return "\n".join(f"{key:>15}: {value}" for key, value in result.items())


def shapes_arguments(p: argparse.ArgumentParser) -> None:
    from .data import IMAGE_SIZE_RANGE
    p.add_argument("--n", type=positive_int, default=10000, help="number of images")
    p.add_argument("--size", type=positive_int, default=32,
                   help=f"image side in pixels, {IMAGE_SIZE_RANGE[0]} to {IMAGE_SIZE_RANGE[1]}")
    seed_option(p)
    p.add_argument("--out", type=output_file(".png"), default=None,
                   help="PNG file for a grid of the first 64 images")
    json_option(p)


def shapes_run(args: argparse.Namespace) -> dict:
    from .data import SHAPE_CLASSES, make_shapes
    start = time.perf_counter()
    images, labels, masks = make_shapes(args.n, image_size=args.size, seed=args.seed)
    result = {"n": args.n, "image_size": args.size, "seed": args.seed,
              "seconds": round(time.perf_counter() - start, 3), "classes": len(SHAPE_CLASSES),
              "mask_fraction": masks.float().mean().item()}
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        from .viz import image_grid
        shown = min(args.n, 64)
        fig = image_grid(images[:shown], labels=[SHAPE_CLASSES[i] for i in labels[:shown]])
        fig.savefig(args.out, dpi=120)
        result["grid"] = args.out
    return result


def shapes_summary(result: dict) -> str:
    return (f"make_shapes({result['n']}, image_size={result['image_size']}, seed={result['seed']}): "
            f"{result['seconds']:.2f} s, {result['classes']} classes, mean mask fraction "
            f"{result['mask_fraction']:.3f}" + (f"\nwrote {result['grid']}" if "grid" in result else ""))


def zoo_arguments(p: argparse.ArgumentParser) -> None:
    json_option(p)


def zoo_run(args: argparse.Namespace) -> dict:
    from .labs.shipped import zoo_table
    return {"rows": zoo_table()}


def zoo_summary(result: dict) -> str:
    from .labs.shipped import zoo_text
    return zoo_text(result["rows"])

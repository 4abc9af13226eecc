"""The argument types and shared options of ``python -m course_lib``: a value the library would
reject is one parser error line (exit 2) naming the option and what was expected, never a
traceback, and nothing is silently replaced."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from .runtime import SCALES


def _number(convert: Callable[[str], float], accept: Callable[[float], bool],
            expected: str) -> Callable[[str], float]:
    """An argparse type: ``convert(text)`` if that works and ``accept`` holds, else one error."""
    def check(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    check.__name__ = expected
    return check


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
mask_ratio = _number(float, lambda v: 0.0 <= v < 1.0, "a masking ratio in [0, 1)")
unit_float = _number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def output_file(*suffixes: str) -> Callable[[str], str]:
    """A path whose folder exists and whose name ends in one of ``suffixes``."""
    def check(text: str) -> str:
        path = Path(text)
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {' or '.join(suffixes)}, "
                                             f"got {text!r}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist "
                                             f"(for {text!r}); create it first")
        return text
    check.__name__ = "output_file"
    return check


def scale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=SCALES, default=None,
                        help="the scale's settings; default: gpu on CUDA, cpu otherwise "
                             "($COURSE_SCALE overrides)")


def seed_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the data, the initial weights and the batches")


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=output_file(".json"), default=None,
                        help="also write the figures to this JSON file")

"""The course's embedded data set: procedural "shapes" with exact object masks.

The default data set (COURSE_SPEC, Data) has ten shape families with random colour, size,
stretch, position and rotation over cluttered backgrounds (low-frequency colour noise, stripes or
checkers at a random angle and frequency, thin lines and dots drawn *behind* the object). Object
size is drawn as an *area fraction*, the same for every class, so neither colour nor pixel counts
give the class: only geometry does. The object is one flat colour and the mask is exactly the
pixels painted with it, as attention-vs-mask overlap (Lecture 02) needs.

Rasterisation is implicit: each shape is a predicate ``inside(u)`` on canonical coordinates
``u = S^-1 R(-theta) (p - c) / s``, evaluated on all pixels of a batch of images at once. Scene
parameters are in units of the image side (one seed gives the same scenes at any resolution) and
come in blocks of ``_BLOCK`` images from ``default_rng([seed, split, block])`` (image ``i`` does
not depend on ``n``).

    images, labels, masks = make_shapes(1000, image_size=32, seed=0)
    # images (B, 3, H, W) uint8, labels (B,) int64, masks (B, H, W) bool
"""
from __future__ import annotations

import math
from functools import cache
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from ._checks import check_int

SHAPE_CLASSES: tuple[str, ...] = ("disk", "square", "triangle", "plus", "ring", "star",
                                  "crescent", "ell", "bar", "hourglass")
N_CLASSES = len(SHAPE_CLASSES)
IMAGE_SIZE_RANGE = (32, 128)
AREA_RANGE = (0.12, 0.28)  # object area / image area, drawn uniformly, the same for every class
AREA_OPTION_RANGE = (0.05, 0.3)  # make_shapes(area=...): one size for every object
COLOURS = ("random", "grey")
GREYS = (50, 220)         # colour="grey": background, object (uint8)
# Per-channel mean / std of make_shapes(5000, 32, seed=0) / 255 (tests/test_data.py recomputes them).
SHAPES_MEAN = (0.4980, 0.5003, 0.5021)
SHAPES_STD = (0.2488, 0.2487, 0.2499)
_BLOCK = 1000  # images per parameter block: 100 of each class, so labels are exactly balanced
SPLITS = {"train": 0, "test": 1}
_PIXELS_PER_CHUNK = 2_000_000  # pixels rendered at once: bounds memory to ~100 MB


# --- shape families, in label order: inside(ux, uy) on canonical coordinates (circumradius ~1) ---
def _disk(x: Tensor, y: Tensor) -> Tensor:
    return x * x + y * y <= 1.0


def _square(x: Tensor, y: Tensor) -> Tensor:
    return torch.maximum(x.abs(), y.abs()) <= 0.7071


def _triangle(x: Tensor, y: Tensor) -> Tensor:
    # equilateral, circumradius 1, inradius 1/2: inside all three half-planes
    inside = y >= -0.5
    for angle in (math.pi / 6, 5 * math.pi / 6):
        inside &= x * math.cos(angle) + y * math.sin(angle) <= 0.5
    return inside


def _plus(x: Tensor, y: Tensor) -> Tensor:
    ax, ay = x.abs(), y.abs()
    return ((ax <= 0.93) & (ay <= 0.34)) | ((ay <= 0.93) & (ax <= 0.34))


def _ring(x: Tensor, y: Tensor) -> Tensor:
    r2 = x * x + y * y
    return (r2 <= 1.0) & (r2 >= 0.52**2)


def _star(x: Tensor, y: Tensor) -> Tensor:
    # five points; fold the angle into one half-sector, then test the edge from the outer vertex
    # A = (1, 0) to the inner vertex B = r_in (cos pi/5, sin pi/5)
    r_in, sector = 0.5, 2 * math.pi / 5
    phi = torch.remainder(torch.atan2(y, x), sector)
    phi = torch.minimum(phi, sector - phi)
    r = torch.sqrt(x * x + y * y)
    qx, qy = r * torch.cos(phi) - 1.0, r * torch.sin(phi)
    bx, by = r_in * math.cos(sector / 2) - 1.0, r_in * math.sin(sector / 2)
    return bx * qy - by * qx >= 0.0  # the origin's side of AB: cross(B - A, O - A) = by > 0


def _crescent(x: Tensor, y: Tensor) -> Tensor:
    return (x * x + y * y <= 1.0) & ((x - 0.5) ** 2 + y * y >= 0.78**2)


def _ell(x: Tensor, y: Tensor) -> Tensor:
    a, t = 0.7071, 0.62  # a square of half-side a, minus its top-right part: arms t thick
    in_square = torch.maximum(x.abs(), y.abs()) <= a
    return in_square & ((x <= -a + t) | (y <= -a + t))


def _bar(x: Tensor, y: Tensor) -> Tensor:
    return (x.abs() <= 0.93) & (y.abs() <= 0.37)  # aspect 2.5


def _hourglass(x: Tensor, y: Tensor) -> Tensor:
    # two trapezoids meeting at a waist of half-width 0.15 (thick enough to stay one piece at 32 px)
    return (y.abs() <= 0.75) & (x.abs() <= 0.15 + 0.85 * y.abs())


_SHAPE_INSIDE: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    _disk, _square, _triangle, _plus, _ring, _star, _crescent, _ell, _bar, _hourglass)


@cache
def _canonical_geometry() -> tuple[np.ndarray, np.ndarray]:
    """Area and circumradius of each canonical shape, measured on a fine grid: (N_CLASSES,) x2."""
    ticks = torch.linspace(-1.5, 1.5, 601, dtype=torch.float64)
    y, x = torch.meshgrid(ticks, ticks, indexing="ij")
    cell = float(ticks[1] - ticks[0]) ** 2
    areas, radii = [], []
    for inside in _SHAPE_INSIDE:
        m = inside(x, y)
        areas.append(float(m.sum()) * cell)
        radii.append(float(torch.sqrt(x[m] ** 2 + y[m] ** 2).max()))
    return np.array(areas), np.array(radii)


# --- scene parameters: drawn per block, in units of the image side -------------------------------
def _block_params(seed: int, split_id: int, block: int,
                  area_range: tuple[float, float] = AREA_RANGE) -> dict[str, np.ndarray]:
    """Scene parameters of images ``block*_BLOCK ... (block+1)*_BLOCK - 1``; arrays lead with B.
    ``area_range`` changes the objects' sizes only: every other parameter keeps its value."""
    rng = np.random.default_rng([seed, split_id, block])
    b = _BLOCK
    labels = rng.permutation(np.arange(b) % N_CLASSES)
    areas, radii = _canonical_geometry()
    stretch = rng.uniform(0.85, 1.18, b)  # anisotropic scale: x * sqrt(stretch), y / sqrt(stretch)
    scale = np.sqrt(rng.uniform(*area_range, b) / areas[labels])
    extent = scale * radii[labels] * np.sqrt(np.maximum(stretch, 1 / stretch))
    scale = scale * np.minimum(1.0, 0.49 / extent)  # keep the whole object inside the frame
    extent = np.minimum(extent, 0.49)
    centre = extent[:, None] + (1 - 2 * extent[:, None]) * rng.uniform(0, 1, (b, 2))
    p = dict(labels=labels, scale=scale, stretch=stretch, centre=centre,
             angle=rng.uniform(0, 2 * math.pi, b),
             # background: base colour + 3 low-frequency cosine waves per channel
             base=rng.uniform(0.2, 0.8, (b, 3)),
             wave_freq=rng.uniform(-2.0, 2.0, (b, 3, 2)), wave_phase=rng.uniform(0, 2 * math.pi, (b, 3)),
             wave_amp=rng.uniform(0.0, 0.15, (b, 3, 3)),
             # texture: stripes or checker at a random angle and frequency (cycles per image side)
             tex_checker=rng.uniform(0, 1, b) < 0.5, tex_angle=rng.uniform(0, math.pi, b),
             tex_freq=rng.uniform(2.5, 7.0, b), tex_phase=rng.uniform(0, 2 * math.pi, (b, 2)),
             tex_colour=rng.uniform(-1, 1, (b, 3)) * rng.uniform(0.04, 0.16, (b, 1)),
             # distractors, drawn behind the object: 4 thin segments and 3 dots
             seg_ends=rng.uniform(0, 1, (b, 4, 2, 2)), seg_radius=rng.uniform(0.012, 0.03, (b, 4)),
             seg_colour=rng.uniform(0, 1, (b, 4, 3)),
             dot_centre=rng.uniform(0, 1, (b, 3, 2)), dot_radius=rng.uniform(0.025, 0.05, (b, 3)),
             dot_colour=rng.uniform(0, 1, (b, 3, 3)))
    # segments at most 0.4 image sides long: second end = first end + offset
    offset = p["seg_ends"][:, :, 1] - 0.5
    p["seg_ends"][:, :, 1] = p["seg_ends"][:, :, 0] + 0.8 * offset
    # object colour: of 8 random candidates, the farthest from the background's base colour
    candidates = rng.uniform(0, 1, (b, 8, 3))
    far = np.linalg.norm(candidates - p["base"][:, None], axis=2).argmax(axis=1)
    p["colour"] = np.round(candidates[np.arange(b), far] * 255) / 255
    return p


def _scene_params(n: int, seed: int, split_id: int,
                  area_range: tuple[float, float] = AREA_RANGE) -> dict[str, Tensor]:
    blocks = [_block_params(seed, split_id, k, area_range) for k in range((n + _BLOCK - 1) // _BLOCK)]
    return {key: torch.from_numpy(np.concatenate([blk[key] for blk in blocks])[:n])
            for key in blocks[0]}


# --- rendering: all images of a chunk at once, coordinates in image sides ---------------------
def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1)  # (B,) -> (B, 1, 1), to broadcast against pixel grids (B, H, W)


def _draw_background(f: dict[str, Tensor], px: Tensor, py: Tensor, checker: Tensor) -> Tensor:
    """Low-frequency colour noise plus stripes / checker: (B, 3, H, W) float (unclamped)."""
    b, two_pi = f["base"].shape[0], 2 * math.pi
    img = f["base"].view(b, 3, 1, 1) + torch.zeros_like(px * py).unsqueeze(1)  # (B, 3, H, W)
    for k in range(3):  # three random plane waves, each with its own per-channel amplitude
        wave = torch.cos(two_pi * (_col(f["wave_freq"][:, k, 0]) * px + _col(f["wave_freq"][:, k, 1]) * py)
                         + _col(f["wave_phase"][:, k]))  # (B, H, W)
        img += f["wave_amp"][:, k].view(b, 3, 1, 1) * wave.unsqueeze(1)
    cos_t, sin_t = _col(torch.cos(f["tex_angle"])), _col(torch.sin(f["tex_angle"]))
    freq = two_pi * _col(f["tex_freq"])
    along = torch.cos(freq * (cos_t * px + sin_t * py) + _col(f["tex_phase"][:, 0]))  # (B, H, W)
    across = torch.cos(freq * (cos_t * py - sin_t * px) + _col(f["tex_phase"][:, 1]))
    tex = torch.where(_col(checker), along * across, along)
    return img + f["tex_colour"].view(b, 3, 1, 1) * (3 * tex).clamp(-1, 1).unsqueeze(1)


def _draw_distractors(img: Tensor, f: dict[str, Tensor], px: Tensor, py: Tensor) -> Tensor:
    """Paint thin segments (capsules) and dots over ``img`` (B, 3, H, W)."""
    b = img.shape[0]
    for k in range(f["seg_ends"].shape[1]):  # distance to segment AB below its radius
        ax, ay = _col(f["seg_ends"][:, k, 0, 0]), _col(f["seg_ends"][:, k, 0, 1])
        bax, bay = _col(f["seg_ends"][:, k, 1, 0]) - ax, _col(f["seg_ends"][:, k, 1, 1]) - ay
        pax, pay = px - ax, py - ay  # (B, H, W)
        h = ((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-12)).clamp(0, 1)
        hit = (pax - h * bax) ** 2 + (pay - h * bay) ** 2 < _col(f["seg_radius"][:, k]) ** 2
        img = torch.where(hit.unsqueeze(1), f["seg_colour"][:, k].view(b, 3, 1, 1), img)
    for k in range(f["dot_centre"].shape[1]):
        dist2 = (px - _col(f["dot_centre"][:, k, 0])) ** 2 + (py - _col(f["dot_centre"][:, k, 1])) ** 2
        hit = dist2 < _col(f["dot_radius"][:, k]) ** 2  # (B, H, W)
        img = torch.where(hit.unsqueeze(1), f["dot_colour"][:, k].view(b, 3, 1, 1), img)
    return img


def _object_mask(f: dict[str, Tensor], labels: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """(B, H, W) bool: u = S^-1 R(-theta) (p - c) / s, then the class's inside(u)."""
    dx, dy = px - _col(f["centre"][:, 0]), py - _col(f["centre"][:, 1])  # (B, H, W)
    cos_a, sin_a = _col(torch.cos(f["angle"])), _col(torch.sin(f["angle"]))
    root, scale = _col(torch.sqrt(f["stretch"])), _col(f["scale"])
    ux = (cos_a * dx + sin_a * dy) / (scale * root)
    uy = (cos_a * dy - sin_a * dx) * root / scale
    mask = torch.zeros(ux.shape, dtype=torch.bool)
    for label, inside in enumerate(_SHAPE_INSIDE):  # each family only on its own images
        idx = (labels == label).nonzero().squeeze(1)
        if idx.numel():
            mask[idx] = inside(ux[idx], uy[idx])
    return mask


def _render(p: dict[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
    """Render the B scenes in ``p``: images (B, 3, H, W) float in [0, 1], masks (B, H, W) bool."""
    f = {k: v.to(torch.float32) for k, v in p.items() if k not in ("labels", "tex_checker")}
    ticks = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres
    py, px = ticks.view(1, size, 1), ticks.view(1, 1, size)  # (1, H, 1), (1, 1, W)
    img = _draw_background(f, px, py, p["tex_checker"])
    img = _draw_distractors(img.clamp(0, 1), f, px, py)
    mask = _object_mask(f, p["labels"], px, py)  # the object goes on top: distractors lie behind
    b = mask.shape[0]
    return torch.where(mask.unsqueeze(1), f["colour"].view(b, 3, 1, 1), img), mask


def make_shapes(n: int, image_size: int = 32, seed: int = 0, *,
                split: Literal["train", "test"] = "train", clutter: float = 1.0,
                colour: Literal["random", "grey"] = "random",
                area: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Generate ``n`` procedural images with labels and exact object masks.

    Returns ``images`` (n, 3, H, W) uint8, ``labels`` (n,) int64 in ``[0, N_CLASSES)`` (names in
    ``SHAPE_CLASSES``) and ``masks`` (n, H, W) bool, True exactly on the pixels painted with the
    object (one flat colour; distractors lie behind it). H = W = ``image_size`` in [32, 128].

    Deterministic: the same ``(seed, split)`` gives bit-identical output, and image ``i`` is the
    same whatever ``n`` is (parameters come in blocks of 1000 images, each block holding exactly
    100 images of every class). ``split="test"`` draws from a separate stream, so the train and test
    images of one seed never coincide. The same seed at another ``image_size`` renders the same
    scenes at that resolution. ``clutter`` in [0, 1] scales the background's waves and texture and
    the distractors' width (0: a flat background); the objects stay the same.

    Two options take away what DINO sorts by before the shape (Lecture 02, section 5), leaving
    every other parameter of each scene as it was: ``colour="grey"`` paints every object the same
    light grey (220) on the same dark grey (50), so colour says nothing (it needs ``clutter=0``:
    the clutter has colours of its own); ``area`` (a number in [0.05, 0.3]) gives every object
    that fraction of the image instead of one drawn from ``AREA_RANGE`` (a few long shapes are
    shrunk to fit the frame, as at any size).
    """
    check_int("n", n, 1)
    check_int("image_size", image_size, *IMAGE_SIZE_RANGE)
    check_int("seed", seed, 0)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    if not isinstance(clutter, (int, float)) or not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be a number in [0, 1], got {clutter!r}")
    if colour not in COLOURS:
        raise ValueError(f"colour must be one of {COLOURS}, got {colour!r}")
    if colour == "grey" and clutter != 0:
        raise ValueError(f"clutter must be 0 with colour='grey' (a flat grey background), got {clutter!r}")
    if area is not None and (isinstance(area, bool) or not isinstance(area, (int, float))
                             or not AREA_OPTION_RANGE[0] <= area <= AREA_OPTION_RANGE[1]):
        raise ValueError(f"area must be None or a number in {list(AREA_OPTION_RANGE)} (the object's "
                         f"fraction of the image), got {area!r}")
    area_range = AREA_RANGE if area is None else (float(area), float(area))
    params = _scene_params(n, seed, SPLITS[split], area_range)
    if colour == "grey":
        params["base"] = torch.full_like(params["base"], GREYS[0] / 255)
        params["colour"] = torch.full_like(params["colour"], GREYS[1] / 255)
    for key in ("wave_amp", "tex_colour", "seg_radius", "dot_radius"):
        params[key] = params[key] * clutter
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    masks = torch.empty(n, image_size, image_size, dtype=torch.bool)
    chunk = max(1, _PIXELS_PER_CHUNK // image_size**2)
    for start in range(0, n, chunk):
        part = {k: v[start:start + chunk] for k, v in params.items()}
        img, mask = _render(part, image_size)
        images[start:start + chunk] = (img * 255).round_().to(torch.uint8)  # (B, 3, H, W)
        masks[start:start + chunk] = mask
    return images, params["labels"].to(torch.int64), masks

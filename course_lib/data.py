"""Data for the course: procedural "shapes" with masks, real photos, CIFAR-10 / STL-10.

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
import os
from functools import cache
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._checks import check_int, describe

SHAPE_CLASSES: tuple[str, ...] = ("disk", "square", "triangle", "plus", "ring", "star",
                                  "crescent", "ell", "bar", "hourglass")
N_CLASSES = len(SHAPE_CLASSES)
IMAGE_SIZE_RANGE = (32, 128)
AREA_RANGE = (0.12, 0.28)  # object area / image area, drawn uniformly, the same for every class
# Per-channel mean / std of make_shapes(5000, 32, seed=0) / 255 (tests/test_data.py recomputes them).
SHAPES_MEAN = (0.4980, 0.5003, 0.5021)
SHAPES_STD = (0.2488, 0.2487, 0.2499)
_BLOCK = 1000  # images per parameter block: 100 of each class, so labels are exactly balanced
_SPLITS = {"train": 0, "test": 1}
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
def _block_params(seed: int, split_id: int, block: int) -> dict[str, np.ndarray]:
    """Scene parameters of images ``block*_BLOCK ... (block+1)*_BLOCK - 1``; arrays lead with B."""
    rng = np.random.default_rng([seed, split_id, block])
    b = _BLOCK
    labels = rng.permutation(np.arange(b) % N_CLASSES)
    areas, radii = _canonical_geometry()
    stretch = rng.uniform(0.85, 1.18, b)  # anisotropic scale: x * sqrt(stretch), y / sqrt(stretch)
    scale = np.sqrt(rng.uniform(*AREA_RANGE, b) / areas[labels])
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


def _scene_params(n: int, seed: int, split_id: int) -> dict[str, Tensor]:
    blocks = [_block_params(seed, split_id, k) for k in range((n + _BLOCK - 1) // _BLOCK)]
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
                split: Literal["train", "test"] = "train", clutter: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
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
    """
    check_int("n", n, 1)
    check_int("image_size", image_size, *IMAGE_SIZE_RANGE)
    check_int("seed", seed, 0)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    if not isinstance(clutter, (int, float)) or not 0.0 <= clutter <= 1.0:
        raise ValueError(f"clutter must be a number in [0, 1], got {clutter!r}")
    params = _scene_params(n, seed, _SPLITS[split])
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


# --- tensors to model inputs -----------------------------------------------------------------
def to_float(images: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 images (..., C, H, W) in [0, 255] -> ``dtype`` in [0, 1], same shape and device."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"images must be a uint8 tensor, got "
                         f"{images.dtype if isinstance(images, Tensor) else type(images).__name__}")
    return images.to(dtype) / 255


def normalize(images: Tensor, mean: tuple[float, ...] = SHAPES_MEAN,
              std: tuple[float, ...] = SHAPES_STD) -> Tensor:
    """(x - mean) / std per channel on (..., 3, H, W); uint8 input is first mapped to [0, 1].

    Float input keeps its dtype and device; uint8 input becomes float32.
    """
    if not isinstance(images, Tensor) or images.dim() < 3 or images.shape[-3] != len(mean):
        raise ValueError(f"images must be a tensor (..., {len(mean)}, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    x = to_float(images) if images.dtype == torch.uint8 else images
    if not x.is_floating_point():
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)  # (C, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


class ShapesDataset(Dataset):
    """A map-style dataset over uint8 images (n, 3, H, W), labels (n,) and optional masks (n, H, W).

    ``transform`` (a torchvision ``transforms.v2`` callable) is applied to the uint8 image. With
    ``return_mask=True`` items are ``(image, label, mask)`` and the transform receives
    ``(tv_tensors.Image, tv_tensors.Mask)`` together, so crops and flips move the mask with the
    image (v2 colour transforms leave the mask alone). Otherwise items are ``(image, label)``,
    and the transform may return anything (e.g. a list of crops).
    """

    def __init__(self, images: Tensor, labels: Tensor, masks: Tensor | None = None, *,
                 transform: Callable | None = None, return_mask: bool = False) -> None:
        if not isinstance(images, Tensor) or images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be a uint8 tensor (n, C, H, W), got {describe(images)}")
        n = images.shape[0]
        if not isinstance(labels, Tensor) or labels.shape != (n,) or labels.dtype != torch.int64:
            raise ValueError(f"labels must be an int64 tensor of shape ({n},), got {describe(labels)}")
        if masks is not None and (not isinstance(masks, Tensor) or masks.dtype != torch.bool
                                  or masks.shape != (n, *images.shape[2:])):
            raise ValueError(f"masks must be a bool tensor of shape {(n, *images.shape[2:])}, "
                             f"got {describe(masks)}")
        if return_mask and masks is None:
            raise ValueError("return_mask=True needs masks, got masks=None")
        self.images, self.labels, self.masks = images, labels, masks
        self.transform, self.return_mask = transform, return_mask

    @classmethod
    def generate(cls, n: int, image_size: int = 32, seed: int = 0, *,
                 split: Literal["train", "test"] = "train", transform: Callable | None = None,
                 return_mask: bool = False) -> ShapesDataset:
        """A dataset over ``make_shapes(n, image_size, seed, split=split)``."""
        return cls(*make_shapes(n, image_size, seed, split=split), transform=transform,
                   return_mask=return_mask)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple:
        image, label = self.images[index], int(self.labels[index])
        if not self.return_mask:
            return (self.transform(image) if self.transform else image), label
        mask = self.masks[index]
        if self.transform:
            from torchvision import tv_tensors
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(Tensor), mask.as_subclass(Tensor)
        return image, label, mask


# --- real data through torchvision (Colab) -----------------------------------------------------
def _torchvision_dataset(cls: type, root: str | Path, download: bool, **kwargs):
    try:  # torchvision raises RuntimeError when a file is missing or fails its md5 check
        return cls(os.fspath(root), download=download, **kwargs)
    except RuntimeError as err:
        raise FileNotFoundError(f"{cls.__name__} not found (or corrupted) under {str(root)!r}: "
                                f"pass download=True to fetch it ({err})") from None


def load_cifar10(root: str | Path, train: bool = True, download: bool = False) -> tuple[Tensor, Tensor]:
    """CIFAR-10 via ``torchvision.datasets.CIFAR10``: images (n, 3, 32, 32) uint8, labels (n,) int64.

    Nothing is downloaded unless ``download=True``; torchvision checks the files' md5 on load.
    """
    from torchvision.datasets import CIFAR10
    ds = _torchvision_dataset(CIFAR10, root, download, train=train)
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # (n, H, W, 3) -> (n, 3, H, W)
    return images.contiguous(), torch.tensor(ds.targets, dtype=torch.int64)


def load_stl10(root: str | Path, split: str = "train", download: bool = False) -> tuple[Tensor, Tensor]:
    """STL-10 via ``torchvision.datasets.STL10``: images (n, 3, 96, 96) uint8, labels (n,) int64.

    ``split`` is "train", "test", "unlabeled" or "train+unlabeled" (unlabeled images have label -1).
    Nothing is downloaded unless ``download=True``; torchvision checks the files' md5 on load.
    """
    from torchvision.datasets import STL10
    if split not in STL10.splits:
        raise ValueError(f"split must be one of {STL10.splits}, got {split!r}")
    ds = _torchvision_dataset(STL10, root, download, split=split)
    return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(ds.labels.astype(np.int64))


DATASETS = ("shapes", "cifar10", "stl10")


def load_dataset(name: str = "shapes", *, split: str = "train", n: int | None = None,
                 image_size: int | None = None, seed: int = 0, root: str | Path = "data",
                 download: bool = False) -> tuple[Tensor, Tensor]:
    """One setting picks the data: ``name`` in ``DATASETS``; returns images (n, 3, H, W) uint8, labels (n,).

    "shapes" is generated (``n`` defaults to 10000 for "train", 2000 for "test"; ``image_size``
    to 32). "cifar10" / "stl10" load from ``root`` (``download=True`` fetches them); ``n`` keeps
    the first ``n`` images and ``image_size``, if given, resizes them (antialiased).
    Masks exist only for "shapes": use ``make_shapes`` to get them.
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {DATASETS}, got {name!r}")
    if n is not None:
        check_int("n", n, 1)
    if name == "shapes":
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {tuple(_SPLITS)} for 'shapes', got {split!r}")
        n = n if n is not None else (10_000 if split == "train" else 2_000)
        images, labels, _ = make_shapes(n, image_size or 32, seed, split=split)
        return images, labels
    if name == "cifar10":
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test' for 'cifar10', got {split!r}")
        images, labels = load_cifar10(root, train=split == "train", download=download)
    else:
        images, labels = load_stl10(root, split=split, download=download)
    images, labels = images[:n], labels[:n]
    if image_size is not None and image_size != images.shape[-1]:
        from torchvision.transforms.v2.functional import resize
        images = resize(images, [image_size, image_size], antialias=True)  # (n, 3, image_size, image_size)
    return images, labels


# --- a few real photographs that ship inside installed packages ---------------------------------
def _photo_paths() -> dict[str, Path]:
    import matplotlib.cbook
    import skimage.data
    skimage_dir = Path(skimage.data.__file__).parent  # these files are inside the wheel
    return {"chelsea": skimage_dir / "chelsea.png", "coffee": skimage_dir / "coffee.png",
            "astronaut": skimage_dir / "astronaut.png", "rocket": skimage_dir / "rocket.jpg",
            "grace_hopper": Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))}


def sample_photos(size: int = 224) -> dict[str, Tensor]:
    """Real photos bundled with scikit-image and matplotlib (no network): name -> (3, size, size) uint8.

    Each photo is centre-cropped to a square, then resized (antialiased).
    """
    check_int("size", size, 8, 1024)
    from PIL import Image  # a torchvision dependency; torchvision.io's decoders are deprecated
    from torchvision.transforms.v2.functional import center_crop, resize
    photos = {}
    for name, path in _photo_paths().items():
        with Image.open(path) as photo:
            pixels = np.asarray(photo.convert("RGB"))  # (H, W, 3) uint8
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, H, W)
        side = min(image.shape[-2:])
        photos[name] = resize(center_crop(image, [side, side]), [size, size], antialias=True)
    return photos

"""Data augmentation for self-supervised views: SimCLR's two views (Chen et al. 2020, section 3
and Appendix A) and DINO's multi-crop (Caron et al. 2021, section 3.1 and the official
``DataAugmentationDINO``). Lecture 01, section 2 and Lecture 02, section 2.

Each view is described once by a :class:`ViewSpec` (the random transforms, in the order they are
applied) and runs on either of two paths that draw from the same distributions:

* per sample, a torchvision ``transforms.v2`` pipeline on one uint8 image (a ``Dataset``
  transform): :func:`simclr_transform`, :class:`TwoViews`, :class:`MultiCropTransform`;
* batched, tensor ops on a whole uint8 batch on its own device, deterministic given a
  ``torch.Generator``: :func:`batched_simclr_views`, :func:`batched_multi_crop`. This is the
  path the training loop uses (augment inside ``training_step``): on a GPU the batch never leaves
  the device and no DataLoader workers are needed, and on a CPU it is 10-25x faster than a
  Python loop over v2 transforms (``benchmarks/backbone_step.py`` measures the ratio).

    view1, view2 = batched_simclr_views(images, generator=g)   # uint8 (B, 3, H, W) -> 2x (B, 3, H, W)
    crops = batched_multi_crop(images, generator=g)            # 2 x (B, 3, 32, 32) + 8 x (B, 3, 16, 16)

Where the batched path differs from torchvision: crops are continuous boxes resampled by
``roi_align`` (bilinear, averaging over the box when it shrinks, like v2's antialias) instead of
integer boxes; colour jitter applies brightness, contrast, saturation, hue in a fixed order (v2
draws a random order per image; the factors have the same distributions).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torchvision.ops import roi_align
from torchvision.transforms import v2

from ._image_ops import color_jitter, gaussian_blur, grayscale, rotate
from .data import SHAPES_MEAN, SHAPES_STD

# ITU-R 601 luma, the weights of torchvision's rgb_to_grayscale (and PIL's "L" mode).
_SOLARIZE_THRESHOLD = 128 / 255  # PIL ImageOps.solarize default, used by DINO and BYOL


# --- one view's random transforms ----------------------------------------------------------------
@dataclass(frozen=True)
class ViewSpec:
    """The random transforms of one view, applied in this order: resized crop (``scale`` of the
    image area, aspect ratio in ``ratio``) -> horizontal flip -> colour jitter with probability
    ``jitter_p`` -> grayscale -> Gaussian blur -> solarisation, and a rotation by an angle drawn
    from ``rotation`` (degrees, border pixels repeated) after the flip when that range is not
    (0, 0): the shapes are drawn at every angle, so a rotated view is still the same object.
    Defaults: SimCLR at strength 0.5.
    """

    size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    rotation: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size <= 0:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if not self.rotation[0] <= self.rotation[1]:
            raise ValueError(f"rotation must satisfy low <= high (degrees), got {self.rotation}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")

    @property
    def blur_kernel_size(self) -> int:
        """Odd kernel about 10% of the view's side (SimCLR, Appendix A), at least 3."""
        return max(3, 2 * (self.size // 20) + 1)


def simclr_view_spec(image_size: int = 32, *, strength: float = 0.5,
                     scale: tuple[float, float] = (0.2, 1.0), blur: bool | None = None,
                     rotation: tuple[float, float] = (0.0, 0.0), grayscale_p: float = 0.2) -> ViewSpec:
    """SimCLR's view (Chen et al. 2020, Appendix A) for ``image_size`` px images.

    Colour jitter at strength s: brightness = contrast = saturation = 0.8 s, hue = 0.2 s, applied
    with p = 0.8; grayscale with p = ``grayscale_p`` (SimCLR's 0.2). s = 0.5 (0.4, 0.4, 0.4, 0.1) is SimCLR's CIFAR-10 setting
    (Appendix B.9). Blur (p = 0.5, sigma in [0.1, 2.0] px) only for ``image_size >= 64`` unless
    ``blur`` says otherwise: SimCLR omits it on 32 px CIFAR. Crop scale: SimCLR's Appendix A
    samples 8-100% of the area; we default to 20-100% as MoCo v2 (Chen et al. 2020b) and common
    CIFAR reproductions do, since 8% of a 32 px image is a 9 px patch.
    """
    if not strength >= 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    if 0.2 * strength > 0.5:
        raise ValueError(f"strength must be <= 2.5 (hue = 0.2 * strength <= 0.5), got {strength}")
    blur = image_size >= 64 if blur is None else blur
    return ViewSpec(size=image_size, scale=scale, brightness=0.8 * strength,
                    contrast=0.8 * strength, saturation=0.8 * strength, hue=0.2 * strength,
                    blur_p=0.5 if blur else 0.0, rotation=rotation, grayscale_p=grayscale_p)


def dino_view_specs(global_size: int = 32, local_size: int = 16, *,
                    global_scale: tuple[float, float] = (0.4, 1.0),
                    local_scale: tuple[float, float] = (0.05, 0.4),
                    blur: bool | None = None) -> tuple[ViewSpec, ViewSpec, ViewSpec]:
    """DINO's (global 1, global 2, local) views, from ``DataAugmentationDINO`` (Caron et al. 2021).

    Colour jitter (0.4, 0.4, 0.2, 0.1) with p = 0.8, grayscale p = 0.2, flips, then the
    asymmetric part: global 1 always blurred, global 2 blurred with p = 0.1 and solarised with
    p = 0.2, locals blurred with p = 0.5. DINO's sizes are 224 / 96 px with scales (0.4, 1) and
    (0.05, 0.4); ours default to 32 / 16 px (the same 0.43-0.5 size ratio). DINO's blur sigma is
    0.1-2 px; on 32 px images it erases the object (and SimCLR skips blur on CIFAR), so by default
    blur is used only when ``global_size >= 64``.
    """
    blur = global_size >= 64 if blur is None else blur
    base = ViewSpec(size=global_size, scale=global_scale, brightness=0.4, contrast=0.4,
                    saturation=0.2, hue=0.1)
    global1 = replace(base, blur_p=1.0 if blur else 0.0)
    global2 = replace(base, blur_p=0.1 if blur else 0.0, solarize_p=0.2)
    local = replace(base, size=local_size, scale=local_scale, blur_p=0.5 if blur else 0.0)
    return global1, global2, local


# --- per-sample path: torchvision transforms v2 ----------------------------------------------------
def v2_transform(spec: ViewSpec, *, mean: tuple[float, ...] = SHAPES_MEAN,
                 std: tuple[float, ...] = SHAPES_STD) -> v2.Compose:
    """A v2 pipeline for one view of one uint8 image (C, H, W) -> normalised float32 (C, S, S)."""
    steps = [v2.RandomResizedCrop(spec.size, scale=spec.scale, ratio=spec.ratio, antialias=True),
             v2.RandomHorizontalFlip(p=spec.flip_p),
             *([v2.RandomRotation(spec.rotation)] if spec.rotation != (0.0, 0.0) else []),
             v2.RandomApply([v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation,
                                            spec.hue)], p=spec.jitter_p),
             v2.RandomGrayscale(p=spec.grayscale_p)]
    if spec.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(spec.blur_kernel_size, spec.blur_sigma)],
                                    p=spec.blur_p))
    if spec.solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=spec.solarize_p))  # uint8 scale
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def simclr_transform(image_size: int = 32, *, strength: float = 0.5,
                     scale: tuple[float, float] = (0.2, 1.0), blur: bool | None = None,
                     mean: tuple[float, ...] = SHAPES_MEAN,
                     std: tuple[float, ...] = SHAPES_STD) -> v2.Compose:
    """One SimCLR view of a uint8 image, per sample (see :func:`simclr_view_spec`)."""
    spec = simclr_view_spec(image_size, strength=strength, scale=scale, blur=blur)
    return v2_transform(spec, mean=mean, std=std)


class TwoViews:
    """Wrap a per-sample transform so a dataset returns two independent views ``(v1, v2)``."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)


class MultiCropTransform:
    """DINO multi-crop for one uint8 image: a list of V = 2 + ``n_local_crops`` views, the two
    globals (``global_size``) first, then the locals (``local_size``). See :func:`dino_view_specs`
    for where the numbers come from; DINO's official default is 8 local crops."""

    def __init__(self, global_size: int = 32, local_size: int = 16, n_local_crops: int = 8,
                 global_scale: tuple[float, float] = (0.4, 1.0),
                 local_scale: tuple[float, float] = (0.05, 0.4), *, blur: bool | None = None,
                 mean: tuple[float, ...] = SHAPES_MEAN, std: tuple[float, ...] = SHAPES_STD) -> None:
        if not isinstance(n_local_crops, int) or n_local_crops < 0:
            raise ValueError(f"n_local_crops must be an int >= 0, got {n_local_crops!r}")
        self.specs = dino_view_specs(global_size, local_size, global_scale=global_scale,
                                     local_scale=local_scale, blur=blur)
        self.n_local_crops = n_local_crops
        self.global1, self.global2, self.local = (v2_transform(s, mean=mean, std=std)
                                                  for s in self.specs)

    def __call__(self, image) -> list[Tensor]:
        return ([self.global1(image), self.global2(image)]
                + [self.local(image) for _ in range(self.n_local_crops)])


# --- batched path: tensor ops on the batch's device ------------------------------------------------
def _check_batch(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a tensor (B, 3, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 in [0, 255] or float in [0, 1], got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image, got B = 0")


def _uniform(low: Tensor | float, high: Tensor | float, shape: tuple[int, ...],
             generator: torch.Generator | None) -> Tensor:
    """Uniform draws from ``generator`` (on its device, CPU by default), returned on the CPU: the
    same generator gives the same augmentations whatever device the images are on."""
    device = generator.device if generator is not None else torch.device("cpu")
    return low + (high - low) * torch.rand(shape, generator=generator, device=device).cpu()


def _per_row(specs: list[ViewSpec], n: int, name: str) -> Tensor:
    """Each view's ``name`` repeated over its B images: (V * B,), or (V * B, 2) for ranges."""
    return torch.tensor([getattr(s, name) for s in specs]).repeat_interleave(n, dim=0)


def _crop_boxes(specs: list[ViewSpec], n: int, height: int, width: int,
                generator: torch.Generator | None) -> Tensor:
    """RandomResizedCrop boxes (V * B, 4) as x1, y1, x2, y2 in pixels, torchvision's sampler
    vectorised: 10 tries of (area fraction, log aspect ratio), keep the first box that fits,
    else fall back to the whole image clipped to the ratio range, centred."""
    rows, tries = len(specs) * n, 10
    scale_lo, scale_hi = _per_row(specs, n, "scale").unbind(1)            # (V*B,) each
    ratio = torch.tensor([s.ratio for s in specs]).repeat_interleave(n, 0)  # (V*B, 2)
    log_lo, log_hi = ratio.log().unbind(1)
    u = _uniform(0.0, 1.0, (rows, tries, 4), generator)                   # (V*B, 10, 4)
    area = height * width * (scale_lo[:, None] + (scale_hi - scale_lo)[:, None] * u[..., 0])
    aspect = (log_lo[:, None] + (log_hi - log_lo)[:, None] * u[..., 1]).exp()
    w, h = (area * aspect).sqrt(), (area / aspect).sqrt()                 # (V*B, 10)
    fits = (w <= width) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)                         # first box that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]              # (V*B,)
    u_x, u_y = u[..., 2].gather(1, first)[:, 0], u[..., 3].gather(1, first)[:, 0]
    fallback_w = torch.minimum(torch.full_like(w, width), height * ratio[:, 1])
    fallback_h = torch.minimum(torch.full_like(h, height), width / ratio[:, 0])
    none_fit = ~fits.any(dim=1)
    w, h = torch.where(none_fit, fallback_w, w), torch.where(none_fit, fallback_h, h)
    u_x, u_y = torch.where(none_fit, 0.5, u_x), torch.where(none_fit, 0.5, u_y)
    x1, y1 = (width - w) * u_x, (height - h) * u_y
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)                    # (V*B, 4)


def _draw_params(specs: list[ViewSpec], n: int, height: int, width: int,
                 generator: torch.Generator | None) -> dict[str, Tensor]:
    """Every random number of V * B views, drawn in a fixed order on the CPU: crop boxes
    (V*B, 4), coins (V*B,) bool, jitter factors (V*B,), hue shifts, blur sigmas."""
    rows = len(specs) * n

    def coin(name: str) -> Tensor:                       # True with each view's probability
        return _uniform(0.0, 1.0, (rows,), generator) < _per_row(specs, n, name)

    def factor(name: str) -> Tensor:                     # uniform in [max(0, 1 - a), 1 + a]
        amount = _per_row(specs, n, name)
        return _uniform((1 - amount).clamp(min=0), 1 + amount, (rows,), generator)

    sigma_lo, sigma_hi = _per_row(specs, n, "blur_sigma").unbind(1)
    hue = _per_row(specs, n, "hue")
    params = {"boxes": _crop_boxes(specs, n, height, width, generator), "flip": coin("flip_p"),
              "jitter": coin("jitter_p"), "brightness": factor("brightness"),
              "contrast": factor("contrast"), "saturation": factor("saturation"),
              "hue_shift": _uniform(-hue, hue, (rows,), generator), "grayscale": coin("grayscale_p"),
              "blur": coin("blur_p"), "sigma": _uniform(sigma_lo, sigma_hi, (rows,), generator),
              "solarize": coin("solarize_p")}
    if any(s.rotation != (0.0, 0.0) for s in specs):   # drawn last: other streams stay as they were
        low, high = _per_row(specs, n, "rotation").unbind(1)
        params["angle"] = _uniform(low, high, (rows,), generator)
    return params


def _augment_same_size(x: Tensor, specs: list[ViewSpec], generator: torch.Generator | None) -> Tensor:
    """Views of float images x (B, C, H, W) in [0, 1], one per spec, all of the same output size:
    (V * B, C, S, S), view-major (rows v * B ... (v + 1) * B - 1 are view v)."""
    n, _, height, width = x.shape
    size = specs[0].size
    params = _draw_params(specs, n, height, width, generator)
    per_row = {k: v.to(x.device).view(-1, 1, 1, 1) for k, v in params.items() if k != "boxes"}
    image_index = torch.arange(n, device=x.device, dtype=x.dtype).repeat(len(specs))[:, None]
    boxes = torch.cat([image_index, params["boxes"].to(x.device, x.dtype)], dim=1)  # (V*B, 5)
    out = roi_align(x, boxes, (size, size), sampling_ratio=-1, aligned=True)      # (V*B, C, S, S)
    out = torch.where(per_row["flip"], out.flip(-1), out)
    if "angle" in params:
        out = rotate(out, params["angle"].to(x.device, x.dtype))
    hue_shift = per_row["hue_shift"] if any(s.hue > 0 for s in specs) else None
    jittered = color_jitter(out, per_row["brightness"], per_row["contrast"],
                             per_row["saturation"], hue_shift)
    out = torch.where(per_row["jitter"], jittered, out)
    out = torch.where(per_row["grayscale"], grayscale(out).expand_as(out), out)
    if any(s.blur_p > 0 for s in specs):
        sigma = params["sigma"].to(x.device, x.dtype)                           # (V*B,)
        blurred = gaussian_blur(out, sigma, specs[0].blur_kernel_size)
        out = torch.where(per_row["blur"], blurred, out)
    if any(s.solarize_p > 0 for s in specs):
        inverted = (per_row["solarize"] & (out >= _SOLARIZE_THRESHOLD)).to(out.dtype)
        out = out + inverted * (1 - 2 * out)                                    # x -> 1 - x there
    return out


def augment_batch(images: Tensor, specs: list[ViewSpec], *,
                  mean: tuple[float, ...] = SHAPES_MEAN, std: tuple[float, ...] = SHAPES_STD,
                  generator: torch.Generator | None = None) -> list[Tensor]:
    """One batched view of every image per spec: uint8 (B, 3, H, W) or float in [0, 1] ->
    list of V normalised tensors (B, 3, S_v, S_v) on the input's device.

    Output is float32 for uint8 input, else the input's dtype. Every random number comes from
    ``generator`` (CPU unless you pass another), in a fixed order, so a seeded generator gives
    the same views on CPU and CUDA. Views of the same size share one crop-and-resample call.
    """
    _check_batch(images)
    if not specs or not all(isinstance(s, ViewSpec) for s in specs):
        raise ValueError("specs must be a non-empty list of ViewSpec")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values, got {len(mean)} and {len(std)}")
    out_dtype = torch.float32 if images.dtype == torch.uint8 else images.dtype
    with torch.autocast(images.device.type, enabled=False):  # keep the pixels in float32
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        views: list[Tensor | None] = [None] * len(specs)
        for size in dict.fromkeys(s.size for s in specs):                # each size once, in order
            idx = [i for i, s in enumerate(specs) if s.size == size]
            out = _augment_same_size(x, [specs[i] for i in idx], generator)  # (len(idx)*B, ...)
            for i, view in zip(idx, out.chunk(len(idx))):
                views[i] = view
        m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
        return [((v - m) / s).to(out_dtype) for v in views]


def batched_simclr_views(images: Tensor, *, image_size: int | None = None, strength: float = 0.5,
                         scale: tuple[float, float] = (0.2, 1.0), blur: bool | None = None,
                         rotation: tuple[float, float] = (0.0, 0.0), grayscale_p: float = 0.2,
                         mean: tuple[float, ...] = SHAPES_MEAN, std: tuple[float, ...] = SHAPES_STD,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two independent SimCLR views of a batch (see :func:`simclr_view_spec`):
    (B, 3, H, W) -> two normalised (B, 3, S, S), S = ``image_size`` or the input's H."""
    _check_batch(images)
    spec = simclr_view_spec(image_size or images.shape[-2], strength=strength, scale=scale,
                            blur=blur, rotation=rotation, grayscale_p=grayscale_p)
    view1, view2 = augment_batch(images, [spec, spec], mean=mean, std=std, generator=generator)
    return view1, view2


def batched_multi_crop(images: Tensor, *, global_size: int = 32, local_size: int = 16,
                       n_local_crops: int = 8, global_scale: tuple[float, float] = (0.4, 1.0),
                       local_scale: tuple[float, float] = (0.05, 0.4), blur: bool | None = None,
                       mean: tuple[float, ...] = SHAPES_MEAN, std: tuple[float, ...] = SHAPES_STD,
                       generator: torch.Generator | None = None) -> list[Tensor]:
    """DINO multi-crop of a batch: [global 1, global 2] (B, 3, G, G) + ``n_local_crops`` locals
    (B, 3, L, L), the same distributions as :class:`MultiCropTransform`."""
    if not isinstance(n_local_crops, int) or n_local_crops < 0:
        raise ValueError(f"n_local_crops must be an int >= 0, got {n_local_crops!r}")
    global1, global2, local = dino_view_specs(global_size, local_size, global_scale=global_scale,
                                              local_scale=local_scale, blur=blur)
    return augment_batch(images, [global1, global2] + [local] * n_local_crops, mean=mean, std=std,
                         generator=generator)

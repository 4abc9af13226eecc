"""Device, seed, Colab detection and the CPU/GPU scale setting every notebook reads.

A notebook's settings cell calls ``settings = course_settings()`` once; everything that
depends on the machine (device, scale, AMP) comes from that object, so a student can
override one field and rerun the notebook top to bottom.
"""
from __future__ import annotations

import ctypes
import os
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager, Literal

import numpy as np
import torch

Scale = Literal["cpu", "gpu"]
SCALES: tuple[str, ...] = ("cpu", "gpu")
SCALE_ENV = "COURSE_SCALE"  # "cpu" or "gpu"; overrides the automatic choice
DEVICE_ENV = "COURSE_DEVICE"  # e.g. "cpu", "cuda", "cuda:1"


def at_scale(scales: dict, scale: str, *, seed: int | None = None):
    """``scales[scale]`` from a lab's table ``{"cpu": ..., "gpu": ...}``, with a clear error for a
    scale the table lacks. With ``seed``, the entry's ``train`` (a ``TrainConfig``) gets it."""
    if not isinstance(scales, dict) or set(scales) != set(SCALES):
        raise ValueError(f"scales must map exactly {SCALES} to settings, got {sorted(scales)}")
    if scale not in scales:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    setup = scales[scale]
    if seed is not None:
        from dataclasses import replace
        setup = replace(setup, train=replace(setup.train, seed=seed))
    return setup


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab``)."""
    return "google.colab" in sys.modules


def default_device() -> torch.device:
    """``$COURSE_DEVICE`` if set, else CUDA when available, else CPU."""
    name = os.environ.get(DEVICE_ENV)
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_scale(device: torch.device | None = None) -> Scale:
    """``$COURSE_SCALE`` if set, else "gpu" on a CUDA device and "cpu" otherwise."""
    value = os.environ.get(SCALE_ENV)
    if value is not None:
        if value not in ("cpu", "gpu"):
            raise ValueError(f"${SCALE_ENV} must be 'cpu' or 'gpu', got {value!r}")
        return value  # type: ignore[return-value]
    device = device if device is not None else default_device()
    return "gpu" if device.type == "cuda" else "cpu"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def amp_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype | None:
    """The autocast dtype on ``device``, or None for full precision.

    By default (``dtype=None``): None off CUDA (CPU results stay exact and deterministic);
    bfloat16 on a GPU that computes it natively (Ampere and newer: A100, H100, L4); float16
    otherwise (a T4, Colab's free GPU, only emulates bfloat16, several times slower), which
    needs a gradient scaler (:func:`grad_scaler`). ``dtype="bfloat16"`` or ``"float16"`` forces
    that dtype on any device, the CPU included (how the tests run both paths without a GPU).
    """
    if dtype is not None:
        if dtype not in AMP_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(AMP_DTYPES)} or None, got {dtype!r}")
        return AMP_DTYPES[dtype]
    if device.type != "cuda":
        return None
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native else torch.float16


def autocast(device: torch.device, enabled: bool = True, dtype: str | None = None) -> ContextManager:
    """Autocast to :func:`amp_dtype` ``(device, dtype)``; a no-op when that is None or not ``enabled``."""
    chosen = amp_dtype(device, dtype) if enabled else None
    return nullcontext() if chosen is None else torch.autocast(device.type, dtype=chosen)


def grad_scaler(device: torch.device, enabled: bool = True,
                dtype: str | None = None) -> torch.amp.GradScaler:
    """A gradient scaler that is active only when autocast runs in float16: float16 gradients of
    small losses underflow to zero unless the loss is scaled up first (bfloat16 has float32's
    exponent range and needs none). Inactive, its ``scale``, ``unscale_``, ``step`` and ``update``
    pass through, so one training loop serves every case."""
    float16 = enabled and amp_dtype(device, dtype) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=float16)


@dataclass
class Settings:
    """What a notebook's settings cell fixes: scale, device, seed."""

    scale: Scale
    device: torch.device
    seed: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.scale == "gpu"

    def pick(self, cpu, gpu):
        """Return ``cpu`` or ``gpu`` by scale: ``n_steps = settings.pick(cpu=300, gpu=5000)``."""
        return gpu if self.is_gpu else cpu


def course_settings(scale: Scale | None = None, device: str | torch.device | None = None,
                    seed: int = 0) -> Settings:
    """The settings a notebook runs with; arguments override the environment and the defaults."""
    dev = torch.device(device) if device is not None else default_device()
    if scale is None:
        scale = default_scale(dev)
    if scale not in ("cpu", "gpu"):
        raise ValueError(f"scale must be 'cpu' or 'gpu', got {scale!r}")
    seed_everything(seed)
    return Settings(scale=scale, device=dev, seed=seed)


def median_seconds(closures: dict, repeats: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Time each closure once per round, round-robin, for ``repeats`` rounds after one warm-up
    round; return each one's median seconds. Round-robin spreads slow moments of a shared machine
    over all closures alike, so their ratios are fairer than back-to-back loops (CUDA is
    synchronised around each call)."""
    import time
    from statistics import median
    device = torch.device(device)
    times: dict[str, list[float]] = {name: [] for name in closures}
    for round_ in range(repeats + 1):
        for name, fn in closures.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: median(t) for name, t in times.items()}



def release_freed_memory() -> bool:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``); False where there is
    no glibc (macOS, Windows, musl), where it does nothing.

    A training step whose tensors change size from step to step (DINOv2 sends only the masked
    tokens, a different number each step, through its head) leaves glibc's heap fragmented: the
    memory is freed but not returned, and a CPU process grows by about 15 MB a step (14 GB after
    1000 steps of the shipped recipe). Trimming after each step keeps it flat for about 4 % of
    the step's time; CUDA memory is not concerned."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True

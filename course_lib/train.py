"""The one training loop every method uses (nanoGPT-style: read it in a minute).

A method is an ``nn.Module`` subclassing :class:`Method` that supplies

    training_step(images, labels, step) -> (loss, metrics)   # images uint8 (B, C, H, W)
    after_step(step)                                         # e.g. the EMA teacher update

and the loop does the rest: batches drawn from an in-memory uint8 tensor, AdamW on the
parameters that require grad (no weight decay on biases and norms), a cosine learning rate with
linear warm-up, gradient clipping (one norm over every gradient, or each parameter's alone as in
DINO's code), autocast on CUDA only (bfloat16, or float16 with a gradient scaler on GPUs without
native bfloat16), a tqdm bar, a metrics history, checkpoints. Augmentation happens inside
``training_step`` on the batch's device, so the same code is fast on a GPU and needs no
DataLoader workers. :func:`track_knn` hooks a held-out k-NN into ``after_step``, to follow what
a run learns while it trains.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from .evaluate import evaluate_backbone
from .runtime import AMP_DTYPES, autocast, grad_scaler
from .schedules import cosine_schedule

Tensor = torch.Tensor
GRAD_CLIP_MODES = ("global", "per_tensor")


class Method(nn.Module):
    """Base class of a trainable method: override ``training_step`` (and ``after_step``)."""

    def training_step(self, images: Tensor, labels: Tensor | None,
                      step: int) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after each optimizer step (EMA updates, schedules). Default: nothing."""


@dataclass
class TrainConfig:
    """Hyperparameters of the shared loop. ``lr`` is the peak learning rate after warm-up."""

    steps: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_steps: int = 20
    weight_decay: float = 0.05
    grad_clip: float | None = 3.0  # DINO clips at 3.0 (Caron et al. 2021, appendix)
    # "global": one norm over every gradient (torch's clip_grad_norm_); "per_tensor": each
    # parameter's gradient on its own, as DINO's and iBOT's utils.clip_gradients do
    grad_clip_mode: str = "global"
    amp: bool = True  # autocast on CUDA: bfloat16 where native, float16 with a gradient scaler otherwise
    amp_dtype: str | None = None  # force "bfloat16" or "float16" (any device, the CPU included)
    seed: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.lr <= 0 or self.min_lr < 0:
            raise ValueError(f"lr must be positive and min_lr non-negative, got {self.lr}, {self.min_lr}")
        if self.log_every <= 0:
            raise ValueError(f"log_every must be positive, got {self.log_every}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.grad_clip_mode not in GRAD_CLIP_MODES:
            raise ValueError(f"grad_clip_mode must be one of {GRAD_CLIP_MODES}, got {self.grad_clip_mode!r}")
        if self.amp_dtype not in (None, *AMP_DTYPES):
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)} or None, got {self.amp_dtype!r}")


@dataclass
class History:
    """Metrics logged every ``log_every`` steps: ``history["loss"]`` is a list of floats."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, values: dict[str, float]) -> None:
        self.steps.append(step)
        for key, value in values.items():
            self.metrics.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.metrics[key]

    def last(self, key: str) -> float:
        return self.metrics[key][-1]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decay on weight matrices, none on biases, norms and tokens (ndim <= 1)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed", "reg_token"))
         else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def clip_gradients(parameters, max_norm: float, mode: str = "global") -> None:
    """Scale gradients down to norm ``max_norm``: all of them together (``"global"``, one factor
    for every parameter) or each parameter's on its own (``"per_tensor"``, DINO's and iBOT's
    ``utils.clip_gradients``: a head whose gradient spikes is held back without slowing the ViT)."""
    if mode == "global":
        nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    if mode != "per_tensor":
        raise ValueError(f"mode must be one of {GRAD_CLIP_MODES}, got {mode!r}")
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_((max_norm / (p.grad.norm() + 1e-6)).clamp(max=1.0))


def _batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Yield ``steps`` index batches that sweep random permutations of range(n) (epochs)."""
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def train(method: Method, images: Tensor, config: TrainConfig, *, labels: Tensor | None = None,
          device: torch.device | str | None = None,
          optimizer: torch.optim.Optimizer | None = None, history: History | None = None,
          start_step: int = 0) -> History:
    """Train ``method`` on ``images`` uint8 (n, C, H, W) for ``config.steps`` steps; return the
    history. Pass ``optimizer``, ``history`` and ``start_step`` from :func:`load_checkpoint` to
    resume."""
    if not isinstance(method, Method):
        raise ValueError(f"method must subclass course_lib.train.Method, got {type(method).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError("images must be a uint8 tensor (n, C, H, W), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    if labels is not None and (labels.dim() != 1 or labels.shape[0] != images.shape[0]):
        raise ValueError(f"labels must be (n,) = ({images.shape[0]},), got {tuple(labels.shape)}")
    if config.batch_size > images.shape[0]:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {images.shape[0]} images")
    device = torch.device(device) if device is not None else next(method.parameters()).device
    method.to(device).train()
    optimizer = optimizer or torch.optim.AdamW(param_groups(method, config.weight_decay),
                                               lr=config.lr, betas=(0.9, 0.95))
    lr_schedule = cosine_schedule(config.lr, config.min_lr, config.steps,
                                  warmup_steps=config.warmup_steps)
    history = history if history is not None else History()
    generator = torch.Generator().manual_seed(config.seed)
    batches = _batch_indices(images.shape[0], config.batch_size, config.steps, generator)
    scaler = grad_scaler(device, enabled=config.amp, dtype=config.amp_dtype)
    bar = tqdm(range(config.steps), disable=not config.progress, desc=type(method).__name__,
               mininterval=1.0)
    for step, idx in zip(bar, batches):
        if step < start_step:
            continue  # resuming: replay the generator so batches match an uninterrupted run
        for group in optimizer.param_groups:
            group["lr"] = float(lr_schedule[step])
        x = images[idx].to(device, non_blocking=True)
        y = labels[idx].to(device) if labels is not None else None
        with autocast(device, enabled=config.amp, dtype=config.amp_dtype):
            loss, metrics = method.training_step(x, y, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower lr or check the step")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        if config.grad_clip is not None:
            clip_gradients(method.parameters(), config.grad_clip, config.grad_clip_mode)
        scaler.step(optimizer)      # skipped when a float16 gradient overflowed
        scaler.update()
        method.after_step(step)
        if step % config.log_every == 0 or step == config.steps - 1:
            values = {"loss": loss.item(), "lr": float(lr_schedule[step]), **metrics}
            history.log(step, values)
            bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
    return history


def save_checkpoint(path: str | Path, method: nn.Module, *, optimizer=None, step: int = 0,
                    history: History | None = None, config: TrainConfig | None = None) -> None:
    """Write model (and optimizer) state, the step reached, history and config to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": method.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "step": step,
                "history": asdict(history) if history is not None else None,
                "config": asdict(config) if config is not None else None}, path)


def load_checkpoint(path: str | Path, method: nn.Module, *, optimizer=None,
                    map_location: str | torch.device = "cpu") -> tuple[int, History]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``method`` (and ``optimizer``);
    return ``(step, history)``."""
    state = torch.load(Path(path), map_location=map_location, weights_only=True)
    method.load_state_dict(state["model"])
    if optimizer is not None and state["optimizer"] is not None:
        optimizer.load_state_dict(state["optimizer"])
    history = History(**state["history"]) if state["history"] else History()
    return int(state["step"]), history


def steps_for_epochs(n_images: int, batch_size: int, epochs: float) -> int:
    """Number of optimizer steps for ``epochs`` passes over ``n_images``."""
    return max(1, math.ceil(epochs * n_images / batch_size))


def track_knn(method: Method, backbone: nn.Module, shapes: tuple, pooling: str, every: int,
              device: torch.device | str = "cpu") -> dict:
    """Make ``method.after_step`` also measure ``backbone``'s held-out k-NN on ``shapes`` (train
    images, labels, test images, labels) after every ``every`` steps. Returns the record it fills:
    ``steps``, ``knn`` and ``seconds`` (the time spent measuring)."""
    record: dict = {"steps": [], "knn": [], "seconds": 0.0}
    after_step = method.after_step

    def after_step_and_measure(step: int) -> None:
        after_step(step)
        if (step + 1) % every == 0:
            start = time.perf_counter()
            record["steps"].append(step + 1)
            record["knn"].append(evaluate_backbone(backbone, *shapes, pooling=pooling, probe_epochs=0,
                                                   diagnostics=False, device=device)["knn_accuracy"])
            record["seconds"] += time.perf_counter() - start
    method.after_step = after_step_and_measure
    return record

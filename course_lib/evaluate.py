"""Frozen-feature evaluation: feature extraction, weighted k-NN and a linear probe.

``knn_accuracy`` follows the DINO evaluation (Caron et al. 2021, section 4.1 and the official
``eval_knn.py``, itself from Wu et al. 2018): L2-normalised features, cosine similarity to every
training feature, the k nearest neighbours vote for their class with weight exp(sim / T).
Everything runs on the device of the features. Lecture 07 compares methods with these.
``attention_jaccard`` scores where a ViT's CLS token looks: its attention thresholded the way the
DINO paper does (keep the patches holding 60 % of the mass), against the object masks.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import cls_attention
from .data import normalize

Tensor = torch.Tensor


def _check_features(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor) -> None:
    for name, x in (("train_x", train_x), ("test_x", test_x)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor (n, D), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    for name, y, x in (("train_y", train_y, train_x), ("test_y", test_y, test_x)):
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{name} must be a 1-D tensor with one label per row of the features "
                             f"({x.shape[0]}), got {tuple(y.shape) if isinstance(y, torch.Tensor) else y!r}")
        if y.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x and test_x must have the same width, got {train_x.shape[1]} "
                         f"and {test_x.shape[1]}")


@torch.no_grad()
def extract_features(model: nn.Module, images: Tensor, *, batch_size: int = 512,
                     transform: Callable[[Tensor], Tensor] | None = None,
                     device: torch.device | str | None = None) -> Tensor:
    """Run ``model`` in eval mode over ``images`` (n, C, H, W) in batches; return (n, D) float32.

    ``transform`` maps a uint8 batch to the model's input (e.g. ``course_lib.data.normalize``);
    features come back on ``device`` (default: the model's device).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a 4-D tensor (n, C, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        if transform is not None:
            x = transform(x)
        chunks.append(model(x).float())
    model.train(was_training)
    return torch.cat(chunks)


@torch.no_grad()
def knn_accuracy(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                 k: int = 20, temperature: float = 0.07, *, chunk_size: int = 1024) -> float:
    """Top-1 accuracy of the weighted cosine k-NN classifier used to evaluate DINO.

    score_c(x) = sum_{i in top-k(x)} exp(cos(x, x_i) / T) * [y_i = c];   prediction = argmax_c

    Shapes: train_x (n, D), train_y (n,), test_x (m, D), test_y (m,). Defaults k = 20, T = 0.07
    are the DINO paper's (section 4.1).
    """
    _check_features(train_x, train_y, test_x, test_y)
    if not isinstance(k, int) or not 1 <= k <= train_x.shape[0]:
        raise ValueError(f"k must be an int in [1, n_train={train_x.shape[0]}], got {k!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    train_y = train_y.to(train_x.device)
    test_y = test_y.to(train_x.device)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    train_n = F.normalize(train_x.float(), dim=1)
    correct = 0
    for start in range(0, test_x.shape[0], chunk_size):
        q = F.normalize(test_x[start:start + chunk_size].float().to(train_x.device), dim=1)
        sim, idx = (q @ train_n.T).topk(k, dim=1)                      # (m, k)
        weights = (sim / temperature).exp()                           # (m, k)
        votes = torch.zeros(q.shape[0], n_classes, device=q.device)
        votes.scatter_add_(1, train_y[idx], weights)                  # (m, n_classes)
        correct += (votes.argmax(1) == test_y[start:start + chunk_size]).sum().item()
    return correct / test_x.shape[0]


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                 epochs: int = 100, lr: float = 0.1, weight_decay: float = 1e-4,
                 batch_size: int = 1024, seed: int = 0) -> float:
    """Train a linear classifier on frozen features; return its top-1 test accuracy.

    Features are standardised with the training mean/std (a BatchNorm without affine, as the MAE
    linear probe does, He et al. 2022, appendix A.2), then a single ``nn.Linear`` is trained with
    SGD + momentum, cosine-decayed learning rate, on the device of the features. Deterministic
    for a given ``seed`` on CPU.
    """
    _check_features(train_x, train_y, test_x, test_y)
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    device = train_x.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mean, std = train_x.float().mean(0), train_x.float().std(0).clamp_min(1e-6)
    xtr = (train_x.float() - mean) / std
    xte = (test_x.float().to(device) - mean) / std
    ytr, yte = train_y.to(device), test_y.to(device)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(xtr.shape[1], n_classes).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    n = xtr.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(head(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return (head(xte).argmax(1) == yte).float().mean().item()


def evaluate_backbone(backbone: nn.Module, train_images: Tensor, train_labels: Tensor,
                      test_images: Tensor, test_labels: Tensor, *,
                      transform: Callable[[Tensor], Tensor] | None = None, k: int = 20,
                      probe: bool = True, device: torch.device | str | None = None) -> dict[str, float]:
    """Frozen-feature report of a backbone on uint8 images: k-NN and linear-probe accuracy, plus
    the representation diagnostics (uniformity, effective rank, mean per-dimension std).

    ``transform`` maps a uint8 batch to the backbone input; default: the shapes dataset's
    ``course_lib.data.normalize``.
    """
    from .diagnostics import effective_rank, feature_std, uniformity
    transform = transform if transform is not None else normalize
    train_x = extract_features(backbone, train_images, transform=transform, device=device)
    test_x = extract_features(backbone, test_images, transform=transform, device=device)
    train_y, test_y = train_labels.to(train_x.device), test_labels.to(train_x.device)
    report = {"knn_accuracy": knn_accuracy(train_x, train_y, test_x, test_y, k=k),
              "uniformity": uniformity(test_x[:1000]).item(),
              "effective_rank": effective_rank(test_x).item(),
              "feature_std": feature_std(test_x).mean().item()}
    if probe:
        report["linear_probe"] = linear_probe(train_x, train_y, test_x, test_y)
    return report


# --- attention that finds the object (Lecture 02; DINO, Caron et al. 2021, section 4.2.1) --------
def attention_masks(attention: Tensor, mass: float = 0.6) -> Tensor:
    """Keep, per map, the fewest patches holding ``mass`` of its attention: bool, same shape.

    ``attention`` (..., gh, gw) is normalised to sum to 1 per map; patches are taken from the
    largest down until their total reaches ``mass`` (the one that crosses it included). This is
    the thresholding of DINO's ``visualize_attention.py`` (``--threshold 0.6``).
    """
    if not 0.0 < mass <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    if attention.dim() < 2:
        raise ValueError(f"attention must be (..., gh, gw), got {tuple(attention.shape)}")
    flat = attention.flatten(-2).float()                                # (..., N)
    flat = flat / flat.sum(-1, keepdim=True).clamp_min(1e-12)
    values, order = flat.sort(-1, descending=True)
    keep_sorted = (values.cumsum(-1) - values) < mass                   # mass of larger ones < mass
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return keep.reshape(attention.shape)


def jaccard(pred: Tensor, target: Tensor) -> Tensor:
    """Intersection over union of boolean masks over the last two axes (1 when both are empty)."""
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@torch.no_grad()
def attention_jaccard(model: nn.Module, images: Tensor, masks: Tensor, *, mass: float = 0.6,
                      batch_size: int = 256) -> dict:
    """Jaccard of each head's thresholded CLS attention with the object masks, on ``images``.

    ``images`` uint8 (B, 3, H, W), ``masks`` bool (B, H, W). The patch masks of
    :func:`attention_masks` are upsampled (nearest) to pixels. Returns ``per_head`` (mean over
    images, one float per head), ``mean_over_heads``, ``best_head`` (the head with the highest
    mean; chosen on these images, so slightly optimistic) and ``head_average`` (the map averaged
    over heads, then thresholded).
    """
    if masks.shape != (images.shape[0], *images.shape[-2:]) or masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool (B, H, W) = {(images.shape[0], *images.shape[-2:])}, "
                         f"got {masks.dtype} {tuple(masks.shape)}")
    device = next(model.parameters()).device
    per_head, averaged = [], []
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start:start + batch_size]).to(device)
        target = masks[start:start + batch_size].to(device)
        att = cls_attention(model, x)                                    # (b, h, gh, gw)
        size = tuple(target.shape[-2:])
        keep = F.interpolate(attention_masks(att, mass).float(), size=size, mode="nearest") > 0.5
        per_head.append(jaccard(keep, target[:, None]).cpu())            # (b, h)
        mean_keep = attention_masks(att.mean(1, keepdim=True), mass).float()
        mean_keep = F.interpolate(mean_keep, size=size, mode="nearest")[:, 0] > 0.5
        averaged.append(jaccard(mean_keep, target).cpu())                # (b,)
    heads = torch.cat(per_head).mean(0)                                  # (h,)
    return {"per_head": heads.tolist(), "mean_over_heads": heads.mean().item(),
            "best_head": heads.max().item(), "head_average": torch.cat(averaged).mean().item()}

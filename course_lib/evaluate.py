"""Frozen-feature evaluation: feature extraction, weighted k-NN and a linear probe.

``knn_accuracy`` follows the DINO evaluation (Caron et al. 2021, section 4.1 and the official
``eval_knn.py``, itself from Wu et al. 2018): L2-normalised features, cosine similarity to every
training feature, the k nearest neighbours vote for their class with weight exp(sim / T).
Everything runs on the device of the features. Lecture 07 compares methods with these.
``evaluate_backbone`` is the one entry point every lab and lecture uses: k-NN, linear probe and an
optional fine-tune of a backbone under one set of keys, with CLS or mean-of-patches pooling.
``attention_jaccard`` scores where a ViT's CLS token looks: its attention thresholded the way the
DINO paper does (keep the patches holding 60 % of the mass), against the object masks.
``dense_probe`` asks the same masks of the patch tokens: a linear classifier, object or
background, on each frozen patch token (the masked-modelling units' dense evaluation).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_int
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
def extract_features(model: nn.Module, images: Tensor, *, batch_size: int | None = None,
                     transform: Callable[[Tensor], Tensor] | None = None,
                     device: torch.device | str | None = None) -> Tensor:
    """Run ``model`` in eval mode over ``images`` (n, C, H, W) in batches; return (n, D) float32.

    ``transform`` maps a uint8 batch to the model's input (e.g. ``course_lib.data.normalize``);
    features come back on ``device`` (default: the model's device). ``batch_size`` defaults to
    512 on a GPU and 64 on a CPU, where a batch that fits the caches runs the 65-token ViTs about
    1.7x faster than 512 does (``benchmarks/feature_batch.py``).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a 4-D tensor (n, C, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if batch_size is None:
        batch_size = 512 if device.type == "cuda" else 64
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
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
    predicted = _probe_predictions(train_x, train_y, test_x, test_y, epochs=epochs, lr=lr,
                                   weight_decay=weight_decay, batch_size=batch_size, seed=seed)
    return (predicted == test_y.to(predicted.device)).float().mean().item()


def _probe_predictions(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, *,
                       epochs: int = 100, lr: float = 0.1, weight_decay: float = 1e-4,
                       batch_size: int = 1024, seed: int = 0) -> Tensor:
    """:func:`linear_probe`'s classifier, trained; its predicted class for each test row (m,)."""
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    head, mean, std = _fit_probe(train_x, train_y, n_classes, epochs=epochs, lr=lr,
                                 weight_decay=weight_decay, batch_size=batch_size, seed=seed)
    with torch.no_grad():
        return head((test_x.float().to(train_x.device) - mean) / std).argmax(1)


def _fit_probe(train_x: Tensor, train_y: Tensor, n_classes: int, *, epochs: int, lr: float,
               weight_decay: float, batch_size: int, seed: int) -> tuple[nn.Linear, Tensor, Tensor]:
    """:func:`linear_probe`'s classifier trained on ``train_x`` standardised by its own mean and
    std; returns the classifier, the mean and the std (it reads ``(x - mean) / std``)."""
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    device = train_x.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mean, std = train_x.float().mean(0), train_x.float().std(0).clamp_min(1e-6)
    xtr = (train_x.float() - mean) / std
    ytr = train_y.to(device)
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
    return head, mean, std


POOLINGS = ("cls", "mean")


class Pooled(nn.Module):
    """A ViT's image feature, pooled one of two ways: (B, C, H, W) -> (B, D).

    "cls": the model's own forward, the final-norm CLS token (SimCLR, MoCo, DINO, supervised).
    "mean": the final-norm patch tokens averaged over the N patches: MAE fine-tunes and probes
    this way (He et al. 2022, appendix A.2) and I-JEPA has no CLS token at all.
    """

    def __init__(self, backbone: nn.Module, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.backbone, self.pooling = backbone, pooling

    def forward(self, images: Tensor) -> Tensor:
        if self.pooling == "cls":
            return self.backbone(images)                                       # (B, D)
        tokens = self.backbone.forward_features(images)                        # (B, P + N, D)
        from .backbones import num_prefix_tokens   # here: importing timm costs seconds
        return tokens[:, num_prefix_tokens(self.backbone):].mean(1)            # (B, D)


def finetune(backbone: nn.Module, train_images: Tensor, train_labels: Tensor, test_images: Tensor,
             test_labels: Tensor, *, steps: int, pooling: str = "cls", seed: int = 0,
             lr: float = 1e-3, head_first: bool = False,
             rotation: tuple[float, float] = (0.0, 0.0),
             device: torch.device | str | None = None) -> float:
    """Fine-tune a copy of ``backbone`` with a linear head on its pooled feature for ``steps``
    steps of the shared loop at peak rate ``lr`` (crop and flip only: MAE's recipe without mixup
    or cutmix); return the copy's top-1 accuracy on the test images. ``backbone`` itself is left
    untouched. The head starts at random, or with ``head_first`` as :func:`linear_probe`'s
    classifier trained on the copy's frozen features of the training images (linear probing,
    then fine-tuning: Kumar et al., 2022), so that a random head does not pull the features apart
    in the first steps. ``rotation`` (low, high degrees) also turns each view by an angle drawn
    from it, as the labelled and contrastive recipes' views do; the protocol's views do not turn.

    ``seed`` fixes everything random here (the head's initial weights, the batches and the crops),
    whatever the caller's random state, which is left as it was: the same call gives the same
    accuracy in a fresh process and after any other work."""
    check_int("steps", steps)
    if not (isinstance(lr, float) and lr > 0):
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    if not isinstance(head_first, bool):
        raise ValueError(f"head_first must be a bool, got {head_first!r}")
    if not (isinstance(rotation, tuple) and len(rotation) == 2
            and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in rotation)
            and rotation[0] <= rotation[1]):
        raise ValueError(f"rotation must be a (low, high) tuple of degrees with low <= high, got {rotation!r}")
    device = device if device is not None else next(backbone.parameters()).device
    device = torch.device(device)
    forked = []                                     # the CPU's generator is always forked
    if device.type == "cuda":
        forked = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        return _finetune(backbone, train_images, train_labels, test_images, test_labels,
                         steps=steps, pooling=pooling, seed=seed, lr=lr, head_first=head_first,
                         rotation=rotation, device=device)


def _finetune(backbone: nn.Module, train_images: Tensor, train_labels: Tensor,
              test_images: Tensor, test_labels: Tensor, *, steps: int, pooling: str, seed: int,
              lr: float, head_first: bool, rotation: tuple[float, float], device: torch.device) -> float:
    from .augment import augment_batch, simclr_view_spec
    from .supervised import Supervised
    from .train import TrainConfig, train
    model = Pooled(copy.deepcopy(backbone), pooling)
    n_classes = int(max(train_labels.max(), test_labels.max())) + 1
    spec = simclr_view_spec(train_images.shape[-1], strength=0.0, scale=(0.6, 1.0),
                            rotation=(float(rotation[0]), float(rotation[1])))
    method = Supervised(model, backbone.embed_dim, n_classes,
                        augment=lambda x: augment_batch(x, [spec])[0])
    if head_first:
        features = extract_features(model, train_images, transform=normalize, device=device).cpu()
        probe, mean, std = _fit_probe(features, train_labels.cpu(), n_classes, epochs=100, lr=0.1,
                                      weight_decay=1e-4, batch_size=1024, seed=seed)
        with torch.no_grad():                          # the probe reads (x - mean) / std: fold it in
            method.head.weight.copy_(probe.weight / std)
            method.head.bias.copy_(probe.bias - method.head.weight @ mean)
    config = TrainConfig(steps=steps, batch_size=min(128, train_images.shape[0]), lr=lr,
                         warmup_steps=min(20, steps), seed=seed, progress=False,
                         log_every=steps)
    train(method, train_images, config, labels=train_labels, device=device)
    logits = extract_features(method, test_images, transform=normalize, device=device)
    return (logits.argmax(1).cpu() == test_labels.cpu()).float().mean().item()


def evaluate_backbone(backbone: nn.Module, train_images: Tensor, train_labels: Tensor,
                      test_images: Tensor, test_labels: Tensor, *, pooling: str = "cls",
                      k: int = 20, probe_epochs: int = 100, finetune_steps: int = 0,
                      diagnostics: bool = True, seed: int = 0,
                      transform: Callable[[Tensor], Tensor] | None = None,
                      device: torch.device | str | None = None) -> dict[str, float]:
    """The course's one evaluation of a backbone on labelled uint8 images, under one set of keys:

    - ``knn_accuracy`` (weighted k-NN on frozen features, DINO's protocol) and ``knn_stderr``
      (its binomial standard error over the test images);
    - ``linear_probe`` (frozen features; ``probe_epochs=0`` skips it);
    - ``finetune_accuracy`` (a copy trained end to end for ``finetune_steps``; 0 skips it);
    - with ``diagnostics``: ``uniformity``, ``effective_rank`` and ``feature_std`` of the test
      features (course_lib.diagnostics).

    ``pooling`` is "cls" or "mean" (see :class:`Pooled`). ``transform`` maps a uint8 batch to the
    backbone input; default: the shapes dataset's ``course_lib.data.normalize``.
    """
    from .diagnostics import effective_rank, feature_std, uniformity
    check_int("probe_epochs", probe_epochs, 0)
    check_int("finetune_steps", finetune_steps, 0)
    transform = transform if transform is not None else normalize
    features = Pooled(backbone, pooling)
    train_x = extract_features(features, train_images, transform=transform, device=device)
    test_x = extract_features(features, test_images, transform=transform, device=device)
    train_y, test_y = train_labels.to(train_x.device), test_labels.to(train_x.device)
    knn = knn_accuracy(train_x, train_y, test_x, test_y, k=k)
    report = {"knn_accuracy": knn, "knn_stderr": (knn * (1 - knn) / test_x.shape[0]) ** 0.5}
    if probe_epochs:
        report["linear_probe"] = linear_probe(train_x, train_y, test_x, test_y,
                                              epochs=probe_epochs, seed=seed)
    if finetune_steps:
        report["finetune_accuracy"] = finetune(backbone, train_images, train_labels, test_images,
                                               test_labels, steps=finetune_steps, pooling=pooling,
                                               seed=seed, device=device)
    if diagnostics:
        report.update(uniformity=uniformity(test_x[:1000]).item(),
                      effective_rank=effective_rank(test_x).item(),
                      feature_std=feature_std(test_x).mean().item())
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
    from . import backbones                        # here: importing timm costs seconds
    device = next(model.parameters()).device
    per_head, averaged = [], []
    for start in range(0, images.shape[0], batch_size):
        x = normalize(images[start:start + batch_size]).to(device)
        target = masks[start:start + batch_size].to(device)
        att = backbones.cls_attention(model, x)                          # (b, h, gh, gw)
        size = tuple(target.shape[-2:])
        keep = F.interpolate(attention_masks(att, mass).float(), size=size, mode="nearest") > 0.5
        per_head.append(jaccard(keep, target[:, None]).cpu())            # (b, h)
        mean_keep = attention_masks(att.mean(1, keepdim=True), mass).float()
        mean_keep = F.interpolate(mean_keep, size=size, mode="nearest")[:, 0] > 0.5
        averaged.append(jaccard(mean_keep, target).cpu())                # (b,)
    heads = torch.cat(per_head).mean(0)                                  # (h,)
    return {"per_head": heads.tolist(), "mean_over_heads": heads.mean().item(),
            "best_head": heads.max().item(), "head_average": torch.cat(averaged).mean().item()}


def held_out_head_jaccard(model: nn.Module, images: Tensor, masks: Tensor, *,
                          mass: float = 0.6) -> dict:
    """:func:`attention_jaccard` without picking the best head on the images it is scored on: the
    head is chosen on the first half of ``images`` and scored on the second half. Returns
    ``head`` (its index), ``chosen_on`` (its Jaccard on the first half) and ``held_out`` (on the
    second half, the figure to report)."""
    if images.shape[0] < 2:
        raise ValueError(f"images must hold at least 2 images (one half to choose the head on, one "
                         f"to score it), got {images.shape[0]}")
    half = images.shape[0] // 2
    choose = attention_jaccard(model, images[:half], masks[:half], mass=mass)["per_head"]
    head = max(range(len(choose)), key=choose.__getitem__)
    score = attention_jaccard(model, images[half:], masks[half:], mass=mass)["per_head"]
    return {"head": head, "chosen_on": choose[head], "held_out": score[head]}


def centre_bump_jaccard(masks: Tensor, grid: tuple[int, int], *, mass: float = 0.6) -> float:
    """The attention baseline that needs no model: :func:`attention_masks` on a fixed Gaussian bump
    centred on a ``grid`` of patches, upsampled to the masks' (B, H, W) pixels, mean Jaccard."""
    gh, gw = grid
    yy, xx = torch.meshgrid(torch.arange(gh) - (gh - 1) / 2, torch.arange(gw) - (gw - 1) / 2,
                            indexing="ij")
    bump = torch.exp(-(xx ** 2 + yy ** 2) / 2).expand(masks.shape[0], 1, gh, gw)
    keep = F.interpolate(attention_masks(bump, mass).float(), size=tuple(masks.shape[-2:]),
                         mode="nearest")[:, 0] > 0.5
    return jaccard(keep, masks.cpu()).mean().item()


# --- what the patch tokens know: object or background (Lectures 04 and 07) -----------------------
def token_labels(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """Object masks bool (B, H, W) -> one label per patch (B, gh * gw), row-major: 1 where at
    least half of the patch's pixels are object, else 0."""
    if not isinstance(masks, Tensor) or masks.dtype != torch.bool or masks.dim() != 3:
        raise ValueError(f"masks must be a bool tensor (B, H, W), got "
                         f"{masks.dtype if isinstance(masks, Tensor) else type(masks).__name__}")
    gh, gw = grid
    height, width = masks.shape[-2:]
    if height % gh or width % gw:
        raise ValueError(f"grid {grid} must divide the masks' size {(height, width)}")
    share = F.avg_pool2d(masks[:, None].float(), (height // gh, width // gw))     # (B, 1, gh, gw)
    return (share >= 0.5).flatten(1).long()


@torch.no_grad()
def _patch_features(backbone: nn.Module, images: Tensor, device, batch_size: int = 256) -> Tensor:
    was_training = backbone.training
    backbone.eval()
    from . import backbones
    tokens = [backbones.patch_tokens(backbone, normalize(images[i:i + batch_size]).to(device)).float().cpu()
              for i in range(0, images.shape[0], batch_size)]
    backbone.train(was_training)
    return torch.cat(tokens)                                                     # (n, N, D)


def dense_probe(backbone: nn.Module, train_images: Tensor, train_masks: Tensor,
                test_images: Tensor, test_masks: Tensor, *, epochs: int = 10,
                seed: int = 0) -> dict[str, float]:
    """A linear classifier on every frozen patch token: object or background.

    uint8 images (n, 3, H, W) and their object masks bool (n, H, W); each patch is labelled by
    :func:`token_labels` and its final-norm token is one sample of :func:`linear_probe` (trained
    for ``epochs`` on the training tokens). Returns ``dense_accuracy`` on the test tokens,
    ``dense_iou`` (object tokens predicted and true: intersection over union over the whole test
    set, the score that does not reward calling everything background) and
    ``dense_iou_stderr`` (the standard error of the IoU over five folds of the test images) and
    ``dense_majority`` (the accuracy of always answering the commoner class) and
    ``dense_position_iou`` (the IoU of answering from the patch's position alone: object where
    most training images have object there)."""
    device = next(backbone.parameters()).device
    grid = tuple(backbone.patch_embed.grid_size)
    train_x = _patch_features(backbone, train_images, device).flatten(0, 1)      # (n N, D)
    test_x = _patch_features(backbone, test_images, device).flatten(0, 1)
    train_y = token_labels(train_masks, grid).flatten()
    test_y = token_labels(test_masks, grid).flatten()
    predicted = _probe_predictions(train_x, train_y, test_x, test_y, epochs=epochs,
                                   seed=seed).bool()
    truth = test_y.bool()
    n_images = test_images.shape[0]
    folds = [_iou(p, t) for p, t in zip(predicted.view(n_images, -1).chunk(min(5, n_images)),
                                         truth.view(n_images, -1).chunk(min(5, n_images)))]
    spread = torch.tensor(folds).std().item() / len(folds) ** 0.5 if len(folds) > 1 else float("nan")
    # The baseline that needs no features: call a patch "object" where most training images have
    # object at that position (the shapes sit near the centre).
    prior = token_labels(train_masks, grid).float().mean(0) > 0.5                # (N,)
    by_position = prior.expand(n_images, -1).flatten()
    return {"dense_accuracy": (predicted == truth).float().mean().item(),
            "dense_iou": _iou(predicted, truth), "dense_iou_stderr": spread,
            "dense_majority": max(truth.float().mean().item(), 1 - truth.float().mean().item()),
            "dense_position_iou": _iou(by_position, truth)}


def _iou(predicted: Tensor, truth: Tensor) -> float:
    union = (predicted | truth).sum().item()
    return (predicted & truth).sum().item() / union if union else 1.0

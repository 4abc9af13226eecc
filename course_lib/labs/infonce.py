"""Experiment runners and figures of Lecture 01 (InfoNCE, SimCLR, MoCo).

Each runner trains a small model with the shared loop (``course_lib.train``) from one seeded
initialisation and returns plain numbers, so the lecture's cells stay one line long:
:func:`temperature_sweep` runs SimCLR (Chen et al. 2020) at several temperatures;
:func:`queue_experiment` runs MoCo (He et al. 2020) at a small batch with queues of several sizes
(0 = in-batch negatives only). Models are judged by the weighted k-NN accuracy of the backbone
(Wu et al. 2018; the DINO evaluation) and by the alignment and uniformity of the normalised
projections (Wang and Isola 2020, section 4.1). :func:`temperature_weights` gives the softmax and
the gradient on each negative that the temperature widget draws (Wang and Liu 2021, section 3);
:func:`saved_activation_bytes` measures what backward keeps per image (the queue's memory argument);
:func:`batch_size_table` measures, on fixed embeddings, the three costs of a small batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from ..diagnostics import alignment, uniformity
from ..evaluate import evaluate_backbone
from ..moco import MoCo
from ..simclr import SimCLR, default_views, positive_index, similarity_matrix
from ..train import Method, TrainConfig, train

Tensor = torch.Tensor
Views = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class MoCoRecipe:
    """MoCo's own settings at one scale: the key encoder's EMA momentum, the queue (0: the other
    keys of the batch are the negatives, as in MoCo v3) and the InfoNCE temperature."""

    momentum: float
    queue_size: int
    temperature: float


@dataclass(frozen=True)
class PretrainScale:
    """One scale of ``python -m course_lib supervised|simclr|moco``: data, steps, views, lr."""

    steps: int
    batch_size: int
    lr: float
    clutter: float                     # make_shapes' background clutter
    view_strength: float               # colour-jitter strength of course_lib.augment's SimCLR views
    crop_scale: tuple[float, float]    # area fraction of the random crops
    rotation: tuple[float, float]      # degrees; the shapes are drawn at every angle
    moco: MoCoRecipe
    grayscale_p: float = 0.2           # how often a view is made grey (SimCLR's 0.2)


PRETRAIN_SCALES: dict[str, PretrainScale] = {
    # CPU: found by benchmarks/course_scale.py (benchmarks/COURSE_SCALE.md): a flat background,
    # mild colour jitter, crops of 60-100 % and views turned by any angle (the shapes come at every
    # angle, so orientation is a nuisance the views should remove), lr 3e-3. SimCLR's held-out
    # k-NN went 0.100 -> 0.352 and 0.293 in two runs of 450 steps (supervised: 0.397; 0.237
    # without the rotation and at lr 1e-3, 300 steps). MoCo with its published settings (key
    # encoder momentum 0.99, queue 4096) gains 0.03 in these 450 steps: the key encoder lags by
    # about 100 steps and the queue holds keys of up to 8 steps ago. With momentum 0.5 and the
    # batch's own keys as negatives (MoCo v3's choice) it reaches 0.300 (0.9: 0.245, 0.99: 0.126).
    # Views made grey with p = 0.8 instead of SimCLR's 0.2 take the colour out of the task: the
    # objects come in random colours, and the colour is the easiest thing two views share. In 450
    # steps SimCLR went 0.325 -> 0.567 and MoCo 0.296 -> 0.575; in 1500, 0.526 -> 0.755 and
    # 0.444 -> 0.778, past the labelled run (benchmarks/COURSE_SCALE.md, "Grey views take the
    # colour away").
    "cpu": PretrainScale(steps=450, batch_size=128, lr=3e-3, clutter=0.0, view_strength=0.3,
                         crop_scale=(0.6, 1.0), rotation=(-180.0, 180.0),
                         moco=MoCoRecipe(momentum=0.5, queue_size=0, temperature=0.1), grayscale_p=0.8),
    # GPU: SimCLR's CIFAR-10 views (Chen et al. 2020, appendix B.9) on the full-clutter data;
    # MoCo v2's momentum, queue and temperature
    "gpu": PretrainScale(steps=5000, batch_size=512, lr=2e-3, clutter=1.0, view_strength=0.5,
                         crop_scale=(0.2, 1.0), rotation=(0.0, 0.0),
                         moco=MoCoRecipe(momentum=0.99, queue_size=4096, temperature=0.2)),
}
TEMPERATURES = {"simclr": 0.1}   # SimCLR's CIFAR value (MoCo's is in each scale's MoCoRecipe)


@dataclass(frozen=True)
class EvalData:
    """Labelled uint8 images for frozen-feature evaluation: the k-NN bank (n, C, H, W), (n,) and the
    held-out queries (m, C, H, W), (m,), whose views also give alignment and uniformity."""

    bank_images: Tensor
    bank_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


@torch.no_grad()
def view_geometry(encoder: nn.Module, images: Tensor, views: Views, *, seed: int = 0) -> dict[str, float]:
    """Alignment (alpha = 2), uniformity (t = 2) and mean cosine of positive pairs and of different
    images, for ``encoder`` outputs on two views of ``images`` drawn under a fixed ``seed``."""
    device = next(encoder.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        view1, view2 = views(images.to(device))                                # (B, C, H, W) each
    was_training = encoder.training
    encoder.eval()
    z1, z2 = encoder(view1).float(), encoder(view2).float()                  # (B, K) each
    encoder.train(was_training)
    p1, p2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    off_diagonal = ~torch.eye(p1.shape[0], dtype=torch.bool, device=p1.device)
    return {"alignment": alignment(z1, z2).item(),
            "uniformity": 0.5 * (uniformity(z1) + uniformity(z2)).item(),
            "positive_cosine": (p1 * p2).sum(1).mean().item(),
            "negative_cosine": (p1 @ p1.T)[off_diagonal].mean().item()}


def evaluate(backbone: nn.Module, encoder: nn.Module, data: EvalData, *,
             transform: Callable[[Tensor], Tensor], views: Views = default_views,
             seed: int = 0) -> dict[str, float]:
    """Weighted 20-NN accuracy of ``backbone`` features (bank -> held-out queries; DINO's k-NN,
    T = 0.07) with its standard error (``course_lib.evaluate.evaluate_backbone``), and
    :func:`view_geometry` of ``encoder`` outputs on the held-out images."""
    scores = evaluate_backbone(backbone, data.bank_images, data.bank_labels, data.test_images,
                               data.test_labels, probe_epochs=0, diagnostics=False,
                               transform=transform)
    return {**scores, **view_geometry(encoder, data.test_images, views, seed=seed)}


def _simclr(build_backbone: Callable[[], nn.Module], feature_dim: int, seed: int, views: Views,
            temperature: float = 0.1) -> tuple[SimCLR, nn.Module]:
    torch.manual_seed(seed)  # every run (and the baseline) starts from the same weights
    method = SimCLR(build_backbone(), feature_dim, temperature=temperature, views=views)
    return method, nn.Sequential(method.backbone, method.projector)


def random_init_baseline(data: EvalData, *, build_backbone: Callable[[], nn.Module],
                         feature_dim: int, transform: Callable[[Tensor], Tensor],
                         views: Views = default_views, seed: int = 0,
                         device: torch.device | str = "cpu") -> dict[str, float]:
    """:func:`evaluate` on the untrained SimCLR model that :func:`train_simclr` starts from."""
    method, encoder = _simclr(build_backbone, feature_dim, seed, views)
    return evaluate(method.to(device).backbone, encoder, data, transform=transform, views=views, seed=seed)


def _run(method: Method, encoder: nn.Module, images: Tensor, data: EvalData, config: TrainConfig,
         transform: Callable[[Tensor], Tensor], views: Views, device: torch.device | str) -> dict:
    start = time.perf_counter()
    history = train(method, images, config, device=device)
    seconds = time.perf_counter() - start
    metrics = evaluate(method.backbone, encoder, data, transform=transform, views=views, seed=config.seed)
    return {**metrics, "steps": history.steps, "loss": history["loss"], "train_seconds": seconds}


def train_simclr(images: Tensor, data: EvalData, *, build_backbone: Callable[[], nn.Module],
                 feature_dim: int, config: TrainConfig, temperature: float,
                 transform: Callable[[Tensor], Tensor], views: Views = default_views,
                 device: torch.device | str = "cpu") -> dict:
    """Train SimCLR (Chen et al. 2020) from weights seeded by ``config.seed``; return the floats of
    :func:`evaluate`, the logged ``steps`` and ``loss`` curve, and ``train_seconds``."""
    method, encoder = _simclr(build_backbone, feature_dim, config.seed, views, temperature)
    return _run(method, encoder, images, data, config, transform, views, device)


def train_moco(images: Tensor, data: EvalData, *, build_backbone: Callable[[], nn.Module],
               feature_dim: int, config: TrainConfig, queue_size: int, temperature: float = 0.2,
               momentum: float = 0.99, transform: Callable[[Tensor], Tensor],
               views: Views = default_views, device: torch.device | str = "cpu") -> dict:
    """Train MoCo (He et al. 2020; v2's tau = 0.2) with a queue of ``queue_size`` keys (0: the
    other keys of the batch are the negatives) and evaluate it; same keys as :func:`train_simclr`."""
    torch.manual_seed(config.seed)
    method = MoCo(build_backbone(), feature_dim, queue_size=queue_size, momentum=momentum,
                  temperature=temperature, views=views, seed=config.seed)
    return _run(method, method.encoder_q, images, data, config, transform, views, device)


def temperature_sweep(temperatures: list[float], images: Tensor, data: EvalData, **kwargs) -> dict[float, dict]:
    """:func:`train_simclr` (keyword arguments passed on) once per temperature: ``{tau: metrics}``."""
    if not temperatures or any(not t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of positive floats, got {temperatures!r}")
    return {tau: train_simclr(images, data, temperature=tau, **kwargs)
            for tau in tqdm(temperatures, desc="temperature sweep")}


def queue_experiment(queue_sizes: list[int], images: Tensor, data: EvalData, **kwargs) -> dict[int, dict]:
    """:func:`train_moco` (keyword arguments passed on) once per queue size: ``{size: metrics}``."""
    if not queue_sizes or any(not isinstance(q, int) or q < 0 for q in queue_sizes):
        raise ValueError(f"queue_sizes must be a non-empty list of ints >= 0, got {queue_sizes!r}")
    return {q: train_moco(images, data, queue_size=q, **kwargs)
            for q in tqdm(queue_sizes, desc="queue experiment")}


# --- the temperature, one anchor at a time --------------------------------------------------------
def temperature_weights(positive: float, negatives: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """Softmax over one anchor's logits and the gradient of its InfoNCE term per negative.

    With logits s_k / tau and p = softmax, l = -log p_+ has dl/ds_k = p_k / tau for each negative
    and dl/ds_+ = -(1 - p_+) / tau. Returns ``probs`` (1 + K,) with the positive first, and
    ``grad_weights`` (K,) = p_k / tau for the K ``negatives`` (cosine similarities, (K,)).
    """
    if negatives.dim() != 1 or negatives.numel() == 0:
        raise ValueError(f"negatives must be a non-empty 1-D tensor (K,), got {tuple(negatives.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    probs = (torch.cat([torch.tensor([positive], dtype=negatives.dtype), negatives]) / tau).softmax(0)
    return probs, probs[1:] / tau                                            # (1 + K,), (K,)


def plot_temperature(positive: float, negatives: Tensor, tau: float, axes=None, *,
                     hard_above: float = 0.25):
    """Two panels for one tau: softmax over [positive, negatives]; gradient weight per negative.

    Negatives with cosine similarity above ``hard_above`` are drawn red (hard), the others blue.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    probs, grads = temperature_weights(positive, negatives, tau)
    names = ["pos"] + [f"{s:+.2f}" for s in negatives.tolist()]
    colours = ["tab:green"] + ["tab:red" if s > hard_above else "tab:blue" for s in negatives.tolist()]
    axes[0].bar(names, probs.numpy(), color=colours)
    axes[0].set(ylim=(0, 1), xlabel="candidate (cosine similarity to the anchor)",
                ylabel="softmax probability", title=f"tau = {tau:.3g}:  p(positive) = {probs[0]:.2f}")
    axes[1].bar(names[1:], grads.numpy(), color=colours[1:])
    share = grads[0] / grads.sum()
    axes[1].set(xlabel="negative (cosine similarity to the anchor)", ylabel="dL/ds_k = p_k / tau",
                title=f"hardest negative gets {share:.0%} of the push")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    return axes


# --- figures of the experiments --------------------------------------------------------------------
def plot_sweep(results: dict[float, dict], *, random_init: dict[str, float], chance: float, axes=None):
    """k-NN accuracy, alignment and uniformity against tau (log axis); dashed: the random init."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    taus = sorted(results)
    panels = (("knn_accuracy", "k-NN top-1 accuracy, held-out (%)", 100),
              ("alignment", "alignment (lower = tighter)", 1),
              ("uniformity", "uniformity (lower = more uniform)", 1))
    for ax, (key, label, scale) in zip(axes, panels):
        errors = [100 * results[t]["knn_stderr"] for t in taus] if key == "knn_accuracy" else None
        ax.errorbar(taus, [scale * results[t][key] for t in taus], yerr=errors, fmt="o-", capsize=3,
                    label="SimCLR after training" + (" (+- 1 s.e.)" if errors else ""))
        ax.axhline(scale * random_init[key], color="gray", ls="--", lw=1, label="same model at init")
        ax.set(xscale="log", xlabel="temperature tau", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].axhline(100 * chance, color="gray", ls=":", lw=1, label="chance")
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=8, loc="lower right")
    return axes


def plot_queue(results: dict[int, dict], *, random_init: dict[str, float], batch_size: int, axes=None):
    """Loss curves (dashed: chance, log(#candidates)); k-NN; alignment and uniformity per run."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.2), gridspec_kw={"width_ratios": [3, 1.4, 2]})
    names = [f"queue {q}" if q else "no queue" for q in results]
    for name, (q, res) in zip(names, results.items()):
        line, = axes[0].plot(res["steps"], res["loss"], label=name)
        axes[0].axhline(float(torch.tensor(1.0 + (q or batch_size - 1)).log()), color=line.get_color(), ls="--", lw=1)
    axes[0].set(xlabel="training step", ylabel="MoCo loss (nats)",
                title=f"batch {batch_size}; dashed: chance level log(#candidates)")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    bars = axes[1].bar(names, [100 * r["knn_accuracy"] for r in results.values()],
                       yerr=[100 * r["knn_stderr"] for r in results.values()], capsize=3)
    axes[1].bar_label(bars, fmt="%.1f", fontsize=8, label_type="center")
    axes[1].axhline(100 * random_init["knn_accuracy"], color="gray", ls="--", lw=1, label="at init")
    axes[1].set(ylabel="k-NN top-1 accuracy (%, +- 1 s.e.)")
    axes[1].legend(fontsize=8, loc="lower right")
    for offset, key in ((-0.2, "alignment"), (0.2, "uniformity")):
        x = torch.arange(len(names)) + offset
        bars = axes[2].bar(x, [r[key] for r in results.values()], width=0.4, label=key)
        axes[2].bar_label(bars, fmt="%.2f", fontsize=8)
    axes[2].set_xticks(range(len(names)), names)
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].set(ylabel="alignment / uniformity", title="lower = tighter / more uniform")
    axes[2].legend(fontsize=8)
    return axes


# --- the memory argument ------------------------------------------------------------------------------
def saved_activation_bytes(model: nn.Module, inputs: Tensor) -> int:
    """Bytes of the tensors autograd keeps from ``model(inputs)`` for backward, parameters excluded.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``; tensors sharing storage are counted
    once. Divide by the batch size for a per-image cost.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(inputs)
    return sum(seen.values())


# --- the batch-size argument ----------------------------------------------------------------------------
def batch_size_table(z1: Tensor, z2: Tensor, batch_sizes: list[int] | tuple[int, ...],
                     temperature: float) -> dict[int, dict[str, float]]:
    """What a batch of N pairs gives InfoNCE, measured on fixed embeddings of two views.

    ``z1[i]``, ``z2[i]`` (n, D) embed two views of image i. For each N the pairs are cut, in order,
    into the ``n // N`` disjoint batches of N (the rest is dropped); every one of the 2N anchors of
    a batch contributes, and the table holds their means:

    - ``loss``: InfoNCE (:func:`course_lib.simclr.info_nce`); ``cap``: log(2N - 1), the most it can
      certify; ``bound``: cap - loss, the lower bound on the views' mutual information (nats);
    - ``p_positive``: the softmax probability of the partner view; ``gradient_scale``:
      (1 - p_positive) / tau, the size of the push the anchor still gets (section 3);
    - ``hardest_negative``: the largest cosine between the anchor and another image's view.
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be (n, D) of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    bad = [n for n in batch_sizes if not isinstance(n, int) or not 2 <= n <= z1.shape[0]]
    if bad:
        raise ValueError(f"batch_sizes must be ints in [2, n={z1.shape[0]}], got {bad}")
    table = {}
    for n in batch_sizes:
        sums = torch.zeros(4, dtype=torch.float64)
        batches = z1.shape[0] // n
        for b in range(batches):
            part = slice(b * n, (b + 1) * n)
            logits = similarity_matrix(z1[part], z2[part], temperature)      # (2N, 2N), self = -inf
            target = positive_index(n, logits.device)
            log_p = logits.log_softmax(dim=1)
            p_pos = log_p.gather(1, target[:, None]).exp().squeeze(1)         # (2N,)
            negatives = logits.scatter(1, target[:, None], float("-inf"))     # others' views only
            sums += torch.stack([F.nll_loss(log_p, target, reduction="sum"), p_pos.sum(),
                                 ((1 - p_pos) / temperature).sum(),
                                 (negatives.max(dim=1).values * temperature).sum()]).double()
        loss, p_pos, grad, hardest = (sums / (2 * n * batches)).tolist()
        cap = float(torch.log(torch.tensor(2.0 * n - 1)))
        table[n] = {"loss": loss, "cap": cap, "bound": cap - loss, "p_positive": p_pos,
                    "gradient_scale": grad, "hardest_negative": hardest}
    return table

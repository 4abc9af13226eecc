"""Experiment runners and figures of Lecture 03 (MAE): the measured speed-up of the asymmetric
encoder, the masking-ratio sweep, and the numeric model of the BERT-vs-MAE ratio argument.

- :func:`measure_speedup` times, in one process and round-robin, the encoder's forward and
  backward on the visible quarter of the tokens against the same encoder on all of them, and a
  whole MAE step against a *full-sequence* autoencoder: the same encoder and decoder, but the
  masked patches replaced by a mask token inside the encoder (BEiT / SimMIM style), so the encoder
  runs on all N tokens. He et al. 2022, section 3 and Table 1c.
- :func:`masking_sweep` pretrains from one seeded initialisation at several masking ratios (and
  with block-wise and grid masking at 0.75) and judges each encoder the three ways the paper does:
  k-NN and a linear probe on frozen features, and a short fine-tune (Figure 5, Table 1).
- :func:`plot_information` draws the BERT-vs-MAE ratio argument from ``course_lib.mae``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from tqdm.std import tqdm  # a text bar: a saved notebook shows where it finished

from .._checks import check_int
from ..backbones import build_vit, embed_tokens, encode_tokens, use_fused_attention
from ..data import N_CLASSES, make_shapes, normalize
from ..evaluate import evaluate_backbone
from ..masking import MASKINGS
from ..mae import (MAE, MAEConfig, full_sequence_loss, information, optimal_ratio, patchify,
                  random_masking, reconstruction_loss)
from ..runtime import at_scale, median_seconds
from ..train import TrainConfig, train

Tensor = torch.Tensor

RATIOS = (0.1, 0.25, 0.5, 0.75, 0.9)
STRATEGIES = MASKINGS  # the masking strategies the sweep compares at r = 0.75


# --- how redundant are images? ----------------------------------------------------------------------
@torch.no_grad()
def neighbour_fill_error(images: Tensor, mask_ratio: float, *, patch_size: int = 8,
                         seed: int = 0) -> dict[str, float]:
    """How well a model with no understanding at all fills masked patches: each masked patch
    becomes the average colour of its visible 8-neighbour patches (the image's visible mean if it
    has none). Returns the MSE on masked pixels (normalised images) of that fill and of the
    image's visible mean alone, and ``explained``: 1 - fill / mean, the share of the error that
    copying the neighbours removes. Lecture 03, section 1."""
    x = normalize(images)                                            # (B, C, H, W)
    B, C = x.shape[:2]
    grid = x.shape[-1] // patch_size
    patches = patchify(x, patch_size)                                # (B, N, p*p*C)
    _, mask, _ = random_masking(patches[..., :1], mask_ratio,
                                torch.Generator().manual_seed(seed))  # (B, N), 1 = masked
    colour = patches.view(B, grid * grid, patch_size * patch_size, C).mean(2)      # (B, N, C)
    visible = (1 - mask).view(B, 1, grid, grid)                      # (B, 1, g, g)
    colour_map = (colour.transpose(1, 2).reshape(B, C, grid, grid) * visible)
    kernel = torch.ones(1, 1, 3, 3, dtype=x.dtype)
    kernel[..., 1, 1] = 0                                            # the 8 neighbours
    weight = torch.nn.functional.conv2d(visible, kernel, padding=1)  # (B, 1, g, g)
    summed = torch.nn.functional.conv2d(colour_map.reshape(B * C, 1, grid, grid), kernel,
                                        padding=1).view(B, C, grid, grid)
    visible_mean = (colour * (1 - mask).unsqueeze(-1)).sum(1) / (1 - mask).sum(1, keepdim=True)
    fill = torch.where(weight > 0, summed / weight.clamp_min(1),
                       visible_mean.view(B, C, 1, 1))                # (B, C, g, g)
    fill = fill.reshape(B, C, grid * grid).transpose(1, 2)           # (B, N, C)
    pixels = patches.view(B, grid * grid, patch_size * patch_size, C)

    def masked_mse(guess: Tensor) -> float:                          # guess (B, N, C)
        err = (pixels - guess.unsqueeze(2)).square().mean(dim=(2, 3))  # (B, N)
        return ((err * mask).sum() / mask.sum()).item()

    fill_error = masked_mse(fill)
    mean_error = masked_mse(visible_mean.unsqueeze(1).expand_as(colour))
    return {"mask_ratio": mask_ratio, "neighbour_fill_mse": fill_error,
            "visible_mean_mse": mean_error, "explained": 1 - fill_error / mean_error}


# --- the speed-up --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedupScale:
    vit: dict
    batch_size: int
    decoder: MAEConfig
    repeats: int


SPEEDUP_SCALES: dict[str, SpeedupScale] = {
    # CPU: the sweep's encoder (64 tokens of 4 px)
    "cpu": SpeedupScale(vit=dict(preset="cpu", stem="patch", patch_size=4), batch_size=128,
                        decoder=MAEConfig(decoder_dim=64, decoder_depth=2, decoder_heads=4),
                        repeats=7),
    # GPU: ViT-Ti at 96 px with 8 px patches (144 tokens), autocast (runtime.amp_dtype)
    "gpu": SpeedupScale(vit=dict(preset="tiny"), batch_size=256,
                        decoder=MAEConfig(decoder_dim=128, decoder_depth=2, decoder_heads=4),
                        repeats=20),
}


def _speedup_closures(mae: MAE, images: Tensor, mask_token: Tensor, optimizer, mask_ratio: float,
                      use_amp: bool) -> dict:
    """The four timed jobs of :func:`measure_speedup`, each a closure of no arguments."""
    from ..runtime import autocast
    device = images.device

    def encoder_pass(visible_only: bool) -> None:
        with autocast(device, use_amp):
            tokens = embed_tokens(mae.encoder, images)                  # (B, 1 + N, D)
            if visible_only:
                visible, _, _ = random_masking(tokens[:, 1:], mask_ratio)
                tokens = torch.cat([tokens[:, :1], visible], dim=1)     # (B, 1 + N_keep, D)
            loss = encode_tokens(mae.encoder, tokens).float().square().mean()
        loss.backward()
        mae.zero_grad(set_to_none=True)

    def step(loss_fn) -> None:
        with autocast(device, use_amp):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {
        "encoder_visible": lambda: encoder_pass(True),
        "encoder_all": lambda: encoder_pass(False),
        "mae_step": lambda: step(lambda: mae(images, mask_ratio)[0]),
        "full_sequence_step": lambda: step(lambda: full_sequence_loss(mae, images, mask_ratio,
                                                                      mask_token)),
    }


def measure_speedup(scale: str = "cpu", *, mask_ratio: float = 0.75,
                    device: torch.device | str = "cpu", repeats: int | None = None,
                    amp: bool = True) -> dict:
    """Time four closures round-robin (one call each per round, after a warm-up round) and
    return median seconds and ratios: encoder fwd + bwd on visible vs all tokens
    (``encoder_speedup``), and a whole MAE step (fwd, bwd, AdamW) vs the full-sequence
    autoencoder's (``step_speedup``). ``token_ratio`` is (1 + N) / (1 + N_keep)."""
    setup = at_scale(SPEEDUP_SCALES, scale)
    if repeats is not None:
        check_int("repeats", repeats)
    repeats = setup.repeats if repeats is None else repeats
    device = torch.device(device)
    torch.manual_seed(0)
    mae = MAE(build_vit(**setup.vit), setup.decoder).to(device)
    mask_token = nn.Parameter(torch.zeros(mae.encoder.embed_dim, device=device))
    size = mae.encoder.patch_embed.img_size[0]
    images = torch.randn(setup.batch_size, 3, size, size, device=device)
    params = [p for p in mae.parameters() if p.requires_grad] + [mask_token]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    n = mae.grid_size ** 2
    n_keep = int(n * (1 - mask_ratio))
    closures = _speedup_closures(mae, images, mask_token, optimizer, mask_ratio,
                                 use_amp=amp and device.type == "cuda")
    seconds = median_seconds(closures, repeats, device)
    return {"scale": scale, "device": str(device), "mask_ratio": mask_ratio,
            "batch_size": setup.batch_size, "n_tokens": 1 + n, "n_visible_tokens": 1 + n_keep,
            "token_ratio": (1 + n) / (1 + n_keep),
            "encoder_speedup": seconds["encoder_all"] / seconds["encoder_visible"],
            "step_speedup": seconds["full_sequence_step"] / seconds["mae_step"],
            "median_seconds": seconds, "repeats": repeats, "threads": torch.get_num_threads()}


# --- the masking-ratio sweep ------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepScale:
    """Everything one scale of the sweep needs: data, encoder, decoder, optimiser, evaluation."""

    n_train: int
    n_test: int
    vit: dict                          # build_vit keyword arguments (stem="patch")
    mae: MAEConfig
    train: TrainConfig
    finetune_steps: int
    probe_epochs: int
    fused_attention: bool


SWEEP_SCALES: dict[str, SweepScale] = {
    # CPU: 8x8 patches of 4 px on the 32 px shapes, the grid of the zoo's MAE (the CPU ViT's width
    # and depth with a plain patch stem), a one-block decoder
    "cpu": SweepScale(
        n_train=5000, n_test=1000,
        vit=dict(preset="cpu", stem="patch", patch_size=4),
        mae=MAEConfig(decoder_dim=64, decoder_depth=1, decoder_heads=4),
        train=TrainConfig(steps=800, batch_size=128, lr=1.5e-3, warmup_steps=20, log_every=20,
                          progress=False),
        finetune_steps=150, probe_epochs=30, fused_attention=False),
    # GPU: ViT-Ti on 8x8 patches of 4 px
    "gpu": SweepScale(
        n_train=20000, n_test=2000,
        vit=dict(preset="tiny", img_size=32, patch_size=4),
        mae=MAEConfig(decoder_dim=128, decoder_depth=2, decoder_heads=4),
        train=TrainConfig(steps=4000, batch_size=256, lr=1.5e-3, warmup_steps=200, log_every=50),
        finetune_steps=1000, probe_epochs=100, fused_attention=True),
}


def sweep_scale(scale: str, seed: int = 0) -> SweepScale:
    """``SWEEP_SCALES[scale]`` with its training seeded by ``seed``."""
    return at_scale(SWEEP_SCALES, scale, seed=seed)


def pretrain(mask_ratio: float, masking: str, images: Tensor, setup: SweepScale,
             device: torch.device | str = "cpu") -> tuple[MAE, dict]:
    """One MAE from the seeded initialisation; returns it and its training record."""
    torch.manual_seed(setup.train.seed)              # every run starts from the same weights
    encoder = use_fused_attention(build_vit(**setup.vit), setup.fused_attention)
    mae = MAE(encoder, replace(setup.mae, mask_ratio=mask_ratio, masking=masking))
    use_fused_attention(mae, setup.fused_attention)
    start = time.perf_counter()
    history = train(mae, images, setup.train, device=device)
    return mae, {"train_seconds": round(time.perf_counter() - start, 2),
                 "final_loss": sum(history["loss"][-5:]) / len(history["loss"][-5:]),
                 "curves": {"step": history.steps, "loss": history["loss"]}}


def _sweep_setup(setup: SweepScale, steps: int | None, finetune_steps: int | None,
                 ratios: tuple[float, ...], strategies: tuple[str, ...],
                 data: dict[str, int | None]) -> SweepScale:
    """The scale's settings with the sweep's overrides, after checking the ratios and strategies."""
    for name, size in data.items():                 # n_train, n_test: fewer images, same recipe
        if size is not None:
            check_int(name, size)
            setup = replace(setup, **{name: size})
    if steps is not None:
        setup = replace(setup, train=replace(setup.train, steps=steps,
                                             warmup_steps=min(setup.train.warmup_steps, steps)))
    if finetune_steps is not None:
        setup = replace(setup, finetune_steps=finetune_steps)
    if not all(0.0 < ratio < 1.0 for ratio in ratios):
        raise ValueError(f"ratios must be in (0, 1), got {list(ratios)}")
    if not set(strategies) <= set(STRATEGIES):
        raise ValueError(f"strategies must be among {STRATEGIES}, got {sorted(set(strategies))}")
    return setup


def masking_sweep(scale: str = "cpu", *, seed: int = 0, ratios: tuple[float, ...] = RATIOS,
                  strategies: tuple[str, ...] = STRATEGIES, steps: int | None = None,
                  finetune_steps: int | None = None, n_train: int | None = None,
                  n_test: int | None = None, device: torch.device | str = "cpu",
                  progress: bool = True, keep_models: bool = False) -> dict:
    """Pretrain at every ratio (random masking) and with every strategy at 0.75; judge each.

    Returns (JSON-able unless ``keep_models``): ``ratios``: "0.75" -> run, ``strategies``:
    "block" -> run, ``random_init``: the untrained encoder's scores, ``best_ratio``: the ratio
    with the best fine-tune accuracy, and ``settings``. A run holds ``reconstruction_loss``
    (held-out, at its own ratio), ``knn_accuracy``, ``linear_probe``, ``finetune_accuracy``,
    ``train_seconds``, ``final_loss`` and the loss curve. ``steps`` and ``finetune_steps``
    override the scale's pretraining and fine-tuning lengths, ``n_train`` and ``n_test`` its
    numbers of training and held-out images.
    """
    setup = sweep_scale(scale, seed)
    setup = _sweep_setup(setup, steps, finetune_steps, ratios, strategies,
                         {"n_train": n_train, "n_test": n_test})
    images, labels, _ = make_shapes(setup.n_train, image_size=32, seed=seed)
    test_x, test_y, _ = make_shapes(setup.n_test, image_size=32, seed=seed, split="test")
    train_data, test_data = (images, labels), (test_x, test_y)
    jobs = [("ratios", f"{r:g}", r, "random") for r in ratios]
    jobs += [("strategies", s, 0.75, s) for s in strategies]
    torch.manual_seed(seed)
    init = use_fused_attention(build_vit(**setup.vit), setup.fused_attention)
    judge = lambda encoder: evaluate_backbone(  # noqa: E731 - k-NN, probe, fine-tune; MAE's pooling
        encoder, *train_data, *test_data, pooling="mean", probe_epochs=setup.probe_epochs,
        finetune_steps=setup.finetune_steps, diagnostics=False, seed=seed, device=device)
    result: dict = {"scale": scale, "seed": seed, "chance": 1 / N_CLASSES, "ratios": {},
                    "strategies": {}, "random_init": judge(init)}
    done: dict[tuple[float, str], dict] = {}
    for group, key, ratio, masking in tqdm(jobs, desc="MAE sweep", disable=not progress):
        if (ratio, masking) not in done:          # random at 0.75 is both a ratio and a strategy
            mae, run = pretrain(ratio, masking, images, setup, device)
            run["reconstruction_loss"] = reconstruction_loss(mae, test_x, ratio, seed=seed,
                                                             device=device)
            run.update(judge(mae.encoder))
            if keep_models:
                run["model"] = mae
            done[(ratio, masking)] = run
        result[group][key] = done[(ratio, masking)]
    if result["ratios"]:
        result["best_ratio"] = float(max(result["ratios"], key=lambda k: (
            result["ratios"][k]["finetune_accuracy"], result["ratios"][k]["linear_probe"])))
    result["settings"] = {"n_train": setup.n_train, "n_test": setup.n_test, "vit": setup.vit, "mae": asdict(setup.mae),
                          "train": asdict(setup.train), "finetune_steps": setup.finetune_steps,
                          "probe_epochs": setup.probe_epochs,
                          "fused_attention": setup.fused_attention}
    return result


# --- figures ---------------------------------------------------------------------------------------
def speedup_summary(result: dict) -> str:
    """:func:`measure_speedup`'s figures in three lines (``python -m course_lib mae-speedup``)."""
    ms = {name: round(value * 1e3, 1) for name, value in result["median_seconds"].items()}
    return "\n".join([
        f"tokens {result['n_tokens']} -> {result['n_visible_tokens']} visible at mask ratio "
        f"{result['mask_ratio']} (token ratio {result['token_ratio']:.2f}), batch "
        f"{result['batch_size']}, {result['device']}, median of {result['repeats']}",
        f"encoder fwd+bwd: all tokens {ms['encoder_all']} ms, visible {ms['encoder_visible']} ms"
        f" -> encoder_speedup {result['encoder_speedup']:.2f}x",
        f"whole step: full-sequence autoencoder {ms['full_sequence_step']} ms, MAE "
        f"{ms['mae_step']} ms -> step_speedup {result['step_speedup']:.2f}x"])


def sweep_summary(result: dict) -> str:
    """:func:`masking_sweep` as a table, one line per run (``python -m course_lib mae-sweep``)."""
    init = result["random_init"]
    lines = [f"{'run':<16} {'recon loss':>10} {'k-NN':>6} {'probe':>6} {'fine-tune':>9}   (chance "
             f"{result['chance']:.2f}; random init: k-NN {init['knn_accuracy']:.3f}, probe "
             f"{init['linear_probe']:.3f}, fine-tune {init['finetune_accuracy']:.3f})"]
    for group, label in (("ratios", "ratio {}"), ("strategies", "{} @ 0.75")):
        for key, run in result[group].items():
            lines.append(f"{label.format(key):<16} {run['reconstruction_loss']:>10.3f} "
                         f"{run['knn_accuracy']:>6.3f} {run['linear_probe']:>6.3f} "
                         f"{run['finetune_accuracy']:>9.3f}")
    if "best_ratio" in result:
        lines.append(f"best ratio by fine-tune accuracy: {result['best_ratio']}")
    if "total_seconds" in result:
        lines.append(f"total {result['total_seconds']} s")
    return "\n".join(lines)


def plot_sweep(result: dict, axes=None):
    """Left: k-NN, linear probe and fine-tune accuracy against the masking ratio, with chance and
    the untrained encoder dashed (He et al. 2022, Figure 5). Right: the three masking strategies at
    0.75 (Figure 6), when the sweep ran any. Returns the figure."""
    import matplotlib.pyplot as plt
    with_strategies = bool(result["strategies"])
    if axes is None:
        _, axes = plt.subplots(1, 2 if with_strategies else 1,
                               figsize=(11 if with_strategies else 6.5, 3.6), squeeze=False,
                               gridspec_kw={"width_ratios": [3, 2] if with_strategies else [1]})
        axes = axes[0]
    ax = axes[0]
    ratios = sorted(result["ratios"], key=float)
    x = [float(r) for r in ratios]
    metrics = (("finetune_accuracy", "fine-tune", "tab:red"),
               ("linear_probe", "linear probe", "tab:blue"),
               ("knn_accuracy", "k-NN", "tab:green"))
    for key, label, colour in metrics:
        ax.plot(x, [result["ratios"][r][key] for r in ratios], "o-", color=colour, label=label)
        ax.axhline(result["random_init"][key], color=colour, ls=":", lw=1)
    ax.axhline(result["chance"], color="gray", ls="--", lw=1, label="chance")
    ax.set(xlabel="masking ratio r", ylabel="test accuracy",
           title="masking-ratio sweep (dotted: untrained encoder)")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    if not with_strategies:
        ax.figure.tight_layout()
        return ax.figure
    ax = axes[1]
    names = list(result["strategies"])
    width = 0.8 / len(metrics)
    for i, (key, label, colour) in enumerate(metrics):
        values = [result["strategies"][n][key] for n in names]
        ax.bar([j + (i - 1) * width for j in range(len(names))], values, width, color=colour,
               label=label)
    ax.axhline(result["chance"], color="gray", ls="--", lw=1)
    ax.set_xticks(range(len(names)), [f"{n}\n@0.75" for n in names])
    ax.set(ylabel="test accuracy", title="masking strategy")
    ax.figure.tight_layout()
    return ax.figure


def plot_information(decays: dict[str, float], *, i0: float = 1.0, ax=None):
    """r I(r) = r I0 exp(-lambda r) against r for each named decay rate, its maximum r* = 1/lambda
    marked: the BERT-vs-MAE argument of Lecture 03, section 7."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    r = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    for name, decay in decays.items():
        signal = r * information(r, i0, decay)
        best = optimal_ratio(decay)
        line, = ax.plot(r, signal, label=f"{name}: lambda = {decay:g}, r* = {best:.2f}")
        ax.plot([best], [best * information(best, i0, decay).item()], "o", color=line.get_color())
        ax.axvline(best, color=line.get_color(), ls=":", lw=1)
    ax.set(xlabel="masking ratio r", ylabel="r * I(r)  (signal per image)",
           title="useful signal = masked fraction x what the rest still tells")
    ax.legend(fontsize=8)
    return ax.figure

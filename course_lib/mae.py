"""MAE: masked autoencoders (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners",
section 3 and the official ``models_mae.py``). Lecture 03.

An image is cut into N patches. A large random subset (75 %) is dropped; the encoder, a ViT,
sees only the visible N (1 - r) patches. A narrow, shallow decoder gets the encoded visible
tokens back in their places, a shared learned mask token everywhere else, and its own fixed 2-D
sin-cos position embeddings, and predicts the pixels of every patch. The loss is the mean squared
error on the masked patches only, against per-patch normalised pixels:

    target_n = (x_n - mean(x_n)) / sqrt(var(x_n) + 1e-6)      x_n: the p*p*C pixels of patch n
    L        = sum_n m_n * mean_j (pred_nj - target_nj)^2 / sum_n m_n     m_n = 1 if n is masked

Because the encoder never sees a mask token, its cost falls with the visible fraction: at
r = 0.75 it processes 1 + N/4 tokens instead of 1 + N. After pre-training the decoder is thrown
away and the encoder is used on whole images.

The file reads in the paper's order: patches, position embeddings, random masking (block-wise
and grid masks live in ``course_lib.masking``, shared with iBOT, I-JEPA and DINOv2), the encoder,
the decoder, the loss, the model on the shared training loop, the reconstruction helpers the
lecture plots with, and the information model of the masking-ratio argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_int, describe
from .backbones import (embed_tokens, encode_tokens, freeze_pos_embed, num_prefix_tokens,
                        transformer_blocks)
from .data import normalize
from .masking import (MASKINGS, check_ratio, grid_stride_for, mask_from_boolean,
                      structured_mask)
from .train import Method

Tensor = torch.Tensor


# --- 1. patches ----------------------------------------------------------------------------------
def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, N, p*p*C): row-major patches, each flattened as (row, col, channel),
    the layout of the MAE code (``einsum('nchpwq->nhwpqc')``). Lecture 03, section 2."""
    check_int("patch_size", patch_size)
    if not isinstance(imgs, Tensor) or imgs.dim() != 4:
        raise ValueError(f"imgs must be a 4-D tensor (B, C, H, W), got {describe(imgs)}")
    B, C, H, W = imgs.shape
    if H % patch_size or W % patch_size:
        raise ValueError(f"image height and width must be multiples of patch_size={patch_size}, "
                         f"got {(H, W)}")
    h, w = H // patch_size, W // patch_size
    x = imgs.reshape(B, C, h, patch_size, w, patch_size)        # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)                             # (B, h, w, p, p, C)
    return x.reshape(B, h * w, patch_size * patch_size * C)     # (B, N, p*p*C)


def unpatchify(patches: Tensor, patch_size: int, channels: int = 3) -> Tensor:
    """(B, N, p*p*C) -> (B, C, H, W), the inverse of :func:`patchify` for a square grid."""
    check_int("patch_size", patch_size)
    check_int("channels", channels)
    if not isinstance(patches, Tensor) or patches.dim() != 3:
        raise ValueError(f"patches must be a 3-D tensor (B, N, p*p*C), got {describe(patches)}")
    B, N, L = patches.shape
    side = math.isqrt(N)
    if side * side != N:
        raise ValueError(f"patches must form a square grid, got N={N} patches")
    if L != patch_size * patch_size * channels:
        raise ValueError(f"patches' last dimension must be p*p*C = {patch_size}*{patch_size}*"
                         f"{channels} = {patch_size * patch_size * channels}, got {L}")
    x = patches.reshape(B, side, side, patch_size, patch_size, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)                                       # (B, C, h, p, w, p)
    return x.reshape(B, channels, side * patch_size, side * patch_size)


# --- 2. fixed 2-D sin-cos position embeddings ------------------------------------------------------
def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """(M,) positions -> (M, dim): [sin(pos * w_k), cos(pos * w_k)] with w_k = 10000^(-2k/dim),
    k < dim/2 (Vaswani et al. 2017, as in MAE's ``get_1d_sincos_pos_embed_from_grid``)."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    angles = positions.double()[:, None] * omega[None, :]                              # (M, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()                      # (M, dim)


def sincos_2d(dim: int, grid_size: int, *, cls_token: bool = False) -> Tensor:
    """Fixed 2-D position embeddings (N, dim) for a grid_size x grid_size row-major patch grid,
    with a leading zero row for the CLS token if ``cls_token``.

    The first dim/2 channels encode the patch's *column* and the last dim/2 its *row*: the MAE
    code builds ``np.meshgrid(grid_w, grid_h)`` (w first) and embeds ``grid[0]`` first. A
    checkpoint's decoder only works with this exact order (Lecture 03, pitfalls).
    """
    check_int("grid_size", grid_size)
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 (sin and cos for each axis), got {dim}")
    rows = torch.arange(grid_size).repeat_interleave(grid_size)   # (N,) 0,0,..,1,1,..
    cols = torch.arange(grid_size).repeat(grid_size)              # (N,) 0,1,..,0,1,..
    table = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)  # (N, dim)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table])           # (1 + N, dim)
    return table


# --- 3. masking ------------------------------------------------------------------------------------
def random_masking(x: Tensor, mask_ratio: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a uniformly random subset of ``int(N * (1 - mask_ratio))`` tokens per image.

    x: (B, N, D) -> (x_visible (B, N_keep, D), mask (B, N), ids_restore (B, N)).
    ``mask`` is 1.0 on masked tokens and 0.0 on visible ones, in x's dtype, in the original order.
    ``ids_restore`` undoes the shuffle: ``gather(cat([x_visible, fill]), 1, ids_restore)`` puts
    every token back in its place. Noise argsort as in the MAE code; Lecture 03, section 3.
    """
    check_ratio(mask_ratio)
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a 3-D tensor (B, N, D), got {describe(x)}")
    B, N, D = x.shape
    n_keep = int(N * (1 - mask_ratio))
    if n_keep < 1:
        raise ValueError(f"mask_ratio={mask_ratio} keeps no token of N={N}")
    noise = torch.rand(B, N, generator=generator, device=x.device if generator is None
                       else generator.device).to(x.device)          # (B, N) in [0, 1)
    ids_shuffle = torch.argsort(noise, dim=1)                       # ascending: small are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)                 # (B, N)
    ids_keep = ids_shuffle[:, :n_keep]                              # (B, N_keep)
    x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # (B, N_keep, D)
    mask = torch.ones(B, N, dtype=x.dtype, device=x.device)
    mask[:, :n_keep] = 0                                            # in shuffled order ...
    mask = torch.gather(mask, 1, ids_restore)                       # ... back to patch order
    return x_visible, mask, ids_restore


# --- 4-6. the model: encoder, decoder, loss -------------------------------------------------------
def mae_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """Mean squared error per patch, averaged over the masked patches only.

    pred, target: (B, N, p*p*C) (target from :func:`patchify`); mask: (B, N), 1 = masked.
    ``norm_pix``: normalise each target patch by its own mean and unbiased variance (+1e-6), as
    MAE's ``norm_pix_loss`` (section 3, "Reconstruction target"); the mean and variance are over
    the patch's pixels (the last axis), never over the batch. Lecture 03, section 4.
    """
    for name, value in (("pred", pred), ("target", target)):
        if not isinstance(value, Tensor) or value.dim() != 3:
            raise ValueError(f"{name} must be a 3-D tensor (B, N, p*p*C), got {describe(value)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if not isinstance(mask, Tensor) or mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (B, N) = {tuple(pred.shape[:2])}, got {describe(mask)}")
    if mask.dtype == torch.bool:
        raise ValueError("mask must be 0/1 floats as random_masking returns (1 = masked), got bool;"
                         " use mask.float()")
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)                    # (B, N, 1)
        var = target.var(dim=-1, keepdim=True)                      # unbiased, as the MAE code
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = (pred.float() - target.float()).square().mean(dim=-1)  # (B, N)
    mask = mask.float()
    if mask.sum() == 0:
        raise ValueError("mask has no masked patch; the MAE loss is over masked patches only")
    return (per_patch * mask).sum() / mask.sum()


@dataclass(frozen=True)
class MAEConfig:
    """MAE's hyperparameters. Paper defaults (He et al. 2022, Table 1 and appendix A.1): mask
    75 % at random, decoder 512 wide and 8 blocks deep with 16 heads, normalised pixel targets."""

    mask_ratio: float = 0.75
    masking: str = "random"                  # "random", "block" or "grid"
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        check_ratio(self.mask_ratio)
        if self.masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {self.masking!r}")
        if self.masking == "grid":
            grid_stride_for(self.mask_ratio)
        for name in ("decoder_dim", "decoder_depth", "decoder_heads"):
            check_int(name, getattr(self, name))
        if self.decoder_dim % self.decoder_heads or self.decoder_dim % 4:
            raise ValueError(f"decoder_dim must be divisible by decoder_heads and by 4, got "
                             f"{self.decoder_dim} with {self.decoder_heads} heads")


class MAE(Method):
    """Encoder (a course ViT with ``stem="patch"``) on the visible patches, a light decoder on all.

    The encoder's position embeddings are replaced by fixed 2-D sin-cos ones, as in MAE. They are
    added to every patch *before* masking, and the CLS token (with its own position) is prepended
    *after* it, so it is never masked. ``model(images)`` of the encoder alone, on whole images, is
    the feature extractor after pre-training.

        mae = MAE(build_vit("cpu", stem="patch", patch_size=4), MAEConfig(decoder_dim=64, ...))
        loss, pred, mask = mae(images)            # images normalised (B, 3, H, W)
        history = train(mae, uint8_images, TrainConfig(steps=300))
    """

    def __init__(self, encoder: nn.Module, config: MAEConfig = MAEConfig()) -> None:
        super().__init__()
        if not isinstance(config, MAEConfig):
            raise ValueError(f"config must be an MAEConfig, got {type(config).__name__}")
        if type(encoder.patch_embed).__name__ != "PatchEmbed":
            raise ValueError("encoder must use stem='patch': a conv stem mixes neighbouring "
                             "patches, so masked pixels would leak into visible tokens")
        self.config, self.encoder = config, encoder
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.grid_size = encoder.patch_embed.grid_size[0]
        self.channels = encoder.patch_embed.proj.in_channels
        D, Dd = encoder.embed_dim, config.decoder_dim
        freeze_pos_embed(encoder, sincos_2d(D, self.grid_size, cls_token=True))
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos_embed",
                             sincos_2d(Dd, self.grid_size, cls_token=True)[None])  # (1, 1 + N, Dd)
        self.decoder_blocks = transformer_blocks(Dd, config.decoder_depth, config.decoder_heads)
        self.decoder_norm = nn.LayerNorm(Dd)
        self.decoder_pred = nn.Linear(Dd, self.patch_size**2 * self.channels)

    def mask(self, patches: Tensor, mask_ratio: float | None = None, masking: str | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N, D) patch tokens -> (visible, mask, ids_restore) with the config's strategy."""
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        masking = self.config.masking if masking is None else masking
        if masking == "random":
            return random_masking(patches, ratio, generator)
        masked = structured_mask(masking, patches.shape[0], self.grid_size, ratio,
                                 generator=generator)
        return mask_from_boolean(patches, masked.to(patches.device))

    def forward_encoder(self, images: Tensor, mask_ratio: float | None = None, *,
                        masking: str | None = None, generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """images (B, C, H, W) -> (latent (B, P + N_keep, D), mask (B, N), ids_restore (B, N))."""
        tokens = embed_tokens(self.encoder, images)                   # (B, P + N, D), pos added
        prefix = num_prefix_tokens(self.encoder)
        visible, mask, ids_restore = self.mask(tokens[:, prefix:], mask_ratio, masking, generator)
        latent = encode_tokens(self.encoder, torch.cat([tokens[:, :prefix], visible], dim=1))
        return latent, mask, ids_restore                              # (B, P + N_keep, D)

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent (B, P + N_keep, D) -> predicted pixels (B, N, p*p*C) for every patch."""
        prefix = num_prefix_tokens(self.encoder)
        x = self.decoder_embed(latent)                                # (B, P + N_keep, Dd)
        B, N = ids_restore.shape
        n_masked = N - (x.shape[1] - prefix)
        fill = self.mask_token.to(x.dtype).expand(B, n_masked, -1)    # (B, N - N_keep, Dd)
        patches = torch.cat([x[:, prefix:], fill], dim=1)             # (B, N, Dd), shuffled
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], patches], dim=1)                     # CLS + N in patch order
        x = x + self.decoder_pos_embed.to(x.dtype)                    # (B, 1 + N, Dd)
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]                            # (B, N, p*p*C)

    def forward(self, images: Tensor, mask_ratio: float | None = None, *,
                masking: str | None = None, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """images normalised (B, C, H, W) -> (loss, pred (B, N, p*p*C), mask (B, N))."""
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio, masking=masking,
                                                         generator=generator)
        pred = self.forward_decoder(latent, ids_restore)
        target = patchify(images, self.patch_size)
        return mae_loss(pred, target, mask, norm_pix=self.config.norm_pix_loss), pred, mask

    def training_step(self, images, labels, step):
        """uint8 images (B, C, H, W) -> (loss, metrics). No augmentation beyond masking: MAE
        works with random crops alone, and at 32 px the shapes need none (Lecture 03)."""
        loss, _, mask = self(normalize(images))
        return loss, {"mask_fraction": float(mask.float().mean())}

    @property
    def backbone(self) -> nn.Module:
        """The encoder: evaluate it on whole images (k-NN, probe, fine-tune)."""
        return self.encoder


def full_sequence_loss(mae: MAE, images: Tensor, mask_ratio: float, mask_token: Tensor) -> Tensor:
    """The baseline MAE is compared with: masked patches become ``mask_token`` *inside* the
    encoder, which runs on all 1 + N tokens; the same decoder (no unshuffle needed) and loss."""
    grid = mae.grid_size
    _, mask, _ = random_masking(images.new_zeros(images.shape[0], grid * grid, 1), mask_ratio)
    tokens = embed_tokens(mae.encoder, images, mask=mask.bool(), mask_token=mask_token)
    latent = encode_tokens(mae.encoder, tokens)                         # (B, 1 + N, D)
    x = mae.decoder_embed(latent) + mae.decoder_pos_embed.to(latent.dtype)
    pred = mae.decoder_pred(mae.decoder_norm(mae.decoder_blocks(x)))[:, 1:]
    return mae_loss(pred, patchify(images, mae.patch_size), mask, mae.config.norm_pix_loss)


# --- 7. reconstructions --------------------------------------------------------------------------
@torch.no_grad()
def reconstruct(model: MAE, images: Tensor, mask_ratio: float | None = None, *,
                masking: str | None = None, generator: torch.Generator | None = None,
                statistics: str = "true") -> tuple[Tensor, Tensor, Tensor]:
    """What the lecture shows: (masked input, reconstruction, pasted) images (B, C, H, W) in the
    input's normalised space. ``pasted`` keeps the visible patches and fills the masked ones with
    the prediction.

    With ``norm_pix_loss`` the model predicts each patch's *normalised* pixels (mean 0, std 1
    within the patch); drawing them needs a mean and a standard deviation per patch:

    - ``statistics="true"``: each predicted patch gets the mean and std of the true patch. The
      shapes come from the model, but the colour layout of the masked patches comes from the
      ground truth, which the model never saw.
    - ``statistics="visible"``: every masked patch of an image gets the average mean and std of
      that image's *visible* patches: only what the model was given, so the picture shows what
      the model alone knows.
    """
    if statistics not in ("true", "visible"):
        raise ValueError(f"statistics must be 'true' or 'visible', got {statistics!r}")
    was_training = model.training
    model.eval()
    try:
        _, pred, mask = model(images, mask_ratio, masking=masking, generator=generator)
    finally:
        model.train(was_training)
    p = model.patch_size
    target = patchify(images, p)                                    # (B, N, p*p*C)
    m = mask.unsqueeze(-1).to(pred.dtype)                           # (B, N, 1)
    if model.config.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)                    # (B, N, 1)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        if statistics == "visible":
            visible = 1 - m
            n_visible = visible.sum(dim=1, keepdim=True).clamp_min(1)
            mean = (mean * visible).sum(dim=1, keepdim=True) / n_visible
            std = (std * visible).sum(dim=1, keepdim=True) / n_visible
        pred = pred * std + mean
    masked = unpatchify(target * (1 - m), p, model.channels)
    recon = unpatchify(pred, p, model.channels)
    pasted = unpatchify(target * (1 - m) + pred * m, p, model.channels)
    return masked, recon, pasted


@torch.no_grad()
def reconstruction_loss(mae: MAE, images: Tensor, mask_ratio: float, *, seed: int = 0,
                        device: torch.device | str = "cpu") -> float:
    """Held-out MAE loss at ``mask_ratio`` (one fixed mask draw per image)."""
    mae.eval()
    generator = torch.Generator().manual_seed(seed)
    losses = [mae(normalize(images[i:i + 500].to(device)), mask_ratio, generator=generator)[0]
              for i in range(0, images.shape[0], 500)]
    mae.train()
    return torch.stack(losses).mean().item()


# --- 8. the masking-ratio argument: an information model (lecture 03, section 6) ----------------
def information(ratio: Tensor | float, i0: float, decay: float) -> Tensor:
    """I(r) = I0 exp(-lambda r): how much the visible part still tells about the masked part."""
    return i0 * torch.exp(-decay * torch.as_tensor(ratio, dtype=torch.float64))


def optimal_ratio(decay: float) -> float:
    """r* = argmax_r r I0 exp(-lambda r) = 1 / lambda (set the derivative I0 e^{-lambda r}
    (1 - lambda r) to zero), clipped to the masking ratios that exist, (0, 1]."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay > 0:
        raise ValueError(f"decay must be a positive number, got {decay!r}")
    return min(1.0, 1.0 / decay)

"""The pretrained checkpoints the course ships, installed with the package (nothing to download).

    from course_lib import zoo
    zoo.available()        # ['dino', 'ibot', 'ijepa', 'mae', 'moco', 'simclr', 'simclr-nocolour', ...]
    model = zoo.load("dino")
    model.meta["metrics"]                # {'knn_accuracy': ..., ...} measured on these weights
    zoo.metadata("dino")                 # the same dict, without building the network
    feats = model.features(images)       # uint8 (n, 3, H, W) -> (n, D), the pooled features

Each checkpoint was trained by ``python -m course_lib pretrain METHOD --scale long --out FILE``
(``course_lib.labs.pretrain``). The file holds the backbone's weights in half precision and its
metadata: the method, steps, seed, commit, config (the ViT and the recipe), the ``make_shapes``
arguments of its data, the pooling its evaluation uses, the wall time and the metrics reached,
which :func:`save` measures on the half-precision weights, so :func:`measure` on a loaded model
gives them back.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .backbones import ViTConfig, build_vit
from .data import normalize
from .evaluate import POOLINGS, Pooled, evaluate_backbone, extract_features

Tensor = torch.Tensor
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
SUFFIX = ".pt"
REQUIRED_META = ("method", "steps", "seed", "commit", "config", "data", "pooling", "metrics")


class Pretrained:
    """A shipped model: ``backbone`` (eval mode), ``meta`` (dict) and :meth:`features`."""

    def __init__(self, backbone: nn.Module, meta: dict) -> None:
        if meta.get("pooling") not in POOLINGS:
            raise ValueError(f"meta['pooling'] must be one of {POOLINGS}, got {meta.get('pooling')!r}")
        self.backbone, self.meta = backbone.eval(), meta

    @property
    def name(self) -> str:
        return self.meta["method"]

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """uint8 images (n, 3, H, W) at the checkpoint's size -> float32 features (n, D) on the
        backbone's device: the CLS token or the mean patch token (``meta["pooling"]``), in eval
        mode, without gradients, in batches."""
        size = self.meta["data"]["image_size"]
        if (not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4
                or tuple(images.shape[1:]) != (3, size, size)):
            got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor)
                   else type(images).__name__)
            raise ValueError(f"images must be uint8 (n, 3, {size}, {size}) (the size this "
                             f"checkpoint was trained at), got {got}")
        pooled = Pooled(self.backbone, self.meta["pooling"])
        return extract_features(pooled, images, transform=normalize)

    def __repr__(self) -> str:
        knn = self.meta["metrics"].get("knn_accuracy")
        return (f"Pretrained({self.name!r}, steps={self.meta['steps']}, "
                f"knn_accuracy={knn:.3f}, pooling={self.meta['pooling']!r})")


def available(directory: str | Path = CHECKPOINT_DIR) -> list[str]:
    """Names of the checkpoints in ``directory`` (default: the ones installed with the course)."""
    return sorted(path.stem for path in Path(directory).glob(f"*{SUFFIX}"))


def _half(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
            for k, v in state.items()}


def _build(meta: dict, state: dict[str, Tensor], device: torch.device | str) -> Pretrained:
    backbone = build_vit(ViTConfig(**meta["config"]["vit"]))
    backbone.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return Pretrained(backbone.to(device), meta)


def load(name: str, *, directory: str | Path = CHECKPOINT_DIR,
         device: torch.device | str = "cpu") -> Pretrained:
    """The checkpoint ``name`` (one of :func:`available`) as a :class:`Pretrained`, in float32."""
    names = available(directory)
    if name not in names:
        raise ValueError(f"name must be one of the checkpoints {names}, got {name!r}")
    blob = torch.load(Path(directory) / f"{name}{SUFFIX}", map_location="cpu", weights_only=True)
    return _build(blob["meta"], blob["state_dict"], device)


def metadata(name: str, *, directory: str | Path = CHECKPOINT_DIR) -> dict:
    """The ``meta`` of checkpoint ``name`` without building its network: what :func:`load`'s
    ``.meta`` holds, for tables that read only the recorded figures."""
    names = available(directory)
    if name not in names:
        raise ValueError(f"name must be one of the checkpoints {names}, got {name!r}")
    blob = torch.load(Path(directory) / f"{name}{SUFFIX}", map_location="cpu", weights_only=True,
                      mmap=True)                     # the weights stay on disk
    return blob["meta"]


def measure(model: Pretrained, *, probe_epochs: int = 0) -> dict[str, float]:
    """The checkpoint's evaluation on the data of its ``meta``: weighted 20-NN accuracy of its
    pooled features from the training images to the held-out ones (``course_lib.evaluate``),
    with its standard error, and a linear probe when ``probe_epochs`` > 0."""
    from .labs.pretrain import shapes_for
    train_x, train_y, test_x, test_y = shapes_for(model.meta["data"])
    return evaluate_backbone(model.backbone, train_x, train_y, test_x, test_y,
                             pooling=model.meta["pooling"], probe_epochs=probe_epochs,
                             diagnostics=False)


def save(path: str | Path, backbone: nn.Module, meta: dict, *, probe_epochs: int = 100) -> Pretrained:
    """Write ``backbone`` in half precision with ``meta`` to ``path``; the metrics are measured
    on the half-precision weights (so a loaded copy reproduces them) and stored as
    ``meta["metrics"]``. Returns the saved model as :func:`load` would."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"path must end in {SUFFIX}, got {str(path)!r}")
    if not hasattr(backbone, "course_config"):
        raise ValueError("backbone must be built by course_lib.backbones.build_vit (it records "
                         "the config a checkpoint needs to rebuild it)")
    state = _half(backbone.state_dict())
    model = _build({**meta, "metrics": {}}, state, "cpu")
    model.meta["metrics"] = measure(model, probe_epochs=probe_epochs)
    missing = [key for key in REQUIRED_META if key not in model.meta]
    if missing:
        raise ValueError(f"meta lacks {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": model.meta, "state_dict": state}, path)
    return model

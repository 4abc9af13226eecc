"""Search for a CPU scale where the self-supervised methods learn: one run per call.

Trains one method on the embedded shapes data from a seeded initialisation and prints (and
appends to ``--out``, one JSON object per line) the weighted 20-NN accuracy of the backbone on
held-out images before and after training, with the wall time. Every knob the search turns is an
option: data (clutter, image size, one colour for every image), backbone preset, views (crop
scale, colour jitter, hue, grayscale, rotation, a random mix of the colour channels, DINO's
solarisation of the second view, local crops)
and the method's recipe. For DINO the row also says what the teacher sorts the held-out images by
(:func:`cluster_shares`); ``--knn-every N`` adds the k-NN every N steps.

    python benchmarks/course_scale.py --method simclr --steps 400 --clutter 0 --threads 1
    python benchmarks/course_scale.py --table       # the rows so far as a markdown table
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_lib.augment import ViewSpec, augment_batch  # noqa: E402
from course_lib.backbones import PRESETS, build_vit  # noqa: E402
from course_lib.data import make_shapes, normalize  # noqa: E402
from course_lib.diagnostics import normalized_mutual_information  # noqa: E402
from course_lib.dino import DINO, DINOConfig  # noqa: E402
from course_lib.evaluate import extract_features, knn_accuracy  # noqa: E402
from course_lib.labs.dino import image_properties  # noqa: E402
from course_lib.labs.shipped import object_hue_labels  # noqa: E402
from course_lib.moco import MoCo  # noqa: E402
from course_lib.simclr import SimCLR  # noqa: E402
from course_lib.supervised import Supervised  # noqa: E402
from course_lib.train import TrainConfig, train  # noqa: E402


def rotate(views: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each view (R, C, S, S) by its own angle in [-degrees, degrees], border padding."""
    angle = (torch.rand(views.shape[0], generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                         torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)  # (R, 2, 3)
    grid = F.affine_grid(theta.to(views), list(views.shape), align_corners=False)
    return F.grid_sample(views, grid, padding_mode="border", align_corners=False)


def remap_colours(views: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """With probability ``p`` per view, mix its (normalised) channels by a random orthogonal 3x3
    matrix (rotations and reflections of colour space): every colour, and which of object and
    background is brighter, changes; every edge stays."""
    b = views.shape[0]
    q, r = torch.linalg.qr(torch.randn(b, 3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)      # Haar-distributed
    keep = torch.rand(b, generator=generator) >= p
    q[keep] = torch.eye(3)
    return torch.einsum("bij,bjhw->bihw", q.to(views), views)


def image_attributes(images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor) -> dict:
    """What varies between the shapes images, each as a few classes: lecture 02's shape, area
    (quartiles) and position (3x3), with the object's hue sector and the background's brightness."""
    outside = (~masks).unsqueeze(1)                                       # (n, 1, H, W)
    background = (images.float() * outside).sum((1, 2, 3)) / (3 * outside.sum((1, 2, 3)))
    quartiles = torch.bucketize(background, torch.quantile(background, torch.tensor([0.25, 0.5, 0.75])))
    return {"shape": labels, "hue": object_hue_labels(images, masks), "background": quartiles,
            **{k: v for k, v in image_properties(masks, labels).items() if k != "shape"}}


@torch.no_grad()
def cluster_shares(method, images, masks, labels) -> dict:
    """Sort held-out images by the DINO teacher's target (argmax of its centred logits on the plain
    image) and measure, for each attribute, the normalised mutual information with that sorting."""
    method.teacher.eval()
    logits = method.teacher([normalize(images)])                       # (n, K)
    clusters = (logits - method.loss.center).argmax(1)
    shares = {k: round(normalized_mutual_information(v, clusters), 3)
              for k, v in image_attributes(images, masks, labels).items()}
    return {**shares, "clusters_used": int(clusters.unique().numel())}


def make_views(args, n_views: int = 2, colour: bool = True, n_local: int = 0):
    spec = ViewSpec(size=args.image_size, scale=tuple(args.crop),
                    jitter_p=0.8 if colour else 0.0, brightness=0.8 * args.strength,
                    contrast=0.8 * args.strength, saturation=0.8 * args.strength,
                    hue=args.hue if colour else 0.0, grayscale_p=args.gray if colour else 0.0)
    local = replace(spec, size=args.image_size // 2, scale=tuple(args.local_crop))
    generator = torch.Generator().manual_seed(args.seed + 1)

    if getattr(args, "library_views", False):      # the rotation inside the view (before jitter)
        spec = replace(spec, rotation=(-args.rotate, args.rotate))
        local = replace(local, rotation=(-args.rotate, args.rotate))

    # DINO's second global view (and BYOL's) is solarised with probability 0.2: every pixel at
    # 128 or above inverted, so a bright background turns dark in that view and not in the other
    second = replace(spec, solarize_p=getattr(args, "solarize", 0.0)) if colour else spec
    specs = ([spec, second] + [spec] * (n_views - 2) if n_views >= 2 else [spec] * n_views) + [local] * n_local

    def views(images):
        out = augment_batch(images, specs, generator=generator)
        if getattr(args, "library_views", False):
            return out
        if args.rotate > 0:
            out = [rotate(v, args.rotate, generator) for v in out]
        if getattr(args, "remap", 0) > 0:
            out = [remap_colours(v, args.remap, generator) for v in out]
        return out
    return views


def build(args):
    config = PRESETS[args.preset]
    changes = {"img_size": args.image_size}
    if args.depth:
        changes["depth"] = args.depth
    if args.width:
        changes.update(embed_dim=args.width, num_heads=args.width // 32)
    config = replace(config, **changes)
    torch.manual_seed(args.seed)
    return build_vit(config), config.embed_dim


DEFAULTS = {"seed": 0, "one_colour": False, "one_size": 0.0, "library_views": False, "steps": 400, "batch": 128,
            "lr": 1e-3, "clutter": 0.0, "preset": "cpu", "depth": 0, "width": 0,
            "crop": [0.6, 1.0], "strength": 0.3, "hue": 0.06, "gray": 0.2, "rotate": 0.0,
            "temperature": 0.1, "solarize": 0.0}
DINO_DEFAULTS = {"out_dim": 1024, "momentum": 0.99, "teacher_temp": 0.04, "bn_head": False,
                 "hidden": 512, "bottleneck": 128, "local": 0, "remap": 0.0, "sinkhorn": 0}
MOCO_DEFAULTS = {"queue": 4096, "momentum": 0.99}


def table(path: str) -> str:
    """The rows of ``path`` as a markdown table: what each run changed from the defaults."""
    lines = ["| method | changed from the defaults | steps | k-NN untrained -> trained (teacher) "
             "| teacher entropy | wall s |", "|---|---|---|---|---|---|"]
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        extra = {"dino": DINO_DEFAULTS, "moco": MOCO_DEFAULTS}.get(row["method"], {})
        defaults = {**DEFAULTS, **extra}
        changed = [k for k, v in defaults.items() if k != "steps" and row.get(k, v) != v]
        knn = f"{row['knn_before']:.3f} -> {row['knn_after']:.3f}"
        if "knn_teacher" in row:
            knn += f" ({row['knn_teacher']:.3f})"
        entropy = f"{row['teacher_entropy']:.2f}" if row.get("teacher_entropy") is not None else ""
        lines.append(f"| {row['method']} | {', '.join(f'{k} {row[k]}' for k in changed) or '-'} "
                     f"| {row['steps']} | {knn} | {entropy} | {row['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="store_true", help="print the rows of --out and stop")
    p.add_argument("--method", choices=["simclr", "moco", "dino", "supervised"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--n-train", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--clutter", type=float, default=0.0)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--preset", default="cpu")
    p.add_argument("--depth", type=int, default=0)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--crop", type=float, nargs=2, default=[0.6, 1.0])
    p.add_argument("--strength", type=float, default=0.3)
    p.add_argument("--hue", type=float, default=0.06)
    p.add_argument("--gray", type=float, default=0.2)
    p.add_argument("--rotate", type=float, default=0.0)
    p.add_argument("--solarize", type=float, default=0.0,
                   help="probability that the second view is solarised (DINO's second global crop: 0.2)")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--queue", type=int, default=4096)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--out-dim", type=int, default=1024)
    p.add_argument("--teacher-temp", type=float, default=0.04)
    p.add_argument("--student-temp", type=float, default=0.1)
    p.add_argument("--bn-head", action="store_true")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--bottleneck", type=int, default=128)
    p.add_argument("--sinkhorn", type=int, default=0,
                   help="DINO: Sinkhorn-Knopp targets with this many iterations instead of the center")
    p.add_argument("--no-centering", action="store_true")
    p.add_argument("--no-sharpening", action="store_true")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--remap", type=float, default=0.0,
                   help="probability of a random orthogonal mix of each view's colour channels")
    p.add_argument("--one-colour", action="store_true",
                   help="repaint every image: light grey object, dark grey background")
    p.add_argument("--one-size", type=float, default=0.0,
                   help="every object covers this fraction of the image (0: the data's own range)")
    p.add_argument("--library-views", action="store_true",
                   help="rotate inside course_lib.augment's views, as python -m course_lib does")
    p.add_argument("--local", type=int, default=0, help="DINO: local crops of half the image side")
    p.add_argument("--local-crop", type=float, nargs=2, default=[0.1, 0.4])
    p.add_argument("--knn-every", type=int, default=0,
                   help="also log the k-NN every this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "course_scale.jsonl"))
    args = p.parse_args()
    if args.table:
        print(table(args.out))
        return
    if args.method is None:
        p.error("--method is required (or --table)")
    if args.local and args.method != "dino":
        p.error(f"--local: local crops are DINO's; --method {args.method} takes two views")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = dict(clutter=args.clutter, colour="grey" if args.one_colour else "random",
                area=args.one_size or None)
    images, labels, masks = make_shapes(args.n_train, args.image_size, 0, **data)
    test_images, test_labels, test_masks = make_shapes(args.n_test, args.image_size, 0,
                                                       split="test", **data)
    backbone, dim = build(args)

    def knn(model) -> float:
        bank = extract_features(model, images, transform=normalize)
        test = extract_features(model, test_images, transform=normalize)
        return knn_accuracy(bank, labels, test, test_labels, k=20)

    before = knn(backbone)
    if args.method == "simclr":
        method = SimCLR(backbone, dim, temperature=args.temperature, views=make_views(args))
    elif args.method == "moco":
        method = MoCo(backbone, dim, queue_size=args.queue, momentum=args.momentum,
                      temperature=args.temperature, views=make_views(args))
    elif args.method == "supervised":
        plain = make_views(args, n_views=1, colour=False)
        method = Supervised(backbone, dim, 10, augment=lambda x: plain(x)[0])
    else:
        config = DINOConfig(out_dim=args.out_dim, hidden_dim=args.hidden,
                            bottleneck_dim=args.bottleneck,
                            use_bn_in_head=args.bn_head, n_local_crops=args.local,
                            global_size=args.image_size, teacher_temp=args.teacher_temp,
                            warmup_teacher_temp=args.teacher_temp, student_temp=args.student_temp,
                            momentum_teacher=args.momentum, use_centering=not args.no_centering,
                            use_sharpening=not args.no_sharpening, use_ema=not args.no_ema)
        crops = make_views(args, n_local=args.local)       # 2 global views, then the locals
        method = DINO(backbone, dim, steps=args.steps, config=config,
                      crops=lambda x: list(crops(x)))
        method.loss.sinkhorn_iters = args.sinkhorn     # 0: DINO's center
    curve = []
    if args.knn_every:
        watched = method.teacher.backbone if args.method == "dino" else backbone
        after = method.after_step

        def after_step(step):
            after(step)
            if (step + 1) % args.knn_every == 0:
                curve.append((step + 1, knn(watched)))
                print(f"step {step + 1}: k-NN {curve[-1][1]:.3f}", flush=True)
        method.after_step = after_step
    start = time.perf_counter()
    history = train(method, images, TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr,
                                                warmup_steps=args.warmup, seed=args.seed,
                                                progress=False),
                    labels=labels if args.method == "supervised" else None)
    wall = time.perf_counter() - start
    result = {"tag": args.tag, **{k: v for k, v in vars(args).items() if k not in ("out", "tag")},
              "knn_before": before, "knn_after": knn(backbone), "wall_s": round(wall, 1),
              "s_per_step": round(wall / args.steps, 3), "final_loss": history.last("loss"),
              "knn_curve": curve}
    if args.method == "dino":
        result["knn_teacher"] = knn(method.teacher.backbone)
        result["teacher_entropy"] = history.metrics.get("teacher_entropy", [None])[-1]
        result["batch_mean_entropy"] = history.metrics.get("batch_mean_entropy", [None])[-1]
        result["cluster_nmi"] = cluster_shares(method, test_images, test_masks, test_labels)
    line = json.dumps(result)
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    main()

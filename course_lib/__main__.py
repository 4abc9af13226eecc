"""Command line for the jobs a homework or an instructor runs outside a notebook.

    python -m course_lib --help
    python -m course_lib info                       # versions, device, scale
    python -m course_lib shapes --n 64 --out grid.png
    python -m course_lib supervised --json out.json # the learnability smoke run
    python -m course_lib simclr --temperature 0.1 --json out.json
    python -m course_lib moco --batch-size 32 --queue-size 4096 --json out.json
    python -m course_lib dino-ablation --scale cpu --json out.json
    python -m course_lib mae-speedup --scale cpu --json out.json
    python -m course_lib mae-sweep --scale cpu --json out.json

Each command prints a short human summary and, with ``--json``, writes its figures to a file.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from .masking import MASKINGS


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        print(f"wrote {path}")


def cmd_info(args: argparse.Namespace) -> int:
    import timm
    import torch
    import torchvision

    from . import __version__
    from .runtime import default_device, default_scale, in_colab
    device = default_device()
    info = {"course_lib": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "device": str(device), "scale": default_scale(device), "colab": in_colab(),
            "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    for key, value in info.items():
        print(f"{key:>15}: {value}")
    _write_json(args.json, info)
    return 0


def cmd_shapes(args: argparse.Namespace) -> int:
    from .data import SHAPE_CLASSES, make_shapes
    start = time.perf_counter()
    images, labels, masks = make_shapes(args.n, image_size=args.size, seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"make_shapes({args.n}, image_size={args.size}, seed={args.seed}): {seconds:.2f} s, "
          f"{len(SHAPE_CLASSES)} classes, mean mask fraction {masks.float().mean():.3f}")
    if args.out:
        import matplotlib
        matplotlib.use("Agg")
        from .viz import image_grid
        shown = min(args.n, 64)
        fig = image_grid(images[:shown], labels=[SHAPE_CLASSES[i] for i in labels[:shown]])
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0


def _build_method(args: argparse.Namespace, settings):
    """The method a pretraining command trains, built explicitly (no registry): backbone, then
    the method around it."""
    from .augment import augment_batch, batched_simclr_views, simclr_view_spec
    from .backbones import build_vit
    from .data import N_CLASSES
    backbone = build_vit(args.preset, img_size=args.size)
    if args.command == "supervised":
        from .supervised import Supervised
        # crop (60-100% of the area) and flip only: smaller crops often cut the object out
        spec = simclr_view_spec(args.size, strength=0.0, scale=(0.6, 1.0))
        return Supervised(backbone, backbone.embed_dim, N_CLASSES,
                          augment=lambda x: augment_batch(x, [spec])[0])
    # CPU scale: milder views (crops of 60-100 %, colour strength 0.3), with which a few hundred
    # steps lift the k-NN accuracy off chance (Lecture 01, settings); GPU scale: SimCLR's CIFAR views.
    view_args = settings.pick(cpu=dict(strength=0.3, scale=(0.6, 1.0)), gpu=dict(strength=0.5, scale=(0.2, 1.0)))
    views = lambda x: batched_simclr_views(x, **view_args)  # noqa: E731
    if args.command == "simclr":
        from .simclr import SimCLR
        return SimCLR(backbone, backbone.embed_dim, temperature=args.temperature or 0.1, views=views)
    from .moco import MoCo
    return MoCo(backbone, backbone.embed_dim, queue_size=args.queue_size,
                temperature=args.temperature or 0.2, views=views, seed=args.seed)


def cmd_pretrain(args: argparse.Namespace) -> int:
    """supervised / simclr / moco: train on the shapes data, then k-NN and linear probe."""
    from .data import make_shapes
    from .evaluate import evaluate_backbone
    from .runtime import course_settings
    from .train import TrainConfig, train
    settings = course_settings(scale=args.scale, seed=args.seed)
    train_x, train_y, _ = make_shapes(args.n_train, image_size=args.size, seed=args.seed)
    test_x, test_y, _ = make_shapes(args.n_test, image_size=args.size, seed=args.seed, split="test")
    method = _build_method(args, settings)
    config = TrainConfig(steps=args.steps or settings.pick(cpu=300, gpu=5000),
                         batch_size=args.batch_size or settings.pick(cpu=128, gpu=512),
                         lr=args.lr, warmup_steps=min(20, (args.steps or 300) // 10), seed=args.seed)
    start = time.perf_counter()
    history = train(method, train_x, config, labels=train_y, device=settings.device)
    result = {"command": args.command, "preset": args.preset, "steps": config.steps,
              "batch_size": config.batch_size, "train_seconds": round(time.perf_counter() - start, 2),
              "final_loss": history.last("loss"), "chance": 1 / len(train_y.unique())}
    result.update(evaluate_backbone(method.backbone, train_x, train_y, test_x, test_y,
                                    device=settings.device, probe_epochs=0 if args.no_probe else 100))
    if args.command == "supervised":                         # the trained classifier itself
        from .data import normalize
        from .evaluate import extract_features
        logits = extract_features(method, test_x, transform=normalize, device=settings.device)
        result["head_accuracy"] = (logits.argmax(1).cpu() == test_y).float().mean().item()
    print(json.dumps(result, indent=2, sort_keys=True))
    _write_json(args.json, result)
    return 0


def cmd_dino_ablation(args: argparse.Namespace) -> int:
    """The collapse ablation of Lecture 02: every variant at one scale, figures to JSON."""
    from .labs.dino import VARIANTS, collapse_ablation
    from .runtime import course_settings
    settings = course_settings(scale=args.scale, seed=args.seed)
    start = time.perf_counter()
    result = collapse_ablation(settings.scale, seed=args.seed, variants=args.variants,
                               device=settings.device)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(f"{'variant':<11} {'teacher entropy':>15} {'KL':>7} {'k-NN':>6}   (log K = "
          f"{result['log_k']:.3f}, chance {result['chance']:.2f}, random init "
          f"{result['random_init_knn']:.3f})")
    for name in (n for n in VARIANTS if n in result["variants"]):
        run = result["variants"][name]
        print(f"{name:<11} {run['final_teacher_entropy']:>15.3f} {run['final_kl']:>7.3f} "
              f"{run['knn_accuracy']:>6.3f}")
    print(f"total {result['total_seconds']} s")
    _write_json(args.json, result)
    return 0


def cmd_mae_speedup(args: argparse.Namespace) -> int:
    """Lecture 03: the asymmetric encoder's measured saving, in one process."""
    from .labs.mae import measure_speedup
    from .runtime import course_settings
    settings = course_settings(scale=args.scale, seed=0)
    result = measure_speedup(settings.scale, mask_ratio=args.mask_ratio, device=settings.device,
                             repeats=args.repeats)
    ms = {name: round(value * 1e3, 1) for name, value in result["median_seconds"].items()}
    print(f"tokens {result['n_tokens']} -> {result['n_visible_tokens']} visible at mask ratio "
          f"{result['mask_ratio']} (token ratio {result['token_ratio']:.2f}), batch "
          f"{result['batch_size']}, {result['device']}, median of {result['repeats']}")
    print(f"encoder fwd+bwd: all tokens {ms['encoder_all']} ms, visible {ms['encoder_visible']} ms"
          f" -> encoder_speedup {result['encoder_speedup']:.2f}x")
    print(f"whole step: full-sequence autoencoder {ms['full_sequence_step']} ms, MAE "
          f"{ms['mae_step']} ms -> step_speedup {result['step_speedup']:.2f}x")
    _write_json(args.json, result)
    return 0


def cmd_mae_sweep(args: argparse.Namespace) -> int:
    """Lecture 03: the masking-ratio sweep and the masking strategies at 0.75."""
    from .labs.mae import masking_sweep
    from .runtime import course_settings
    settings = course_settings(scale=args.scale, seed=args.seed)
    start = time.perf_counter()
    result = masking_sweep(settings.scale, seed=args.seed, ratios=tuple(args.ratios),
                           strategies=tuple(args.strategies), steps=args.steps,
                           finetune_steps=args.finetune_steps, device=settings.device)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    init = result["random_init"]
    print(f"{'run':<16} {'recon loss':>10} {'k-NN':>6} {'probe':>6} {'fine-tune':>9}   (chance "
          f"{result['chance']:.2f}; random init: k-NN {init['knn_accuracy']:.3f}, probe "
          f"{init['linear_probe']:.3f}, fine-tune {init['finetune_accuracy']:.3f})")
    for group, label in (("ratios", "ratio {}"), ("strategies", "{} @ 0.75")):
        for key, run in result[group].items():
            print(f"{label.format(key):<16} {run['reconstruction_loss']:>10.3f} "
                  f"{run['knn_accuracy']:>6.3f} {run['linear_probe']:>6.3f} "
                  f"{run['finetune_accuracy']:>9.3f}")
    if "best_ratio" in result:
        print(f"best ratio by fine-tune accuracy: {result['best_ratio']}")
    print(f"total {result['total_seconds']} s")
    _write_json(args.json, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="library versions, device and the scale notebooks will use")
    p.add_argument("--json", help="also write the facts to this JSON file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("shapes", help="generate the embedded shapes dataset, time it, save a grid")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file for a grid of the first 64 images")
    p.set_defaults(func=cmd_shapes)

    helps = {"supervised": "train the backbone with labels (the learnability smoke run)",
             "simclr": "pretrain with SimCLR (NT-Xent), then k-NN and linear probe",
             "moco": "pretrain with MoCo (queue + momentum encoder), then k-NN and linear probe"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--scale", choices=["cpu", "gpu"], default=None,
                       help="default: gpu on CUDA, cpu otherwise ($COURSE_SCALE overrides)")
        p.add_argument("--preset", default="cpu", help="ViT preset of course_lib.backbones")
        p.add_argument("--steps", type=int, default=None, help="default: the scale's")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--temperature", type=float, default=None)
        p.add_argument("--queue-size", type=int, default=4096)
        p.add_argument("--n-train", type=int, default=5000)
        p.add_argument("--n-test", type=int, default=1000)
        p.add_argument("--size", type=int, default=32, help="image size in pixels")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
        p.add_argument("--json", help="write the figures to this JSON file")
        p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("dino-ablation", help="DINO collapse ablation: centering / sharpening / "
                                             "EMA on and off; teacher entropy, KL and k-NN")
    p.add_argument("--scale", choices=["cpu", "gpu"], default=None,
                   help="default: gpu on CUDA, cpu otherwise ($COURSE_SCALE overrides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=None,
                   choices=["none", "centering", "sharpening", "both", "no_ema"],
                   help="default: all five")
    p.add_argument("--json", help="write the figures and curves to this JSON file")
    p.set_defaults(func=cmd_dino_ablation)

    p = sub.add_parser("mae-speedup", help="MAE: time the encoder on the visible tokens against "
                                           "all tokens, and the MAE step against a full-sequence "
                                           "autoencoder")
    p.add_argument("--scale", choices=["cpu", "gpu"], default=None,
                   help="default: gpu on CUDA, cpu otherwise ($COURSE_SCALE overrides)")
    p.add_argument("--mask-ratio", type=float, default=0.75)
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: the scale's)")
    p.add_argument("--json", help="write the timings and ratios to this JSON file")
    p.set_defaults(func=cmd_mae_speedup)

    p = sub.add_parser("mae-sweep", help="MAE: pretrain at several masking ratios and "
                                         "strategies; k-NN, linear probe and fine-tune each")
    p.add_argument("--scale", choices=["cpu", "gpu"], default=None,
                   help="default: gpu on CUDA, cpu otherwise ($COURSE_SCALE overrides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the scale's)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="fine-tuning steps per encoder (default: the scale's)")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75, 0.9])
    p.add_argument("--strategies", nargs="*", default=list(MASKINGS), choices=MASKINGS,
                   help="compared at ratio 0.75 (default: all)")
    p.add_argument("--json", help="write the figures and loss curves to this JSON file")
    p.set_defaults(func=cmd_mae_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

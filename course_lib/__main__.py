"""Command line for the jobs a homework or an instructor runs outside a notebook.

    python -m course_lib --help                     # the commands; COMMAND --help for options
    python -m course_lib --version                  # course_lib <version>
    python -m course_lib info                       # versions, device, scale
    python -m course_lib shapes --n 64 --out grid.png
    python -m course_lib zoo                        # the shipped checkpoints against their labels
    python -m course_lib supervised --json out.json # the learnability smoke run
    python -m course_lib simclr --temperature 0.1 --json out.json
    python -m course_lib moco --batch-size 32 --queue-size 4096 --json out.json
    python -m course_lib pretrain dino --scale long --out dino.pt   # a checkpoint for the zoo
    python -m course_lib dino-ablation --scale cpu --json out.json
    python -m course_lib ibot-ablation --scale cpu --json out.json
    python -m course_lib ijepa-ablation --scale cpu --json out.json
    python -m course_lib mae-speedup --scale cpu --json out.json
    python -m course_lib mae-sweep --scale cpu --json out.json
    python -m course_lib compare --scale cpu --json table.json --out table.png

Each command prints a short human summary and, with ``--json``, writes its figures to a file.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .labs.infonce import PRETRAIN_SCALES, TEMPERATURES
from .labs.mae import RATIOS as MAE_RATIOS
from .labs.mae import STRATEGIES as MAE_STRATEGIES
from .labs.mae import speedup_summary, sweep_summary
from .labs.pretrain import checkpoint_summary, recipe_views
from ._cli_types import (json_option, mask_ratio, non_negative_int, output_file, positive_float,
                         positive_int, scale_option, seed_option, unit_float)
from ._cli_info import (info_arguments, info_run, info_summary, installed_version,
                        shapes_arguments, shapes_run, shapes_summary, zoo_arguments, zoo_run,
                        zoo_summary)
from .runtime import at_scale


def _settings(args: argparse.Namespace):
    from .runtime import course_settings
    return course_settings(scale=args.scale, seed=getattr(args, "seed", 0))


# --- the commands: arguments, run(args) -> dict, summary(result) -> str ------------------------
# (info, shapes and zoo, which train nothing, are in _cli_info.py)
def pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from .backbones import PRESETS
    scale_option(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="ViT preset of course_lib.backbones")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="optimizer steps; default: the scale's "
                        f"({_per_scale({k: s.steps for k, s in PRETRAIN_SCALES.items()})})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per step; default: the scale's "
                        f"({_per_scale({k: s.batch_size for k, s in PRETRAIN_SCALES.items()})})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate; default: the scale's "
                        f"({_per_scale({k: s.lr for k, s in PRETRAIN_SCALES.items()})})")
    moco = {k: s.moco for k, s in PRETRAIN_SCALES.items()}
    p.add_argument("--temperature", type=positive_float, default=None,
                   help=f"InfoNCE temperature; default: SimCLR {TEMPERATURES['simclr']}, MoCo the "
                        f"scale's ({_per_scale({k: m.temperature for k, m in moco.items()})})")
    p.add_argument("--queue-size", type=non_negative_int, default=None,
                   help="MoCo's queue of negatives; 0: the other keys of the batch instead; "
                        f"default: the scale's ({_per_scale({k: m.queue_size for k, m in moco.items()})})")
    p.add_argument("--momentum", type=unit_float, default=None,
                   help="MoCo's key-encoder EMA momentum; default: the scale's "
                        f"({_per_scale({k: m.momentum for k, m in moco.items()})})")
    p.add_argument("--n-train", type=positive_int, default=5000, help="training images")
    p.add_argument("--n-test", type=positive_int, default=1000, help="held-out images")
    p.add_argument("--size", type=positive_int, default=32, help="image side in pixels")
    seed_option(p)
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    json_option(p)


def _build_method(args: argparse.Namespace, scale: str):
    """The method a pretraining command trains, built explicitly: backbone, then the method."""
    from .augment import augment_batch, simclr_view_spec
    from .backbones import build_vit
    from .data import N_CLASSES
    backbone = build_vit(args.preset, img_size=args.size)
    setup = at_scale(PRETRAIN_SCALES, scale)
    if args.command == "supervised":
        from .supervised import Supervised
        # the scale's crops, flips, rotations and grey views, no colour jitter
        spec = simclr_view_spec(args.size, strength=0.0, scale=setup.crop_scale,
                                rotation=setup.rotation, grayscale_p=setup.grayscale_p)
        return Supervised(backbone, backbone.embed_dim, N_CLASSES,
                          augment=lambda x: augment_batch(x, [spec])[0])
    views = functools.partial(recipe_views, setup)
    if args.command == "simclr":
        from .simclr import SimCLR
        temperature = args.temperature if args.temperature is not None else TEMPERATURES["simclr"]
        return SimCLR(backbone, backbone.embed_dim, temperature=temperature, views=views)
    from .moco import MoCo
    return MoCo(backbone, backbone.embed_dim, **moco_settings(args, setup), views=views,
                seed=args.seed)


def moco_settings(args: argparse.Namespace, setup) -> dict:
    """MoCo's momentum, queue and temperature: the options given, else the scale's recipe."""
    given = {"momentum": args.momentum, "queue_size": args.queue_size,
             "temperature": args.temperature}
    return {k: v if v is not None else getattr(setup.moco, k) for k, v in given.items()}


def pretrain_run(args: argparse.Namespace) -> dict:
    """supervised / simclr / moco: train on the shapes data, then k-NN and linear probe."""
    from .data import make_shapes
    from .evaluate import evaluate_backbone
    from .train import TrainConfig, train
    settings = _settings(args)
    setup = at_scale(PRETRAIN_SCALES, settings.scale)
    train_x, train_y, _ = make_shapes(args.n_train, image_size=args.size, seed=args.seed,
                                      clutter=setup.clutter)
    test_x, test_y, _ = make_shapes(args.n_test, image_size=args.size, seed=args.seed, split="test",
                                    clutter=setup.clutter)
    method = _build_method(args, settings.scale)
    steps = args.steps if args.steps is not None else setup.steps
    config = TrainConfig(steps=steps,
                         batch_size=args.batch_size if args.batch_size is not None else setup.batch_size,
                         lr=args.lr if args.lr is not None else setup.lr,
                         warmup_steps=min(20, steps // 10), seed=args.seed)
    start = time.perf_counter()
    history = train(method, train_x, config, labels=train_y, device=settings.device)
    result = {"command": args.command, "preset": args.preset, "steps": config.steps,
              "lr": config.lr, "clutter": setup.clutter, "rotation": list(setup.rotation),
              "grayscale_p": setup.grayscale_p,
              "batch_size": config.batch_size, "train_seconds": round(time.perf_counter() - start, 2),
              "final_loss": history.last("loss"), "chance": 1 / len(train_y.unique())}
    if args.command == "moco":
        result["moco"] = moco_settings(args, setup)
    result.update(evaluate_backbone(method.backbone, train_x, train_y, test_x, test_y,
                                    device=settings.device, probe_epochs=0 if args.no_probe else 100))
    if args.command == "supervised":                         # the trained classifier itself
        from .data import normalize
        from .evaluate import extract_features
        logits = extract_features(method, test_x, transform=normalize, device=settings.device)
        result["head_accuracy"] = (logits.argmax(1).cpu() == test_y).float().mean().item()
    return result


def pretrain_summary(result: dict) -> str:
    return json.dumps(result, indent=2, sort_keys=True)


def checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    from .labs.pretrain import METHODS, ZOO_SCALE_NAMES, ZOO_SCALES
    p.add_argument("method", choices=METHODS, help="what to train (course_lib.labs.pretrain)")
    p.add_argument("--scale", choices=ZOO_SCALE_NAMES, default=None,
                   help="long: the shipped checkpoints; default: gpu on CUDA, cpu otherwise")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps; default: "
                   f"the scale's ({_per_scale({k: s.recipe.steps for k, s in ZOO_SCALES.items()})})")
    p.add_argument("--n-train", type=positive_int, default=None, help="training images; default: "
                   f"the scale's ({_per_scale({k: s.n_train for k, s in ZOO_SCALES.items()})})")
    p.add_argument("--n-test", type=positive_int, default=None, help="held-out images; default: "
                   f"the scale's ({_per_scale({k: s.n_test for k, s in ZOO_SCALES.items()})})")
    seed_option(p)
    p.add_argument("--probe-epochs", type=non_negative_int, default=100,
                   help="linear probe on the saved weights; 0 skips it")
    p.add_argument("--out", type=output_file(".pt"), default=None,
                   help="write the checkpoint (half precision, with its metadata) here")
    p.add_argument("--eval-every", type=non_negative_int, default=0,
                   help="also measure the held-out k-NN every N steps (meta['knn_trajectory']); 0: never")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate; default: the run's (labs.pretrain.METHOD_LR) or the scale's")
    json_option(p)


def checkpoint_run(args: argparse.Namespace) -> dict:
    from .labs.pretrain import train_checkpoint
    from .runtime import default_device, default_scale
    device = default_device()
    return train_checkpoint(args.method, args.scale or default_scale(device), out=args.out,
                            steps=args.steps, seed=args.seed, probe_epochs=args.probe_epochs,
                            n_train=args.n_train, n_test=args.n_test, device=device,
                            eval_every=args.eval_every, lr=args.lr)


def ablation_command(name: str, help_text: str, lab: str, runner: str) -> "Command":
    """A ``<unit>-ablation`` command from its lab module ``course_lib.labs.<lab>``: ``VARIANTS``,
    ``ABLATION_SCALES``, the runner ``runner(scale, seed=, variants=, steps=, device=)`` and
    ``ablation_summary(result)``."""
    def module():
        return importlib.import_module(f"course_lib.labs.{lab}")

    def arguments(p: argparse.ArgumentParser) -> None:
        variants, scales = list(module().VARIANTS), module().ABLATION_SCALES
        scale_option(p)
        seed_option(p)
        p.add_argument("--variants", nargs="+", choices=variants, default=variants,
                       help="which runs of the ablation")
        p.add_argument("--steps", type=positive_int, default=None, help="training steps per "
                       f"variant; default: the scale's ({_per_scale({k: v.train.steps for k, v in scales.items()})})")
        json_option(p)

    def run(args: argparse.Namespace) -> dict:
        settings = _settings(args)
        return getattr(module(), runner)(settings.scale, seed=args.seed, variants=args.variants,
                                         steps=args.steps, device=settings.device)

    return Command(name, help_text, arguments, run, lambda result: module().ablation_summary(result))


def compare_arguments(p: argparse.ArgumentParser) -> None:
    from .labs.evaluation import COMPARE_SCALES, DATA
    p.add_argument("--scale", choices=tuple(COMPARE_SCALES), default="cpu",
                   help="cpu: 1000 training images, one seed, 30 fine-tuning steps; long: 5000, "
                        "three seeds, 300 steps")
    p.add_argument("--names", nargs="+", default=None,
                   help="checkpoints to compare; default: every one trained on the --data shapes")
    p.add_argument("--data", choices=DATA, default="colourful",
                   help="colourful: the default shapes; plain: one grey, one size (the -plain and "
                        "-fine checkpoints)")
    p.add_argument("--retrain", action="store_true", help="train each method again first")
    p.add_argument("--out", type=output_file(".png", ".pdf", ".svg"), default=None,
                   help="write the figure here")
    json_option(p)


def compare_run(args: argparse.Namespace) -> dict:
    from .labs.evaluation import compare, plot_compare
    from .runtime import default_device
    table = compare(args.names, args.scale, data=args.data, retrain=args.retrain, device=default_device(),
                    progress=True)
    if args.out:
        plot_compare(table).figure.savefig(args.out, bbox_inches="tight", dpi=120)
    return table


def compare_summary(table: dict) -> str:
    """The table as text, one group of rows per ViT with its labelled network first."""
    from .labs.evaluation import compare_text, vit_families
    return compare_text(table, vit_families(list(table["rows"])))


def mae_speedup_arguments(p: argparse.ArgumentParser) -> None:
    scale_option(p)
    p.add_argument("--mask-ratio", type=mask_ratio, default=0.75, help="share of patches masked")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed rounds; default: the scale's (cpu 7, gpu 20)")
    json_option(p)


def mae_speedup_run(args: argparse.Namespace) -> dict:
    from .labs.mae import measure_speedup
    settings = _settings(args)
    return measure_speedup(settings.scale, mask_ratio=args.mask_ratio, device=settings.device,
                           repeats=args.repeats)


def mae_sweep_arguments(p: argparse.ArgumentParser) -> None:
    scale_option(p)
    seed_option(p)
    p.add_argument("--steps", type=positive_int, default=None,
                   help="pretraining steps per run; default: the scale's (cpu 800, gpu 4000)")
    p.add_argument("--finetune-steps", type=positive_int, default=None,
                   help="fine-tuning steps per encoder; default: the scale's (cpu 150, gpu 1000)")
    p.add_argument("--ratios", type=mask_ratio, nargs="+", default=list(MAE_RATIOS),
                   help="masking ratios of the sweep (random masking)")
    p.add_argument("--strategies", nargs="*", choices=MAE_STRATEGIES, default=list(MAE_STRATEGIES),
                   help="masking strategies compared at ratio 0.75")
    p.add_argument("--n-train", type=positive_int, default=None,
                   help="training images (also the k-NN bank); default: the scale's "
                        "(cpu 5000, gpu 20000)")
    p.add_argument("--n-test", type=positive_int, default=None,
                   help="held-out images; default: the scale's (cpu 1000, gpu 2000)")
    json_option(p)


def mae_sweep_run(args: argparse.Namespace) -> dict:
    from .labs.mae import masking_sweep
    settings = _settings(args)
    return masking_sweep(settings.scale, seed=args.seed, ratios=tuple(args.ratios),
                         strategies=tuple(args.strategies), steps=args.steps,
                         finetune_steps=args.finetune_steps, n_train=args.n_train,
                         n_test=args.n_test, device=settings.device)


@dataclass(frozen=True)
class Command:
    """One ``python -m course_lib`` command: its options, the job, and the lines it prints."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]
    summary: Callable[[dict], str]


COMMANDS = (
    Command("info", "library versions, device and the scale notebooks will use",
            info_arguments, info_run, info_summary),
    Command("shapes", "generate the embedded shapes dataset, time it, save a grid",
            shapes_arguments, shapes_run, shapes_summary),
    Command("zoo", "the shipped checkpoints: data, ViT, k-NN, and the share of their labels' k-NN "
            "(from the metadata; nothing is trained)", zoo_arguments, zoo_run, zoo_summary),
    Command("supervised", "train the backbone with labels (the learnability smoke run)",
            pretrain_arguments, pretrain_run, pretrain_summary),
    Command("simclr", "pretrain with SimCLR (NT-Xent), then k-NN and linear probe",
            pretrain_arguments, pretrain_run, pretrain_summary),
    Command("moco", "pretrain with MoCo (momentum key encoder; a queue of negatives at the gpu "
            "scale), then k-NN and linear probe",
            pretrain_arguments, pretrain_run, pretrain_summary),
    Command("pretrain", "train one method the way the shipped checkpoints were trained; "
            "evaluate it and write the checkpoint", checkpoint_arguments, checkpoint_run,
            checkpoint_summary),
    ablation_command("dino-ablation", "DINO collapse ablation: centering / sharpening / EMA on "
                     "and off; teacher entropy, KL and k-NN", "dino", "collapse_ablation"),
    ablation_command("ibot-ablation", "iBOT: CLS only / MIM only / both / no patch center; "
                     "target entropies, k-NN and the dense probe", "ibot", "ibot_ablation"),
    ablation_command("ijepa-ablation", "I-JEPA: EMA and stop-gradient removed, smooth L1 against "
                     "L2; target std and rank, k-NN and the dense probe", "ijepa",
                     "collapse_ablation"),
    Command("compare", "every checkpoint of the zoo through the one evaluator: k-NN, fair linear "
            "probe, fine-tuning, 1 and 10 percent of the labels, dense probe", compare_arguments, compare_run,
            compare_summary),
    Command("mae-speedup", "MAE: time the encoder on the visible tokens against all tokens, and "
            "the MAE step against a full-sequence autoencoder", mae_speedup_arguments,
            mae_speedup_run, speedup_summary),
    Command("mae-sweep", "MAE: pretrain at several masking ratios and strategies; k-NN, linear "
            "probe and fine-tune each", mae_sweep_arguments, mae_sweep_run,
            sweep_summary),
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except None (those say in words what they default to)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def _per_scale(values: dict) -> str:
    return ", ".join(f"{scale} {value}" for scale, value in values.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"course_lib {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help,
                           formatter_class=_HelpFormatter)
        command.arguments(p)
        p.set_defaults(command_spec=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command_spec
    start = time.perf_counter()
    try:
        result = command.run(args)
    except ValueError as error:   # a value the library rejects: one line, exit 2, like the parser's
        parser.exit(2, f"{parser.prog} {command.name}: error: {error}\n")
    result.setdefault("total_seconds", round(time.perf_counter() - start, 1))
    print(command.summary(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Why a recipe misses on the one-grey shapes: runs of a ``-plain`` checkpoint's recipe with one
change each.

Trains ``python -m course_lib pretrain METHOD`` (the one-grey, one-size shapes, MAE's
plain-patch ViT) for ``--steps`` steps with one setting of the method changed, and appends the
held-out k-NN of the network the checkpoint would keep to ``--out``:

    python benchmarks/plain_recipe_probe.py dinov2-plain baseline   # about 5 minutes on one thread
    python benchmarks/plain_recipe_probe.py dinov2-plain conv_stem  # the cpu-fine ViT (conv stem, 8x8)
    python benchmarks/plain_recipe_probe.py dinov2-plain centering  # DINO's centering, not Sinkhorn-Knopp
    python benchmarks/plain_recipe_probe.py dinov2-plain no_koleo   # KoLeo weight 0
    python benchmarks/plain_recipe_probe.py dinov2-plain no_ibot    # no masked-patch term
    python benchmarks/plain_recipe_probe.py dinov2-plain koleo_0.03 --steps 1500 --eval-every 150
    python benchmarks/plain_recipe_probe.py ijepa-plain fast_ema --steps 1500   # EMA from 0.99
    python benchmarks/plain_recipe_probe.py ijepa-plain official_ema --steps 1500   # from 0.996
    python benchmarks/plain_recipe_probe.py ijepa-plain deep_predictor --steps 1500
    python benchmarks/plain_recipe_probe.py ijepa-plain wide_predictor --steps 1500  # 96 wide, not 64
    python benchmarks/plain_recipe_probe.py ijepa-plain crops --steps 1500      # IJEPA_VIEWS "crops"
    python benchmarks/plain_recipe_probe.py ijepa-plain lr_3e-3 --steps 1500    # the shared lr, not 1e-3
    python benchmarks/plain_recipe_probe.py ibot-plain teacher_temp_0.07 --steps 1500
    python benchmarks/plain_recipe_probe.py ibot-plain teacher_temp_0.02 --steps 1500 --seed 1 --lr 1e-3
    python benchmarks/plain_recipe_probe.py ibot-plain separate_heads --steps 1500  # CLS and patch heads
    python benchmarks/plain_recipe_probe.py ibot-plain ema_0.996 --steps 1500       # a slower teacher
    python benchmarks/plain_recipe_probe.py ibot-plain conv_stem --steps 1500       # the cpu-fine ViT
    python benchmarks/plain_recipe_probe.py dino-patch-plain baseline --steps 1500  # DINO, patch ViT
    python benchmarks/plain_recipe_probe.py ibot-plain no_mim --steps 1500          # masks, no L_mim
    python benchmarks/plain_recipe_probe.py ibot-plain no_masks --steps 1500        # neither
    python benchmarks/plain_recipe_probe.py ibot-plain small_masks --steps 1500     # 10-20 % masked
    python benchmarks/plain_recipe_probe.py supervised-patch-plain lr_1e-3 --steps 1500   # labels
    python benchmarks/plain_recipe_probe.py ijepa-plain warmup_150 --steps 1500 --seed 1  # warm-up
    python benchmarks/plain_recipe_probe.py ibot-plain frozen_patch_embed --steps 1500  # MoCo v3's
    python benchmarks/plain_recipe_probe.py ibot-plain freeze_1_epoch --steps 1500  # prototypes frozen
    python benchmarks/plain_recipe_probe.py ibot-plain per_tensor_clip --steps 1500  # DINO's clipping
    python benchmarks/plain_recipe_probe.py ibot-plain masks_from_250 --steps 1500  # masks from step 250

``--eval-every N`` also records the k-NN every N steps of training (``trajectory``): whether the
features rise and stay, or rise and fall.

``warmup_150``, ``frozen_patch_embed`` (the patch projection kept at its random start) and
``per_tensor_clip`` (each gradient clipped at 3.0 on its own, ``TrainConfig.grad_clip_mode``) apply
to every method. Every change but ``lr_*`` trains at the run's own rate (``METHOD_LR``) unless ``--lr`` names
another. The ``dinov2-plain`` rows and the ``ijepa-plain`` rows (``fast_ema``,
``deep_predictor``) without an ``lr`` key trained at 3e-3, before those runs' own rate moved to
1e-3. Every ``ijepa-plain`` row before ``wide_predictor`` started its EMA at the released 0.996,
the run's recipe then; since, the recipe starts at 0.99 (``labs.pretrain.IJEPA_CHANGES``), so
``fast_ema`` repeats the baseline and ``official_ema`` is the old start. Runs with a teacher
distribution also record its entropies (``collapse``). Rows from ``per_tensor_clip`` on also record
how many steps had gradients over the clipping norm, all together and one parameter alone
(``clipping``).
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import course_lib.labs.pretrain as recipes  # noqa: E402
import course_lib.train as loop  # noqa: E402
from course_lib.evaluate import evaluate_backbone  # noqa: E402

# method -> (the module global holding its config, change -> the config fields it replaces);
# the others replace something else: "conv_stem" the ViT (MAE_VIT, the plain-patch ViT these
# methods share), "crops" I-JEPA's views (IJEPA_VIEWS), "lr_*" the run's peak learning rate
CHANGES: dict[str, tuple[str | None, dict[str, dict]]] = {
    "dinov2-plain": ("DINOV2_CONFIG", {
        "baseline": {}, "conv_stem": {}, "centering": {"centering": "centering"},
        "no_koleo": {"koleo_weight": 0.0}, "no_ibot": {"ibot_weight": 0.0},
        "koleo_0.01": {"koleo_weight": 0.01}, "koleo_0.03": {"koleo_weight": 0.03}}),   # DINOv2: 0.1
    "dinov2-nokoleo-plain": ("DINOV2_CONFIG", {"baseline": {}}),
    "ijepa-plain": ("IJEPA_CONFIG", {
        "baseline": {}, "fast_ema": {"momentum": (0.99, 1.0)},    # DINO's short-run momentum
        "official_ema": {"momentum": (0.996, 1.0)},               # the released start
        "deep_predictor": {"pred_depth": 4}, "wide_predictor": {"pred_dim": 96}, "crops": {}}),
    "ibot-plain": ("IBOT_CONFIG", {
        "baseline": {},
        "teacher_temp_0.07": {"teacher_temp": 0.07, "teacher_patch_temp": 0.07},   # iBOT's, warmed
        "teacher_temp_0.02": {"teacher_temp": 0.02, "teacher_patch_temp": 0.02},   # sharper targets
        "separate_heads": {"shared_head": False},      # one head for the CLS, another for the patches
        "ema_0.996": {"momentum_teacher": 0.996},      # the official EMA start (cosine to 1)
        "conv_stem": {},                               # the cpu-fine ViT (conv stem, 8x8 tokens)
        "no_mim": {"lambda_patch": 0.0},               # the masks without the patch loss
        "no_masks": {"p_unmasked": 1.0},               # no image masked: DINO through iBOT's code
        "small_masks": {"mask_ratio_range": (0.1, 0.2)},     # a masked image loses 10-20 %, not 10-50 %
        # the heads' prototypes frozen for iBOT's --freeze_last_layer 1 (one epoch: 39 steps of 128
        # of the 5000 images), and for 300 steps, past where the CLS targets turned uniform (step 200)
        "freeze_1_epoch": {"freeze_last_layer_steps": 39},
        "freeze_300": {"freeze_last_layer_steps": 300},
        # masked prediction started late (iBOT's --pred_start_epoch, "typically 50 for swin" of
        # 300 epochs): until then DINO through iBOT's code, the setting of no_masks, whose CLS
        # targets recovered
        "masks_from_250": {"pred_start_step": 250}, "masks_from_500": {"pred_start_step": 500},
        # the prototypes' gains trained, as iBOT's ViT-S/16 run (--norm_last_layer false): a
        # prototype's logit is no longer a cosine in [-1, 1], so the targets can sharpen further
        "free_prototype_norm": {"norm_last_layer": False}}),
    # DINO on iBOT's plain-patch ViT, no checkpoint of its own: iBOT without masks or patch loss
    "dino-patch-plain": ("DINO_CONFIG", {"baseline": {}}),
    # the labelled reference of these runs and MAE, for the learning rates
    "supervised-patch-plain": (None, {"baseline": {}}),
    "mae-plain": (None, {"baseline": {}}),
    # labels on the same ViT on the colourful shapes (at 3e-3 they stayed at chance), and MAE there
    "supervised-patch": (None, {"baseline": {}}),
    "mae": (None, {"baseline": {}}),
}
# changes every method takes: its peak learning rate (``pretrain(lr=...)``, in place of METHOD_LR's)
# and its warm-up in steps (WARMUP_STEPS, 20; I-JEPA's official recipe warms up for 13 % of its run)
LEARNING_RATES = {"lr_5e-4": 5e-4, "lr_1e-3": 1e-3, "lr_3e-3": 3e-3}
WARMUPS = {"warmup_150": 150}
# and its patch projection frozen at its random initialisation: MoCo v3 (Chen, Xie & He 2021,
# section 4.2) traces a ViT's unstable self-supervised training to the patch projection and
# freezes it; the conv stem, where these objectives train, is the other half of that contrast
FREEZES = ("frozen_patch_embed",)
# and its gradients clipped at 3.0 one parameter at a time, as DINO's and iBOT's
# utils.clip_gradients do, in place of the loop's one norm over every gradient
CLIPS = {"per_tensor_clip": "per_tensor"}
# the runs the probe trains that no checkpoint ships: their pooling, added to the recipes' names
# for the length of the run
PROBE_ONLY = {"dino-patch-plain": "cls"}
# the module globals build_method and pretrain read, besides the method's config
PATCHED = ("MAE_VIT", "IJEPA_VIEWS", "WARMUP_STEPS", "IJEPA_CHANGES", "METHODS", "POOLING", "build_method",
           "TrainConfig")


def recorded_fields(method: str) -> list[str]:
    """The config fields any change of ``method`` touches: each row records their values."""
    return sorted({key for fields in CHANGES[method][1].values() for key in fields})


def _frozen_patch_embed(build):
    """``build`` (``build_method``), then every ViT's patch projection taken out of training."""
    def build_frozen(*args, **kwargs):
        method = build(*args, **kwargs)
        embeds = [module.patch_embed for module in method.modules() if hasattr(module, "patch_embed")]
        if not embeds:
            raise ValueError(f"{type(method).__name__} has no ViT with a patch_embed to freeze")
        for embed in embeds:
            embed.requires_grad_(False)
        return method
    return build_frozen


class ClipCounter:
    """Wraps the loop's ``clip_gradients`` for one run and counts, before it clips, the steps whose
    gradients exceed ``max_norm`` taken together (the loop's own clipping acts) and those where one
    parameter's does (DINO's per-tensor clipping acts), with the last step of each."""

    def __init__(self, clip) -> None:
        self.clip, self.step = clip, 0
        self.counts = {"global": 0, "per_tensor": 0}
        self.last = {"global": None, "per_tensor": None}

    def __call__(self, parameters, max_norm: float, mode: str = "global") -> None:
        parameters = [p for p in parameters if p.grad is not None]
        norms = torch.stack([p.grad.norm() for p in parameters])
        for kind, over in (("global", norms.norm() > max_norm), ("per_tensor", norms.max() > max_norm)):
            if over:
                self.counts[kind] += 1
                self.last[kind] = self.step
        self.step += 1
        self.clip(parameters, max_norm, mode)

    def record(self) -> dict:
        return {f"steps_over_{kind}": self.counts[kind] for kind in self.counts} | {
            f"last_step_over_{kind}": self.last[kind] for kind in self.last}


def probe(method: str, change: str, *, steps: int, seed: int = 0, lr: float | None = None,
          n_train: int | None = None, n_test: int | None = None, eval_every: int = 0) -> dict:
    """Train ``method`` with ``change`` applied (the recipe restored afterwards); one result row."""
    config_name, changes = CHANGES[method]
    saved = {name: getattr(recipes, name) for name in (*PATCHED, *filter(None, [config_name]))}
    counter = loop.clip_gradients = ClipCounter(loop.clip_gradients)
    try:
        if method in PROBE_ONLY:
            recipes.METHODS = (*recipes.METHODS, method)
            recipes.POOLING = {**recipes.POOLING, method: PROBE_ONLY[method]}
        if change == "conv_stem":
            recipes.MAE_VIT = dict(preset="cpu-fine")
        if change == "crops":
            recipes.IJEPA_VIEWS = "crops"
        if change in WARMUPS:
            recipes.WARMUP_STEPS = WARMUPS[change]
        if change in FREEZES:
            recipes.build_method = _frozen_patch_embed(saved["build_method"])
        if change in CLIPS:
            recipes.TrainConfig = functools.partial(saved["TrainConfig"], grad_clip_mode=CLIPS[change])
        if config_name:
            # the run's own settings (ijepa-plain's EMA start included), then the one change
            base = recipes.ijepa_config(method) if config_name == "IJEPA_CONFIG" else saved[config_name]
            recipes.IJEPA_CHANGES = {}
            setattr(recipes, config_name, replace(base, **changes.get(change, {})))
        backbone, meta = recipes.pretrain(method, "long", steps=steps, seed=seed, progress=False, n_train=n_train,
                                          n_test=n_test, eval_every=eval_every, lr=LEARNING_RATES.get(change, lr))
    finally:
        for name, value in saved.items():
            setattr(recipes, name, value)
        loop.clip_gradients = counter.clip
    train_x, train_y, test_x, test_y = recipes.shapes_for(meta["data"])
    knn = evaluate_backbone(backbone, train_x, train_y, test_x, test_y, pooling=meta["pooling"],
                            probe_epochs=0, diagnostics=False)["knn_accuracy"]
    settings = meta["config"]["method"]
    return {"method": method, "change": change, "commit": meta["commit"], "steps": steps, "seed": seed,
            "threads": meta["threads"], "train_seconds": meta["train_seconds"],
            "untrained_knn": meta["untrained_knn_accuracy"], "knn": knn,
            "data": meta["data"], "stem": meta["config"]["vit"]["stem"], "lr": meta["config"]["train"]["lr"],
            "warmup_steps": meta["config"]["train"]["warmup_steps"],
            **({"grad_clip_mode": meta["config"]["train"]["grad_clip_mode"]} if change in CLIPS else {}),
            "clipping": counter.record(),
            **({"patch_embed": "frozen"} if change in FREEZES else {}),
            **({"views": settings["views"]} if "views" in settings else {}),
            **{key: settings[key] for key in recorded_fields(method)},
            "loss_first": meta["loss"]["values"][:2], "loss_last": meta["loss"]["values"][-2:],
            **({"trajectory": meta["knn_trajectory"]} if "knn_trajectory" in meta else {}),
            **({"collapse": {key: [round(value, 3) for value in values] if key != "steps" else values
                             for key, values in meta["collapse"].items()}} if "collapse" in meta else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", choices=list(CHANGES))
    p.add_argument("change")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0, help="the run's seed (data, weights, views)")
    p.add_argument("--lr", type=float, default=None, help="peak rate (default: the run's own)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=None, help="training images (default: the scale's)")
    p.add_argument("--n-test", type=int, default=None, help="held-out images (default: the scale's)")
    p.add_argument("--eval-every", type=int, default=0, help="k-NN every N steps (0: only at the end)")
    p.add_argument("--out", default=None, help="rows are appended here (default: "
                   "benchmarks/results/<method>_probe.jsonl, dashes as underscores)")
    args = p.parse_args()
    choices = [*CHANGES[args.method][1], *LEARNING_RATES, *WARMUPS, *FREEZES, *CLIPS]
    if args.change not in choices:
        p.error(f"change for {args.method} must be one of {choices}, got {args.change!r}")
    if args.lr is not None and (args.change in LEARNING_RATES or not args.lr > 0):
        p.error(f"--lr must be a positive rate and goes with a change other than {list(LEARNING_RATES)}")
    torch.set_num_threads(args.threads)
    row = probe(args.method, args.change, steps=args.steps, seed=args.seed, lr=args.lr, n_train=args.n_train,
                n_test=args.n_test, eval_every=args.eval_every)
    out = args.out or ROOT / "benchmarks" / "results" / f"{args.method.replace('-', '_')}_probe.jsonl"
    print(json.dumps(row))
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

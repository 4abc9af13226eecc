"""Time one DINO training step, course_lib against lightly: ``python benchmarks/dino_step.py``.

Every row trains the same ViT (``build_vit("cpu")``, or ``"tiny"`` on a GPU) on the same
precomputed multi-crop batch (2 global + n local crops) with the same AdamW, and then does the
EMA teacher update. Only the DINO parts differ:

    course_lib       course_lib.dino.MultiCropWrapper + DINOHead + DINOLoss, course_lib.ema
    lightly grouped  lightly's DINOProjectionHead + DINOLoss + update_momentum, with the crops
                     grouped by size through the backbone exactly as course_lib does
    lightly per-view the same lightly parts, the backbone called once per crop as in lightly's
                     DINO example (``[student(view) for view in views]``)

lightly is an optional dependency: ``make bench-deps`` installs ``lightly`` without its
dependencies (we use only its loss, head and momentum helper, which need torch alone), so it can
never replace the course's torch. Rows are timed round-robin, one step each per round, so load
drifting over the run hits every row alike; the figure to read is the ratio within one run.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import time
from statistics import median

import torch
from torch import nn

from course_lib.augment import batched_multi_crop
from course_lib.backbones import build_vit
from course_lib.data import make_shapes
from course_lib.dino import DINOHead, DINOLoss, MultiCropWrapper
from course_lib.ema import ema_update
from course_lib.runtime import autocast, default_device

STUDENT_TEMP, TEACHER_TEMP, CENTER_MOMENTUM, EMA_MOMENTUM = 0.1, 0.04, 0.9, 0.996


def course_step(backbone: nn.Module, feature_dim: int, out_dim: int, device: torch.device):
    torch.manual_seed(0)
    student = MultiCropWrapper(copy.deepcopy(backbone),
                               DINOHead(feature_dim, out_dim)).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    loss_fn = DINOLoss(out_dim, 2, STUDENT_TEMP, CENTER_MOMENTUM).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def step(crops: list[torch.Tensor], amp: bool) -> None:
        with autocast(device, amp):
            student_logits = student(crops)                              # (V*B, K)
            with torch.no_grad():
                teacher_logits = teacher(crops[:2])                      # (2*B, K)
            loss = loss_fn(student_logits, teacher_logits, TEACHER_TEMP)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(teacher, student, EMA_MOMENTUM)

    return step


def lightly_step(backbone: nn.Module, feature_dim: int, out_dim: int, device: torch.device,
                 grouped: bool):
    from lightly.loss import DINOLoss as LightlyDINOLoss
    from lightly.models.modules.heads import DINOProjectionHead
    from lightly.models.utils import update_momentum
    torch.manual_seed(0)
    def build() -> nn.ModuleDict:
        return nn.ModuleDict({"backbone": copy.deepcopy(backbone),
                              "head": DINOProjectionHead(feature_dim, 2048, 256, out_dim)}).to(device)
    # lightly's head uses the deprecated torch.nn.utils.weight_norm, whose modules cannot be
    # deep-copied (pytorch#103001), so the teacher is built again and loaded, as in lightly's
    # DINO example; course_lib's parametrizations-based head deep-copies.
    student, teacher = build(), build()
    teacher.load_state_dict(student.state_dict())
    teacher.requires_grad_(False)
    loss_fn = LightlyDINOLoss(out_dim, warmup_teacher_temp=TEACHER_TEMP, teacher_temp=TEACHER_TEMP,
                              student_temp=STUDENT_TEMP, center_momentum=CENTER_MOMENTUM).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)

    def forward(model: nn.ModuleDict, views: list[torch.Tensor]) -> list[torch.Tensor]:
        if not grouped:                                                  # lightly's example
            return [model["head"](model["backbone"](view)) for view in views]
        features = [model["backbone"](torch.cat(list(same)))
                    for _, same in itertools.groupby(views, key=lambda v: v.shape[-2:])]
        return list(model["head"](torch.cat(features)).chunk(len(views)))

    def step(crops: list[torch.Tensor], amp: bool) -> None:
        with autocast(device, amp):
            student_out = forward(student, crops)
            with torch.no_grad():
                teacher_out = forward(teacher, crops[:2])
            loss = loss_fn(teacher_out, student_out, teacher_temp=TEACHER_TEMP)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        update_momentum(student, teacher, EMA_MOMENTUM)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 CPU, 256 GPU")
    parser.add_argument("--local-crops", type=int, default=6)
    parser.add_argument("--out-dim", type=int, default=None, help="default: 1024 CPU, 65536 GPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")
    args = parser.parse_args()
    device = default_device()
    gpu = device.type == "cuda"
    batch_size = args.batch_size or (256 if gpu else 64)
    out_dim = args.out_dim or (65536 if gpu else 1024)
    backbone = build_vit("tiny", img_size=32, patch_size=4) if gpu else build_vit("cpu")
    images = make_shapes(batch_size, 32, seed=0)[0].to(device)
    crops = batched_multi_crop(images, n_local_crops=args.local_crops,
                               generator=torch.Generator(device=device).manual_seed(0))
    print(f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads); batch "
          f"{batch_size}, 2 global 32 px + {args.local_crops} local 16 px crops, K = {out_dim}, "
          f"amp {args.amp and gpu}")

    rows = {"course_lib": course_step(backbone, backbone.embed_dim, out_dim, device)}
    try:
        rows["lightly grouped"] = lightly_step(backbone, backbone.embed_dim, out_dim, device, True)
        rows["lightly per-view"] = lightly_step(backbone, backbone.embed_dim, out_dim, device, False)
    except ImportError as error:
        print(f"lightly is not installed ({error}); run `make bench-deps` for the comparison")

    times: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(args.repeats + 1):                  # round 0 is the warm-up
        for name, step in rows.items():
            if gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(crops, args.amp and gpu)
            if gpu:
                torch.cuda.synchronize()
            if round_:
                times[name].append(time.perf_counter() - start)
    base = median(times["course_lib"])
    for name, values in times.items():
        print(f"   {name:18s} median {median(values) * 1e3:8.1f} ms   min {min(values) * 1e3:8.1f} ms"
              f"   ratio to course_lib {median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()

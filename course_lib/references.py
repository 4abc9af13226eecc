"""What each graded assignment's hidden tests forbid: per unit, every ``course_lib`` reference
implementation an answer could call instead of its own code (``course_lib.grading.forbid_reference``
swaps them for stubs while a test cell runs). ``tests/test_grading.py`` checks that every name
resolves. A new unit adds its tuple here; the test cells import it from ``course_lib.grading``.
"""
from __future__ import annotations

INFONCE_REFERENCES = (
    "course_lib.simclr.similarity_matrix", "course_lib.simclr.info_nce",
    "course_lib.moco.moco_loss", "course_lib.moco.MoCoQueue.enqueue", "course_lib.ema.ema_update",
    "course_lib.diagnostics.alignment", "course_lib.diagnostics.uniformity",
)
DINO_REFERENCES = (
    "course_lib.dino.DINOLoss.forward", "course_lib.dino.DINOLoss.teacher_probs",
    "course_lib.dino.DINOLoss.update_center", "course_lib.dino.teacher_distribution",
    "course_lib.diagnostics.entropy", "course_lib.ema.ema_update",
    "course_lib.schedules.cosine_schedule", "course_lib.schedules.linear_warmup_then_constant",
    "course_lib.schedules.teacher_temperature_schedule",
)
MAE_REFERENCES = (
    "course_lib.mae.patchify", "course_lib.mae.unpatchify", "course_lib.mae.random_masking",
    "course_lib.masking.mask_from_boolean", "course_lib.mae.mae_loss",
    "course_lib.mae.MAE.forward_decoder", "course_lib.mae.optimal_ratio",
)
IBOT_REFERENCES = (
    "course_lib.ibot.ibot_patch_loss", "course_lib.ibot.ema_centers",
    "course_lib.ibot.IBOT.training_step", "course_lib.ema.update_center",
    "course_lib.dino.teacher_distribution", "course_lib.dino.DINOLoss.forward",
    "course_lib.dino.DINOLoss.teacher_probs", "course_lib.dino.DINOLoss.update_center",
    "course_lib.backbones.embed_tokens",
)
IJEPA_REFERENCES = (
    "course_lib.ijepa.multiblock_batch", "course_lib.ijepa.multiblock_masks",
    "course_lib.ijepa._block_size", "course_lib.ijepa.jepa_loss", "course_lib.mae.sincos_2d",
    "course_lib.ijepa.Predictor.forward", "course_lib.ijepa.IJEPA.targets",
    "course_lib.ijepa.IJEPA.training_step", "course_lib.ijepa.IJEPA.after_step",
    "course_lib.ijepa._patch_tokens", "course_lib.backbones.embed_tokens",
    "course_lib.ema.ema_update", "course_lib.backbones.encode_tokens",
    "course_lib.schedules.cosine_schedule", "course_lib.schedules.linear_warmup_then_constant",
)
DINOV2_REFERENCES = (
    "course_lib.dinov2.koleo_loss", "course_lib.dinov2.sinkhorn_knopp",
    "course_lib.dinov2.masked_patch_loss", "course_lib.dinov2.DINOv2.training_step",
    "course_lib.dinov2.DINOv2.patch_targets", "course_lib.dinov2._Side.forward",
    "course_lib.dino.DINOLoss.forward", "course_lib.dino.DINOLoss.teacher_probs",
    "course_lib.dino.teacher_distribution", "course_lib.ibot.ibot_patch_loss",
    "course_lib.backbones.embed_tokens", "course_lib.backbones.split_tokens",
    "course_lib.backbones.encode_tokens",
)
EVALUATION_REFERENCES = (
    "course_lib.evaluate.knn_accuracy", "course_lib.labs.evaluation.knn_variant",
    "course_lib.labs.evaluation.balanced_subset", "course_lib.labs.evaluation.fair_probe",
)

"""course_lib.runtime: the scale tables every lab declares, read through one helper."""
import pytest
import torch

from course_lib.labs.dino import ABLATION_SCALES, ablation_scale
from course_lib.labs.infonce import PRETRAIN_SCALES
from course_lib.labs.mae import SPEEDUP_SCALES, SWEEP_SCALES, sweep_scale
from course_lib.runtime import SCALES, amp_dtype, at_scale, autocast, course_settings, grad_scaler


def test_every_lab_declares_exactly_the_course_scales():
    for table in (ABLATION_SCALES, PRETRAIN_SCALES, SPEEDUP_SCALES, SWEEP_SCALES):
        assert set(table) == set(SCALES)
        assert at_scale(table, "cpu") is table["cpu"]


def test_at_scale_seeds_the_training_and_leaves_the_table_alone():
    setup = ablation_scale("cpu", seed=7)
    assert setup.train.seed == 7 and ABLATION_SCALES["cpu"].train.seed == 0
    assert setup.dino == ABLATION_SCALES["cpu"].dino
    assert sweep_scale("gpu", seed=3).train.steps == SWEEP_SCALES["gpu"].train.steps


def test_at_scale_errors_name_the_scales():
    with pytest.raises(ValueError, match=r"scale must be one of \('cpu', 'gpu'\), got 'tpu'"):
        at_scale(SWEEP_SCALES, "tpu")
    with pytest.raises(ValueError, match="scales must map exactly"):
        at_scale({"cpu": 1}, "cpu")
    with pytest.raises(ValueError, match="scale must be 'cpu' or 'gpu'"):
        course_settings(scale="big")


@pytest.mark.parametrize("native,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_mixed_precision_follows_the_gpu(monkeypatch, native, expected):
    """bfloat16 only where the GPU computes it natively (asked without emulation); float16, with an
    active gradient scaler, on the others (a T4); full precision on the CPU unless forced."""
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native or including_emulation            # every recent GPU emulates bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert amp_dtype(torch.device("cuda")) == expected and asked == [False]
    assert amp_dtype(torch.device("cpu")) is None
    assert grad_scaler(torch.device("cpu")).is_enabled() is False
    assert grad_scaler(torch.device("cpu"), dtype="float16").is_enabled() is True
    assert grad_scaler(torch.device("cpu"), dtype="bfloat16").is_enabled() is False
    with autocast(torch.device("cpu"), dtype="float16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float16
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        amp_dtype(torch.device("cpu"), "fp8")

"""course_lib.runtime: the scale tables every lab declares, read through one helper."""
import pytest

from course_lib.labs.dino import ABLATION_SCALES, ablation_scale
from course_lib.labs.infonce import PRETRAIN_SCALES
from course_lib.labs.mae import SPEEDUP_SCALES, SWEEP_SCALES, sweep_scale
from course_lib.runtime import SCALES, at_scale, course_settings


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

"""Tests for course_lib.grading: messages name EXPECTED / GOT / HINT; forbid_reference catches
direct, aliased, wrapped and swallowed calls of the reference and restores everything."""
import math

import pytest
import torch

import course_lib.diagnostics
import course_lib.ema
import course_lib.moco
import course_lib.simclr
from course_lib.grading import (INFONCE_REFERENCES, check_close, check_shape, check_true, fail,
                                forbid_reference)
from course_lib.simclr import info_nce as aliased_info_nce   # alias made before the block


def message_of(fn, *args, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_fail_message_has_expected_got_hint():
    msg = message_of(fail, "thing", 1.5, 2.5, "did you square it?")
    assert msg.splitlines()[0] == "thing"
    assert "EXPECTED: 1.5" in msg and "GOT:      2.5" in msg and "HINT:     did you square it?" in msg


def test_check_close_passes_within_tolerance_and_with_matching_infinities():
    check_close("x", torch.tensor([1.0, float("-inf")]), torch.tensor([1.0 + 1e-7, float("-inf")]), hint="h")
    check_close("x", 2.0, torch.tensor(2.0), hint="h")          # numbers and 0-d tensors mix


def test_check_close_generic_hint_and_largest_difference():
    msg = message_of(check_close, "loss", torch.tensor(3.0), 2.0, hint="generic hint")
    assert "largest difference 1" in msg and "EXPECTED" in msg and "GOT" in msg and "generic hint" in msg


def test_check_close_picks_the_hint_of_a_matching_mistake():
    msg = message_of(check_close, "loss", torch.tensor(math.log(4)), math.log(3), hint="generic",
                     mistakes={"self-similarity left in": math.log(4), "other": 7.0})
    assert "self-similarity left in" in msg.splitlines()[0] and "generic" not in msg and "known mistake" in msg


def test_check_close_inf_where_finite_expected_is_reported():
    msg = message_of(check_close, "m", torch.tensor([float("-inf")]), torch.tensor([1.0]), hint="mask")
    assert "mask" in msg and "EXPECTED" in msg


def test_check_close_shape_and_type():
    assert "wrong shape" in message_of(check_close, "m", torch.zeros(2, 3), torch.zeros(3, 2), hint="h")
    msg = message_of(check_close, "m", None, 1.0, hint="h")
    assert "wrong type" in msg and "NoneType" in msg and "return" in msg


def test_check_shape_and_check_true():
    check_shape("s", torch.zeros(4, 4), (4, 4), hint="h")
    msg = message_of(check_shape, "s", torch.zeros(2, 4), (4, 4), hint="concatenate the views")
    assert "(4, 4)" in msg and "(2, 4)" in msg and "concatenate the views" in msg
    assert "list" in message_of(check_shape, "s", [1], (1,), hint="h")
    check_true(True, "ok", hint="h")
    msg = message_of(check_true, False, "ptr", expected=2, got=0, hint="FIFO")
    assert "EXPECTED: 2" in msg and "GOT:      0" in msg and "FIFO" in msg


def _z():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)


def blocked(names, fn, *args) -> str:
    """Message of the AssertionError that ``fn(*args)`` raises inside ``forbid_reference(*names)``."""
    with pytest.raises(AssertionError) as info:
        with forbid_reference(*names):
            fn(*args)
    return str(info.value)


def test_forbid_reference_catches_module_attribute_and_alias_and_restores():
    z1, z2 = _z()
    before = course_lib.simclr.info_nce(z1, z2, 0.5)
    original, original_code = course_lib.simclr.info_nce, course_lib.simclr.info_nce.__code__
    names = ["course_lib.simclr.info_nce"]
    assert "reference" in blocked(names, course_lib.simclr.info_nce, z1, z2, 0.5)
    assert "reference" in blocked(names, aliased_info_nce, z1, z2, 0.5)
    assert "reference" in blocked(names, lambda: aliased_info_nce(z1, z2, 0.5))
    assert course_lib.simclr.info_nce is original and original.__code__ is original_code
    assert torch.equal(aliased_info_nce(z1, z2, 0.5), before)


def test_forbid_reference_catches_reference_used_inside_another_reference_function():
    z1, z2 = _z()
    msg = blocked(["course_lib.simclr.similarity_matrix"], course_lib.simclr.info_nce, z1, z2, 0.5)
    assert "course_lib.simclr.similarity_matrix" in msg and "instead of your own code" in msg


def test_forbid_reference_catches_decorated_functions_and_methods():
    teacher, student = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    from course_lib.ema import ema_update as alias      # a @torch.no_grad() wrapper
    queue = course_lib.moco.MoCoQueue(dim=2, size=4)
    names = ["course_lib.ema.ema_update", "course_lib.moco.MoCoQueue.enqueue"]
    assert "reference" in blocked(names, alias, teacher, student, 0.9)
    assert "reference" in blocked(names, course_lib.moco.ema_update, teacher, student, 0.9)
    assert "reference" in blocked(names, queue.enqueue, torch.ones(1, 2))
    alias(teacher, student, 0.9)
    queue.enqueue(torch.ones(1, 2))
    assert int(queue.ptr) == 1


def test_forbid_reference_swaps_caller_globals_too():
    original = course_lib.diagnostics.uniformity
    globals()["my_ref"] = original
    try:
        with forbid_reference("course_lib.diagnostics.uniformity"):
            assert my_ref is not original  # noqa: F821  (the name itself is swapped)
        assert "reference" in blocked(["course_lib.diagnostics.uniformity"],
                                      lambda: my_ref(torch.randn(3, 2)))  # noqa: F821
        assert my_ref is original and course_lib.diagnostics.uniformity is original  # noqa: F821
    finally:
        del globals()["my_ref"]


def test_forbid_reference_fails_a_swallowed_call():
    z1, z2 = _z()

    def sneaky():
        try:
            return course_lib.simclr.info_nce(z1, z2, 0.5)
        except Exception:
            return torch.tensor(0.0)

    with pytest.raises(AssertionError, match="hid the error"):
        with forbid_reference("course_lib.simclr.info_nce"):
            sneaky()


def test_forbid_reference_reports_the_reference_call_behind_a_later_failure():
    z1, z2 = _z()

    def sneaky():
        try:
            return course_lib.simclr.info_nce(z1, z2, 0.5)
        except Exception:
            return None

    with pytest.raises(AssertionError, match="calls the course_lib reference") as info:
        with forbid_reference("course_lib.simclr.info_nce"):
            check_close("loss", sneaky(), 1.0, hint="h")     # fails on the garbage first
    assert "wrong type" in str(info.value.__cause__)


def test_forbid_reference_restores_on_error_and_lets_own_code_run():
    original = course_lib.simclr.similarity_matrix.__code__
    with pytest.raises(ZeroDivisionError):
        with forbid_reference(*INFONCE_REFERENCES):
            assert torch.zeros(2).sum() == 0          # ordinary torch code is untouched
            1 / 0
    assert course_lib.simclr.similarity_matrix.__code__ is original
    z1, z2 = _z()
    assert torch.isfinite(course_lib.simclr.info_nce(z1, z2)).item()


def test_forbid_reference_rejects_unknown_names_without_leaving_patches():
    original = course_lib.simclr.info_nce.__code__
    with pytest.raises(AttributeError):
        with forbid_reference("course_lib.simclr.info_nce", "course_lib.simclr.no_such_function"):
            pass
    assert course_lib.simclr.info_nce.__code__ is original


def test_every_reference_list_names_functions_that_exist():
    from course_lib.grading import (DINO_REFERENCES, DINOV2_REFERENCES, EVALUATION_REFERENCES,
                                    IBOT_REFERENCES, IJEPA_REFERENCES, INFONCE_REFERENCES,
                                    MAE_REFERENCES, _resolve)
    for name in (INFONCE_REFERENCES + DINO_REFERENCES + MAE_REFERENCES + IBOT_REFERENCES
                 + IJEPA_REFERENCES + DINOV2_REFERENCES + EVALUATION_REFERENCES):
        owner, attr, value = _resolve(name)
        assert callable(value), name


LAZY = r'''
import sys, torch
from course_lib.grading import IBOT_REFERENCES, forbid_reference
assert "course_lib.ibot" not in sys.modules and "timm" not in sys.modules
hooks = len(sys.meta_path)


def imports_then_calls():
    import course_lib.ibot                                # imported inside: forbidden on arrival
    return course_lib.ibot.ema_centers(torch.zeros(2, 3))


def imports_a_name_then_calls():
    from course_lib.dino import teacher_distribution      # a name taken from a module imported here
    return teacher_distribution(torch.zeros(2, 3), 0.0, 0.1)


for answer in (imports_a_name_then_calls, imports_then_calls):   # each module new to the block
    assert "course_lib.ibot" not in sys.modules
    try:
        with forbid_reference(*IBOT_REFERENCES):
            answer()
    except AssertionError as error:
        assert "course_lib reference implementation" in str(error), error
    else:
        raise SystemExit(f"{answer.__name__}: a reference imported inside the block ran")
    assert len(sys.meta_path) == hooks                    # the import hook is gone
assert imports_then_calls().shape == (2, 3) and imports_a_name_then_calls().shape == (2, 3)
print("ok")
'''


def test_a_reference_module_imported_inside_the_block_is_forbidden_on_arrival():
    """forbid_reference does not import a module nobody imported (a graded kernel saves the
    seconds timm and torchvision take); an answer that imports it inside the block still fails."""
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr

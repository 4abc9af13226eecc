import math

import numpy as np
import pytest

from course_lib.schedules import cosine_schedule, linear_warmup_then_constant


def dino_cosine_scheduler(base, final, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """The DINO code's utils.cosine_scheduler, transcribed with NumPy as the oracle."""
    warmup_iters = warmup_epochs * niter_per_ep
    warmup = np.linspace(start_warmup_value, base, warmup_iters) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, schedule))


@pytest.mark.parametrize("base,final,epochs,niter,warm,start", [
    (0.996, 1.0, 10, 7, 0, 0.0), (5e-4, 1e-6, 20, 3, 4, 0.0), (0.04, 0.07, 5, 11, 1, 0.01)])
def test_matches_dino_code(base, final, epochs, niter, warm, start):
    ours = cosine_schedule(base, final, epochs * niter, warmup_steps=warm * niter, warmup_start=start)
    np.testing.assert_allclose(ours.numpy(), dino_cosine_scheduler(base, final, epochs, niter, warm, start))


def test_closed_form_midpoint_and_ends():
    s = cosine_schedule(1.0, 0.0, 100)
    assert s[0] == 1.0
    assert s[50] == pytest.approx(0.5)
    assert s[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_teacher_temperature_warmup():
    s = linear_warmup_then_constant(0.04, 0.07, 30, 100)
    assert s.shape == (100,)
    assert s[0] == pytest.approx(0.04) and s[29] == pytest.approx(0.07) and (s[30:] == 0.07).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps"), (dict(steps=5, warmup_steps=6), "warmup_steps"),
    (dict(steps=2.5), "steps")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cosine_schedule(1.0, 0.0, **kwargs)

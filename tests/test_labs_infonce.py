"""Tests for course_lib.labs.infonce: the Lecture 01 runners return finite, seeded metrics."""
import math

import pytest
import torch
from torch import nn

from course_lib.labs import infonce as lab
from course_lib.train import TrainConfig

FEATURE_DIM = 16


def tiny_backbone() -> nn.Module:
    """(B, 3, 8, 8) float -> (B, 16): small enough that a run takes well under a second."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, FEATURE_DIM), nn.GELU())


def to_input(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def noisy_views(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = to_input(images)
    return x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.arange(48) % 3
    return images, lab.EvalData(images[:32], labels[:32], images[32:], labels[32:])


def common(config):
    return dict(build_backbone=tiny_backbone, feature_dim=FEATURE_DIM, config=config,
                transform=to_input, views=noisy_views)


CONFIG = TrainConfig(steps=3, batch_size=8, warmup_steps=1, progress=False, log_every=1)
KEYS = {"knn_accuracy", "knn_stderr", "alignment", "uniformity", "positive_cosine", "negative_cosine", "steps", "loss",
        "train_seconds"}


def check_metrics(result):
    assert set(result) == KEYS
    assert 0.0 <= result["knn_accuracy"] <= 1.0
    assert 0.0 <= result["alignment"] <= 4.0          # squared distance of unit vectors
    assert -8.0 <= result["uniformity"] <= 0.0        # never below -4t with t = 2
    for key in ("positive_cosine", "negative_cosine"):
        assert -1.0 - 1e-6 <= result[key] <= 1.0 + 1e-6
    # on the sphere ||u - v||^2 = 2 - 2 u.v: alignment and the positive cosine are one number
    assert result["alignment"] == pytest.approx(2 - 2 * result["positive_cosine"], abs=1e-4)
    assert len(result["loss"]) == len(result["steps"]) == CONFIG.steps
    assert all(math.isfinite(v) for v in result["loss"])


def test_temperature_sweep_returns_finite_metrics_per_tau(data):
    images, eval_data = data
    out = lab.temperature_sweep([0.1, 1.0], images[:32], eval_data, **common(CONFIG))
    assert list(out) == [0.1, 1.0]
    for result in out.values():
        check_metrics(result)


def test_queue_experiment_with_and_without_queue(data):
    images, eval_data = data
    out = lab.queue_experiment([0, 64], images[:32], eval_data, **common(CONFIG))
    assert list(out) == [0, 64]
    for result in out.values():
        check_metrics(result)


def test_runs_are_deterministic_for_a_seed(data):
    images, eval_data = data
    a = lab.train_simclr(images[:32], eval_data, temperature=0.2, **common(CONFIG))
    b = lab.train_simclr(images[:32], eval_data, temperature=0.2, **common(CONFIG))
    for key in ("knn_accuracy", "alignment", "uniformity", "loss"):
        assert a[key] == b[key], key


def test_runners_reject_bad_arguments(data):
    images, eval_data = data
    with pytest.raises(ValueError, match="temperatures"):
        lab.temperature_sweep([], images, eval_data, **common(CONFIG))
    with pytest.raises(ValueError, match="queue_sizes"):
        lab.queue_experiment([-1], images, eval_data, **common(CONFIG))


def test_temperature_weights_match_autograd():
    negatives = torch.tensor([0.5, 0.1, -0.3], dtype=torch.float64)
    tau = 0.2
    s = torch.cat([torch.tensor([0.7], dtype=torch.float64), negatives]).requires_grad_()
    (-torch.log_softmax(s / tau, dim=0)[0]).backward()
    probs, grad_weights = lab.temperature_weights(0.7, negatives, tau)
    assert torch.allclose(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(grad_weights, s.grad[1:])
    assert torch.allclose(-grad_weights.sum(), s.grad[0])   # pull on the positive = total push


def test_temperature_concentrates_the_push_on_the_hardest_negative():
    negatives = torch.tensor([0.5, 0.3, 0.0, -0.2])
    share = [float(w[0] / w.sum()) for w in (lab.temperature_weights(0.6, negatives, t)[1]
                                             for t in (0.05, 0.2, 1.0))]
    assert share[0] > share[1] > share[2] > 0.25


def test_saved_activation_bytes_counts_activations_not_weights():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    x = torch.randn(4, 10)
    n_bytes = lab.saved_activation_bytes(model, x)
    # kept for backward: input x (4x10), the ReLU output (4x20; the first Linear's output may be
    # the same storage or another 4x20), never the weights themselves
    assert 4 * (10 + 20) * 4 <= n_bytes <= 4 * (10 + 20 + 20) * 4
    assert lab.saved_activation_bytes(model, torch.randn(8, 10)) == 2 * n_bytes


def test_random_init_baseline_measures_the_untrained_starting_point(data):
    _, eval_data = data
    kwargs = dict(build_backbone=tiny_backbone, feature_dim=FEATURE_DIM, transform=to_input,
                  views=noisy_views, seed=0)
    a, b = lab.random_init_baseline(eval_data, **kwargs), lab.random_init_baseline(eval_data, **kwargs)
    assert set(a) == KEYS - {"steps", "loss", "train_seconds"}
    assert a == b
    assert all(math.isfinite(v) for v in a.values())

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


def slow_batch_row(z1, z2, n, tau):
    """One anchor at a time, in plain Python floats: the oracle of batch_size_table."""
    rows = []
    for b in range(z1.shape[0] // n):
        views = [v / v.norm() for v in list(z1[b * n:(b + 1) * n]) + list(z2[b * n:(b + 1) * n])]
        for i in range(2 * n):
            partner = (i + n) % (2 * n)
            cos = {j: float(views[i] @ views[j]) for j in range(2 * n) if j != i}
            denominator = sum(math.exp(c / tau) for c in cos.values())
            p = math.exp(cos[partner] / tau) / denominator
            rows.append((-math.log(p), p, (1 - p) / tau,
                         max(c for j, c in cos.items() if j != partner)))
    return [sum(column) / len(rows) for column in zip(*rows)]


def test_batch_size_table_matches_an_anchor_by_anchor_loop():
    torch.manual_seed(0)
    z1 = torch.randn(50, 6, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(50, 6, dtype=torch.float64)
    table = lab.batch_size_table(z1, z2, [2, 8, 16], temperature=0.3)
    for n in (2, 8, 16):
        loss, p, grad, hardest = slow_batch_row(z1, z2, n, 0.3)
        row = table[n]
        assert row["loss"] == pytest.approx(loss, rel=1e-5)
        assert row["p_positive"] == pytest.approx(p, rel=1e-5)
        assert row["gradient_scale"] == pytest.approx(grad, rel=1e-5)
        assert row["hardest_negative"] == pytest.approx(hardest, rel=1e-5)
        assert row["cap"] == pytest.approx(math.log(2 * n - 1))
        assert row["bound"] == pytest.approx(math.log(2 * n - 1) - loss, rel=1e-5)


def test_batch_size_table_of_identical_views_approaches_the_cap():
    """Views that coincide and images far apart: the loss goes to 0 and the bound to log(2N - 1)."""
    z = torch.eye(16)
    row = lab.batch_size_table(z, z.clone(), [8], temperature=0.05)[8]
    assert row["loss"] < 1e-6 and row["bound"] == pytest.approx(math.log(15), abs=1e-6)
    assert row["hardest_negative"] == pytest.approx(0.0, abs=1e-6)


def test_batch_size_table_rejects_bad_arguments():
    z = torch.randn(10, 4)
    with pytest.raises(ValueError, match="batch_sizes"):
        lab.batch_size_table(z, z, [1], temperature=0.1)
    with pytest.raises(ValueError, match="batch_sizes"):
        lab.batch_size_table(z, z, [11], temperature=0.1)
    with pytest.raises(ValueError, match="z1 and z2"):
        lab.batch_size_table(z, z[:, :3], [4], temperature=0.1)

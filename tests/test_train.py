import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.train import (History, Method, TrainConfig, clip_gradients, load_checkpoint, param_groups,
                              save_checkpoint, train)


class TinyClassifier(Method):
    """A linear classifier on raw pixels: enough to exercise every part of the loop."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        self.after_calls = 0

    def training_step(self, images, labels, step):
        logits = self.net(images.float() / 255)
        return F.cross_entropy(logits, labels), {"acc": (logits.argmax(1) == labels).float().mean().item()}

    def after_step(self, step):
        self.after_calls += 1


def toy_data(n=64):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=g)
    images = torch.randint(0, 100, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    images[labels == 1, 0] += 150  # class 1 is redder: learnable
    return images, labels


def run(steps=30, **kw):
    torch.manual_seed(0)
    model = TinyClassifier()
    images, labels = toy_data()
    cfg = TrainConfig(steps=steps, batch_size=16, lr=0.05, warmup_steps=5, log_every=5, progress=False, **kw)
    return model, train(model, images, cfg, labels=labels)


def test_learns_logs_and_calls_after_step():
    model, hist = run()
    assert model.after_calls == 30
    assert hist.steps == [0, 5, 10, 15, 20, 25, 29]
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist.last("acc") == 1.0
    assert hist["lr"][0] == 0.0 and max(hist["lr"]) <= 0.05


def test_deterministic_on_cpu():
    m1, h1 = run()
    m2, h2 = run()
    assert h1.metrics == h2.metrics
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    images, labels = toy_data()
    cfg = TrainConfig(steps=20, batch_size=16, lr=0.05, warmup_steps=5, log_every=1, progress=False)
    torch.manual_seed(0)
    full = TinyClassifier()
    train(full, images, cfg, labels=labels)

    # Same start, interrupted after step 9 (10 optimizer steps), saved, reloaded, resumed.
    torch.manual_seed(0)
    short = TinyClassifier()
    opt = torch.optim.AdamW(param_groups(short, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    hist = History()

    class Stop(Exception):
        pass

    def stopper(step, _orig=short.after_step):
        _orig(step)
        if step == 9:
            raise Stop
    short.after_step = stopper
    with pytest.raises(Stop):
        train(short, images, cfg, labels=labels, optimizer=opt, history=hist)
    save_checkpoint(tmp_path / "ck.pt", short, optimizer=opt, step=10, history=hist, config=cfg)

    resumed = TinyClassifier()
    opt2 = torch.optim.AdamW(param_groups(resumed, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    step, hist2 = load_checkpoint(tmp_path / "ck.pt", resumed, optimizer=opt2)
    assert step == 10 and hist2.steps == list(range(9))  # step 9 raised before logging
    train(resumed, images, cfg, labels=labels, optimizer=opt2, history=hist2, start_step=step)
    for p, q in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_weight_decay_groups_skip_biases():
    groups = param_groups(TinyClassifier(), 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [p.ndim for p in groups[0]["params"]] == [2] and [p.ndim for p in groups[1]["params"]] == [1]


class HugeLoss(TinyClassifier):
    """Gradients far above any clipping norm, on every parameter."""

    def training_step(self, images, labels, step):
        return 1e6 * self.net(images.float()).pow(2).mean(), {}


@pytest.mark.parametrize("mode", ["global", "per_tensor"])
def test_gradient_clipping_applied(mode):
    """Clipped at 1.0: the joint norm of all gradients is 1 ("global"), or each gradient's norm is
    ("per_tensor": every one was far above 1)."""
    model = HugeLoss()
    images, labels = toy_data()
    cfg = TrainConfig(steps=1, batch_size=8, lr=1e-3, warmup_steps=0, grad_clip=1.0, grad_clip_mode=mode,
                      progress=False)
    train(model, images, cfg, labels=labels)
    norms = [p.grad.norm().item() for p in model.parameters()]
    if mode == "global":
        assert math.sqrt(sum(n * n for n in norms)) == pytest.approx(1.0, rel=1e-4)
    else:
        assert norms == pytest.approx([1.0] * len(norms), rel=1e-4)


def _two_gradients() -> list[torch.nn.Parameter]:
    """Two parameters whose gradients have norms 5 and 1."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])
    return [a, b]


def test_per_tensor_clipping_scales_each_gradient_alone_and_global_scales_all_by_one_factor():
    a, b = _two_gradients()
    clip_gradients([a, b], 2.0, "per_tensor")            # DINO's utils.clip_gradients
    assert a.grad.tolist() == pytest.approx([1.2, 1.6], rel=1e-5)   # norm 5 -> 2
    assert b.grad.tolist() == pytest.approx([0.6, 0.8])             # norm 1 < 2: untouched
    a, b = _two_gradients()
    clip_gradients([a, b], 2.0, "global")                # one norm over both: sqrt(25 + 1)
    factor = 2.0 / math.sqrt(26.0)
    assert a.grad.tolist() == pytest.approx([3.0 * factor, 4.0 * factor], rel=1e-5)
    assert b.grad.tolist() == pytest.approx([0.6 * factor, 0.8 * factor], rel=1e-5)
    with pytest.raises(ValueError, match="mode"):
        clip_gradients([a, b], 2.0, "per_layer")


def test_nan_loss_raises_with_step():
    class Bad(TinyClassifier):
        def training_step(self, images, labels, step):
            return torch.tensor(float("nan"), requires_grad=True), {}
    images, labels = toy_data()
    with pytest.raises(FloatingPointError, match="step 0"):
        train(Bad(), images, TrainConfig(steps=2, batch_size=8, warmup_steps=0, progress=False))


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"),
    (dict(steps=5, warmup_steps=9), "warmup_steps"), (dict(lr=-1.0), "lr"),
    (dict(grad_clip=0.0), "grad_clip"), (dict(grad_clip_mode="per_layer"), "grad_clip_mode")])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_train_input_errors():
    images, labels = toy_data()
    with pytest.raises(ValueError, match="uint8"):
        train(TinyClassifier(), images.float(), TrainConfig(progress=False))
    with pytest.raises(ValueError, match="subclass"):
        train(nn.Linear(2, 2), images, TrainConfig(progress=False))
    with pytest.raises(ValueError, match="batch_size"):
        train(TinyClassifier(), images, TrainConfig(batch_size=1000, progress=False))


def one_sgd_step(method, amp_dtype, steps=1):
    """Parameters of ``method`` after ``steps`` plain-SGD steps (no clipping, no warm-up) of the loop."""
    images, labels = toy_data()
    cfg = TrainConfig(steps=steps, batch_size=16, lr=0.1, min_lr=0.1, warmup_steps=0, grad_clip=None,
                      amp_dtype=amp_dtype, progress=False)
    train(method, images, cfg, labels=labels, optimizer=torch.optim.SGD(method.parameters(), lr=0.1))
    return [p.detach().clone() for p in method.parameters()]


def test_float16_autocast_steps_with_the_true_gradients():
    """float16 (forced on the CPU) goes through the gradient scaler: the loss is scaled up before
    backward and the gradients scaled back down before the step, so the update matches full
    precision (to float16's accuracy) instead of being 65536 times too large."""
    torch.manual_seed(0)
    start = TinyClassifier().state_dict()
    updates = {}
    for dtype in (None, "float16", "bfloat16"):
        model = TinyClassifier()
        model.load_state_dict(start)
        after = one_sgd_step(model, dtype)
        updates[dtype] = torch.cat([(a - s).flatten() for a, s in zip(after, start.values())])
    full = updates[None]
    assert full.abs().max() > 1e-3                              # the step did move the weights
    for dtype in ("float16", "bfloat16"):
        assert torch.allclose(updates[dtype], full, rtol=0.05, atol=2e-3 * full.abs().max()), dtype


def test_float16_step_with_overflowed_gradients_is_skipped():
    """A step whose float16-scaled gradients overflow leaves the weights as they were (the scaler
    skips it and halves its scale); without a scaler (bfloat16) the same step is taken."""
    class Overflow(TinyClassifier):
        def training_step(self, images, labels, step):
            loss, metrics = super().training_step(images, labels, step)
            if step == 1:  # finite loss, but 1e34 * 65536 overflows float32 in backward
                loss = 1e34 * sum(p.float().square().sum() for p in self.parameters())
            return loss, metrics
    torch.manual_seed(0)
    start = Overflow().state_dict()
    runs = {}
    for dtype, steps in ((None, 1), ("float16", 1), ("float16", 2), ("bfloat16", 2)):
        model = Overflow()
        model.load_state_dict(start)
        runs[dtype, steps] = one_sgd_step(model, dtype, steps)
    for a, b in zip(runs["float16", 2], runs["float16", 1]):
        assert torch.equal(a, b)                                # step 1 skipped
    assert max(p.abs().max() for p in runs["bfloat16", 2]) > 1e30  # no scaler: the step taken
    assert max(p.abs().max() for p in runs["float16", 2]) < 10


def test_amp_dtype_config_error():
    with pytest.raises(ValueError, match="amp_dtype"):
        TrainConfig(amp_dtype="half")

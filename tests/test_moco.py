import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.moco import MoCoQueue, moco_loss


def test_queue_is_fifo_ring_buffer():
    q = MoCoQueue(dim=2, size=4)
    keys = [F.normalize(torch.tensor([[float(i + 1), 1.0]]), dim=1) for i in range(6)]
    for k in keys[:4]:
        q.enqueue(k)
    torch.testing.assert_close(q.negatives, torch.cat(keys[:4]))
    q.enqueue(torch.cat(keys[4:6]))  # overwrites the two OLDEST entries (0 and 1)
    torch.testing.assert_close(q.negatives, torch.cat([keys[4], keys[5], keys[2], keys[3]]))
    assert int(q.ptr) == 2


def test_enqueue_wraps_and_normalises():
    q = MoCoQueue(dim=3, size=5)
    q.enqueue(torch.randn(4, 3))
    k = torch.randn(3, 3) * 7
    q.enqueue(k)  # positions 4, 0, 1
    torch.testing.assert_close(q.negatives[[4, 0, 1]], F.normalize(k, dim=1))
    assert torch.allclose(q.negatives.norm(dim=1), torch.ones(5))


def test_moco_loss_matches_loop():
    g = torch.Generator().manual_seed(0)
    qv, kv, neg = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), torch.randn(10, 6, generator=g)
    neg = F.normalize(neg, dim=1)
    tau = 0.2
    total = 0.0
    for qi, ki in zip(F.normalize(qv, dim=1), F.normalize(kv, dim=1)):
        logits = [float(qi @ ki) / tau] + [float(qi @ n) / tau for n in neg]
        total += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    assert moco_loss(qv, kv, neg, tau).item() == pytest.approx(total / 4, rel=1e-5)


def test_moco_loss_accepts_queue_and_blocks_key_gradient():
    queue = MoCoQueue(8, 16)
    q = torch.randn(4, 8, requires_grad=True)
    k = torch.randn(4, 8, requires_grad=True)
    moco_loss(q, k, queue).backward()
    assert q.grad is not None and k.grad is None


def test_uniform_case_closed_form():
    q = torch.ones(3, 4)
    queue = F.normalize(torch.ones(9, 4), dim=1)
    assert moco_loss(q, q, queue).item() == pytest.approx(math.log(10), rel=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        MoCoQueue(4, 0)
    q = MoCoQueue(4, 3)
    with pytest.raises(ValueError, match="cannot enqueue"):
        q.enqueue(torch.randn(4, 4))
    with pytest.raises(ValueError, match="keys must be"):
        q.enqueue(torch.randn(2, 5))
    with pytest.raises(ValueError, match="queue width"):
        moco_loss(torch.randn(2, 5), torch.randn(2, 5), q)

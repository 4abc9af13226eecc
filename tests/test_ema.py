import copy

import pytest
import torch
from torch import nn

from course_lib.ema import ema_update


def make_pair():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(1.0)
    student(torch.randn(8, 4))  # changes the student's BatchNorm running statistics
    return teacher, student


def test_update_rule_by_hand():
    teacher, student = make_pair()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, momentum=0.9)
    for name, s in student.named_parameters():
        expected = 0.9 * before[name] + 0.1 * s.detach()
        torch.testing.assert_close(dict(teacher.named_parameters())[name], expected)
    for name, b in student.named_buffers():
        assert torch.equal(dict(teacher.named_buffers())[name], b), f"buffer {name} not copied"


def test_direction_momentum_one_keeps_teacher_and_zero_copies_student():
    teacher, student = make_pair()
    before = copy.deepcopy(teacher)
    ema_update(teacher, student, momentum=1.0)
    for p, q in zip(teacher.parameters(), before.parameters()):
        assert torch.equal(p, q)
    ema_update(teacher, student, momentum=0.0)
    for p, q in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(p, q)


def test_no_grad_and_student_untouched():
    teacher, student = make_pair()
    snapshot = copy.deepcopy(student.state_dict())
    ema_update(teacher, student, momentum=0.5)
    assert all(p.grad is None for p in teacher.parameters())
    for k, v in student.state_dict().items():
        assert torch.equal(v, snapshot[k])


def test_bad_arguments():
    teacher, student = make_pair()
    with pytest.raises(ValueError, match="momentum"):
        ema_update(teacher, student, 1.5)
    with pytest.raises(ValueError, match="same parameters"):
        ema_update(nn.Linear(4, 3), nn.Linear(4, 3, bias=False), 0.9)

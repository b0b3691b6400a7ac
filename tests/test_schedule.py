"""The learning-rate schedule: warm-up, cosine to the floor, by steps or by elapsed time."""

from __future__ import annotations

import itertools

import pytest
import torch

from hmer.engine.schedule import WarmupCosine


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = WarmupCosine(optimizer, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    lrs = [schedule.lr]
    for _ in range(120):
        schedule.step()
        lrs.append(schedule.lr)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:111]))
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-6)
    assert lrs[110] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1)


def test_schedule_total_can_be_planned_after_warmup_steps():
    param = torch.nn.Parameter(torch.zeros(1))
    schedule = WarmupCosine(torch.optim.SGD([param], lr=1.0), 10, total_steps=10_000)
    for _ in range(5):
        schedule.step()
    before = schedule.lr
    schedule.set_total(100)
    assert schedule.lr == pytest.approx(before)  # warm-up does not depend on the total
    restored = WarmupCosine(torch.optim.SGD([param], lr=1.0), 10, 1)
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr == schedule.lr and restored.total_steps == 100


def test_time_schedule_follows_the_elapsed_fraction_and_ends_on_the_floor():
    param = torch.nn.Parameter(torch.zeros(1))
    schedule = WarmupCosine(torch.optim.SGD([param], lr=1.0), 10, total_steps=1, min_lr_ratio=0.1)
    # Past the warm-up, the rate depends on the elapsed fraction alone, not on steps taken.
    schedule.step_count = 500
    for progress, expected in ((0.0, 1.0), (0.5, 0.1 + 0.9 * 0.5), (1.0, 0.1), (3.0, 0.1)):
        schedule.step(progress)
        assert schedule.lr == pytest.approx(expected)
        schedule.step_count = 500
    # A budget that ends inside the warm-up still decays: the ramp multiplies the cosine.
    short = WarmupCosine(torch.optim.SGD([param], lr=1.0), 100, total_steps=1, min_lr_ratio=0.1)
    short.step(0.99)
    assert short.lr == pytest.approx(0.02 * 0.1, rel=0.01)  # (2 / 100 ramp) x (near the floor)
    restored = WarmupCosine(torch.optim.SGD([param], lr=1.0), 100, 1, min_lr_ratio=0.1)
    restored.load_state_dict(short.state_dict())
    assert restored.lr == short.lr

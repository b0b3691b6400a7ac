"""The exponential moving average of the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hmer.engine.ema import Ema


def test_ema_averages_parameters_copies_buffers_and_ramps_its_decay():
    model = nn.BatchNorm1d(2)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = Ema(model, decay=0.99)
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert not ema.module.training
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.running_mean.fill_(3.0)
    ema.update(model)  # first decay: min(0.99, 1 / 10)
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.9))
    assert torch.equal(ema.module.running_mean, model.running_mean)
    ema.update(model)  # then min(0.99, 2 / 11)
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.9 + 0.1 * (1 - 2 / 11)))
    assert ema.updates == 2
    restored = Ema(model, decay=0.99)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 2


def test_ema_decay_is_capped():
    model = nn.Linear(1, 1, bias=False)
    ema = Ema(model, decay=0.5)
    ema.updates = 1000
    with torch.no_grad():
        ema.module.weight.fill_(0.0)
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.5)

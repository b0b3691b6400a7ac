"""An exponential moving average of a model's weights, the weights a run evaluates when on."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class Ema:
    """Exponential moving average of a model's weights (buffers are copied, not averaged).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` so short runs are not dominated by
    the random initialisation. The update is one fused ``_foreach_lerp_`` with no host sync.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0
        self._ema_params = [p for p in self.module.parameters()]
        self._ema_buffers = [b for b in self.module.buffers()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(self._ema_params, params, 1.0 - decay)
        for mine, theirs in zip(self._ema_buffers, model.buffers(), strict=True):
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])

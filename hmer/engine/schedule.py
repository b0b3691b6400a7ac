"""The learning-rate schedule: a linear warm-up, then a cosine down to a floor."""

from __future__ import annotations

import math
from typing import Any

import torch


class WarmupCosine:
    """Learning rate: a linear warm-up ramp times a cosine from the base rate down to
    ``min_lr_ratio`` x base (and flat after).

    The cosine follows a *progress* fraction in [0, 1]. Without one (step schedules: epochs or
    ``train.max_steps``) progress is counted in steps after the warm-up, up to ``total_steps``,
    and the warm-up is capped at a fifth of them. Time budgets pass the elapsed fraction of the
    training time instead, so a machine that slows down mid-run still ends on the floor rather
    than half-decayed; there the ramp multiplies the cosine, so even a budget that ends inside
    the warm-up decays.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        total_steps: int,
        min_lr_ratio: float = 0.01,
    ):
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        self.step_count = 0
        self.progress: float | None = None
        self._apply()

    def factor(self, step: int, progress: float | None = None) -> float:
        if progress is None:
            warmup = max(1, min(self.warmup_steps, self.total_steps // 5))
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            ramp = 1.0
        else:
            ramp = min(1.0, (step + 1) / max(1, self.warmup_steps))
        progress = min(1.0, max(0.0, progress))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return ramp * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine)

    def _apply(self) -> None:
        f = self.factor(self.step_count, self.progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * f

    def step(self, progress: float | None = None) -> None:
        """One optimizer step done; ``progress``: elapsed fraction of a time-based schedule."""
        self.step_count += 1
        self.progress = progress
        self._apply()

    def set_total(self, total_steps: int, progress: float | None = None) -> None:
        """A new planned step total (and, for time schedules, the elapsed fraction now)."""
        self.total_steps = total_steps
        self.progress = progress
        self._apply()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "min_lr_ratio": self.min_lr_ratio,
            "base_lrs": list(self.base_lrs),
            "progress": self.progress,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.warmup_steps = int(state["warmup_steps"])
        self.total_steps = int(state["total_steps"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.progress = state.get("progress")
        self._apply()

"""Planning a run: how many steps it takes and, for a time budget, when training must stop.

A step schedule (``train.epochs`` or ``train.max_steps``) is planned at once (:func:`step_plan`).
A time budget (``train.time_budget``) first times the training step (:class:`StepTimer`) under a
provisional plan (:func:`measuring_plan`), then plans the steps and the training deadline
(:func:`plan_time_budget`) so that the final validation, the test, the saves and the results
still fit in the budget. All times are seconds on the run's clock (:class:`RunClock`), which a
resumed run continues from where the previous process stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

#: Seconds reserved at the end of a budgeted run for results.json, the TSVs and the plot.
FINISH_S = 3.0
#: Fewer planned steps than this cannot teach a model anything: a budgeted run says so.
TOO_FEW_STEPS = 300
#: Most of a time budget that periodic validation may take (its interval is raised to fit).
VAL_SHARE = 0.03


@dataclass
class Plan:
    """How many optimizer steps the run takes, and why.

    ``deadline_s`` (time budgets only): seconds after the run started when training must stop so
    that the final validation, test evaluation and saving still fit. ``val_every`` (time budgets
    only): the validation interval, raised from ``train.val_every`` where validating that often
    would take more than ``VAL_SHARE`` of the budget.
    """

    total_steps: int
    steps_per_epoch: int
    how: str
    budget_s: float | None = None
    step_s: float | None = None
    val_s: float | None = None
    test_s: float | None = None
    save_s: float | None = None
    finish_s: float | None = None
    safety_s: float | None = None
    deadline_s: float | None = None
    val_every: int | None = None

    def describe(self) -> str:
        epochs = self.total_steps / max(1, self.steps_per_epoch)
        head = (
            f"plan: {self.total_steps:,} steps (~{epochs:.1f} epochs of {self.steps_per_epoch:,})"
        )
        if self.how != "time_budget":
            return f"{head}, from {self.how}"
        return (
            f"{head} to fit the {self.budget_s:.0f}s budget: {self.step_s * 1000:.1f} ms/step "
            f"measured; reserved {self.val_s:.1f}s per validation, {self.test_s:.1f}s final test "
            f"(beam), {self.save_s:.1f}s per save, {self.finish_s:.1f}s results and plot, "
            f"{self.safety_s:.1f}s safety; training stops by "
            f"t={self.deadline_s:.0f}s"
        )

    def rebudget(self, budget_s: float) -> None:
        """A resumed time-budget run keeps its clock and schedule; a new budget moves the stop
        (the reserves stay as measured)."""
        self.deadline_s = training_deadline(
            budget_s,
            safety_s=self.safety_s,
            test_s=self.test_s,
            val_s=self.val_s,
            save_s=self.save_s,
            finish_s=self.finish_s,
        )


def step_plan(max_steps: int | None, epochs: int, steps_per_epoch: int) -> Plan:
    """The plan of a step schedule: ``train.max_steps`` when set, else ``train.epochs``."""
    if max_steps is not None:
        return Plan(max_steps, steps_per_epoch, "train.max_steps")
    return Plan(epochs * steps_per_epoch, steps_per_epoch, "train.epochs")


def measuring_plan(plan: Plan, end_at: int) -> Plan:
    """The provisional plan of a time budget while its step is timed (until step ``end_at``)."""
    return Plan(max(plan.total_steps, end_at * 100), plan.steps_per_epoch, "measuring")


def training_deadline(
    budget_s: float, *, safety_s: float, test_s: float, val_s: float, save_s: float, finish_s: float
) -> float:
    """Seconds into the budget when training must stop.

    Everything after it is reserved: ``safety_s``, the test evaluation, one final validation,
    the last saves (``save_s`` each: last.pt and best.pt) and ``finish_s`` for results and plot.
    """
    return budget_s - safety_s - test_s - val_s - 2 * save_s - finish_s


def plan_budget(
    *,
    budget_s: float,
    elapsed_s: float,
    step: int,
    step_s: float,
    val_s: float,
    val_every: int,
    test_s: float,
    save_s: float,
    ckpt_every: int,
    finish_s: float,
    safety: float,
) -> tuple[int, float]:
    """(total steps, training deadline in seconds since start) for a time budget.

    The deadline is :func:`training_deadline` with a ``safety`` fraction of the budget. Steps
    before it also pay for periodic validation and checkpoints, spread per step.
    """
    deadline = training_deadline(
        budget_s,
        safety_s=safety * budget_s,
        test_s=test_s,
        val_s=val_s,
        save_s=save_s,
        finish_s=finish_s,
    )
    per_step = step_s
    if val_every > 0:
        per_step += val_s / val_every
    if ckpt_every > 0:
        per_step += save_s / ckpt_every
    more = max(0, math.floor((deadline - elapsed_s) / per_step)) if per_step > 0 else 0
    return step + more, deadline


def plan_time_budget(
    *,
    budget_s: float,
    elapsed_s: float,
    step: int,
    steps_per_epoch: int,
    step_s: float,
    val_s: float,
    val_every: int,
    test_s: float,
    save_s: float,
    ckpt_every: int,
    safety: float,
) -> Plan:
    """The plan of a time budget from measured costs (seconds per step, per validation, for the
    test, per save), ``step`` steps done ``elapsed_s`` into it.

    The validation interval is raised from ``val_every`` where validating that often would take
    more than ``VAL_SHARE`` of the budget.
    """

    def fit(every: int) -> tuple[int, float]:
        return plan_budget(
            budget_s=budget_s,
            elapsed_s=elapsed_s,
            step=step,
            step_s=step_s,
            val_s=val_s,
            val_every=every,
            test_s=test_s,
            save_s=save_s,
            ckpt_every=ckpt_every,
            finish_s=FINISH_S,
            safety=safety,
        )

    total, deadline = fit(val_every)
    if val_every and val_s * (total - step) / val_every > VAL_SHARE * budget_s:
        # Validating this often would eat the budget: validate less often instead.
        val_every = math.ceil(val_s * (total - step) / (VAL_SHARE * budget_s))
        total, deadline = fit(val_every)
    return Plan(
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        how="time_budget",
        budget_s=budget_s,
        step_s=step_s,
        val_s=val_s,
        test_s=test_s,
        save_s=save_s,
        finish_s=FINISH_S,
        safety_s=safety * budget_s,
        deadline_s=deadline,
        val_every=val_every,
    )


def probe_length(target_lengths: list[int], max_len: int) -> int:
    """How far the decodes timed for a plan run: an untrained model rarely emits <eos>, so they
    stop at a typical target length (90th percentile, +2) and the estimate reflects a trained
    model."""
    lengths = sorted(target_lengths)
    return min(max_len, lengths[int(0.9 * (len(lengths) - 1))] + 2)


def save_seconds(n_values: int) -> float:
    """Seconds to save a training checkpoint of ``n_values`` parameters: weights and Adam
    moments (3 x fp32) at ~200 MB/s, plus a second."""
    return 1.0 + 3 * 4 * n_values / 200e6


def too_few_steps(steps: int) -> str | None:
    """The warning for a budget that fits fewer than ``TOO_FEW_STEPS`` steps, else None."""
    if steps >= TOO_FEW_STEPS:
        return None
    return (
        f"warning: the budget fits only about {steps} steps; a model needs at least "
        f"{TOO_FEW_STEPS} to learn anything (raise --time-budget, use a smaller model or "
        "a less busy machine)"
    )


class RunClock:
    """Seconds since the run started, over all its processes: a resumed run goes on from the
    time its ``last.pt`` was saved at (``train_state["clock"]``), so a time budget is spent once.

    ``started``: ``time.monotonic()`` when this process started. ``train_start_s``: when training
    began on this clock (time budgets: the schedule's zero), None before.
    """

    def __init__(self, started: float):
        self.started = started
        #: Seconds this run had spent in earlier processes.
        self.offset = 0.0
        self.train_start_s: float | None = None

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self.started

    @property
    def origin(self) -> float:
        """``time.monotonic()`` when this clock read zero."""
        return self.started - self.offset

    def start_training(self) -> None:
        """Training begins now, unless it began in an earlier process."""
        if self.train_start_s is None:
            self.train_start_s = self.elapsed()

    def training_progress(self, deadline_s: float | None) -> float:
        """Elapsed fraction of the training window, from the start of training to ``deadline_s``.

        Zero until the deadline is planned (the first steps measure throughput in warm-up); one
        when training began only after it (start-up took the whole budget).
        """
        start = self.train_start_s
        if deadline_s is None or start is None:
            return 0.0
        if deadline_s <= start:
            return 1.0
        return (self.elapsed() - start) / (deadline_s - start)

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_s": self.elapsed(), "train_start_s": self.train_start_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.offset = float(state.get("elapsed_s", 0.0))
        self.train_start_s = state.get("train_start_s")


class StepTimer:
    """Seconds per optimizer step, timed after ``warmup`` untimed steps over ``steps`` steps.

    On a slow device (a CPU rehearsal of a GPU config) the warm-up ends once 10% of the budget
    is gone and the timing once 25% is, so that the plan always comes in time. Ranks of a
    distributed run must plan at the same step, so there only step counts decide.
    """

    def __init__(
        self,
        step: int,
        warmup: int,
        steps: int,
        budget_s: float,
        started: float,
        may_cut_short: bool = True,
    ):
        self.start_at = step + max(1, warmup)
        self.end_at = self.start_at + max(1, steps)
        self.budget_s, self.started, self.may_cut_short = budget_s, started, may_cut_short
        self.t0: float | None = None
        self.first = 0

    def _spent(self, share: float) -> bool:
        return self.may_cut_short and time.monotonic() - self.started > share * self.budget_s

    def update(self, step: int, device: torch.device) -> float | None:
        """Call after each step (``step`` = steps done); returns seconds per step once timed."""
        if self.t0 is None:
            if step >= self.start_at or self._spent(0.10):
                sync(device)
                self.t0, self.first = time.monotonic(), step
            return None
        if step >= self.end_at or self._spent(0.25):
            sync(device)
            return (time.monotonic() - self.t0) / (step - self.first)
        return None


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (timings need it; CPU work is already done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

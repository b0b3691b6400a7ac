"""Planning a run: step schedules, time budgets (steps, deadline, validation interval), the
run's clock across processes and the step timer."""

from __future__ import annotations

import math
import time

import pytest
import torch

from hmer.engine.budget import (
    TOO_FEW_STEPS,
    VAL_SHARE,
    Plan,
    RunClock,
    StepTimer,
    measuring_plan,
    plan_budget,
    plan_time_budget,
    probe_length,
    step_plan,
    too_few_steps,
    training_deadline,
)


def test_budget_plan_fits_training_validation_test_and_saving_in_the_budget():
    kwargs = dict(
        budget_s=480.0, elapsed_s=30.0, step=30, step_s=0.1, val_s=2.0, val_every=500,
        test_s=40.0, save_s=1.0, ckpt_every=1000, finish_s=3.0, safety=0.05,
    )  # fmt: skip
    total, deadline = plan_budget(**kwargs)
    per_step = 0.1 + 2.0 / 500 + 1.0 / 1000
    spent = 30.0 + (total - 30) * per_step + 2.0 + 40.0 + 2 * 1.0 + 3.0 + 0.05 * 480.0
    assert spent <= 480.0 < spent + per_step  # as many steps as fit, no more
    assert deadline == pytest.approx(480.0 - 24.0 - 40.0 - 2.0 - 2.0 - 3.0)
    # A budget already spent plans no further steps.
    assert plan_budget(**{**kwargs, "elapsed_s": 500.0})[0] == 30


def test_step_plans_come_from_max_steps_else_epochs_and_measuring_is_provisional():
    assert step_plan(50, 3, 10) == Plan(50, 10, "train.max_steps")
    assert step_plan(None, 3, 10) == Plan(30, 10, "train.epochs")
    assert measuring_plan(Plan(30, 10, "train.epochs"), 12) == Plan(1200, 10, "measuring")
    assert measuring_plan(Plan(5000, 10, "train.epochs"), 12).total_steps == 5000


def test_time_budget_plan_reserves_its_costs_and_validates_less_often_to_fit():
    kwargs = dict(
        budget_s=600.0, elapsed_s=20.0, step=10, steps_per_epoch=100, step_s=0.05, val_s=5.0,
        val_every=100, test_s=30.0, save_s=2.0, ckpt_every=0, safety=0.05,
    )  # fmt: skip
    plan = plan_time_budget(**kwargs)
    assert plan.how == "time_budget" and plan.safety_s == pytest.approx(30.0)
    assert plan.deadline_s == training_deadline(
        600.0, safety_s=30.0, test_s=30.0, val_s=5.0, save_s=2.0, finish_s=plan.finish_s
    )
    # Every 100 steps, validation would take most of the budget: the interval is raised so that
    # it takes VAL_SHARE of it at the first plan's step total, and the steps are planned again.
    first, _ = plan_budget(
        **{k: v for k, v in kwargs.items() if k != "steps_per_epoch"}, finish_s=plan.finish_s
    )
    assert plan.val_every == math.ceil(5.0 * (first - 10) / (VAL_SHARE * 600.0)) > 100
    assert plan.total_steps > first
    cheap = plan_time_budget(**{**kwargs, "val_s": 0.001})
    assert cheap.val_every == 100
    # A resumed run given another budget moves only its deadline.
    plan.rebudget(300.0)
    assert plan.deadline_s == pytest.approx(300.0 - 30.0 - 30.0 - 5.0 - 4.0 - plan.finish_s)
    assert plan.budget_s == 600.0
    assert Plan(**{k: v for k, v in vars(plan).items()}).describe().startswith("plan: ")


def test_probe_length_and_the_too_few_steps_warning():
    assert probe_length([5, 1, 3, 2, 4, 9, 7, 8, 6, 10], max_len=100) == 9 + 2
    assert probe_length([40] * 10, max_len=12) == 12
    assert too_few_steps(TOO_FEW_STEPS) is None
    assert "only about 20 steps" in too_few_steps(20)


def test_the_clock_goes_on_across_processes_and_measures_the_training_window(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    clock = RunClock(started=90.0)
    assert clock.elapsed() == 10.0 and clock.training_progress(50.0) == 0.0  # not started
    clock.start_training()
    assert clock.train_start_s == 10.0
    assert clock.training_progress(None) == 0.0  # deadline not planned yet
    now[0] = 120.0
    assert clock.training_progress(50.0) == pytest.approx(0.5)
    saved = clock.state_dict()
    assert saved == {"elapsed_s": 30.0, "train_start_s": 10.0}
    later = RunClock(started=1000.0)  # the next process
    later.load_state_dict(saved)
    later.start_training()  # began in the earlier process: kept
    now[0] = 1005.0
    assert later.elapsed() == 35.0 and later.train_start_s == 10.0
    assert later.origin == 1000.0 - 30.0
    assert later.training_progress(5.0) == 1.0  # training began after the deadline
    empty = RunClock(0.0)
    empty.load_state_dict({})
    assert empty.offset == 0.0 and empty.train_start_s is None


def test_step_timer_times_steps_after_its_warmup(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    timer = StepTimer(step=0, warmup=2, steps=4, budget_s=1e6, started=0.0)
    assert (timer.start_at, timer.end_at) == (2, 6)
    cpu = torch.device("cpu")
    for step in range(1, 6):
        now[0] += 0.5
        assert timer.update(step, cpu) is None
    now[0] += 0.5
    assert timer.update(6, cpu) == pytest.approx(0.5)
    # A slow device: the warm-up ends once 10% of the budget is gone, the timing at 25%.
    slow = StepTimer(step=0, warmup=100, steps=100, budget_s=10.0, started=0.0)
    now[0] = 1.5
    assert slow.update(1, cpu) is None and slow.t0 == 1.5
    now[0] = 3.0
    assert slow.update(2, cpu) == pytest.approx(1.5)
    ranks = StepTimer(
        step=0, warmup=100, steps=100, budget_s=10.0, started=0.0, may_cut_short=False
    )
    now[0] = 9.0
    assert ranks.update(1, cpu) is None and ranks.t0 is None

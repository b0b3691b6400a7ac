"""The training loop: plain PyTorch, one code path for one CPU, one GPU or many (torchrun + DDP).

A run lives in a directory (:mod:`hmer.engine.run_dir`). Model selection is honest: validation
is a fixed-seed slice of the training data, decoded greedily during training; the test splits are
decoded once, at the end, with beam search, using the weights that were best on validation.

The step is free of host-device syncs: the loss is accumulated on the device and read every
``log_every`` steps, the learning rate is a Python float, and the stop / deadline checks read
host clocks and flags only.

This module is the algorithm; its parts are units of their own: the plan and the run's clock
(:mod:`hmer.engine.budget`), the learning rate (:mod:`hmer.engine.schedule`), the EMA, the model
and optimizer (:mod:`hmer.engine.build`), device batches (:mod:`hmer.engine.batches`) and what is
recorded (:mod:`hmer.engine.metrics_log`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hmer.checkpoint import check_vocab, load_state_dict_checked, save_checkpoint
from hmer.config import config_to_dict, parse_duration
from hmer.data.vocab import Vocab
from hmer.engine import distributed
from hmer.engine.batches import device_batches, resident_batches, warm_shapes
from hmer.engine.budget import (
    Plan,
    RunClock,
    StepTimer,
    measuring_plan,
    plan_time_budget,
    probe_length,
    save_seconds,
    step_plan,
    sync,
    too_few_steps,
)
from hmer.engine.build import build_model, build_optimizer, init_weights
from hmer.engine.data import build_data
from hmer.engine.device_data import DeviceData
from hmer.engine.ema import Ema
from hmer.engine.evaluate import (
    autocast,
    decode_samples,
    evaluate_samples,
    format_table,
    write_results,
)
from hmer.engine.metrics_log import MetricsLog, Phases, TrainWindow, weights_digest
from hmer.engine.plot import plot_run
from hmer.engine.rng import rng_state, set_rng_state
from hmer.engine.run_dir import RunResult, best_weights, finished_result, open_run_dir
from hmer.engine.schedule import WarmupCosine
from hmer.engine.signals import StopSignals, sigterm_raises
from hmer.errors import CheckpointError, HmerError

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.datasets import Sample

#: Greedy validation stops this many tokens past the longest training target.
VAL_LEN_MARGIN = 8


# ----------------------------------------------------------------------------- the run


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    started: float | None = None,
    stop_after_steps: int | None = None,
) -> RunResult:
    """Train ``cfg`` in ``run_dir`` (created; must not hold a run unless ``resume``; a finished
    run is left as it is: see :mod:`hmer.engine.run_dir`).

    ``started``: ``time.monotonic()`` when the process started, for time budgets (default: now).
    ``stop_after_steps``: behave as if SIGTERM arrived after that many steps of this process
    (tests of exact resume use it). Outside the training loop SIGTERM raises SystemExit.
    """
    done = finished_result(Path(run_dir)) if resume else None
    if done is not None:
        _say(f"{run_dir} already finished at step {done.step}: nothing to resume")
        return done
    with sigterm_raises():
        run = _Run(cfg, Path(run_dir), resume, time.monotonic() if started is None else started)
        try:
            run.warm_canvases()
            signum = run.fit(stop_after_steps)
            if signum is not None:
                run.save_last()
                run.log({"kind": "interrupted", "step": run.step, "signal": signum})
                _say(
                    f"stopped at step {run.step}; saved {run.dir / 'last.pt'}; "
                    f"continue with --resume {run.dir}"
                )
                return RunResult(run.dir, run.step, "interrupted", run.best, {}, signum)
            if run.validated_at != run.step:
                run.validate()
            run.save_last()
            scores = run.final_test()
            run.finish()
            return RunResult(run.dir, run.step, "finished", run.best, scores)
        finally:
            run.metrics.close()


class _Run:
    """The state of one training run (one per process) and the phases :func:`train` calls."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, started: float):

        self.cfg, self.dir = cfg, run_dir
        self.phases = Phases(startup=time.monotonic() - started)
        #: The run's clock (a resumed run keeps the one its earlier processes ran on).
        self.clock = RunClock(started)
        self.dist = distributed.init_distributed(cfg.train.device)
        self.device, self.main = self.dist.device, self.dist.is_main
        self._set_up_torch()
        payload = open_run_dir(run_dir, cfg, resume, self.main, _say)
        self._load_data(payload)
        self.config_dict, self.vocab_dict = config_to_dict(cfg), self.vocab.to_dict()
        self._build_model(payload)
        self.plan = step_plan(cfg.train.max_steps, cfg.train.epochs, len(self.data.batches))
        self.scheduler = WarmupCosine(
            self.optimizer, cfg.train.warmup_steps, self.plan.total_steps, cfg.train.min_lr_ratio
        )
        self.step = self.epoch = self.batches_done = self.samples_seen = 0
        self.validated_at = -1
        self.best: float | None = None
        #: The weights that scored best on validation, on every rank (the final test decodes them).
        self.best_state: dict[str, torch.Tensor] | None = None
        if payload is not None:
            self._restore(payload)
        self.train_model = self._wrap_for_training()
        self.budget_s = parse_duration(cfg.train.time_budget) if cfg.train.time_budget else None
        if self.budget_s is not None and self.plan.how == "time_budget":
            self.plan.rebudget(self.budget_s)
        self.metrics = MetricsLog(run_dir / "metrics.jsonl" if self.main else None)
        self._announce(resumed=payload is not None)

    def _set_up_torch(self) -> None:
        cfg = self.cfg.train
        torch.manual_seed(cfg.seed)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            # TF32 for whatever runs in fp32 outside autocast; cuDNN autotuning when asked.
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark

    def _load_data(self, payload: dict[str, Any] | None) -> None:
        """The data sets, in the resumed run's vocabulary; resident on the device when asked."""

        cfg = self.cfg
        vocab = Vocab.from_dict(payload["vocab"]) if payload is not None else None
        with self.phases.timed("data"):
            self.data = build_data(
                cfg,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                device=self.device,
                vocab=vocab,
            )
        self.vocab = self.data.vocab
        #: The training set resident on the device (data.on_device), else None: the DataLoader.
        self.device_data = None
        if cfg.data.on_device:  # the config has checked that static_shapes is on
            with self.phases.timed("data"):
                self.device_data = DeviceData(
                    self.data.train,
                    self.data.batches.sampler,
                    self.device,
                    cfg.augment if cfg.data.augment else None,
                    cfg.train.seed,
                    self.vocab.pad_id,
                )
        longest = max((len(ids) for ids in self.data.train.ids), default=0)
        #: Greedy validation never runs past this (an untrained model rarely stops by itself).
        self.val_max_len = min(cfg.decode.max_len, longest + VAL_LEN_MARGIN)

    def _build_model(self, payload: dict[str, Any] | None) -> None:
        """The model (with ``train.init_from``'s weights for a new run), its EMA and optimizer."""
        cfg = self.cfg
        self.memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        self.model = build_model(cfg, self.vocab)
        if payload is None and cfg.train.init_from:
            init_weights(self.model, cfg.train.init_from, self.vocab)
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = Ema(self.model, cfg.train.ema_decay) if cfg.train.ema else None
        if self.dist.distributed:
            # Same initial weights everywhere (DDP also broadcasts them), own dropout per rank.
            torch.manual_seed(cfg.train.seed + 1_000_003 * self.dist.rank)
        #: The weights validation and test decode: the EMA ones when EMA is on.
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.optimizer = build_optimizer(self.model, cfg, self.device)

    def _wrap_for_training(self) -> nn.Module:
        """The module the step calls: the model, in DDP when distributed, compiled when asked."""
        cfg = self.cfg
        train_model: nn.Module = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.train.compile:
            train_model = torch.compile(
                train_model,
                mode=cfg.train.compile_mode,
                dynamic=not cfg.data.static_shapes,  # static canvases: one graph per shape
            )
        return train_model

    def _announce(self, resumed: bool) -> None:
        """Say what the run trains on; a new run's ``start`` record."""
        data = self.data
        parameters = sum(p.numel() for p in self.model.parameters())
        tests = ", ".join(f"{k}: {len(v)}" for k, v in data.tests.items()) or "none"
        _say(
            f"{self.dir}: {len(data.train)} train / {len(data.val)} validation "
            f"expressions, tests {tests}; {parameters:,} "
            f"parameters on {self.device} x{self.dist.world_size}"
            + (f"; resuming at step {self.step}" if resumed else "")
        )
        if not resumed:
            self.log(
                {
                    "kind": "start",
                    "world_size": self.dist.world_size,
                    "device": str(self.device),
                    "train_samples": len(data.train),
                    "val_samples": len(data.val),
                    "test_samples": {k: len(v) for k, v in data.tests.items()},
                    "vocab_size": len(self.vocab),
                    "parameters": parameters,
                }
            )

    def _restore(self, payload: dict[str, Any]) -> None:
        """Continue exactly where ``last.pt`` left off (weights, optimizer, schedule, sampler,
        RNGs of every rank)."""
        path = self.dir / "last.pt"
        check_vocab(payload, self.vocab, path)
        state = payload["train_state"]
        load_state_dict_checked(self.model, state.get("model", payload["model"]), path)
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(f"{path}: EMA is on but the checkpoint has no EMA state")
            load_state_dict_checked(self.ema.module, payload["model"], path)
            self.ema.load_state_dict(state["ema"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"{path}: optimizer state does not fit: {error}") from error
        self.scheduler.load_state_dict(state["scheduler"])
        self.plan = Plan(**state["plan"])
        self.step = int(state["step"])
        self.epoch = int(state["sampler"]["epoch"])
        self.batches_done = int(state["sampler"]["consumed"])
        self.best = state["best_val_exprate"]
        self.validated_at = int(state.get("validated_at", -1))  # older checkpoints lack it
        rank = self.dist.rank
        self.samples_seen = int(state["samples_seen"][min(rank, len(state["samples_seen"]) - 1)])
        self.best_state = best_weights(self.dir, self.vocab, self.main)
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        self.clock.load_state_dict(state.get("clock", {}))

    def schedule_progress(self) -> float | None:
        """Elapsed fraction of the training window (time budgets), None for step schedules."""
        if self.budget_s is None:
            return None
        return self.clock.training_progress(self.plan.deadline_s)

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            self.metrics.write(record)

    def save_last(self) -> None:
        """``last.pt``: inference weights + everything needed to continue exactly."""
        with self.phases.timed("saving"):
            self._save_last()

    def _save_last(self) -> None:
        rngs = distributed.all_gather_objects(rng_state())
        samples = distributed.all_gather_objects(self.samples_seen)
        if not self.main:
            return
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "plan": asdict(self.plan),
            "step": self.step,
            "epoch": self.epoch,
            "sampler": self.data.batches.sampler.state_dict(consumed=self.batches_done),
            "best_val_exprate": self.best,
            "validated_at": self.validated_at,
            "samples_seen": samples,
            "rng": rngs,
            "clock": self.clock.state_dict(),
        }
        if self.ema is not None:
            state["model"] = self.model.state_dict()
            state["ema"] = self.ema.state_dict()
        save_checkpoint(
            self.dir / "last.pt",
            model=self.eval_model.state_dict(),
            config=self.config_dict,
            vocab=self.vocab_dict,
            meta={"step": self.step, "epoch": self.epoch, "best_val_exprate": self.best},
            train_state=state,
        )

    def validate(self) -> None:
        """Greedy ExpRate on the validation slice; a new best is kept in memory and as best.pt."""
        with self.phases.timed("validation"):
            self._validate()

    def _validate(self) -> None:
        self.validated_at = self.step
        if not self.data.val:
            return
        distributed.broadcast_buffers(self.eval_model)
        result = evaluate_samples(
            self.eval_model,
            self.data.val,
            self.vocab,
            self.cfg.decode,
            split="val",
            method="greedy",
            device=self.device,
            precision=self.cfg.train.precision,
            max_len=self.val_max_len,
        )
        m = result.metrics
        improved = self.best is None or m["exprate"] > self.best
        if improved:
            self.best = m["exprate"]
            self.best_state = {
                k: v.detach().to("cpu", copy=True) for k, v in self.eval_model.state_dict().items()
            }
        self.log(
            {
                "kind": "val",
                "step": self.step,
                "epoch": self.epoch,
                **m,
                "best": self.best,
                "seconds": round(result.seconds, 3),
            }
        )
        _say(
            f"step {self.step}: val ExpRate {m['exprate']:.2f} (<=1 {m['le1']:.2f}, "
            f"<=2 {m['le2']:.2f}; best {self.best:.2f}) in {result.seconds:.1f}s"
        )
        if improved and self.main:
            save_checkpoint(
                self.dir / "best.pt",
                model=self.best_state,
                config=self.config_dict,
                vocab=self.vocab_dict,
                meta={"step": self.step, "epoch": self.epoch, "val": m},
            )

    def warm_canvases(self) -> None:
        """Each static batch shape run once before the training clock (see :func:`warm_shapes`),
        unless ``train.warm_canvases`` is off."""
        sampler = self.data.batches.sampler
        if sampler.canvases is None or not self.cfg.train.warm_canvases:
            return
        with self.phases.timed("warmup"):
            warm_shapes(
                self.train_model,
                self.model,
                sampler.shapes(),
                device=self.device,
                token_id=self.vocab.unk_id,
                precision=self.cfg.train.precision,
                memory_format=self.memory_format,
            )
        _say(
            f"warmed {len(sampler.shapes())} batch shapes in {self.phases['warmup']:.1f}s "
            "(before the training clock)"
        )

    def fit(self, stop_after_steps: int | None = None) -> int | None:
        """Train to the planned step (or deadline). Returns the signal number that stopped it
        early (``signal.SIGTERM`` for ``stop_after_steps``), else None. Its wall time goes to
        ``phases["training"]``, less the validation and saving done meanwhile."""
        with self.phases.timed("training", excluding=("validation", "saving")):
            return self._fit(stop_after_steps)

    def _fit(self, stop_after_steps: int | None) -> int | None:
        meter = self._start_measuring()
        # Time budgets train until the deadline (the step total is an estimate for the
        # progress bar); step schedules until the planned step.
        timed = self.budget_s is not None
        window = TrainWindow(self.device)
        local_steps = 0
        self.clock.start_training()
        self.train_model.train()
        with StopSignals() as signals, self._progress_bar() as progress:
            while timed or self.step < self.plan.total_steps:
                for batch in self._epoch_batches(window):
                    self._train_step(batch, window)
                    local_steps += 1
                    if progress is not None:
                        progress.update(1)
                    step_s = meter.update(self.step, self.device) if meter else None
                    if step_s is not None:
                        meter = None
                        self._plan_budget(step_s, progress)
                    stop = signals.signum is not None or (
                        stop_after_steps is not None and local_steps >= stop_after_steps
                    )
                    ending = self._after_step(window, progress, stop, timed)
                    if ending == "stopped":
                        return signals.signum or signal.SIGTERM
                    if ending == "done":
                        return None
                self.epoch += 1
                self.batches_done = 0
        return None

    def _start_measuring(self) -> StepTimer | None:
        """For a time budget not planned yet, the timer of the steps its plan is made from (a
        provisional plan meanwhile); else None."""
        cfg = self.cfg.train
        if self.budget_s is None or self.plan.how == "time_budget":
            _say(self.plan.describe())
            return None
        meter = StepTimer(
            self.step,
            cfg.budget_warmup_steps,
            cfg.budget_measure_steps,
            self.budget_s,
            self.clock.origin,
            may_cut_short=not self.dist.distributed,
        )
        self.plan = measuring_plan(self.plan, meter.end_at)
        self.scheduler.set_total(self.plan.total_steps, self.schedule_progress())
        _say(
            f"measuring throughput over steps {meter.start_at}-{meter.end_at} to plan "
            f"the {self.budget_s:.0f}s budget"
        )
        return meter

    def _progress_bar(self) -> contextlib.AbstractContextManager[Any]:
        """A tqdm bar of the steps on rank 0 with ``train.progress``, else None (as contexts)."""
        if not (self.main and self.cfg.train.progress):
            return contextlib.nullcontext()
        from tqdm.auto import tqdm

        return tqdm(total=self.plan.total_steps, initial=self.step, unit="step", file=sys.stderr)

    def _epoch_batches(self, window: TrainWindow) -> Iterator[Any]:
        """The rest of epoch ``self.epoch``'s batches, on the device."""
        self.data.batches.set_epoch(self.epoch, skip=self.batches_done)
        if self.device_data is not None:
            return resident_batches(self.device_data, self.epoch, self.memory_format)
        return device_batches(self.data.loader, self.device, self.memory_format, window)

    def _after_step(
        self, window: TrainWindow, progress: Any, stop: bool, timed: bool
    ) -> str | None:
        """Log, validate and save when due. Returns ``"stopped"`` (``stop``: a signal), ``"done"``
        (the planned step or the deadline reached) or None (train on)."""
        cfg = self.cfg.train
        deadline = self.plan.deadline_s
        late = deadline is not None and self.clock.elapsed() > deadline
        planned_end = not timed and self.step >= self.plan.total_steps
        logging_now = self.step % cfg.log_every == 0 or planned_end
        if self.dist.distributed:
            # Ranks must agree on stopping: they do so at log steps (a sync).
            stop, late = stop and logging_now, late and logging_now
        if logging_now or stop or late:
            stop, late = self._log_window(window, progress, stop, late)
        val_every = self.plan.val_every or cfg.val_every
        if val_every and self.step % val_every == 0:
            self.validate()
        if stop:
            return "stopped"
        if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
            self.save_last()
        if late or planned_end:
            self.plan.total_steps = self.step
            return "done"
        return None

    def _train_step(self, batch: Any, window: TrainWindow) -> None:
        """One optimizer step. Nothing here waits for the device."""
        cfg = self.cfg.train
        with autocast(self.device, cfg.precision):
            out = self.train_model(batch.images, batch.image_mask, batch.tokens, batch.lengths)
        out["loss"].backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step(self.schedule_progress())  # host clocks only: no sync
        if self.ema is not None:
            self.ema.update(self.model)
        n = int(batch.images.shape[0])  # shape metadata: no sync
        window.add(out["loss"].detach(), n, (*batch.images.shape, batch.tokens.shape[1]))
        self.samples_seen += n
        self.step += 1
        self.batches_done += 1

    def _log_window(
        self, window: TrainWindow, progress: Any, stop: bool, late: bool
    ) -> tuple[bool, bool]:
        """Reduce the window over ranks (the one sync), log it, and agree on stopping."""
        reduced = distributed.all_reduce_metrics(
            {
                "loss": window.loss,
                "samples": float(window.samples),
                "steps": float(window.steps),
                "stop": float(stop),
                "late": float(late),
            },
            self.device,
        )
        now = time.monotonic()
        loss = reduced["loss"] / max(1.0, reduced["steps"])
        if not math.isfinite(loss):
            raise HmerError(
                f"training diverged: loss {loss} at step {self.step} "
                "(lower train.lr, raise train.warmup_steps or check the data)"
            )
        rate = reduced["samples"] / max(1e-9, now - window.start)
        lr = self.scheduler.lr
        self.log(
            {
                "kind": "train",
                "step": self.step,
                "epoch": self.epoch,
                "loss": loss,
                "lr": lr,
                "samples": reduced["samples"],
                "samples_per_s": rate,
                "data_wait_share": window.data_wait_s / max(1e-9, now - window.start),
                "distinct_shapes": len(window.shapes),
                # The allocator's own counter: a host-side read, no device sync.
                "peak_memory_mb": (
                    torch.cuda.max_memory_allocated(self.device) / 2**20
                    if self.device.type == "cuda"
                    else None
                ),
                "elapsed_s": self.clock.elapsed(),
            }
        )
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
        window.reset(now)
        return reduced["stop"] > 0, reduced["late"] > 0

    def _plan_budget(self, step_s: float, progress: Any) -> None:
        """Plan the time budget from ``step_s`` seconds per step; record and announce the plan."""
        self.plan = self._plan_time_budget(step_s)
        self.scheduler.set_total(self.plan.total_steps, self.schedule_progress())
        if progress is not None:
            progress.total = self.plan.total_steps
            progress.refresh()
        _say(self.plan.describe())
        self.log({"kind": "plan", "step": self.step, **asdict(self.plan)})
        # Said at the start, not after the budget, when it cannot teach the model anything.
        warning = too_few_steps(self.plan.total_steps)
        if warning is not None:
            _say(warning)
            self.log({"kind": "warning", "step": self.step, "message": warning})

    def _plan_time_budget(self, step_s: float) -> Plan:
        """Measure decoding cost, then plan steps so that everything fits in the budget.

        Every rank measures (decoding is sharded); rank 0's plan is broadcast so all ranks
        stop at the same step.
        """
        cfg, data = self.cfg, self.data
        world = self.dist.world_size
        typical = probe_length([len(ids) for ids in data.train.ids], cfg.decode.max_len)
        probe = (data.val or data.train.samples)[: cfg.decode.max_batch]
        val_s = self._decode_seconds(probe, "greedy", typical) * len(data.val) / world
        n_test = sum(len(v) for v in data.tests.values())
        if cfg.train.eval_reserve_s is not None:
            test_s = float(cfg.train.eval_reserve_s)
        else:
            test_s = (
                self._decode_seconds(probe, "beam", typical) * n_test / world if n_test else 0.0
            )
        plan = plan_time_budget(
            budget_s=self.budget_s,
            elapsed_s=self.clock.elapsed(),
            step=self.step,
            steps_per_epoch=self.plan.steps_per_epoch,
            step_s=step_s,
            val_s=val_s,
            val_every=cfg.train.val_every,
            test_s=test_s,
            save_s=save_seconds(sum(p.numel() for p in self.model.parameters())),
            ckpt_every=cfg.train.ckpt_every,
            safety=cfg.train.budget_safety,
        )
        return distributed.broadcast_object(plan)

    def _decode_seconds(self, samples: list[Sample], method: str, max_len: int) -> float:
        """Seconds per expression on one rank to decode ``samples`` with ``method``."""

        sync(self.device)
        start = time.monotonic()
        decode_samples(
            self.eval_model,
            samples,
            self.vocab,
            self.cfg.decode,
            method=method,
            device=self.device,
            precision=self.cfg.train.precision,
            max_len=max_len,
        )
        sync(self.device)
        # Each rank decoded 1/world of the samples.
        return (time.monotonic() - start) * self.dist.world_size / len(samples)

    def final_test(self) -> dict[str, dict[str, float]]:
        """The test splits, once, with beam search, on the weights best on validation."""
        with self.phases.timed("test"):
            return self._final_test()

    def _final_test(self) -> dict[str, dict[str, float]]:
        if not self.data.tests:
            return {}
        if self.best_state is not None:
            self.eval_model.load_state_dict(self.best_state)
        results, scores = [], {}
        for split, samples in self.data.tests.items():
            result = evaluate_samples(
                self.eval_model,
                samples,
                self.vocab,
                self.cfg.decode,
                split=split,
                method="beam",
                device=self.device,
                precision=self.cfg.train.precision,
                progress=self.cfg.train.progress,
            )
            results.append(result)
            scores[split] = result.metrics
            record = {"kind": "test", "step": self.step, "split": split, "method": "beam"}
            self.log({**record, **result.metrics})
        if self.main:
            extra = {"step": self.step, "best_val_exprate": self.best, "plan": asdict(self.plan)}
            write_results(self.dir, results, extra=extra)
            _say(format_table(results))
        return scores

    def finish(self) -> None:
        """The closing record (per-rank weight digests and sample counts, wall time by phase) and
        the plot."""
        distributed.broadcast_buffers(self.model)
        digests = distributed.all_gather_objects(weights_digest(self.model))
        samples = distributed.all_gather_objects(self.samples_seen)
        self.log(
            {
                "kind": "end",
                "step": self.step,
                "elapsed_s": self.clock.elapsed(),
                "best_val_exprate": self.best,
                "weights_sha256": digests,
                "samples_per_rank": samples,
                "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
            }
        )
        if self.main:
            plot_run(self.dir)


def _say(message: str) -> None:
    if distributed.is_main():
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)

"""The training loop: plain PyTorch, one code path for one CPU, one GPU or many (torchrun + DDP).

A run lives in a directory::

    config.yaml              the resolved config
    metrics.jsonl            one JSON object per line (train, val, plan, test, end records)
    last.pt                  full training state (for --resume)
    best.pt                  inference weights that scored best on validation
    results.json             final test scores (beam search), with predictions_<split>.tsv
    curves.png               loss / ExpRate curves

Model selection is honest: validation is a fixed-seed slice of the training data, decoded
greedily during training; the test splits are decoded once, at the end, with beam search, using
the weights that were best on validation.

The step is free of host-device syncs: the loss is accumulated on the device and read every
``log_every`` steps, the learning rate is a Python float, and the stop / deadline checks read
host clocks and flags only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hmer.engine import distributed
from hmer.engine.checkpoint import (
    check_vocab,
    load_checkpoint,
    load_state_dict_checked,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hmer.engine.evaluate import autocast, evaluate_samples, format_table, write_results
from hmer.errors import CheckpointError, HmerError

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.datasets import Sample
    from hmer.data.vocab import Vocab
    from hmer.engine.device_data import DeviceData


# ----------------------------------------------------------------------------- schedule, EMA


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


# ----------------------------------------------------------------------------- plan

#: Seconds reserved at the end of a budgeted run for results.json, the TSVs and the plot.
FINISH_S = 3.0
#: Fewer planned steps than this cannot teach a model anything: a budgeted run says so.
TOO_FEW_STEPS = 300
#: Most of a time budget that periodic validation may take (its interval is raised to fit).
VAL_SHARE = 0.03
#: Greedy validation stops this many tokens past the longest training target.
VAL_LEN_MARGIN = 8


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

    Everything after the deadline is reserved: one final validation, the test evaluation, the
    last saves (``save_s`` each: last.pt and best.pt), ``finish_s`` for results and the plot, and
    a ``safety`` fraction of the budget. Steps before it also pay for periodic validation and
    checkpoints, spread per step.
    """
    safety_s = safety * budget_s
    deadline = budget_s - safety_s - test_s - val_s - 2 * save_s - finish_s
    per_step = step_s
    if val_every > 0:
        per_step += val_s / val_every
    if ckpt_every > 0:
        per_step += save_s / ckpt_every
    more = max(0, math.floor((deadline - elapsed_s) / per_step)) if per_step > 0 else 0
    return step + more, deadline


# ----------------------------------------------------------------------------- signals, logs


class StopSignals:
    """SIGTERM / SIGINT set a flag; the loop saves ``last.pt`` and returns at the next step.

    A second SIGINT raises KeyboardInterrupt at once (an impatient Ctrl-C still works).
    Installed only in the main thread (where Python allows handlers).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed (rank 0 only)."""

    def __init__(self, path: Path | None):
        self.handle = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is not None:
            self.handle.write(json.dumps(record) + "\n")
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (name order): equal digests = identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the run


@dataclass
class RunResult:
    """What :func:`train` returns: the final step, how it ended and the final scores."""

    run_dir: Path
    step: int
    status: str  # "finished" | "interrupted"
    best_val_exprate: float | None
    test: dict[str, dict[str, float]]
    signum: int | None = None


def build_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (fused on CUDA) or Adadelta; no weight decay on biases and norm weights (ndim < 2)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    name = cfg.train.optimizer.lower()
    if name == "adamw":
        beta1, beta2 = (float(b) for b in cfg.train.betas)
        return torch.optim.AdamW(
            groups,
            lr=cfg.train.lr,
            betas=(beta1, beta2),
            eps=cfg.train.eps,
            fused=device.type == "cuda",
        )
    if name == "adadelta":
        return torch.optim.Adadelta(groups, lr=cfg.train.lr, eps=cfg.train.eps)
    raise HmerError(f"train.optimizer must be 'adamw' or 'adadelta', got {cfg.train.optimizer!r}")


def build_model(cfg: Config, vocab: Vocab) -> nn.Module:
    from hmer.model.hmer_model import HmerModel

    return HmerModel(
        cfg.model, len(vocab), pad_id=vocab.pad_id, sos_id=vocab.sos_id, eos_id=vocab.eos_id
    )


def _init_weights(model: nn.Module, path: str, vocab: Vocab) -> None:
    """Load ``path``'s inference weights into ``model`` (CheckpointError naming the file when
    the vocabulary or the model's shape differs). Exported fp16 weights are cast on copy."""
    payload = load_checkpoint(path)
    check_vocab(payload, vocab, path)
    load_state_dict_checked(model, payload["model"], path)


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    started: float | None = None,
    stop_after_steps: int | None = None,
) -> RunResult:
    """Train ``cfg`` in ``run_dir`` (created; must not hold a run unless ``resume``).

    ``started``: ``time.monotonic()`` when the process started, for time budgets (default: now).
    ``stop_after_steps``: behave as if SIGTERM arrived after that many steps of this process
    (tests of exact resume use it).
    """
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
        from hmer.config import config_to_dict, parse_duration, save_config
        from hmer.engine.data import build_data

        self.cfg, self.dir, self.started = cfg, run_dir, started
        #: Wall seconds by phase (startup, data, training, validation, saving, test, finish).
        self.phases: dict[str, float] = {"startup": time.monotonic() - started}
        self.dist = distributed.init_distributed(cfg.train.device)
        self.device, self.main = self.dist.device, self.dist.is_main
        torch.manual_seed(cfg.train.seed)
        if cfg.train.threads is not None:
            torch.set_num_threads(cfg.train.threads)
        if self.device.type == "cuda":
            # TF32 for whatever runs in fp32 outside autocast; cuDNN autotuning when asked.
            torch.set_float32_matmul_precision("high")
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark

        payload = None
        if resume:
            payload = load_checkpoint(run_dir / "last.pt", need_train_state=True)
        elif self.main and (run_dir / "last.pt").exists():
            raise HmerError(
                f"{run_dir} already holds a run (last.pt): use --resume or another --out"
            )
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        distributed.barrier()

        from hmer.data.vocab import Vocab

        vocab = Vocab.from_dict(payload["vocab"]) if payload is not None else None
        with self.timed("data"):
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
        if cfg.data.on_device:
            from hmer.engine.device_data import DeviceData

            if not cfg.data.static_shapes:
                raise HmerError("data.on_device needs data.static_shapes=true")
            with self.timed("data"):
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
        self.config_dict, self.vocab_dict = config_to_dict(cfg), self.vocab.to_dict()

        self.memory_format = (
            torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        )
        self.model = build_model(cfg, self.vocab)
        if payload is None and cfg.train.init_from:
            _init_weights(self.model, cfg.train.init_from, self.vocab)
        self.model.to(self.device, memory_format=self.memory_format)
        self.ema = Ema(self.model, cfg.train.ema_decay) if cfg.train.ema else None
        if self.dist.distributed:
            # Same initial weights everywhere (DDP also broadcasts them), own dropout per rank.
            torch.manual_seed(cfg.train.seed + 1_000_003 * self.dist.rank)
        #: The weights validation and test decode: the EMA ones when EMA is on.
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        steps_per_epoch = len(self.data.batches)
        if cfg.train.max_steps is not None:
            self.plan = Plan(cfg.train.max_steps, steps_per_epoch, "train.max_steps")
        else:
            self.plan = Plan(cfg.train.epochs * steps_per_epoch, steps_per_epoch, "train.epochs")
        self.scheduler = WarmupCosine(
            self.optimizer, cfg.train.warmup_steps, self.plan.total_steps, cfg.train.min_lr_ratio
        )

        self.step = self.epoch = self.batches_done = self.samples_seen = 0
        #: Seconds this run had spent in earlier processes (a resumed run keeps its clock).
        self.clock_offset = 0.0
        #: When training began on the run's clock (time budgets: the schedule's zero).
        self.train_start_s: float | None = None
        self.validated_at = -1
        self.best: float | None = None
        #: The weights that scored best on validation, on every rank (the final test decodes them).
        self.best_state: dict[str, torch.Tensor] | None = None
        if payload is not None:
            self._restore(payload)

        self.train_model: nn.Module = self.model
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.train.compile:
            self.train_model = torch.compile(
                self.train_model,
                mode=cfg.train.compile_mode,
                dynamic=not cfg.data.static_shapes,  # static canvases: one graph per shape
            )

        self.budget_s = parse_duration(cfg.train.time_budget) if cfg.train.time_budget else None
        if self.budget_s is not None and self.plan.how == "time_budget":
            # A resumed budgeted run keeps its clock and schedule; a new budget moves the stop.
            p = self.plan
            p.deadline_s = self.budget_s - (
                p.test_s + p.val_s + 2 * p.save_s + p.finish_s + p.safety_s
            )

        self.metrics = MetricsLog(run_dir / "metrics.jsonl" if self.main else None)
        tests = ", ".join(f"{k}: {len(v)}" for k, v in self.data.tests.items()) or "none"
        _say(
            f"{run_dir}: {len(self.data.train)} train / {len(self.data.val)} validation "
            f"expressions, tests {tests}; {sum(p.numel() for p in self.model.parameters()):,} "
            f"parameters on {self.device} x{self.dist.world_size}"
            + (f"; resuming at step {self.step}" if payload is not None else "")
        )
        if payload is None:
            self.log(
                {
                    "kind": "start",
                    "world_size": self.dist.world_size,
                    "device": str(self.device),
                    "train_samples": len(self.data.train),
                    "val_samples": len(self.data.val),
                    "test_samples": {k: len(v) for k, v in self.data.tests.items()},
                    "vocab_size": len(self.vocab),
                    "parameters": sum(p.numel() for p in self.model.parameters()),
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
        rank = self.dist.rank
        self.samples_seen = int(state["samples_seen"][min(rank, len(state["samples_seen"]) - 1)])
        best_state = None
        if self.main and (self.dir / "best.pt").exists():
            best_state = load_checkpoint(self.dir / "best.pt", expected_vocab=self.vocab)["model"]
        self.best_state = distributed.broadcast_object(best_state)
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
        clock = state.get("clock", {})
        self.clock_offset = float(clock.get("elapsed_s", 0.0))
        self.train_start_s = clock.get("train_start_s")

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the block to ``self.phases[phase]``."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - began

    def elapsed(self) -> float:
        """Seconds on the run's clock: this process's time plus that of the processes before."""
        return self.clock_offset + time.monotonic() - self.started

    def schedule_progress(self) -> float | None:
        """Elapsed fraction of the training time (time budgets), None for step schedules.

        Zero until the deadline is planned (the first steps measure throughput in warm-up); one
        when training began only after it (start-up took the whole budget).
        """
        if self.budget_s is None:
            return None
        deadline, start = self.plan.deadline_s, self.train_start_s
        if deadline is None or start is None:
            return 0.0
        if deadline <= start:
            return 1.0
        return (self.elapsed() - start) / (deadline - start)

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            self.metrics.write(record)

    def save_last(self) -> None:
        """``last.pt``: inference weights + everything needed to continue exactly."""
        with self.timed("saving"):
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
            "samples_seen": samples,
            "rng": rngs,
            "clock": {"elapsed_s": self.elapsed(), "train_start_s": self.train_start_s},
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
        with self.timed("validation"):
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
        """One forward + backward pass per static batch shape, before the training clock, so
        that cuDNN autotuning (and compilation) happen here once per shape, not in the budget.

        Leaves no trace: gradients are dropped, buffers (BatchNorm statistics) restored and the
        random streams forked, so a warmed run trains exactly as an unwarmed one would.
        """
        sampler = self.data.batches.sampler
        if sampler.canvases is None or not self.cfg.train.warm_canvases:
            return
        with self.timed("warmup"):
            buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                self.train_model.train()
                for count, height, width, length in sampler.shapes():
                    images = torch.zeros(count, 1, height, width, device=self.device)
                    mask = torch.zeros(count, height, width, dtype=torch.bool, device=self.device)
                    tokens = torch.full((count, length), self.vocab.unk_id, device=self.device)
                    lengths = torch.full((count,), length, device=self.device)
                    with autocast(self.device, self.cfg.train.precision):
                        out = self.train_model(
                            images.contiguous(memory_format=self.memory_format),
                            mask,
                            tokens,
                            lengths,
                        )
                    out["loss"].backward()
                self.model.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(buffers[name])
            _sync(self.device)
        _say(
            f"warmed {len(sampler.shapes())} batch shapes in {self.phases['warmup']:.1f}s "
            "(before the training clock)"
        )

    def fit(self, stop_after_steps: int | None = None) -> int | None:
        """Train to the planned step (or deadline). Returns the signal number that stopped it
        early (``signal.SIGTERM`` for ``stop_after_steps``), else None. Its wall time goes to
        ``phases["training"]``, less the validation and saving done meanwhile."""
        began = time.monotonic()
        inner = self.phases.get("validation", 0.0) + self.phases.get("saving", 0.0)
        try:
            return self._fit(stop_after_steps)
        finally:
            inner = self.phases.get("validation", 0.0) + self.phases.get("saving", 0.0) - inner
            self.phases["training"] = (
                self.phases.get("training", 0.0) + time.monotonic() - began - inner
            )

    def _fit(self, stop_after_steps: int | None) -> int | None:
        cfg = self.cfg.train
        meter = None
        if self.budget_s is not None and self.plan.how != "time_budget":
            meter = _StepTimer(
                self.step,
                cfg.budget_warmup_steps,
                cfg.budget_measure_steps,
                self.budget_s,
                self.started - self.clock_offset,
                may_cut_short=not self.dist.distributed,
            )
            # Provisional: the real total is planned once throughput has been measured.
            total = max(self.plan.total_steps, meter.end_at * 100)
            self.plan = Plan(total, self.plan.steps_per_epoch, "measuring")
            self.scheduler.set_total(self.plan.total_steps, self.schedule_progress())
            _say(
                f"measuring throughput over steps {meter.start_at}-{meter.end_at} to plan "
                f"the {self.budget_s:.0f}s budget"
            )
        else:
            _say(self.plan.describe())

        progress = None
        if self.main and cfg.progress:
            from tqdm.auto import tqdm

            progress = tqdm(
                total=self.plan.total_steps, initial=self.step, unit="step", file=sys.stderr
            )
        if self.train_start_s is None:
            self.train_start_s = self.elapsed()
        # Time budgets train until the deadline (the step total is an estimate for the
        # progress bar); step schedules until the planned step.
        timed = self.budget_s is not None
        window = _Window(self.device)
        local_steps = 0
        self.train_model.train()
        with StopSignals() as signals:
            try:
                while timed or self.step < self.plan.total_steps:
                    self.data.batches.set_epoch(self.epoch, skip=self.batches_done)
                    if self.device_data is not None:
                        batches = _resident_batches(
                            self.device_data, self.epoch, self.memory_format
                        )
                    else:
                        batches = _device_batches(
                            self.data.loader, self.device, self.memory_format, window
                        )
                    for batch in batches:
                        self._train_step(batch, window)
                        local_steps += 1
                        if progress is not None:
                            progress.update(1)

                        step_s = meter.update(self.step, self.device) if meter else None
                        if step_s is not None:
                            meter = None
                            self.plan = self._plan_time_budget(step_s)
                            self.scheduler.set_total(
                                self.plan.total_steps, self.schedule_progress()
                            )
                            if progress is not None:
                                progress.total = self.plan.total_steps
                                progress.refresh()
                            _say(self.plan.describe())
                            self.log({"kind": "plan", "step": self.step, **asdict(self.plan)})
                            self._warn_if_too_short()

                        stop = signals.signum is not None or (
                            stop_after_steps is not None and local_steps >= stop_after_steps
                        )
                        deadline = self.plan.deadline_s
                        late = deadline is not None and self.elapsed() > deadline
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
                            return signals.signum or signal.SIGTERM
                        if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                            self.save_last()
                        if late or planned_end:
                            self.plan.total_steps = self.step
                            return None
                    self.epoch += 1
                    self.batches_done = 0
            finally:
                if progress is not None:
                    progress.close()
        return None

    def _train_step(self, batch: Any, window: _Window) -> None:
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
        self, window: _Window, progress: Any, stop: bool, late: bool
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
                "elapsed_s": self.elapsed(),
            }
        )
        if progress is not None:
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
        window.reset(now)
        return reduced["stop"] > 0, reduced["late"] > 0

    def _warn_if_too_short(self) -> None:
        """Say at the start, not after the budget, when it cannot teach the model anything."""
        steps = self.plan.total_steps
        if steps < TOO_FEW_STEPS:
            message = (
                f"warning: the budget fits only about {steps} steps; a model needs at least "
                f"{TOO_FEW_STEPS} to learn anything (raise --time-budget, use a smaller model or "
                "a less busy machine)"
            )
            _say(message)
            self.log({"kind": "warning", "step": self.step, "message": message})

    def _plan_time_budget(self, step_s: float) -> Plan:
        """Measure decoding cost, then plan steps so that everything fits in the budget.

        Every rank measures (decoding is sharded); rank 0's plan is broadcast so all ranks
        stop at the same step.
        """
        cfg, data = self.cfg, self.data
        world = self.dist.world_size
        lengths = sorted(len(ids) for ids in data.train.ids)
        # An untrained model rarely emits <eos>: cap the measured decode at a typical target
        # length (90th percentile, +2) so that the estimate reflects a trained model.
        typical = min(cfg.decode.max_len, lengths[int(0.9 * (len(lengths) - 1))] + 2)
        probe = (data.val or data.train.samples)[: cfg.decode.max_batch]
        val_s = self._decode_seconds(probe, "greedy", typical) * len(data.val) / world
        n_test = sum(len(v) for v in data.tests.values())
        if cfg.train.eval_reserve_s is not None:
            test_s = float(cfg.train.eval_reserve_s)
        else:
            test_s = (
                self._decode_seconds(probe, "beam", typical) * n_test / world if n_test else 0.0
            )
        n_values = sum(p.numel() for p in self.model.parameters())
        save_s = 1.0 + 3 * 4 * n_values / 200e6  # weights + Adam moments, at ~200 MB/s

        def fit_budget(val_every: int) -> tuple[int, float]:
            return plan_budget(
                budget_s=self.budget_s,
                elapsed_s=self.elapsed(),
                step=self.step,
                step_s=step_s,
                val_s=val_s,
                val_every=val_every,
                test_s=test_s,
                save_s=save_s,
                ckpt_every=cfg.train.ckpt_every,
                finish_s=FINISH_S,
                safety=cfg.train.budget_safety,
            )

        val_every = cfg.train.val_every
        total, deadline = fit_budget(val_every)
        if val_every and val_s * (total - self.step) / val_every > VAL_SHARE * self.budget_s:
            # Validating this often would eat the budget: validate less often instead.
            val_every = math.ceil(val_s * (total - self.step) / (VAL_SHARE * self.budget_s))
            total, deadline = fit_budget(val_every)
        plan = Plan(
            total_steps=total,
            steps_per_epoch=self.plan.steps_per_epoch,
            how="time_budget",
            budget_s=self.budget_s,
            step_s=step_s,
            val_s=val_s,
            test_s=test_s,
            save_s=save_s,
            finish_s=FINISH_S,
            safety_s=cfg.train.budget_safety * self.budget_s,
            deadline_s=deadline,
            val_every=val_every,
        )
        return distributed.broadcast_object(plan)

    def _decode_seconds(self, samples: list[Sample], method: str, max_len: int) -> float:
        """Seconds per expression on one rank to decode ``samples`` with ``method``."""
        from hmer.engine.evaluate import decode_samples

        _sync(self.device)
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
        _sync(self.device)
        # Each rank decoded 1/world of the samples.
        return (time.monotonic() - start) * self.dist.world_size / len(samples)

    def final_test(self) -> dict[str, dict[str, float]]:
        """The test splits, once, with beam search, on the weights best on validation."""
        with self.timed("test"):
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
            self.log(
                {
                    "kind": "test",
                    "step": self.step,
                    "split": split,
                    "method": "beam",
                    **result.metrics,
                }
            )
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
                "elapsed_s": self.elapsed(),
                "best_val_exprate": self.best,
                "weights_sha256": digests,
                "samples_per_rank": samples,
                "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
            }
        )
        if self.main:
            from hmer.engine.plot import plot_run

            plot_run(self.dir)


class _StepTimer:
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
                _sync(device)
                self.t0, self.first = time.monotonic(), step
            return None
        if step >= self.end_at or self._spent(0.25):
            _sync(device)
            return (time.monotonic() - self.t0) / (step - self.first)
        return None


class _Window:
    """Loss (summed on the device), sample count and host time spent waiting for the data
    loader since the last log line (a high wait share means the input pipeline is the limit),
    and the distinct ``(B, H, W, L)`` batch shapes of the run so far (each new one costs cuDNN
    a new plan)."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.shapes: set[tuple[int, ...]] = set()
        self.reset(time.monotonic())

    def add(self, loss: torch.Tensor, samples: int, shape: tuple[int, ...]) -> None:
        self.loss += loss.float()
        self.samples += samples
        self.steps += 1
        self.shapes.add(shape)  # kept across windows: distinct batch shapes so far

    def reset(self, now: float) -> None:
        self.loss.zero_()
        self.samples = self.steps = 0
        self.data_wait_s = 0.0
        self.start = now


def _say(message: str) -> None:
    if distributed.is_main():
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)


def _device_batches(
    loader: Any, device: torch.device, memory_format: torch.memory_format, window: _Window
) -> Iterator[Any]:
    """Batches moved to ``device`` without blocking (pinned memory), images in ``memory_format``;
    the time spent waiting for each batch is added to ``window.data_wait_s``."""
    batches = iter(loader)
    while True:
        began = time.monotonic()
        batch = next(batches, None)
        window.data_wait_s += time.monotonic() - began
        if batch is None:
            return
        batch = batch.to(device, non_blocking=True)
        if memory_format is torch.channels_last:
            batch.images = batch.images.contiguous(memory_format=memory_format)
        yield batch


def _resident_batches(
    data: DeviceData, epoch: int, memory_format: torch.memory_format
) -> Iterator[Any]:
    """``data``'s batches of ``epoch`` (already on the device), images in ``memory_format``."""
    for batch in data.epoch(epoch):
        if memory_format is torch.channels_last:
            batch.images = batch.images.contiguous(memory_format=memory_format)
        yield batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

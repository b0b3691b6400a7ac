"""What a run records: ``metrics.jsonl``, the statistics of the steps since the last train
record, wall time by phase, and weight digests (equal digests on every rank prove the ranks
trained as one)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hmer.errors import HmerError


def record_line(record: dict[str, Any]) -> str:
    """One record as its line of ``metrics.jsonl`` (newline included)."""
    return json.dumps(record) + "\n"


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics file; a line cut short by a crash (the last one) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise HmerError(f"{path}: no metrics file (is this a run directory?)")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, appended and flushed (rank 0 only)."""

    def __init__(self, path: Path | None):
        self.handle = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is not None:
            self.handle.write(record_line(record))
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class Phases(dict[str, float]):
    """Wall seconds by phase (startup, data, warmup, training, validation, saving, test)."""

    @contextlib.contextmanager
    def timed(self, phase: str, excluding: tuple[str, ...] = ()) -> Iterator[None]:
        """Add the wall time of the block to ``phase``, less the time it added to the phases
        ``excluding`` (timed inside it)."""
        began = time.monotonic()
        inner = sum(self.get(p, 0.0) for p in excluding)
        try:
            yield
        finally:
            inner = sum(self.get(p, 0.0) for p in excluding) - inner
            self[phase] = self.get(phase, 0.0) + time.monotonic() - began - inner


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers (name order): equal digests = identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


class TrainWindow:
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

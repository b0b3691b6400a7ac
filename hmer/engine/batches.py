"""Training batches on the device: from the loader or resident there, and every static batch
shape run once before the training clock starts (:func:`warm_shapes`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hmer.engine.budget import sync
from hmer.engine.evaluate import autocast
from hmer.engine.metrics_log import TrainWindow

if TYPE_CHECKING:
    from hmer.engine.device_data import DeviceData


def device_batches(
    loader: Any, device: torch.device, memory_format: torch.memory_format, window: TrainWindow
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


def resident_batches(
    data: DeviceData, epoch: int, memory_format: torch.memory_format
) -> Iterator[Any]:
    """``data``'s batches of ``epoch`` (already on the device), images in ``memory_format``."""
    for batch in data.epoch(epoch):
        if memory_format is torch.channels_last:
            batch.images = batch.images.contiguous(memory_format=memory_format)
        yield batch


def warm_shapes(
    train_model: nn.Module,
    model: nn.Module,
    shapes: list[tuple[int, int, int, int]],
    *,
    device: torch.device,
    token_id: int,
    precision: str,
    memory_format: torch.memory_format,
) -> None:
    """One forward + backward pass of ``train_model`` per ``(B, H, W, L)`` shape, so that cuDNN
    autotuning (and compilation) happen once per shape, before the training clock.

    Leaves no trace: gradients are dropped, ``model``'s buffers (BatchNorm statistics) restored
    and the random streams forked, so a warmed run trains exactly as an unwarmed one would.
    """
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        train_model.train()
        for count, height, width, length in shapes:
            images = torch.zeros(count, 1, height, width, device=device)
            mask = torch.zeros(count, height, width, dtype=torch.bool, device=device)
            tokens = torch.full((count, length), token_id, device=device)
            lengths = torch.full((count,), length, device=device)
            with autocast(device, precision):
                out = train_model(
                    images.contiguous(memory_format=memory_format), mask, tokens, lengths
                )
            out["loss"].backward()
        model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])
    sync(device)

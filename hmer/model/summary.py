"""Model size and cost at a given input: parameters, FLOPs, latency (``hmer model info``).

``print(summary(model))`` prints a few lines; the fields are in :class:`ModelSummary`.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products,
convolutions and attention; 2 per multiply-add; element-wise work is not counted). Latency is the
median wall time of a no-grad pass in the model's current mode on its device.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hmer.model.hmer_model import HmerModel

__all__ = ["ModelSummary", "summary"]


@dataclass(frozen=True)
class ModelSummary:
    """What a model costs for one ``image_size`` image and a ``seq_len``-token target.

    Attributes:
        parameters, encoder_parameters, decoder_parameters: counts of trainable and frozen weights.
        image_size: ``(H, W)`` in pixels; ``memory_size``: the encoder's ``(h, w)`` grid.
        seq_len: target tokens (without start/end).
        encoder_gflops: one image through the encoder.
        decoder_gflops: the teacher-forced decoder pass of training (both directions).
        step_mflops: one cached decoding step for one hypothesis (beam search costs
            ``beam × steps × 2 directions`` of these).
        encoder_ms, forward_ms: median latency of ``encode`` and of the whole training forward
            (encoder + both directions + loss), batch of one, no grad.
        device: where the latencies were measured.
    """

    parameters: int
    encoder_parameters: int
    decoder_parameters: int
    image_size: tuple[int, int]
    memory_size: tuple[int, int]
    seq_len: int
    encoder_gflops: float
    decoder_gflops: float
    step_mflops: float
    encoder_ms: float
    forward_ms: float
    device: str

    def __str__(self) -> str:
        """Human-readable lines."""
        h, w = self.image_size
        return "\n".join(
            [
                f"parameters      {self.parameters:,} (encoder {self.encoder_parameters:,}, "
                f"decoder {self.decoder_parameters:,})",
                f"input           1x1x{h}x{w} image -> {self.memory_size[0]}x{self.memory_size[1]}"
                f" memory, {self.seq_len} target tokens",
                f"encoder         {self.encoder_gflops:.3f} GFLOPs, {self.encoder_ms:.1f} ms",
                f"decoder         {self.decoder_gflops:.3f} GFLOPs (teacher-forced, both "
                f"directions); {self.step_mflops:.2f} MFLOPs per cached step",
                f"training fwd    {self.forward_ms:.1f} ms on {self.device} (batch 1, no grad)",
            ]
        )


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _latency_ms(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernel selection, caches
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


@torch.no_grad()
def summary(
    model: HmerModel, image_size: tuple[int, int] = (64, 320), seq_len: int = 32, repeats: int = 5
) -> ModelSummary:
    """Measure ``model`` on a blank ``(1, 1, H, W)`` image and random ``seq_len`` tokens.

    ``(64, 320)`` is a typical one-line expression at the 32-pixel symbol height of the renders.
    """
    device = next(model.parameters()).device
    images = torch.zeros(1, 1, *image_size, device=device)
    tokens = torch.randint(3, model.vocab_size, (1, seq_len), device=device)
    lengths = torch.tensor([seq_len], device=device)
    memory, memory_mask = model.encode(images)
    inputs = torch.stack(
        [model.sequences(tokens, lengths, d)[0] for d in ("l2r", "r2l")], dim=1
    ).flatten(0, 1)

    def step() -> None:
        state = model.decoder.start(memory, memory_mask)
        model.decoder.step(inputs[:1, 0], state)

    memory_flops = _flops(lambda: model.decoder.start(memory, memory_mask))
    return ModelSummary(
        parameters=_count(model),
        encoder_parameters=_count(model.encoder),
        decoder_parameters=_count(model.decoder),
        image_size=tuple(image_size),
        memory_size=model.encoder.backbone.output_size(*image_size),
        seq_len=seq_len,
        encoder_gflops=_flops(lambda: model.encode(images)) / 1e9,
        decoder_gflops=_flops(lambda: model.decoder(inputs, memory, memory_mask)) / 1e9,
        step_mflops=(_flops(step) - memory_flops) / 1e6,
        encoder_ms=_latency_ms(lambda: model.encode(images), device, repeats),
        forward_ms=_latency_ms(lambda: model(images, None, tokens, lengths), device, repeats),
        device=str(device),
    )

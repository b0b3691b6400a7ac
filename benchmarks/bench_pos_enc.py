"""Cost of adding the 2D sinusoidal encoding to typical feature maps, against a plain addition.

    python benchmarks/bench_pos_enc.py [--device cpu|cuda] [--dtype float32|bfloat16|float16]

Rows, for B=16, 256 channels, (B, C, H, W) unless said otherwise:
  add          x + y for a y of x's shape: the floor any encoding is measured against;
  cached       PositionEncoding2D(x): the grid comes from the (H, W, device, dtype) cache;
  cached NHWC  the same on (B, H, W, C) features;
  uncached     x + sincos_2d(...) rebuilt on every call;
  masked       PositionEncoding2D(x, mask): per-image positions from a padding mask.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils import benchmark

from hmer.model.pos_enc import PositionEncoding2D, sincos_2d

BATCH, DIM = 16, 256
SIZES = [(8, 32), (16, 64)]


def _padding_mask(height: int, width: int, device: torch.device) -> torch.Tensor:
    """Images of assorted sizes top-left in the batch, as a bucketed batch would hold them."""
    g = torch.Generator().manual_seed(0)
    heights = torch.randint(height // 2, height + 1, (BATCH,), generator=g)
    widths = torch.randint(width // 2, width + 1, (BATCH,), generator=g)
    rows, cols = torch.arange(height), torch.arange(width)
    mask = (rows[None, :, None] >= heights[:, None, None]) | (
        cols[None, None, :] >= widths[:, None, None]
    )
    return mask.to(device)


def _microseconds(stmt: str, env: dict, min_run_time: float) -> float:
    timer = benchmark.Timer(stmt=stmt, globals=env, num_threads=torch.get_num_threads())
    timer.timeit(10)  # warm-up: allocator, kernels, the encoding cache
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--min-run-time", type=float, default=0.3, help="seconds per row")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"PositionEncoding2D, B={BATCH}, C={DIM}, {args.dtype}, {name}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    header = f"{'feature map':<14}{'variant':<14}{'µs/call':>10}{'× add':>8}"
    print(header)
    print("-" * len(header))
    first, last = PositionEncoding2D(DIM), PositionEncoding2D(DIM, channels_last=True)
    for height, width in SIZES:
        x = torch.randn(BATCH, DIM, height, width, device=device, dtype=dtype)
        env = {
            "x": x,
            "y": torch.randn_like(x),
            "x_last": x.permute(0, 2, 3, 1).contiguous(),
            "mask": _padding_mask(height, width, device),
            "first": first,
            "last": last,
            "sincos_2d": sincos_2d,
            "H": height,
            "W": width,
            "C": DIM,
            "device": device,
            "dtype": dtype,
        }
        rows = {
            "add": "x + y",
            "cached": "first(x)",
            "cached NHWC": "last(x_last)",
            "uncached": "x + sincos_2d(H, W, C, device=device, dtype=dtype).permute(2, 0, 1)",
            "masked": "first(x, mask)",
        }
        base = None
        for variant, stmt in rows.items():
            us = _microseconds(stmt, env, args.min_run_time)
            base = base or us
            size = f"{height}x{width}" if variant == "add" else ""
            print(f"{size:<14}{variant:<14}{us:>10.1f}{us / base:>8.2f}")


if __name__ == "__main__":
    main()

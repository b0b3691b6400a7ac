"""Pictures: matplotlib figures written atomically (no pyplot state, Agg rendering)."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from hmer.errors import ConfigError

__all__ = ["draw_pos_enc", "save_figure"]


def save_figure(fig: Figure, out_path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``out_path`` atomically (temp file in the same folder, fsync, rename).

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``, …); missing folders are created.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fmt = out_path.suffix.lstrip(".").lower() or "png"
    # A unique sibling name opened with "x": same filesystem for os.replace, umask-respecting mode.
    tmp = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            fig.savefig(f, format=fmt, dpi=dpi)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def _default_channels(dim: int) -> tuple[int, ...]:
    """The sin channel of three frequencies (fast, middle, slow) in each half: x row, then y row."""
    half, n_pairs = dim // 2, dim // 4
    pairs = sorted({0, n_pairs // 8, n_pairs // 4})
    x_channels = tuple(2 * i for i in pairs)
    return x_channels + tuple(half + c for c in x_channels)


def draw_pos_enc(
    out_path: str | Path,
    height: int = 16,
    width: int = 64,
    dim: int = 256,
    channels: Sequence[int] | None = None,
    temperature: float = 10000.0,
) -> Path:
    """Heat maps of chosen channels of :func:`~hmer.model.pos_enc.sincos_2d` over a feature grid.

    Args:
        out_path: image file to write (format from the suffix).
        height, width: the feature grid in cells (16 × 64 ≈ a 256 × 1024 image at stride 16).
        dim: channels, a multiple of 4.
        channels: channels to draw; by default three frequencies from the x half and the same
            three from the y half. Each panel names its half, sin/cos and period in cells.
        temperature: frequency base.

    Raises:
        ConfigError: a channel outside ``[0, dim)``.

    Returns:
        ``out_path`` as a Path.
    """
    from hmer.model.pos_enc import sincos_2d

    pe = sincos_2d(height, width, dim, temperature=temperature).numpy()  # (H, W, C)
    channels = tuple(channels) if channels is not None else _default_channels(dim)
    bad = [c for c in channels if not 0 <= c < dim]
    if bad:
        raise ConfigError(f"channels: {bad} out of range for dim={dim} (0 … {dim - 1})")

    half = dim // 2
    cols = min(len(channels), 3)
    rows = -(-len(channels) // cols)
    panel_w = 4.5
    panel_h = min(max(panel_w * height / width, 1.2), panel_w) + 0.7  # + title and labels
    fig = Figure(figsize=(cols * panel_w + 1.0, rows * panel_h + 0.5), layout="constrained")
    fig.suptitle(f"2D sinusoidal encoding, {height}×{width} grid, {dim} channels")
    for n, channel in enumerate(channels):
        ax = fig.add_subplot(rows, cols, n + 1)
        axis, j = ("x", channel) if channel < half else ("y", channel - half)
        pair = j // 2
        period = 2 * math.pi * temperature ** (pair / (dim // 4))
        image = ax.imshow(pe[:, :, channel], cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(
            f"ch {channel}: {axis} {'sin' if j % 2 == 0 else 'cos'}, period {period:.3g} cells",
            fontsize=9,
        )
        ax.set_xlabel("column (x)", fontsize=8)
        ax.set_ylabel("row (y)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(image, ax=fig.axes, shrink=0.8)
    return save_figure(fig, out_path)

"""Pictures: matplotlib figures written atomically (no pyplot state, Agg rendering)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.mathtext import MathTextParser

from hmer.errors import ConfigError
from hmer.io import atomic_open

__all__ = [
    "draw_attention",
    "draw_pos_enc",
    "draw_prediction",
    "mathtext_ok",
    "mathtext_source",
    "save_figure",
]


def save_figure(fig: Figure, out_path: str | Path, *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``out_path`` atomically (:func:`hmer.io.atomic_open`).

    The format follows the suffix (``.png``, ``.pdf``, ``.svg``, …); missing folders are created.
    """
    out_path = Path(out_path)
    fmt = out_path.suffix.lstrip(".").lower() or "png"
    with atomic_open(out_path, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=dpi)
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
    # torch: only when drawing encodings (prediction drawings serve the torch-free ONNX route).
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


def _display_gray(image: np.ndarray, max_side: int = 1600) -> np.ndarray:
    """Any picture -> an array for ``imshow`` (RGB or gray), shrunk to ``max_side`` pixels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0 else 1.0
        if image.dtype == np.uint16:
            scale = 1.0 / 257.0
        image = np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    factor = max_side / max(image.shape[:2])
    if factor < 1.0:
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def mathtext_source(latex: str) -> str:
    """``$latex$`` for matplotlib mathtext, which silently drops a script whose ``^``/``_`` is
    followed by a space (``x ^ { 2 }`` would show as ``x 2``): those spaces are removed. Mathtext
    knows no ``\\limits`` (it places the limits of ``\\sum`` and ``\\int`` itself): dropped."""
    latex = re.sub(r"\\limits(?![a-zA-Z])\s*", "", latex)
    return "$" + re.sub(r"([\^_])\s+", r"\1", latex) + "$"


def mathtext_ok(latex: str) -> bool:
    """Whether matplotlib's mathtext can render ``latex`` (see :func:`mathtext_source`)."""
    try:
        MathTextParser("path").parse(mathtext_source(latex))
    except ValueError:
        return False
    return True


def draw_prediction(
    image: np.ndarray, latex: str, out_path: str | Path, *, title: str | None = None
) -> Path:
    """The input picture above its predicted LaTeX rendered by matplotlib mathtext, so a person
    sees at a glance whether the prediction is right.

    Args:
        image: the picture as given (uint8/uint16/float, gray ``(H, W)`` or RGB(A)), any polarity.
        latex: the prediction (no ``$``). Shown as its raw string too; when mathtext cannot
            parse it, only the raw string is shown (and said).
        out_path: image file to write (format from the suffix), atomically.
        title: a heading, e.g. the file name.

    Returns:
        ``out_path`` as a Path.
    """
    picture = _display_gray(image)
    height, width = picture.shape[:2]
    fig_w = 8.0
    image_h = min(max(fig_w * height / max(width, 1), 0.8), 4.0)
    fig = Figure(figsize=(fig_w, image_h + 2.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[image_h, 2.2])
    ax = top.add_subplot()
    ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
    ax.set_axis_off()
    ax.set_title(title or "input", fontsize=10)
    text_ax = bottom.add_subplot()
    text_ax.set_axis_off()
    if not latex:
        text_ax.text(0.5, 0.5, "(empty prediction)", ha="center", va="center", fontsize=14)
    elif mathtext_ok(latex):
        text_ax.text(0.5, 0.62, mathtext_source(latex), ha="center", va="center", fontsize=22)
        text_ax.text(
            0.5, 0.1, latex, ha="center", va="center", fontsize=9, family="monospace",
            parse_math=False, wrap=True,
        )  # fmt: skip
    else:
        text_ax.text(
            0.5, 0.55, latex, ha="center", va="center", fontsize=12, family="monospace",
            parse_math=False, wrap=True,
        )  # fmt: skip
        text_ax.text(
            0.5, 0.1, "(mathtext cannot render this LaTeX: raw string shown)",
            ha="center", va="center", fontsize=8, color="gray",
        )  # fmt: skip
    return save_figure(fig, out_path)


def draw_attention(
    image: np.ndarray,
    tokens: Sequence[str],
    maps: np.ndarray,
    out_path: str | Path,
    *,
    columns: int = 4,
) -> Path:
    """One small heat map per output token of where the decoder looked in the image.

    Args:
        image: the model's input, uint8 ``(H, W)`` with ink 255 on 0 (shown dark on light).
        tokens: the predicted tokens, ``T`` of them.
        maps: ``(T, h, w)`` attention weights on the encoder's feature grid (e.g. from
            :func:`hmer.model.attention.attention_maps`); each is stretched over the whole image.
        out_path: image file to write (format from the suffix), atomically.
        columns: panels per row.

    Raises:
        ConfigError: ``maps`` does not hold one map per token.

    Returns:
        ``out_path`` as a Path.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(tokens):
        raise ConfigError(
            f"attention maps of shape {maps.shape} do not hold one (h, w) map per token "
            f"({len(tokens)} tokens)"
        )
    picture = 255 - _display_gray(image)
    height, width = picture.shape[:2]
    panels = max(len(tokens), 1)
    cols = min(columns, panels)
    rows = -(-panels // cols)
    panel_w = 3.2
    panel_h = min(max(panel_w * height / max(width, 1), 0.6), 3.0) + 0.45
    fig = Figure(figsize=(cols * panel_w, rows * panel_h), layout="constrained")
    extent = (0, width, height, 0)
    for n in range(panels):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255, extent=extent)
        if tokens:
            peak = float(maps[n].max()) or 1.0
            ax.imshow(maps[n], cmap="inferno", alpha=0.55, extent=extent, vmin=0, vmax=peak,
                      interpolation="bilinear")  # fmt: skip
            ax.set_title(f"{n + 1}: {tokens[n]}", fontsize=9, parse_math=False)
        else:
            ax.set_title("(no tokens predicted)", fontsize=9)
        ax.set_axis_off()
    return save_figure(fig, out_path)

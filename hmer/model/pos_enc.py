"""Sinusoidal positional encodings: 2D for feature maps, axial 2D rotary for attention, 1D tokens.

Depends on torch alone, so it can be lifted into any vision transformer.

Conventions shared by every function here:

- **Frequencies.** A block of ``n`` channels holds ``n // 2`` (sin, cos) pairs, interleaved
  ``[sin(p·ω_0), cos(p·ω_0), sin(p·ω_1), cos(p·ω_1), …]``, with the geometric frequencies
  ``ω_i = temperature ** (-2 i / n)`` (the Transformer / DETR / BTTR schedule). Position is in
  cells (feature-map pixels, or tokens), counted from 0.
- **2D split.** The first half of the channels encodes x (the column), the second half y (the row):
  ``sincos_2d(...)[r, c] == cat(sincos_1d(c, dim / 2), sincos_1d(r, dim / 2))``.
- **Padding masks** are bool ``(B, H, W)``, True = padding. Positions count valid cells only
  (a cumulative sum over valid cells, as in DETR), so an image's encoding never depends on how much
  padding its batch added; padding cells get a zero encoding.
- **normalize=True** maps each image's valid extent to ``[0, scale]``: the first valid column gets
  x = 0 and the last gets x = scale (same for rows), whatever the image size.
- The maths runs in float32; results are cast to the requested (or the input's) dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PositionEncoding1D",
    "PositionEncoding2D",
    "Rotary2D",
    "apply_rotary",
    "rotary_2d",
    "sincos_1d",
    "sincos_2d",
]

_CACHE_SIZE = 64  # distinct (H, W, dim, device, dtype, ...) grids kept per builder


def _frequencies(n_pairs: int, temperature: float, device: torch.device | None) -> Tensor:
    """``(n_pairs,)`` float32 frequencies ``temperature ** (-i / n_pairs)``, in radians per cell."""
    exponent = torch.arange(n_pairs, device=device, dtype=torch.float32) / n_pairs
    return torch.pow(float(temperature), -exponent)


def _angles(positions: Tensor, n_pairs: int, temperature: float) -> Tensor:
    """``(..., n_pairs)`` float32 angles ``position · ω_i``."""
    freqs = _frequencies(n_pairs, temperature, positions.device)
    return positions.to(torch.float32)[..., None] * freqs


def _check_dim(dim: int, multiple: int, what: str) -> None:
    if dim <= 0 or dim % multiple:
        raise ValueError(f"{what} must be a positive multiple of {multiple}, got {dim}")


def _check_mask(mask: Tensor, height: int, width: int) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (True = padding), got dtype {mask.dtype}")
    if mask.dim() != 3 or tuple(mask.shape[1:]) != (height, width):
        raise ValueError(
            f"mask must have shape (B, {height}, {width}) to match the feature map, "
            f"got {tuple(mask.shape)}"
        )


def _grid_positions(
    height: int,
    width: int,
    mask: Tensor | None,
    normalize: bool,
    scale: float,
    device: torch.device | str | None,
) -> tuple[Tensor, Tensor]:
    """Cell positions ``(x, y)``: ``(W,)`` and ``(H,)`` without a mask, else ``(B, H, W)``.

    With a mask, a cell's x is the number of valid cells before it in its row (y: in its column).
    Integer (int64) positions, or float32 ones with ``normalize``.
    """
    if mask is None:
        x = torch.arange(width, device=device)
        y = torch.arange(height, device=device)
        if normalize:
            x = x.float() * (scale / max(width - 1, 1))
            y = y.float() * (scale / max(height - 1, 1))
        return x, y
    _check_mask(mask, height, width)
    valid = ~mask
    x = valid.cumsum(2) - 1
    y = valid.cumsum(1) - 1
    if normalize:
        # The last cumsum entry is the row's (column's) valid count; the last valid cell gets scale.
        x = x.float() * (scale / x[:, :, -1:].clamp(min=1).float())
        y = y.float() * (scale / y[:, -1:, :].clamp(min=1).float())
    return x, y


def _cached(cached_fn: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """The cached builder in eager mode; under torch.compile the builder itself, whose graph the
    compiler specializes on (H, W) anyway (and dynamo would trace through the cache regardless).

    Builders run outside inference mode so that a cached tensor can also serve later training
    steps (inference tensors cannot take part in autograd).
    """
    return fn if torch.compiler.is_compiling() else cached_fn


def _sincos_table(
    n: int, dim: int, temperature: float, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``(n + 1, dim)``: :func:`sincos_1d` of positions ``0 … n - 1``, then a row of zeros."""
    with torch.inference_mode(False), torch.no_grad():
        table = sincos_1d(torch.arange(n + 1, device=device), dim, temperature)
        table[n] = 0.0
        return table.to(dtype)


_cached_sincos_table = functools.lru_cache(maxsize=_CACHE_SIZE)(_sincos_table)


def sincos_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sinusoidal encoding of arbitrary (possibly fractional) positions.

    Args:
        positions: ``(...)`` positions in cells or tokens, any real dtype.
        dim: encoding width, even: ``dim // 2`` interleaved (sin, cos) pairs.
        temperature: the longest wavelength is ``2π · temperature`` (roughly).

    Returns:
        ``(..., dim)`` float32 on ``positions.device``.
    """
    _check_dim(dim, 2, "dim of a 1D sinusoidal encoding")
    angles = _angles(positions, dim // 2, temperature)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def sincos_2d(
    height: int,
    width: int,
    dim: int,
    *,
    mask: Tensor | None = None,
    temperature: float = 10000.0,
    normalize: bool = False,
    scale: float = 2 * math.pi,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """2D sinusoidal encoding of a ``height × width`` grid, channels last.

    Args:
        height, width: grid size in cells.
        dim: channels, a multiple of 4: ``[0, dim/2)`` encode x (column), ``[dim/2, dim)`` y (row).
        mask: optional ``(B, H, W)`` bool, True = padding: positions count valid cells only.
        temperature: frequency base (see the module docstring).
        normalize: map each image's valid extent to ``[0, scale]`` instead of ``0, 1, 2, …``.
        scale: the normalized extent (radians at the highest frequency), 2π by default.
        device: device of the result (the mask's device when a mask is given).
        dtype: dtype of the result, float32 by default; the maths always runs in float32.

    Returns:
        ``(H, W, dim)``, or ``(B, H, W, dim)`` with a mask (zero on padding cells).
    """
    _check_dim(dim, 4, "dim of a 2D sinusoidal encoding (x and y halves of (sin, cos) pairs)")
    if mask is not None:
        device = mask.device
    dtype = dtype or torch.float32
    x, y = _grid_positions(height, width, mask, normalize, scale, device)
    half = dim // 2
    if mask is not None and not normalize:
        # Integer positions: one gather from a small cached 1D table (row n = zeros, for padding)
        # is a single pass over the output, where computing sin/cos per cell takes several.
        n = max(height, width)
        table = _cached(_cached_sincos_table, _sincos_table)(n, half, temperature, device, dtype)
        index = torch.stack((x, y), dim=-1).masked_fill_(mask[..., None], n)
        return F.embedding(index, table).view(*mask.shape, dim)
    pe_x = sincos_1d(x, half, temperature)
    pe_y = sincos_1d(y, half, temperature)
    if mask is None:
        pe = torch.cat(
            (pe_x[None, :, :].expand(height, -1, -1), pe_y[:, None, :].expand(-1, width, -1)),
            dim=-1,
        )
    else:
        pe = torch.cat((pe_x, pe_y), dim=-1).masked_fill_(mask[..., None], 0.0)
    return pe.to(dtype)


def _sincos_2d_grid(
    height: int,
    width: int,
    dim: int,
    temperature: float,
    normalize: bool,
    scale: float,
    channels_last: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Contiguous ``(H, W, C)`` or ``(C, H, W)`` grid, built outside inference mode (_cached)."""
    with torch.inference_mode(False), torch.no_grad():
        pe = sincos_2d(
            height,
            width,
            dim,
            temperature=temperature,
            normalize=normalize,
            scale=scale,
            device=device,
            dtype=dtype,
        )
        return pe.contiguous() if channels_last else pe.permute(2, 0, 1).contiguous()


_cached_sincos_2d = functools.lru_cache(maxsize=_CACHE_SIZE)(_sincos_2d_grid)


class PositionEncoding2D(nn.Module):
    """Adds :func:`sincos_2d` to a feature map. No parameters, no buffers.

    Without a mask the grid is cached per ``(H, W, device, dtype)`` (and settings), in a small
    process-wide LRU cache: it is never part of the state dict.

    Args:
        dim: channels of the feature map, a multiple of 4.
        temperature, normalize, scale: see :func:`sincos_2d`.
        channels_last: features are ``(B, H, W, C)`` instead of ``(B, C, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: float = 2 * math.pi,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        _check_dim(dim, 4, "dim of PositionEncoding2D")
        self.dim = dim
        self.temperature = float(temperature)
        self.normalize = normalize
        self.scale = float(scale)
        self.channels_last = channels_last

    def encoding(
        self,
        height: int,
        width: int,
        mask: Tensor | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """The encoding in this module's layout: ``(C, H, W)`` / ``(H, W, C)`` without a mask
        (cached), ``(B, C, H, W)`` / ``(B, H, W, C)`` with one."""
        if mask is None:
            return _cached(_cached_sincos_2d, _sincos_2d_grid)(
                height,
                width,
                self.dim,
                self.temperature,
                self.normalize,
                self.scale,
                self.channels_last,
                torch.device(device or "cpu"),
                dtype,
            )
        pe = sincos_2d(
            height,
            width,
            self.dim,
            mask=mask,
            temperature=self.temperature,
            normalize=self.normalize,
            scale=self.scale,
            dtype=dtype,
        )
        return pe if self.channels_last else pe.permute(0, 3, 1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x + pe`` for ``x`` ``(B, C, H, W)`` (or ``(B, H, W, C)``); mask ``(B, H, W)`` bool."""
        if x.dim() != 4:
            raise ValueError(f"PositionEncoding2D expects a 4D feature map, got {tuple(x.shape)}")
        channels = x.shape[-1] if self.channels_last else x.shape[1]
        if channels != self.dim:
            layout = "(B, H, W, C)" if self.channels_last else "(B, C, H, W)"
            raise ValueError(
                f"PositionEncoding2D(dim={self.dim}) got {channels} channels in {layout} "
                f"input of shape {tuple(x.shape)}"
            )
        height, width = (x.shape[1], x.shape[2]) if self.channels_last else x.shape[2:]
        if mask is not None:
            _check_mask(mask, height, width)
            if mask.shape[0] != x.shape[0]:
                raise ValueError(f"mask batch {mask.shape[0]} != feature batch {x.shape[0]}")
        return x + self.encoding(height, width, mask, device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, temperature={self.temperature:g}, normalize={self.normalize}, "
            f"scale={self.scale:.4g}, channels_last={self.channels_last}"
        )


def rotary_2d(
    height: int,
    width: int,
    head_dim: int,
    *,
    mask: Tensor | None = None,
    temperature: float = 10000.0,
    normalize: bool = False,
    scale: float = 2 * math.pi,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Axial 2D rotary angles for a ``height × width`` grid of tokens, as ``(cos, sin)``.

    Pair ``i`` of the first half of ``head_dim`` turns by ``x · ω_i``, pair ``i`` of the second
    half by ``y · ω_i`` (same pairs and frequencies as :func:`sincos_2d`), so that
    ``<rot(q, p), rot(k, p')>`` depends on ``p' - p`` only (with ``normalize=False``).

    Args:
        head_dim: per-head channels, a multiple of 4.
        mask, temperature, normalize, scale: see :func:`sincos_2d`.

    Returns:
        ``cos, sin`` float32, each ``(H, W, head_dim)`` (or ``(B, H, W, head_dim)`` with a mask),
        the value repeated on both members of each pair; feed them to :func:`apply_rotary`.
        Padding cells get angle 0 (identity).
    """
    _check_dim(head_dim, 4, "head_dim of a 2D rotary encoding (x and y halves of pairs)")
    if mask is not None:
        device = mask.device
    x, y = _grid_positions(height, width, mask, normalize, scale, device)
    n_pairs = head_dim // 4
    ang_x = _angles(x, n_pairs, temperature)
    ang_y = _angles(y, n_pairs, temperature)
    if mask is None:
        ang_x = ang_x[None, :, :].expand(height, -1, -1)
        ang_y = ang_y[:, None, :].expand(-1, width, -1)
    angles = torch.cat((ang_x, ang_y), dim=-1).repeat_interleave(2, dim=-1)
    if mask is not None:
        angles = angles.masked_fill(mask[..., None], 0.0)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each (even, odd) channel pair of ``x`` by the angle whose cos/sin are given.

    Args:
        x: ``(..., D)`` queries or keys.
        cos, sin: broadcastable to ``x`` (from :func:`rotary_2d`).

    Returns:
        ``x``'s shape and dtype; computed in float32.
    """
    xf = x.float()
    # (a, b) -> (-b, a): the pair turned by 90°, so that x·cos + rot90(x)·sin turns by the angle.
    rot90 = torch.stack((-xf[..., 1::2], xf[..., 0::2]), dim=-1).flatten(-2)
    return (xf * cos + rot90 * sin).to(x.dtype)


def _rotary_2d_tokens(
    height: int,
    width: int,
    head_dim: int,
    temperature: float,
    normalize: bool,
    scale: float,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``(H·W, head_dim)`` cos and sin (built outside inference mode: see _cached)."""
    with torch.inference_mode(False), torch.no_grad():
        cos, sin = rotary_2d(
            height,
            width,
            head_dim,
            temperature=temperature,
            normalize=normalize,
            scale=scale,
            device=device,
        )
        return cos.reshape(height * width, head_dim), sin.reshape(height * width, head_dim)


_cached_rotary_2d = functools.lru_cache(maxsize=_CACHE_SIZE)(_rotary_2d_tokens)


class Rotary2D(nn.Module):
    """Applies axial 2D rotary encoding to queries and keys. No parameters, no buffers.

    Args:
        head_dim: per-head channels, a multiple of 4.
        temperature, normalize, scale: see :func:`rotary_2d`.
    """

    def __init__(
        self,
        head_dim: int,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        _check_dim(head_dim, 4, "head_dim of Rotary2D")
        self.head_dim = head_dim
        self.temperature = float(temperature)
        self.normalize = normalize
        self.scale = float(scale)

    def forward(
        self, q: Tensor, k: Tensor, height: int, width: int, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Rotate ``q`` and ``k`` by their grid positions.

        Args:
            q, k: ``(B, [heads,] H·W, head_dim)`` in row-major token order, or
                ``(B, [heads,] H, W, head_dim)``. Prefix tokens (e.g. a class token) must be
                split off by the caller.
            height, width: the token grid.
            mask: optional ``(B, H, W)`` bool, True = padding.

        Returns:
            ``(q, k)`` rotated, same shapes and dtypes.
        """
        if q.shape[-1] != self.head_dim or k.shape[-1] != self.head_dim:
            raise ValueError(
                f"Rotary2D(head_dim={self.head_dim}) got q {tuple(q.shape)}, k {tuple(k.shape)}"
            )
        if q.shape[:-1] != k.shape[:-1]:
            raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in layout")
        if q.dim() >= 2 and q.shape[-2] == height * width:
            flat = True
        elif q.dim() >= 3 and tuple(q.shape[-3:-1]) == (height, width):
            flat = False
        else:
            raise ValueError(
                f"q {tuple(q.shape)} holds neither H·W={height * width} tokens nor an "
                f"({height}, {width}) grid before head_dim"
            )
        if mask is None:
            cos, sin = _cached(_cached_rotary_2d, _rotary_2d_tokens)(
                height,
                width,
                self.head_dim,
                self.temperature,
                self.normalize,
                self.scale,
                q.device,
            )
            if not flat:
                cos, sin = cos.view(height, width, -1), sin.view(height, width, -1)
        else:
            cos, sin = rotary_2d(
                height,
                width,
                self.head_dim,
                mask=mask,
                temperature=self.temperature,
                normalize=self.normalize,
                scale=self.scale,
            )
            # (B, H, W, D) -> (B, 1.., N or H, W, D): the batch leads, heads (if any) broadcast.
            inner = (height * width, self.head_dim) if flat else (height, width, self.head_dim)
            ones = [1] * (q.dim() - 1 - len(inner))
            cos = cos.reshape(mask.shape[0], *ones, *inner)
            sin = sin.reshape(mask.shape[0], *ones, *inner)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def extra_repr(self) -> str:
        return (
            f"head_dim={self.head_dim}, temperature={self.temperature:g}, "
            f"normalize={self.normalize}, scale={self.scale:.4g}"
        )


class PositionEncoding1D(nn.Module):
    """Adds :func:`sincos_1d` to a token sequence. No parameters, no buffers, no maximum length.

    Args:
        dim: model width, even.
        temperature: see :func:`sincos_1d`.
    """

    def __init__(self, dim: int, temperature: float = 10000.0) -> None:
        super().__init__()
        _check_dim(dim, 2, "dim of PositionEncoding1D")
        self.dim = dim
        self.temperature = float(temperature)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """``x + pe`` for ``x`` ``(B, L, D)`` holding positions ``start … start + L - 1``.

        ``start`` lets incremental decoding encode one new token at a time.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"PositionEncoding1D(dim={self.dim}) got input of shape {tuple(x.shape)}"
            )
        positions = torch.arange(start, start + x.shape[-2], device=x.device)
        return x + sincos_1d(positions, self.dim, self.temperature).to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={self.temperature:g}"

"""The batched twin of :class:`hmer.data.augment.Augmenter`, for images already on the device.

One call augments a whole padded batch with a handful of kernels (no per-image host work):
an affine map per image (scale, rotation, horizontal shear, as ``Affine`` on the CPU) through
``grid_sample``, stroke thickness by 2x2 max-pooling (dilation or erosion by one pixel),
Gaussian blur by a grouped convolution, and multiplicative ink noise. Elastic warps are
left to the CPU path.

Each image stays inside its own box (the top-left ``h`` x ``w`` of the canvas that the padding
mask leaves valid): the affine map turns about the box centre and is shrunk where needed so the
transformed box still fits the box, and nothing is drawn outside it. Randomness comes from the
``generator`` alone, so a batch's augmentation is a pure function of its seed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hmer.data.augment import AugmentConfig

__all__ = ["augment_batch", "box_mask"]


def box_mask(sizes: Tensor, height: int, width: int) -> Tensor:
    """bool ``(B, height, width)``, True inside each image's box ``sizes[i] = (h, w)``."""
    ys = torch.arange(height, device=sizes.device)
    xs = torch.arange(width, device=sizes.device)
    return (ys[None, :, None] < sizes[:, 0, None, None]) & (
        xs[None, None, :] < sizes[:, 1, None, None]
    )


def _affine(images: Tensor, sizes: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    count, _, height, width = images.shape
    device = images.device

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(count, generator=gen, device=device)

    apply = torch.rand(count, generator=gen, device=device) < cfg.affine_p
    scale = torch.where(apply, uniform(cfg.scale_min, cfg.scale_max), 1.0)
    angle = torch.where(apply, uniform(-cfg.rotate_deg, cfg.rotate_deg), 0.0) * (math.pi / 180)
    shear = torch.tan(
        torch.where(apply, uniform(-cfg.shear_deg, cfg.shear_deg), 0.0) * (math.pi / 180)
    )
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Forward map about the box centre, in pixels (x right, y down): scale * rotation * shear.
    a00, a01 = scale * cos, scale * (cos * shear - sin)
    a10, a11 = scale * sin, scale * (sin * shear + cos)
    half_h, half_w = sizes[:, 0].float() / 2, sizes[:, 1].float() / 2
    reach_x = a00.abs() * half_w + a01.abs() * half_h
    reach_y = a10.abs() * half_w + a11.abs() * half_h
    fit = torch.minimum(half_w / reach_x, half_h / reach_y).clamp(max=1.0)  # stay in the box
    a00, a01, a10, a11 = a00 * fit, a01 * fit, a10 * fit, a11 * fit
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    # Output pixel centre q -> input point c + A^-1 (q - c), then to grid_sample's [-1, 1].
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    qx = xs[None, None, :] - half_w[:, None, None]
    qy = ys[None, :, None] - half_h[:, None, None]
    px = half_w[:, None, None] + i00[:, None, None] * qx + i01[:, None, None] * qy
    py = half_h[:, None, None] + i10[:, None, None] * qx + i11[:, None, None] * qy
    grid = torch.stack([px / width * 2 - 1, py / height * 2 - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _max2(images: Tensor) -> Tensor:
    """2x2 maximum filter, same size (a one-pixel dilation, as the CPU path's smallest)."""
    return F.max_pool2d(F.pad(images, (0, 1, 0, 1)), 2, stride=1)


def _blur(images: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    count, _, height, width = images.shape
    device = images.device
    apply = torch.rand(count, generator=gen, device=device) < cfg.blur_p
    sigma = 0.3 + (max(cfg.blur_sigma, 0.3) - 0.3) * torch.rand(count, generator=gen, device=device)
    taps = torch.arange(-2, 3, device=device, dtype=torch.float32)
    kernel = torch.exp(-(taps[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (taps == 0).float().expand(count, -1)
    kernel = torch.where(apply[:, None], kernel, identity)
    flat = images.reshape(1, count, height, width)  # one group per image
    flat = F.conv2d(flat, kernel[:, None, None, :], padding=(0, 2), groups=count)
    flat = F.conv2d(flat, kernel[:, None, :, None], padding=(2, 0), groups=count)
    return flat.reshape(count, 1, height, width)


def augment_batch(
    images: Tensor, sizes: Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> Tensor:
    """One random augmentation of each image of a padded batch, on its device.

    Args:
        images: float ``(B, 1, H, W)``, ink 1 on 0, each image at the top left of the canvas.
        sizes: long ``(B, 2)``, the ``(h, w)`` box of each image (the unpadded part).
        cfg: the probabilities and magnitudes (``enabled`` false: returned unchanged).
        generator: a generator on the images' device; the only source of randomness.

    Returns:
        float ``(B, 1, H, W)`` in [0, 1], zero outside each box.
    """
    if not cfg.enabled:
        return images
    count = images.shape[0]
    device = images.device
    inside = box_mask(sizes, images.shape[-2], images.shape[-1])[:, None]
    out = images
    if cfg.affine_p > 0:
        out = _affine(out, sizes, cfg, generator)
    if cfg.thickness_p > 0 and (cfg.thicken_max > 0 or cfg.thin_max > 0):
        apply = torch.rand(count, generator=generator, device=device) < cfg.thickness_p
        thicker = torch.rand(count, generator=generator, device=device) < 0.5
        if cfg.thin_max == 0:
            thicker = torch.ones_like(thicker)
        elif cfg.thicken_max == 0:
            thicker = torch.zeros_like(thicker)
        dilated = _max2(out)
        eroded = -_max2(-out)
        # Erosion can erase thin strokes entirely: keep those images as they were (as on the CPU).
        apply = apply & (thicker | (eroded.amax(dim=(1, 2, 3)) >= 0.5))
        changed = torch.where(thicker[:, None, None, None], dilated, eroded)
        out = torch.where(apply[:, None, None, None], changed, out)
    if cfg.blur_p > 0:
        out = _blur(out, cfg, generator)
    if cfg.noise_p > 0:
        apply = torch.rand(count, generator=generator, device=device) < cfg.noise_p
        noise = torch.randn(out.shape, generator=generator, device=device) * cfg.noise_std
        out = out * (1 + noise * apply[:, None, None, None])
    return out.clamp(0, 1) * inside

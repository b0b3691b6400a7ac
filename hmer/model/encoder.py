"""Image encoder: timm CNN, 1×1 projection to ``d_model``, 2D sinusoidal encoding, LayerNorm.

Images are ``(B, 1, H, W)`` float, ink = 1 on 0, padded at the bottom and right; the padding mask
is ``(B, H, W)`` bool, True = padding. The encoder returns one token per feature-map cell,
``(B, h·w, d_model)`` in row-major order, and the matching ``(B, h·w)`` padding mask.

The mask is downsampled *exactly* as the backbone downsamples: a cell is valid when it would exist
in the feature map of the image alone (unpadded). Every chain of convolutions and poolings maps a
side of ``n`` pixels to ``floor((n + c) / stride)`` cells for one integer ``c`` per axis (nested
floor divisions compose), so :class:`Backbone` knows ``c`` (DenseNet) or finds it once by probing
the real network (other timm models), then computes every image's valid extent with two integer
operations on the device (no host sync).

Padding invariance: the DenseNet also zeroes the padding cells wherever a layer looks at
neighbouring cells (the stem's max-pool and every 3×3 convolution), which is what those layers
see at the border of an image alone. A padded image's valid cells thus get exactly the features
(and the decoder exactly the memory) of the image alone, with eval-mode BatchNorm: batched and
one-by-one recognition agree. Other backbones are not masked inside (their valid cells near the
bottom/right border see the padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import timm
import torch
import torch.nn.functional as F
from timm.models.densenet import DenseBlock, DenseNet, DenseTransition
from torch import Tensor, nn

from hmer.errors import ConfigError
from hmer.model.pos_enc import PositionEncoding2D

__all__ = ["Backbone", "Encoder"]


class Backbone(nn.Module):
    """A timm CNN cut at one feature map: ``(B, in_chans, H, W) -> (B, channels, h, w)``.

    ``name="densenet"`` builds :class:`timm.models.densenet.DenseNet` (DenseNet-BC: bottleneck
    layers, transitions halving the channels) with ``growth_rate``, ``block_config`` and
    ``bn_size``; its stem (7×7 stride-2 convolution with ``2 · growth_rate`` channels, 3×3 stride-2
    max-pool) and one 2×2 average-pool per transition give stride ``4 · 2^(blocks - 1)``, 16 for
    BTTR's three blocks. The feature map is the one before the classifier (after the last
    BatchNorm + ReLU). Any other name is created with ``timm.create_model(name, features_only=True,
    pretrained=False)`` and cut at the stage whose reduction is ``stride``. Nothing is downloaded.

    Attributes:
        channels: feature channels ``C``.
        stride: total downsampling factor.
        offset: ``(c_h, c_w)`` of the size rule ``cells = floor((pixels + c) / stride)``.
    """

    def __init__(
        self,
        name: str = "densenet",
        *,
        stride: int = 16,
        in_chans: int = 1,
        growth_rate: int = 24,
        block_config: Sequence[int] = (16, 16, 16),
        bn_size: int = 4,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.name = name
        if name == "densenet":
            self.body = DenseNet(
                growth_rate=growth_rate,
                block_config=tuple(block_config),
                bn_size=bn_size,
                in_chans=in_chans,
                num_classes=0,
                proj_drop_rate=drop_rate,
            )
            self.features_only = False
            # Stem: 7×7 conv, stride 2, pad 3 and 3×3 max-pool, stride 2, pad 1 each map n to
            # ceil(n / 2), i.e. floor((n + 3) / 4) for both; each transition's 2×2 average-pool
            # floors n / 2. So c = 3 (checked against real shapes in tests/test_encoder.py).
            offset = (3, 3)
            self.channels = self.body.num_features
            self.stride = self.body.feature_info[-1]["reduction"]
            if self.stride != stride:
                raise ConfigError(
                    f"model.stride={stride}, but a DenseNet with {len(block_config)} blocks "
                    f"(model.block_config={list(block_config)}) has stride {self.stride}"
                )
        else:
            kwargs = {"features_only": True, "in_chans": in_chans, "pretrained": False}
            try:
                reductions = timm.create_model(name, **kwargs).feature_info.reduction()
            except RuntimeError as error:  # timm's "Unknown model" is a RuntimeError
                raise ConfigError(f"model.backbone={name!r}: {error}") from error
            if stride not in reductions:
                raise ConfigError(
                    f"model.stride={stride}: backbone {name!r} has feature maps at strides "
                    f"{reductions}"
                )
            self.body = timm.create_model(name, out_indices=(reductions.index(stride),), **kwargs)
            self.features_only = True
            self.channels = self.body.feature_info.channels()[-1]
            self.stride = stride
            offset = self._probe_offset(in_chans)
        self.offset: tuple[int, int] = offset

    def forward(self, images: Tensor, image_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Features and their padding mask.

        Args:
            images: ``(B, in_chans, H, W)`` (any memory format; the output follows it).
            image_mask: ``(B, H, W)`` bool, True = padding, padding at the bottom and right.

        Returns:
            features ``(B, channels, h, w)`` and mask ``(B, h, w)`` bool, True where a cell lies
            outside the image's own (unpadded) feature map; every image keeps one valid cell.
        """
        if image_mask is None:
            features = self._features(images, None)
            b, _, h, w = features.shape
            return features, torch.zeros(b, h, w, dtype=torch.bool, device=features.device)
        valid = ~image_mask
        extent = (valid.any(dim=2).sum(dim=1), valid.any(dim=1).sum(dim=1))  # (B,) rows, cols
        features = self._features(images * valid[:, None].to(images.dtype), extent)
        keep = _keep_mask(extent, self.offset, self.stride, features.shape[-2:])
        return features, ~keep[:, 0]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature-map size ``(h, w)`` for an ``height × width`` image (python ints)."""
        return (height + self.offset[0]) // self.stride, (width + self.offset[1]) // self.stride

    def _features(self, x: Tensor, extent: tuple[Tensor, Tensor] | None) -> Tensor:
        if self.features_only:
            return self.body(x)[-1]
        if extent is None:
            return self.body.forward_features(x)
        return _masked_densenet_features(self.body, x, extent)

    @torch.no_grad()
    def _probe_offset(self, in_chans: int) -> tuple[int, int]:
        """Find ``c`` per axis with ``cells(n) == floor((n + c) / stride)`` from the real network.

        ``cells`` steps up exactly once in any ``stride`` consecutive sizes, so a binary search over
        ``n0 + 1 … n0 + stride`` finds the step ``n0 + j`` (where ``n0 + j + c`` is a multiple of
        the stride): ``log2(stride) + 2`` small forward passes, both axes at once.
        """
        s = self.stride
        n0 = 4 * s
        parameter = next(self.parameters())
        was_training = self.training
        self.eval()

        def cells(h: int, w: int) -> tuple[int, int]:
            x = torch.zeros(1, in_chans, h, w, device=parameter.device, dtype=parameter.dtype)
            return tuple(self._features(x, None).shape[-2:])

        base = cells(n0, n0)
        if any(a <= b for a, b in zip(cells(n0 + s, n0 + s), base, strict=True)):
            raise ConfigError(f"backbone {self.name!r} does not downsample by {s} per {s} pixels")
        lo, hi = [1, 1], [s, s]
        while lo != hi:
            mid = [(a + b) // 2 for a, b in zip(lo, hi, strict=True)]
            out = cells(n0 + mid[0], n0 + mid[1])
            for axis in range(2):
                if lo[axis] < hi[axis]:
                    if out[axis] > base[axis]:
                        hi[axis] = mid[axis]
                    else:
                        lo[axis] = mid[axis] + 1
        self.train(was_training)
        return tuple(s * (base[a] + 1) - n0 - lo[a] for a in range(2))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, stride={self.stride}"


def _keep_mask(
    extent: tuple[Tensor, Tensor], offset: tuple[int, int], stride: int, size: Sequence[int]
) -> Tensor:
    """``(B, 1, h, w)`` bool, True on the cells ``floor((extent + offset) / stride)`` of each image
    (at least one per axis)."""
    rows, cols = (
        torch.div(n + c, stride, rounding_mode="floor").clamp(min=1)
        for n, c in zip(extent, offset, strict=True)
    )
    h = torch.arange(size[0], device=rows.device)
    w = torch.arange(size[1], device=rows.device)
    rows_in = h[None, :, None] < rows[:, None, None]  # (B, h, 1)
    cols_in = w[None, None, :] < cols[:, None, None]  # (B, 1, w)
    return (rows_in & cols_in)[:, None]


def _masked_densenet_features(net: DenseNet, x: Tensor, extent: tuple[Tensor, Tensor]) -> Tensor:
    """``net.forward_features(x)`` with padding cells zeroed before the layers that mix cells.

    Zero is what the unpadded image's layers see beyond its border: the 3×3 convolutions pad with
    zeros, and the stem's max-pool only compares ReLU outputs (>= 0). The 1×1 convolutions and
    BatchNorms act per cell, and each average-pool window of a valid output cell lies inside the
    image (floor rounding), so they need no mask.

    The mask goes *inside* timm's modules (between ``norm0`` and ``pool0`` of the stem, between
    ``norm2`` and ``conv2`` of every ``DenseLayer``), where none of timm's feature paths
    (``forward_features``, ``forward_intermediates``, ``features_only``) can take it; hooks
    could, but only with a per-call mask stored on the modules. So this walks timm's ``features``
    in order, calling its modules (``DenseLayer.bottleneck_fn``, each ``DenseTransition``, the
    final norm) and repeating only what ``DenseLayer.forward`` does around ``conv2`` (no
    anti-aliasing, no gradient checkpointing, as :class:`Backbone` builds the net).
    """
    features = net.features
    x = features.norm0(features.conv0(x))
    # The stem's output side is ceil(n / 2) = floor((n + 1) / 2); then floor((n + 3) / stride).
    x = features.pool0(x * _keep_mask(extent, (1, 1), 2, x.shape[-2:]).to(x.dtype))
    stride = 4
    keep = _keep_mask(extent, (3, 3), stride, x.shape[-2:]).to(x.dtype)
    for name, module in features.named_children():
        if name in ("conv0", "norm0", "pool0"):  # the stem, above
            continue
        if isinstance(module, DenseBlock):
            maps = [x]
            for layer in module.values():
                y = layer.norm2(layer.bottleneck_fn(maps))
                y = layer.conv2(y * keep)
                if layer.drop_rate > 0:
                    y = F.dropout(y, p=layer.drop_rate, training=layer.training)
                maps.append(y)
            x = torch.cat(maps, 1)
        elif isinstance(module, DenseTransition):
            x = module(x)
            stride *= 2
            keep = _keep_mask(extent, (3, 3), stride, x.shape[-2:]).to(x.dtype)
        else:  # the final BatchNorm + ReLU
            x = module(x)
    return x


class Encoder(nn.Module):
    """Backbone -> 1×1 projection + ReLU -> 2D sinusoidal encoding (masked) -> LayerNorm.

    The projection is a ``Linear`` over the channels of the ``(B, h, w, C)`` view of the feature
    map (a 1×1 convolution): that view is free when the backbone runs channels-last, and the rest
    of the encoder is channels-last too.

    Args:
        d_model: output width.
        backbone: ``"densenet"`` or a timm model name (see :class:`Backbone`).
        pos_normalize: map each image's valid extent to ``[0, 2π]`` in the 2D encoding (BTTR).
        pos_temperature: frequency base of the 2D encoding.
        **backbone_kwargs: passed to :class:`Backbone` (stride, growth_rate, block_config, …).
    """

    def __init__(
        self,
        d_model: int = 256,
        backbone: str = "densenet",
        *,
        pos_normalize: bool = True,
        pos_temperature: float = 10000.0,
        **backbone_kwargs,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, **backbone_kwargs)
        self.proj = nn.Linear(self.backbone.channels, d_model)
        self.pos = PositionEncoding2D(
            d_model, pos_temperature, normalize=pos_normalize, scale=2 * math.pi, channels_last=True
        )
        self.norm = nn.LayerNorm(d_model)

    def forward_features(
        self, images: Tensor, image_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W)``, ``(B, H, W)`` -> grid ``(B, h, w, d_model)``, mask ``(B, h, w)``."""
        features, mask = self.backbone(images, image_mask)
        x = torch.relu(self.proj(features.permute(0, 2, 3, 1)))
        # Without padding the encoding is the same for all images (and cached per size).
        return self.norm(self.pos(x, None if image_mask is None else mask)), mask

    def forward(self, images: Tensor, image_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W)``, ``(B, H, W)`` -> memory ``(B, h·w, d_model)``, mask ``(B, h·w)``."""
        grid, mask = self.forward_features(images, image_mask)
        return grid.flatten(1, 2), mask.flatten(1)

"""Reuse a timm VisionTransformer with our 2D sinusoidal encoding, at any input size, with padding.

timm's ViT adds a learned ``pos_embed`` sized for one resolution (resampled for others) and knows
nothing about padded batches. :class:`SincosViT` keeps timm's patch embedding, class/register
tokens, blocks and final norm, drops the learned table, and runs::

    patch_embed -> + sincos_2d on the patch grid (positions count valid patches only)
    -> prefix tokens -> blocks (attention never looks at padded patches) -> norm

so a formula image gets the same tokens whether it is alone or padded inside a wider batch.

Example::

    vit = sincos_vit("vit_tiny_patch16_224", in_chans=1)
    tokens, token_mask = vit(images, image_mask)  # (B, 1 + h·w, 192), (B, 1 + h·w) True = pad
"""

from __future__ import annotations

import math
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from hmer.model.pos_enc import PositionEncoding2D

__all__ = ["SincosViT", "add_sincos_2d", "additive_key_mask", "downsample_mask", "sincos_vit"]


def downsample_mask(
    mask: Tensor, patch_size: tuple[int, int], grid_size: tuple[int, int]
) -> Tensor:
    """Pixel padding mask -> patch padding mask.

    A patch is padding only when all its pixels are: a patch holding any ink-bearing (valid) pixel
    keeps its content. Pixels beyond the image (timm's ``dynamic_img_pad``) count as padding.

    Args:
        mask: ``(B, H, W)`` bool, True = padding.
        patch_size: ``(ph, pw)`` pixels.
        grid_size: ``(h, w)`` patches, as produced by the patch embedding.

    Returns:
        ``(B, h, w)`` bool, True = padding.
    """
    (ph, pw), (h, w) = patch_size, grid_size
    batch = mask.shape[0]
    valid = (~mask)[:, : h * ph, : w * pw]
    valid = F.pad(valid, (0, w * pw - valid.shape[2], 0, h * ph - valid.shape[1]), value=False)
    return ~valid.view(batch, h, ph, w, pw).any(dim=4).any(dim=2)


def additive_key_mask(token_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``(B, N)`` bool padding mask (True = padding) -> ``(B, 1, 1, N)`` float bias for the
    attention scores: 0 on valid keys, -inf on padded ones.

    A float bias, not a bool mask: timm 1.0.16-1.0.25 add ``attn_mask`` to the scores as it is in
    their unfused attention path, so a bool mask would add 1 / 0 there and let padding in; every
    timm version that takes a mask (fused or not) treats an additive float mask alike. No row is
    all -inf: the prefix tokens are never padding.
    """
    bias = torch.zeros(token_mask.shape, dtype=dtype, device=token_mask.device)
    return bias.masked_fill(token_mask, float("-inf"))[:, None, None, :]


class SincosViT(nn.Module):
    """A timm ViT encoder whose positions come from :class:`PositionEncoding2D`.

    The wrapped model's learned ``pos_embed`` is removed (it leaves the state dict); class and
    register tokens get no position (as timm's ``no_embed_class``). The classifier head is not
    applied: :meth:`forward` returns the encoded tokens.

    Args:
        vit: a timm ``VisionTransformer`` built with ``dynamic_img_size=True`` and no patch
            dropout; modified in place.
        temperature, normalize, scale: see :func:`hmer.model.pos_enc.sincos_2d`.
    """

    def __init__(
        self,
        vit: VisionTransformer,
        *,
        temperature: float = 10000.0,
        normalize: bool = False,
        scale: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        if not isinstance(vit, VisionTransformer):
            raise ValueError(f"SincosViT wraps a timm VisionTransformer, got {type(vit).__name__}")
        if not vit.dynamic_img_size:
            raise ValueError(
                "SincosViT needs a ViT built with dynamic_img_size=True "
                "(its patch embedding then keeps the (B, h, w, C) grid)"
            )
        if not isinstance(vit.patch_drop, nn.Identity):
            raise ValueError("SincosViT does not support patch dropout (patch_drop_rate > 0)")
        prefix = int(vit.cls_token is not None) + vit.num_reg_tokens
        if prefix != vit.num_prefix_tokens:
            raise ValueError(
                f"{type(vit).__name__} has prefix tokens other than class/register tokens"
            )
        vit.pos_embed = None
        self.vit = vit
        self.pos_enc = PositionEncoding2D(
            vit.embed_dim, temperature, normalize, scale, channels_last=True
        )

    @property
    def embed_dim(self) -> int:
        return self.vit.embed_dim

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self.vit.patch_embed.patch_size)

    def forward(self, images: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Encode a (padded) batch.

        Args:
            images: ``(B, in_chans, H, W)``, any H and W (multiples of the patch size unless the
                ViT was built with ``dynamic_img_pad=True``).
            mask: optional ``(B, H, W)`` bool pixel mask, True = padding.

        Returns:
            ``tokens`` ``(B, P + h·w, D)`` (P prefix tokens, then the patch grid row by row) and
            ``token_mask`` ``(B, P + h·w)`` bool, True = padding (None without a mask).
        """
        vit = self.vit
        x = vit.patch_embed(images)  # (B, h, w, D)
        batch, h, w, _ = x.shape
        patch_mask = None
        if mask is not None:
            if mask.shape != (batch, *images.shape[2:]):
                raise ValueError(
                    f"mask must have shape {(batch, *images.shape[2:])} (B, H, W) like the "
                    f"images, got {tuple(mask.shape)}"
                )
            patch_mask = downsample_mask(mask, self.patch_size, (h, w))
        x = self.pos_enc(x, patch_mask).flatten(1, 2)

        prefix = [t.expand(batch, -1, -1) for t in (vit.cls_token, vit.reg_token) if t is not None]
        x = vit.norm_pre(vit.pos_drop(torch.cat([*prefix, x], dim=1)))

        if patch_mask is None:
            x = vit.blocks(x)
            token_mask = None
        else:
            token_mask = torch.cat(
                [patch_mask.new_zeros(batch, vit.num_prefix_tokens), patch_mask.flatten(1)], dim=1
            )
            attn_mask = additive_key_mask(token_mask, x.dtype)
            for block in vit.blocks:
                x = block(x, attn_mask=attn_mask)
        return vit.norm(x), token_mask


def add_sincos_2d(
    vit: VisionTransformer,
    *,
    temperature: float = 10000.0,
    normalize: bool = False,
    scale: float = 2 * math.pi,
) -> SincosViT:
    """Give a timm ViT built with ``dynamic_img_size=True`` our 2D encoding (:class:`SincosViT`)."""
    return SincosViT(vit, temperature=temperature, normalize=normalize, scale=scale)


def sincos_vit(
    model_name: str = "vit_tiny_patch16_224",
    *,
    temperature: float = 10000.0,
    normalize: bool = False,
    scale: float = 2 * math.pi,
    **timm_kwargs: Any,
) -> SincosViT:
    """Build a timm ViT by name (random init, no download) with our 2D sinusoidal encoding.

    ``timm_kwargs`` go to ``timm.create_model`` (e.g. ``in_chans=1``, ``depth=4``); this sets
    ``pretrained=False``, ``dynamic_img_size=True`` and ``num_classes=0`` unless given.
    """
    timm_kwargs.setdefault("pretrained", False)
    timm_kwargs.setdefault("num_classes", 0)
    timm_kwargs["dynamic_img_size"] = True
    vit = timm.create_model(model_name, **timm_kwargs)
    return add_sincos_2d(vit, temperature=temperature, normalize=normalize, scale=scale)

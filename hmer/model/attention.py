"""Where the decoder looked: cross-attention maps of one hypothesis on the encoder's grid."""

from __future__ import annotations

import torch
from torch import Tensor

from hmer.model.hmer_model import Direction, HmerModel

__all__ = ["attention_maps"]


@torch.no_grad()
def attention_maps(
    model: HmerModel,
    image: Tensor,
    image_mask: Tensor | None,
    tokens: list[int],
    direction: Direction = "l2r",
) -> Tensor:
    """Where the decoder looked while predicting each token of one hypothesis.

    Args:
        image: ``(1, H, W)`` or ``(1, 1, H, W)`` float, ink 1 on 0.
        image_mask: ``(H, W)`` / ``(1, H, W)`` bool, True = padding, or None.
        tokens: the hypothesis, reading order, no specials.
        direction: the direction that predicts the tokens (teacher-forced).

    Returns:
        ``(len(tokens), h, w)`` float32 on the feature grid (stride ``model.encoder.backbone
        .stride``): map ``i`` is the last decoder layer's cross-attention, averaged over heads,
        of the step that predicted ``tokens[i]``; it sums to 1 and is 0 on padding cells.
    """
    images = image.reshape(1, 1, *image.shape[-2:])
    mask = None if image_mask is None else image_mask.reshape(1, *image_mask.shape[-2:])
    grid, grid_mask = model.encoder.forward_features(images, mask)
    ids = torch.tensor([tokens], dtype=torch.long, device=images.device)
    lengths = torch.tensor([len(tokens)], device=images.device)
    inputs, _ = model.sequences(ids, lengths, direction)
    _, weights = model.decoder.forward_with_attention(
        inputs, grid.flatten(1, 2), grid_mask.flatten(1)
    )
    maps = weights[0, : len(tokens)].float()  # step i predicts token i of the direction
    if direction == "r2l":
        maps = maps.flip(0)
    return maps.view(len(tokens), *grid.shape[1:3])

"""The recognizer: image encoder + bidirectional transformer decoder, and its training objective.

Directions (BTTR): every target ``t`` of ``n`` tokens is trained both ways through one decoder,

- left-to-right: input ``[sos] + t``, target ``t + [eos]``;
- right-to-left: input ``[eos] + reversed(t)``, target ``reversed(t) + [sos]``,

both in one decoder pass (the two rows of an image share its memory, see :mod:`.decoder`).
Everything in :meth:`HmerModel.forward` stays on the device: no host syncs, no branching on values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hmer.config import ModelConfig
from hmer.data.vocab import Direction
from hmer.model.decoder import Decoder
from hmer.model.encoder import Encoder

__all__ = ["Direction", "HmerModel", "ModelConfig", "directional_sequences", "reverse_padded"]


def reverse_padded(tokens: Tensor, lengths: Tensor, pad_id: int) -> Tensor:
    """Reverse each row's first ``lengths[i]`` tokens: ``(B, L)``, ``(B,)`` -> ``(B, L)``, the
    rest set to ``pad_id``."""
    positions = torch.arange(tokens.shape[1], device=tokens.device)
    index = (lengths[:, None] - 1 - positions).clamp(min=0)
    return tokens.gather(1, index).masked_fill(positions >= lengths[:, None], pad_id)


def directional_sequences(
    tokens: Tensor,
    lengths: Tensor,
    direction: Direction,
    *,
    pad_id: int = 0,
    sos_id: int = 1,
    eos_id: int = 2,
) -> tuple[Tensor, Tensor]:
    """Decoder inputs and targets for one direction.

    Args:
        tokens: ``(B, L)`` long, reading order, no specials, padded after ``lengths``.
        lengths: ``(B,)`` long.
        direction: ``"l2r"`` (``[sos] + t -> t + [eos]``) or ``"r2l"``
            (``[eos] + reversed(t) -> reversed(t) + [sos]``).

    Returns:
        ``inputs, targets``, each ``(B, L + 1)`` long, padded with ``pad_id``.
    """
    if direction == "l2r":
        body, start, end = tokens, sos_id, eos_id
    elif direction == "r2l":
        body, start, end = reverse_padded(tokens, lengths, pad_id), eos_id, sos_id
    else:
        raise ValueError(f"direction must be 'l2r' or 'r2l', got {direction!r}")
    b, length = tokens.shape
    body = body.masked_fill(torch.arange(length, device=tokens.device) >= lengths[:, None], pad_id)
    inputs = torch.cat((body.new_full((b, 1), start), body), dim=1)
    targets = torch.cat((body, body.new_full((b, 1), pad_id)), dim=1)
    at_end = torch.arange(length + 1, device=tokens.device) == lengths[:, None]
    return inputs, targets.masked_fill(at_end, end)


class HmerModel(nn.Module):
    """Encoder + bidirectional decoder.

    Args:
        cfg: hyper-parameters.
        vocab_size: number of token ids, specials included.
        pad_id, sos_id, eos_id: the special ids (the vocabulary's).
    """

    def __init__(
        self, cfg: ModelConfig, vocab_size: int, pad_id: int = 0, sos_id: int = 1, eos_id: int = 2
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.pad_id, self.sos_id, self.eos_id = pad_id, sos_id, eos_id
        self.encoder = Encoder(
            cfg.d_model,
            cfg.backbone,
            pos_normalize=cfg.pos_normalize,
            pos_temperature=cfg.pos_temperature,
            stride=cfg.stride,
            growth_rate=cfg.growth_rate,
            block_config=cfg.block_config,
            bn_size=cfg.bn_size,
            drop_rate=cfg.encoder_dropout,
        )
        self.decoder = Decoder(
            vocab_size,
            cfg.d_model,
            cfg.nhead,
            cfg.num_decoder_layers,
            cfg.dim_feedforward,
            cfg.dropout,
            norm_first=cfg.norm_first,
            pos_temperature=cfg.pos_temperature,
        )

    def encode(self, images: Tensor, image_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(B, 1, H, W)`` float (ink 1 on 0), ``(B, H, W)`` bool True = padding ->
        memory ``(B, S, d_model)``, memory mask ``(B, S)`` True = padding."""
        return self.encoder(images, image_mask)

    def sequences(
        self, tokens: Tensor, lengths: Tensor, direction: Direction
    ) -> tuple[Tensor, Tensor]:
        """:func:`directional_sequences` with this model's special ids."""
        return directional_sequences(
            tokens, lengths, direction, pad_id=self.pad_id, sos_id=self.sos_id, eos_id=self.eos_id
        )

    def forward(
        self, images: Tensor, image_mask: Tensor | None, tokens: Tensor, lengths: Tensor
    ) -> dict[str, Tensor]:
        """Bidirectional teacher-forced loss.

        Args:
            images: ``(B, 1, H, W)`` float, ink 1 on 0.
            image_mask: ``(B, H, W)`` bool, True = padding (or None).
            tokens: ``(B, L)`` long target ids, reading order, no specials, padded.
            lengths: ``(B,)`` long.

        Returns:
            ``loss`` (mean cross-entropy over the real target tokens of both directions, end
            tokens included), ``loss_l2r``, ``loss_r2l`` (per direction), ``logits``
            ``(2B, L + 1, V)`` and ``targets`` ``(2B, L + 1)``, rows ``2b`` (L2R) and ``2b + 1``
            (R2L) for image ``b``.
        """
        memory, memory_mask = self.encode(images, image_mask)
        l2r = self.sequences(tokens, lengths, "l2r")
        r2l = self.sequences(tokens, lengths, "r2l")
        inputs = torch.stack((l2r[0], r2l[0]), dim=1).flatten(0, 1)
        targets = torch.stack((l2r[1], r2l[1]), dim=1).flatten(0, 1)
        logits = self.decoder(inputs, memory, memory_mask)
        token_loss = F.cross_entropy(
            logits.flatten(0, 1),
            targets.flatten(),
            ignore_index=self.pad_id,
            label_smoothing=self.cfg.label_smoothing,
            reduction="none",
        ).view(-1, 2, targets.shape[1])
        counts = (targets != self.pad_id).view(-1, 2, targets.shape[1]).sum(dim=(0, 2))
        sums = token_loss.sum(dim=(0, 2))
        per_direction = sums / counts.clamp(min=1)
        return {
            "loss": sums.sum() / counts.sum().clamp(min=1),
            "loss_l2r": per_direction[0],
            "loss_r2l": per_direction[1],
            "logits": logits,
            "targets": targets,
        }

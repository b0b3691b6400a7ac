"""The recognizer's network: timm CNN encoder with 2D sinusoidal encoding, bidirectional
transformer decoder with cached incremental steps, and a size/FLOPs summary."""

from __future__ import annotations

from hmer.model.decoder import Decoder, DecoderState
from hmer.model.encoder import Backbone, Encoder
from hmer.model.hmer_model import (
    Direction,
    HmerModel,
    ModelConfig,
    directional_sequences,
    reverse_padded,
)

__all__ = [
    "Backbone",
    "Decoder",
    "DecoderState",
    "Direction",
    "Encoder",
    "HmerModel",
    "ModelConfig",
    "directional_sequences",
    "reverse_padded",
]

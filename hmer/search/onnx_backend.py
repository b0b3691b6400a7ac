"""The search's network run by onnxruntime: the three graphs of an ONNX export, numpy only.

:class:`OnnxNetwork` implements :class:`hmer.search.network.Network` over the sessions of
``encoder.onnx``, ``decoder_step.onnx`` and ``decoder_score.onnx`` (their inputs and outputs:
:mod:`hmer.runtime.export`). It never imports torch: this is what ``hmer predict`` runs on a CPU.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hmer.search.network import Specials

__all__ = ["Encoded", "OnnxNetwork"]


class Encoded(NamedTuple):
    """The encoder graph's outputs for ``B`` images: ``memory`` float32 ``(B, S, d_model)``,
    ``mask`` bool ``(B, S)`` (True = padding), and every decoder layer's cross-attention
    ``keys`` / ``values`` float32 ``(layers, B, heads, S, head_dim)``."""

    memory: np.ndarray
    mask: np.ndarray
    keys: np.ndarray
    values: np.ndarray

    def select(self, images: np.ndarray) -> Encoded:
        """The outputs of images ``images`` (indices, in the new order)."""
        return Encoded(
            self.memory[images], self.mask[images], self.keys[:, images], self.values[:, images]
        )


class _Steps:
    """Steps of the step graph with its self-attention cache ``(layers, N, heads, T,
    head_dim)``, reordered on the host between steps."""

    def __init__(self, session: Any, memory: Encoded, cache_shape: tuple[int, int, int]) -> None:
        self.session, self.memory, self.cache_shape = session, memory, cache_shape
        self.cache: tuple[np.ndarray, np.ndarray] | None = None  # made for the first step's rows

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        if self.cache is None:
            layers, heads, head_dim = self.cache_shape
            empty = np.zeros((layers, len(tokens), heads, 0, head_dim), np.float32)
            self.cache = (empty, empty)
        feed = {
            "tokens": tokens.astype(np.int64, copy=False),
            "memory_keys": self.memory.keys,
            "memory_values": self.memory.values,
            "memory_mask": self.memory.mask,
            "past_keys": self.cache[0],
            "past_values": self.cache[1],
        }
        logp, keys, values = self.session.run(None, feed)
        self.cache = (keys, values)
        return logp

    def select(self, rows: np.ndarray, images: np.ndarray | None = None) -> None:
        keys, values = self.cache
        self.cache = (keys[:, rows], values[:, rows])
        if images is not None:
            self.memory = self.memory.select(images)


class OnnxNetwork:
    """The graphs of an ONNX export as the search's :class:`~hmer.search.network.Network`.

    Args:
        encoder, step, score: onnxruntime sessions of the three graphs.
        specials: the vocabulary's special ids; vocab_size: its size.
        cache_shape: ``(layers, heads, head_dim)`` of the decoder's self-attention cache.
    """

    def __init__(
        self,
        encoder: Any,
        step: Any,
        score: Any,
        specials: Specials,
        vocab_size: int,
        cache_shape: tuple[int, int, int],
    ) -> None:
        self.encoder, self.step, self.scorer = encoder, step, score
        self.specials, self.vocab_size, self.cache_shape = specials, vocab_size, cache_shape

    def encode(self, images: np.ndarray, image_mask: np.ndarray) -> Encoded:
        """``(B, 1, H, W)`` float32, ``(B, H, W)`` bool -> :class:`Encoded`."""
        return Encoded(*self.encoder.run(None, {"image": images, "image_mask": image_mask}))

    def batch_size(self, memory: Encoded) -> int:
        return len(memory.memory)

    def start(self, memory: Encoded) -> _Steps:
        return _Steps(self.step, memory, self.cache_shape)

    def score(self, memory: Encoded, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        feed = {
            "tokens": inputs,
            "targets": targets,
            "memory": memory.memory,
            "memory_mask": memory.mask,
        }
        return self.scorer.run(None, feed)[0]

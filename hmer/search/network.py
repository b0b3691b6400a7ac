"""What the search needs of a network: the interface every backend implements.

The search (:mod:`hmer.search.beam`) keeps its bookkeeping (scores, histories, ended
hypotheses) in numpy on the host; a backend keeps the heavy tensors (the encoded images, the
decoder's key/value cache) wherever it runs them, and exchanges only token ids and
log-probabilities with the search, once per step.

Conventions shared by every backend:

- ``B`` images are encoded at once into an opaque ``memory``. Decoder rows ``N = B · G``:
  rows ``b·G … b·G + G - 1`` belong to image ``b`` (beams × directions); ``G`` may change from
  one step to the next (the search reorders and drops rows between steps).
- Log-probabilities are float32 natural logs over the whole vocabulary.
- Teacher-forced ``inputs`` start with the direction's start token; ``targets`` are what each
  input position should predict, ``pad`` where nothing is scored (:func:`teacher_forced`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hmer.data.vocab import Direction

__all__ = ["Direction", "Network", "Specials", "Steps", "teacher_forced"]


@dataclass(frozen=True)
class Specials:
    """The vocabulary's special ids. L2R starts with ``sos`` and ends with ``eos``, R2L the
    reverse; ``pad`` and a direction's start token are never emitted."""

    pad: int
    sos: int
    eos: int

    def start_end(self, direction: str) -> tuple[int, int]:
        """``(start, end)`` token ids of ``direction``."""
        if direction == "l2r":
            return self.sos, self.eos
        if direction == "r2l":
            return self.eos, self.sos
        raise ValueError(f"direction must be 'l2r' or 'r2l', got {direction!r}")


class Steps(Protocol):
    """Incremental decoding of the rows of one search, one token per row per call."""

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """``(N,)`` int64 newest token of each row -> ``(N, V)`` float32 log-probabilities of
        the next one. The first call feeds the start tokens."""
        ...

    def select(self, rows: np.ndarray, images: np.ndarray | None = None) -> None:
        """Row ``i`` continues old row ``rows[i]``; with ``images``, only those images (old
        indices, in order) remain, and ``rows`` lists the rows of exactly those images."""
        ...


class Network(Protocol):
    """An encoder-decoder as the search sees it (:mod:`hmer.search.torch_backend`,
    :mod:`hmer.search.onnx_backend`)."""

    specials: Specials
    vocab_size: int

    def encode(self, images: Any, image_mask: Any) -> Any:
        """``(B, 1, H, W)`` float ink 1 on 0 and ``(B, H, W)`` bool (True = padding), in the
        backend's array type -> the memory of the ``B`` images."""
        ...

    def batch_size(self, memory: Any) -> int:
        """``B``, the number of images in ``memory``."""
        ...

    def start(self, memory: Any) -> Steps:
        """Begin incremental decoding of ``memory``'s images (empty cache)."""
        ...

    def score(self, memory: Any, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Teacher-forced ``(N, T)`` int64 ``inputs`` / ``targets``, ``N = B · G`` ->
        ``(N,)`` float32 summed log-probability of the targets (``pad`` targets skipped)."""
        ...


def teacher_forced(
    sequences: list[np.ndarray], r2l: np.ndarray, specials: Specials, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decoder inputs and targets ``(N, width)`` int64 of ``N`` reading-order sequences, each
    read right to left where ``r2l`` ``(N,)`` is True (``pad`` after each; ``width`` defaults
    to the longest sequence + 1). A fixed ``width`` gives each row the same arithmetic whatever
    rows it is batched with, so a score does not depend on which others were scored with it.

    The layout is :func:`hmer.model.hmer_model.directional_sequences`', the one training
    uses (a test checks they agree): ``[start, *body]`` predicts ``[*body, end]``.
    """
    if width is None:
        width = max((len(s) for s in sequences), default=0) + 1
    inputs = np.full((len(sequences), width), specials.pad, np.int64)
    targets = np.full((len(sequences), width), specials.pad, np.int64)
    for n, (sequence, backward) in enumerate(zip(sequences, r2l, strict=True)):
        start, end = specials.start_end("r2l" if backward else "l2r")
        body = sequence[::-1] if backward else sequence
        inputs[n, 0], inputs[n, 1 : len(body) + 1] = start, body
        targets[n, : len(body)], targets[n, len(body)] = body, end
    return inputs, targets

"""The reading path both recognizers share: prepare, batch, pad, search, spell.

:class:`Reader` turns user inputs into :class:`Prediction` s with any
:class:`~hmer.search.network.Network`; :class:`hmer.runtime.recognize.Recognizer` (PyTorch)
and :class:`hmer.runtime.onnx.OnnxRecognizer` (onnxruntime) only say which network runs and
how a padded numpy batch reaches it. Images are decoded in pixel-capped batches of similar
sizes (``decode.batch_pixels``, ``decode.max_batch``), as evaluation does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hmer.data.batching import BucketBatchSampler
from hmer.data.latex import tokens_to_latex
from hmer.runtime.inputs import ImageInput, prepare_image
from hmer.search import beam_search

if TYPE_CHECKING:
    from hmer.config import DecodeConfig
    from hmer.data.inkml import RenderConfig
    from hmer.data.preprocess import PreprocessConfig
    from hmer.data.vocab import Vocab
    from hmer.search import Network

__all__ = ["Prediction", "Reader", "pad_images"]


@dataclass(frozen=True)
class Prediction:
    """One recognized formula.

    ``latex``: a LaTeX math string (no ``$``), braces balanced; ``tokens``: the canonical tokens it
    is made of; ``score``: the hypothesis' length-normalized log-probability (0 is certain,
    more negative is less sure; comparable between images, not a calibrated probability).
    """

    latex: str
    tokens: list[str]
    score: float


def pad_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(H, W)`` images (ink 255 on 0) -> float32 ``(B, 1, H, W)`` in [0, 1] (top-left,
    zero padding) and bool ``(B, H, W)`` True = padding, as :func:`hmer.data.batching.collate`."""
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    batch = np.zeros((len(images), 1, height, width), np.float32)
    mask = np.ones((len(images), height, width), bool)
    for i, image in enumerate(images):
        h, w = image.shape
        batch[i, 0, :h, :w] = image.astype(np.float32) / np.float32(255.0)
        mask[i, :h, :w] = False
    return batch, mask


class Reader:
    """Reads formulas with ``network``; subclasses set the attributes below.

    Attributes:
        network: what runs the encoder and decoder.
        vocab: the model's vocabulary.
        preprocess_config, render_config: how pictures are normalized and InkML ink drawn.
        decode: the search settings (maximum length, length penalty, bidirectional rescoring,
            batch caps); the beam width is given per call.
    """

    network: Network
    vocab: Vocab
    preprocess_config: PreprocessConfig
    render_config: RenderConfig
    decode: DecodeConfig

    def _inputs(self, images: np.ndarray, mask: np.ndarray) -> tuple[Any, Any]:
        """A padded numpy batch (:func:`pad_images`) in the network's array type."""
        return images, mask

    def _no_grad(self) -> contextlib.AbstractContextManager[Any]:
        """The context a search runs in (PyTorch: inference mode)."""
        return contextlib.nullcontext()

    def prepare(self, x: ImageInput) -> np.ndarray:
        """The model's input for ``x``: uint8 ``(H, W)``, ink 255 on 0 (:func:`prepare_image`)."""
        return prepare_image(x, self.preprocess_config, self.render_config)

    def predict(self, x: ImageInput, beam: int = 10) -> Prediction:
        """Read one formula; ``beam`` is the beam width (1 = greedy-like, faster)."""
        return self.predict_batch([x], beam=beam)[0]

    def predict_batch(self, xs: Sequence[ImageInput], beam: int = 10) -> list[Prediction]:
        """Read several formulas, in order, decoding padded batches of similar sizes (at most
        ``decode.batch_pixels`` padded pixels and ``decode.max_batch`` images each).

        Raises:
            DataError: an input that cannot be read, or shows no ink (naming it).
        """
        return self.predict_images([self.prepare(x) for x in xs], beam=beam)

    def predict_images(self, images: Sequence[np.ndarray], beam: int = 10) -> list[Prediction]:
        """:meth:`predict_batch` for images already through :meth:`prepare`."""
        if not images:
            return []
        sampler = BucketBatchSampler(
            [image.shape[:2] for image in images],
            max_pixels=self.decode.batch_pixels,
            max_batch=self.decode.max_batch,
            shuffle=False,
        )
        found: dict[int, Prediction] = {}
        with self._no_grad():
            for indices in sampler:
                memory = self.network.encode(
                    *self._inputs(*pad_images([images[i] for i in indices]))
                )
                hyps = beam_search(
                    self.network,
                    memory,
                    beam=beam,
                    max_len=self.decode.max_len,
                    length_penalty=self.decode.length_penalty,
                    bidirectional=self.decode.bidirectional,
                )
                for i, hyp in zip(indices, hyps, strict=True):
                    tokens = self.vocab.decode(hyp.tokens)
                    found[i] = Prediction(tokens_to_latex(tokens), tokens, hyp.score)
        return [found[i] for i in range(len(images))]

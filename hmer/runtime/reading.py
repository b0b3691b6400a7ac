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

from hmer.data.batching import BucketBatchSampler, pad_images
from hmer.data.latex import tokens_to_latex
from hmer.errors import DataError
from hmer.runtime.inputs import ImageInput, prepare_image
from hmer.search import Hypothesis, nbest

if TYPE_CHECKING:
    from hmer.config import DecodeConfig
    from hmer.data.inkml import RenderConfig
    from hmer.data.preprocess import PreprocessConfig
    from hmer.data.vocab import Vocab
    from hmer.search import Network

__all__ = ["Prediction", "Reader"]


@dataclass(frozen=True)
class Prediction:
    """One recognized formula.

    ``latex``: compact LaTeX math (no ``$``) to paste, ``x^{2}+y``, braces balanced
    (:func:`hmer.data.latex.tokens_to_latex`); ``tokens``: the tokens the model wrote, in the
    canonical convention (``" ".join(tokens)`` is the spaced form, ``x ^ { 2 } + y``, that
    captions and evaluation files hold); ``score``: the hypothesis' length-normalized
    log-probability (0 is certain, more negative is less sure; comparable between images, not a
    calibrated probability).
    """

    latex: str
    tokens: list[str]
    score: float


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

    def predict_batch(
        self, xs: Sequence[ImageInput], beam: int = 10, return_errors: bool = False
    ) -> list[Prediction] | list[Prediction | DataError]:
        """Read several formulas, in order, decoding padded batches of similar sizes (at most
        ``decode.batch_pixels`` padded pixels and ``decode.max_batch`` images each).

        ``return_errors``: an input that cannot be read takes its place in the result as the
        :class:`~hmer.errors.DataError` that names it, and the others are still read (a batch of
        user files is never lost to one bad file); without it, that error is raised.

        Raises:
            DataError: an input that cannot be read, or shows no ink (naming it), unless
                ``return_errors``.
        """
        prepared: list[np.ndarray | DataError] = []
        for x in xs:
            try:
                prepared.append(self.prepare(x))
            except DataError as error:
                if not return_errors:
                    raise
                prepared.append(error)
        readings = iter(
            self.predict_images([p for p in prepared if isinstance(p, np.ndarray)], beam=beam)
        )
        return [p if isinstance(p, DataError) else next(readings) for p in prepared]

    def predict_images(self, images: Sequence[np.ndarray], beam: int = 10) -> list[Prediction]:
        """:meth:`predict_batch` for images already through :meth:`prepare`."""
        return [readings[0] for readings in self._search(images, beam, count=1)]

    def predict_alternatives(
        self, images: Sequence[np.ndarray], beam: int = 10, count: int = 5
    ) -> list[list[Prediction]]:
        """The ``count`` best distinct readings of each image (prepared), best first: the
        n-best of the same search (:func:`hmer.search.nbest`), so the first is what
        :meth:`predict_images` returns. Fewer when the search ended fewer hypotheses."""
        return self._search(images, beam, count)

    def _search(
        self, images: Sequence[np.ndarray], beam: int, count: int
    ) -> list[list[Prediction]]:
        """Up to ``count`` readings per image, in order. An image whose every hypothesis
        failed (a network that returns NaN) gets one empty reading scoring -inf."""
        if not images:
            return []
        sampler = BucketBatchSampler(
            [image.shape[:2] for image in images],
            max_pixels=self.decode.batch_pixels,
            max_batch=self.decode.max_batch,
            shuffle=False,
        )
        found: dict[int, list[Prediction]] = {}
        with self._no_grad():
            for indices in sampler:
                memory = self.network.encode(
                    *self._inputs(*pad_images([images[i] for i in indices]))
                )
                ranked = nbest(
                    self.network,
                    memory,
                    beam=beam,
                    max_len=self.decode.max_len,
                    length_penalty=self.decode.length_penalty,
                    bidirectional=self.decode.bidirectional,
                    best_only=count == 1,  # the best alone: less rescoring, same first
                )
                for i, hyps in zip(indices, ranked, strict=True):
                    found[i] = [self._reading(h) for h in hyps[:count]]
        return [found[i] for i in range(len(images))]

    def _reading(self, hyp: Hypothesis) -> Prediction:
        tokens = self.vocab.decode(hyp.tokens)
        return Prediction(tokens_to_latex(tokens), tokens, hyp.score)

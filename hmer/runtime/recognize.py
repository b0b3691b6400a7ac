"""Recognition with PyTorch: any picture of one handwritten formula -> LaTeX, in one call.

    from hmer import Recognizer

    recognizer = Recognizer.from_pretrained()          # the shipped model (hmer/assets/model.pt)
    prediction = recognizer.predict("formula.jpg")    # or a PIL image, numpy array, tensor
    print(prediction.latex, prediction.score)

Every input goes through the one image path training used (:func:`hmer.data.preprocess
.preprocess`, with the settings stored in the checkpoint): grayscale, polarity (dark ink on light
paper or the reverse), uneven lighting, cropping, glyph scale and size limits. The tokens come from
BTTR's bidirectional beam search (:func:`hmer.search.beam_search`) run by
:class:`hmer.search.torch_backend.TorchNetwork`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hmer.checkpoint import load_model
from hmer.data.preprocess import to_tensor
from hmer.model.attention import attention_maps
from hmer.paths import shipped_model
from hmer.runtime.device import default_device
from hmer.runtime.inputs import ImageInput
from hmer.runtime.reading import Prediction, Reader
from hmer.search.torch_backend import TorchNetwork

if TYPE_CHECKING:
    from hmer.config import Config
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

__all__ = ["Attention", "Recognizer"]


@dataclass(frozen=True)
class Attention:
    """Where the decoder looked: ``image`` is the model's input (uint8 ``(H, W)``, ink 255 on 0),
    ``maps`` float32 ``(T, h, w)`` one map per token of ``tokens`` on the encoder's feature grid
    (each sums to 1), covering the image."""

    image: np.ndarray
    tokens: list[str]
    maps: np.ndarray


class Recognizer(Reader):
    """A trained model with its vocabulary and settings, ready to read formulas.

    Build one with :meth:`from_pretrained` or :meth:`from_checkpoint`. Decoding follows the
    checkpoint's ``decode`` settings (maximum length, length penalty, bidirectional rescoring,
    batch caps) with the beam width given per call (:class:`hmer.runtime.reading.Reader`).

    Args:
        model: an :class:`~hmer.model.HmerModel` (put in eval mode here, and channels-last on
            a CPU).
        vocab: its vocabulary.
        config: the run's config (preprocessing, rendering and decoding settings are used).
        device: where the model is and batches go.
    """

    def __init__(
        self, model: HmerModel, vocab: Vocab, config: Config, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # oneDNN convolutions: predict 1.05-1.12x faster (RESULTS)
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = TorchNetwork(self.model)
        self.vocab = vocab
        self.config = config
        self.preprocess_config = config.preprocess
        self.render_config = config.render
        self.decode = config.decode

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None
    ) -> Recognizer:
        """A checkpoint of the training engine (``best.pt``, ``last.pt``) or exported fp16
        weights (``hmer export-weights``); ``device`` defaults to CUDA when available.

        Raises:
            CheckpointError: missing, truncated or foreign file (the message names it).
        """
        device = device or default_device()
        model, vocab, config = load_model(path, device)
        return cls(model, vocab, config, device)

    @classmethod
    def from_pretrained(cls, device: str | torch.device | None = None) -> Recognizer:
        """The model shipped with hmer (:func:`hmer.paths.default_model_path`), read offline.

        Raises:
            HmerError: this copy of hmer has no shipped model (it says how to get one).
        """
        return cls.from_checkpoint(shipped_model(), device)

    def _inputs(self, images: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(images).to(self.device), torch.from_numpy(mask).to(self.device)

    def _no_grad(self) -> Any:
        return torch.inference_mode()

    def attention(self, x: ImageInput, prediction: Prediction | None = None) -> Attention:
        """Where the decoder looked for each token of ``prediction`` (predicted when None):
        teacher-forced left-to-right pass, last layer's cross-attention averaged over heads."""
        image = self.prepare(x)
        if prediction is None:
            prediction = self.predict_images([image])[0]
        ids = self.vocab.encode(prediction.tokens)
        with torch.inference_mode():
            maps = attention_maps(self.model, to_tensor(image).to(self.device), None, ids)
        return Attention(image, list(prediction.tokens), maps.cpu().numpy())

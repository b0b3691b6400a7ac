"""Recognition for users: any picture of one handwritten formula -> LaTeX, in one call.

    from hmer import Recognizer

    recognizer = Recognizer.from_pretrained()          # the shipped model (hmer/assets/model.pt)
    prediction = recognizer.predict("formula.jpg")    # or a PIL image, numpy array, tensor
    print(prediction.latex, prediction.score)

Every input goes through the one image path training used (:func:`hmer.data.preprocess
.preprocess`, with the settings stored in the checkpoint): grayscale, polarity (dark ink on light
paper or the reverse), uneven lighting, cropping, glyph scale and size limits. The tokens come from
BTTR's bidirectional beam search (:func:`hmer.decode.beam_search`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hmer.errors import DataError, HmerError

if TYPE_CHECKING:
    import torch

    from hmer.config import Config
    from hmer.data.inkml import RenderConfig
    from hmer.data.preprocess import PreprocessConfig
    from hmer.data.vocab import Vocab
    from hmer.model.hmer_model import HmerModel

__all__ = [
    "Attention",
    "ImageInput",
    "Prediction",
    "Recognizer",
    "default_device",
    "default_model_path",
    "input_name",
    "prepare_image",
    "read_input",
    "shipped_model",
]

#: Anything :meth:`Recognizer.predict` reads: a file path (png, jpg, bmp, tiff, webp or InkML),
#: a PIL image, a numpy array ``(H, W)`` / ``(H, W, 3|4)``, a tensor ``(H, W)`` / ``(C, H, W)``,
#: or online ink: a list of strokes, each ``(N, 2)`` points ``(x, y)`` with y pointing down (any
#: unit), or a :class:`hmer.data.inkml.Ink`. Ink is drawn by the renderer of InkML training data.
ImageInput = Any  # str | Path | np.ndarray | PIL.Image.Image | torch.Tensor | list | Ink


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


@dataclass(frozen=True)
class Attention:
    """Where the decoder looked: ``image`` is the model's input (uint8 ``(H, W)``, ink 255 on 0),
    ``maps`` float32 ``(T, h, w)`` one map per token of ``tokens`` on the encoder's feature grid
    (each sums to 1), covering the image."""

    image: np.ndarray
    tokens: list[str]
    maps: np.ndarray


def default_model_path() -> Path:
    """Where the shipped model lives: ``hmer/assets/model.pt`` inside the package."""
    return Path(__file__).resolve().parent / "assets" / "model.pt"


def shipped_model() -> Path:
    """:func:`default_model_path`, checked to exist.

    Raises:
        HmerError: this copy of hmer has no shipped model (it says how to get one).
    """
    path = default_model_path()
    if not path.is_file():
        raise HmerError(
            f"no shipped model at {path}: this copy of hmer has no default weights. "
            "Train a model (`hmer train configs/bttr.yaml --out runs/bttr`), export its "
            "weights (`hmer export-weights runs/bttr/best.pt model.pt`) and load them with "
            "Recognizer.from_checkpoint('model.pt') or `hmer predict --checkpoint model.pt`; "
            f"or copy such a file to {path}."
        )
    return path


def input_name(x: ImageInput, index: int = 0) -> str:
    """A name for messages and outputs: the path for files, ``<kind #index>`` otherwise."""
    if isinstance(x, (str, Path)):
        return str(x)
    return f"<{type(x).__name__} #{index}>"


def _from_pil(image: Any) -> np.ndarray:
    """PIL image -> numpy array that :func:`hmer.data.preprocess.to_grayscale` accepts."""
    if image.mode in ("L", "RGB", "RGBA", "I;16", "F"):
        return np.asarray(image)
    if image.mode == "1":
        return np.asarray(image.convert("L"))
    transparent = "A" in image.getbands() or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if transparent else "RGB"))


def _from_tensor(tensor: torch.Tensor) -> np.ndarray:
    """``(H, W)``, ``(1|3|4, H, W)`` (torchvision's layout) or ``(1, 1, H, W)`` -> numpy.

    Float tensors are read as ``[0, 1]`` when their maximum is <= 1 (else ``[0, 255]``) and
    rounded to uint8 here, so that a tensor made from an 8-bit image gives back that image.
    """
    array = tensor.detach().cpu()
    while array.dim() > 3 and array.shape[0] == 1:
        array = array[0]
    if array.dim() == 3 and array.shape[0] in (1, 3, 4):
        array = array.permute(1, 2, 0)
    array = array.numpy()
    if np.issubdtype(array.dtype, np.floating):
        array = np.nan_to_num(array.astype(np.float32))
        scale = 255.0 if array.size and array.max() <= 1.0 else 1.0
        array = np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    return array


def read_input(x: ImageInput, render: RenderConfig | None = None) -> np.ndarray:
    """Any :data:`ImageInput` -> the picture as an array, before preprocessing.

    Paths are read by :func:`hmer.data.preprocess.load_image` (InkML rendered with ``render``).

    Raises:
        DataError: unreadable file or unsupported input (the message names it).
    """
    from hmer.data.inkml import Ink, RenderConfig, render_traces
    from hmer.data.preprocess import load_image

    if isinstance(x, (str, Path)):
        return load_image(x, render)
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (Ink, list, tuple)):
        return render_traces(_strokes(x), render or RenderConfig())
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return _from_tensor(x)
    if type(x).__module__.startswith("PIL."):
        return _from_pil(x)
    raise DataError(
        f"cannot read a {type(x).__name__}: give a file path, PIL image, numpy array, tensor "
        "or strokes"
    )


def _strokes(ink: Any) -> list[np.ndarray]:
    """An :class:`~hmer.data.inkml.Ink` or a list of strokes -> ``(N, 2)`` float64 arrays."""
    strokes = getattr(ink, "traces", ink)
    traces = []
    for i, stroke in enumerate(strokes):
        try:
            trace = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError):
            trace = None
        if trace is None or trace.ndim != 2 or trace.shape[1] != 2 or not len(trace):
            raise DataError(f"stroke {i}: expected (N, 2) points (x, y), N >= 1")
        if not np.isfinite(trace).all():
            raise DataError(f"stroke {i}: points must be finite numbers")
        traces.append(trace)
    if not traces:
        raise DataError("no strokes: nothing was written")
    return traces


def prepare_image(
    x: ImageInput, preprocess: PreprocessConfig, render: RenderConfig | None = None
) -> np.ndarray:
    """:func:`read_input` then :func:`hmer.data.preprocess.preprocess`: the model's input image,
    uint8 ``(H, W)``, ink 255 on 0. DataError messages name the file when ``x`` is a path."""
    from hmer.data.preprocess import preprocess as run_preprocess

    try:
        return run_preprocess(read_input(x, render), preprocess)
    except DataError as error:
        if error.source is None and isinstance(x, (str, Path)):
            raise DataError(str(error), x) from None
        raise


def default_device() -> str:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"``.

    Without a GPU driver (no NVIDIA or ROCm device node, no ``nvidia-smi``) the answer is
    ``"cpu"`` without importing torch, which takes seconds: ``hmer predict`` on a laptop then
    runs on onnxruntime alone.
    """
    import os
    import shutil

    if not any(map(os.path.exists, ("/dev/nvidiactl", "/dev/kfd"))) and not shutil.which(
        "nvidia-smi"
    ):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Recognizer:
    """A trained model with its vocabulary and settings, ready to read formulas.

    Build one with :meth:`from_pretrained` or :meth:`from_checkpoint`. Decoding follows the
    checkpoint's ``decode`` settings (maximum length, length penalty, bidirectional rescoring)
    with the beam width given per call.

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
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # oneDNN convolutions: predict 1.05-1.12x faster (RESULTS)
            self.model = self.model.to(memory_format=torch.channels_last)
        self.vocab = vocab
        self.config = config

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None
    ) -> Recognizer:
        """A checkpoint of the training engine (``best.pt``, ``last.pt``) or exported fp16
        weights (``hmer export-weights``); ``device`` defaults to CUDA when available.

        Raises:
            CheckpointError: missing, truncated or foreign file (the message names it).
        """
        from hmer.engine.checkpoint import load_model

        device = device or default_device()
        model, vocab, config = load_model(path, device)
        return cls(model, vocab, config, device)

    @classmethod
    def from_pretrained(cls, device: str | torch.device | None = None) -> Recognizer:
        """The model shipped with hmer (:func:`default_model_path`), read offline.

        Raises:
            HmerError: this copy of hmer has no shipped model (it says how to get one).
        """
        return cls.from_checkpoint(shipped_model(), device)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """How pictures are normalized for this model (the run's ``preprocess`` settings)."""
        return self.config.preprocess

    @property
    def render_config(self) -> RenderConfig:
        """How InkML ink is drawn for this model (the run's ``render`` settings)."""
        return self.config.render

    def prepare(self, x: ImageInput) -> np.ndarray:
        """The model's input for ``x``: uint8 ``(H, W)``, ink 255 on 0 (:func:`prepare_image`)."""
        return prepare_image(x, self.preprocess_config, self.render_config)

    def predict(self, x: ImageInput, beam: int = 10) -> Prediction:
        """Read one formula; ``beam`` is the beam width (1 = greedy-like, faster)."""
        return self.predict_batch([x], beam=beam)[0]

    def predict_batch(self, xs: Sequence[ImageInput], beam: int = 10) -> list[Prediction]:
        """Read several formulas, in order, decoding padded batches of similar sizes on the
        device (at most ``decode.batch_pixels`` padded pixels and ``decode.max_batch`` images each).

        Raises:
            DataError: an input that cannot be read, or shows no ink (naming it).
        """
        return self.predict_images([self.prepare(x) for x in xs], beam=beam)

    def predict_images(self, images: Sequence[np.ndarray], beam: int = 10) -> list[Prediction]:
        """:meth:`predict_batch` for images already through :meth:`prepare`."""
        import torch

        from hmer.data.batching import BucketBatchSampler, collate
        from hmer.data.latex import tokens_to_latex
        from hmer.data.preprocess import to_tensor
        from hmer.decode import beam_search

        if not images:
            return []
        decode = self.config.decode
        sampler = BucketBatchSampler(
            [image.shape[:2] for image in images],
            max_pixels=decode.batch_pixels,
            max_batch=decode.max_batch,
            shuffle=False,
        )
        found: dict[int, Prediction] = {}
        with torch.inference_mode():
            for indices in sampler:
                batch = collate(
                    [(to_tensor(images[i]), [], str(i)) for i in indices], self.vocab.pad_id
                ).to(self.device)
                hyps = beam_search(
                    self.model,
                    batch.images,
                    batch.image_mask,
                    beam=beam,
                    max_len=decode.max_len,
                    length_penalty=decode.length_penalty,
                    bidirectional=decode.bidirectional,
                )
                for i, hyp in zip(indices, hyps, strict=True):
                    tokens = self.vocab.decode(hyp.tokens)
                    found[i] = Prediction(tokens_to_latex(tokens), tokens, float(hyp.score))
        return [found[i] for i in range(len(images))]

    def attention(self, x: ImageInput, prediction: Prediction | None = None) -> Attention:
        """Where the decoder looked for each token of ``prediction`` (predicted when None):
        teacher-forced left-to-right pass, last layer's cross-attention averaged over heads."""
        import torch

        from hmer.data.preprocess import to_tensor
        from hmer.decode import attention_maps

        image = self.prepare(x)
        if prediction is None:
            prediction = self.predict_images([image])[0]
        ids = self.vocab.encode(prediction.tokens)
        with torch.inference_mode():
            maps = attention_maps(self.model, to_tensor(image).to(self.device), None, ids)
        return Attention(image, list(prediction.tokens), maps.cpu().numpy())

"""Everything a user can hand hmer to read, turned into the model's input image.

One path reads all user input (files, arrays, PIL images, tensors, strokes); it imports neither
torch nor onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from hmer.data.inkml import Ink, RenderConfig, load_image, render_traces
from hmer.data.preprocess import PreprocessConfig, preprocess
from hmer.errors import DataError

__all__ = ["ImageInput", "input_name", "prepare_image", "read_input"]

#: Anything a recognizer reads: a file path (png, jpg, bmp, tiff, webp or InkML), a PIL image,
#: a numpy array ``(H, W)`` / ``(H, W, 3|4)``, a tensor ``(H, W)`` / ``(C, H, W)``, or online
#: ink: a list of strokes, each ``(N, 2)`` points ``(x, y)`` with y pointing down (any unit), or
#: a :class:`hmer.data.inkml.Ink`. Ink is drawn by the renderer of InkML training data.
ImageInput = Any  # str | Path | np.ndarray | PIL.Image.Image | torch.Tensor | list | Ink


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


def _from_tensor(tensor: Any) -> np.ndarray:
    """A torch tensor ``(H, W)``, ``(1|3|4, H, W)`` (torchvision's layout) or ``(1, 1, H, W)``
    -> numpy.

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


def read_input(x: ImageInput, render: RenderConfig | None = None) -> np.ndarray:
    """Any :data:`ImageInput` -> the picture as an array, before preprocessing.

    Paths are read by :func:`hmer.data.inkml.load_image` (InkML rendered with ``render``).
    A tensor is recognized without importing torch (only a caller that has torch has one).

    Raises:
        DataError: unreadable file or unsupported input (the message names it).
    """
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


def prepare_image(
    x: ImageInput, settings: PreprocessConfig, render: RenderConfig | None = None
) -> np.ndarray:
    """:func:`read_input` then :func:`hmer.data.preprocess.preprocess`: the model's input image,
    uint8 ``(H, W)``, ink 255 on 0. DataError messages name the file when ``x`` is a path."""
    try:
        return preprocess(read_input(x, render), settings)
    except DataError as error:
        if error.source is None and isinstance(x, (str, Path)):
            raise DataError(str(error), x) from None
        raise

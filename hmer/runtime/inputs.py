"""Everything a user can hand hmer to read, turned into the model's input image.

One path reads all user input (files, arrays, PIL images, tensors, strokes); it imports neither
torch nor onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from hmer.data.inkml import (
    MAX_IMAGE_BYTES,
    Ink,
    RenderConfig,
    coordinate_problem,
    load_image,
    read_stream,
    render_traces,
)
from hmer.data.preprocess import PreprocessConfig, decode_image, pil_to_array, preprocess
from hmer.errors import DataError

__all__ = ["ImageInput", "input_name", "prepare_image", "read_encoded", "read_input"]

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


def _from_tensor(tensor: Any) -> np.ndarray:
    """A torch tensor ``(H, W)``, ``(1|3|4, H, W)`` (torchvision's layout) or ``(1, 1, H, W)``
    -> numpy ``(H, W[, C])``, its values as they are: float tensors are read in their real
    range like any float picture (``[0, 1]`` or ``[0, 255]``, :func:`to_uint8`), so that a
    tensor made from an 8-bit image gives back that image."""
    try:
        array = tensor.detach().cpu()
        if array.is_floating_point():
            array = array.float()  # numpy has no bfloat16
        while array.dim() > 3 and array.shape[0] == 1:
            array = array[0]
        if array.dim() == 3 and array.shape[0] in (1, 3, 4):
            array = array.permute(1, 2, 0)
        return array.numpy()
    except (RuntimeError, TypeError) as error:  # sparse, meta or complex tensors
        raise DataError(f"cannot read this tensor ({error})") from None


def _strokes(ink: Any) -> list[np.ndarray]:
    """An :class:`~hmer.data.inkml.Ink` or a list of strokes -> ``(N, 2)`` float64 arrays."""
    strokes = getattr(ink, "traces", ink)
    traces = []
    for i, stroke in enumerate(strokes):
        try:
            trace = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            trace = None
        if trace is None or trace.ndim != 2 or trace.shape[1] != 2 or not len(trace):
            raise DataError(f"stroke {i}: expected (N, 2) points (x, y), N >= 1")
        problem = coordinate_problem(trace)
        if problem is not None:
            raise DataError(f"stroke {i}: {problem}")
        traces.append(trace)
    if not traces:
        raise DataError("no strokes: nothing was written")
    return traces


def read_encoded(stream: BinaryIO, name: str = "<stdin>") -> np.ndarray:
    """One encoded picture (png, jpg, ...) read from a binary stream, e.g. standard input ->
    the picture as stored (:func:`hmer.data.preprocess.decode_image`). At most
    :data:`~hmer.data.inkml.MAX_IMAGE_BYTES` are read; DataError naming ``name``."""
    return decode_image(read_stream(stream, MAX_IMAGE_BYTES, name), name)


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
        return pil_to_array(x)
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

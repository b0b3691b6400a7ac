"""hmer: handwritten mathematical expressions to LaTeX (BTTR-style, PyTorch).

    from hmer import Recognizer

    recognizer = Recognizer.from_pretrained()
    print(recognizer.predict("formula.png").latex)

The names below are imported on first use, so ``import hmer`` stays instant (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_EXPORTS = {
    "Recognizer": "hmer.runtime.recognize",
    "Prediction": "hmer.runtime.reading",
    "OnnxRecognizer": "hmer.runtime.onnx",
    "export_onnx": "hmer.runtime.export",
    "HmerError": "hmer.errors",
    "sincos_1d": "hmer.model.pos_enc",
    "sincos_2d": "hmer.model.pos_enc",
    "rotary_2d": "hmer.model.pos_enc",
    "apply_rotary": "hmer.model.pos_enc",
    "PositionEncoding1D": "hmer.model.pos_enc",
    "PositionEncoding2D": "hmer.model.pos_enc",
    "Rotary2D": "hmer.model.pos_enc",
}

__all__ = [
    "HmerError",
    "OnnxRecognizer",
    "PositionEncoding1D",
    "PositionEncoding2D",
    "Prediction",
    "Recognizer",
    "Rotary2D",
    "apply_rotary",
    "export_onnx",
    "rotary_2d",
    "sincos_1d",
    "sincos_2d",
]

if TYPE_CHECKING:
    from hmer.errors import HmerError
    from hmer.model.pos_enc import (
        PositionEncoding1D,
        PositionEncoding2D,
        Rotary2D,
        apply_rotary,
        rotary_2d,
        sincos_1d,
        sincos_2d,
    )
    from hmer.runtime.export import export_onnx
    from hmer.runtime.onnx import OnnxRecognizer
    from hmer.runtime.reading import Prediction
    from hmer.runtime.recognize import Recognizer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hmer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

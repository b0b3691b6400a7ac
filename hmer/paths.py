"""Where external data lives. Third-party data is never shipped; code finds it here."""

from __future__ import annotations

import os
from pathlib import Path

from hmer.errors import HmerError

#: Environment variable naming the CROHME folder (layout: see data/README.md).
CROHME_ENV = "HMER_CROHME"
#: Environment variable naming hmer's cache folder (files it can always make again).
CACHE_ENV = "HMER_CACHE"


def crohme_root() -> Path | None:
    """The CROHME folder: ``$HMER_CROHME``, else ``../shared/crohme`` beside the repository.

    Returns None when neither exists, so callers (and tests) can say clearly what is missing.
    """
    env = os.environ.get(CROHME_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "crohme")
    candidates.append(Path.cwd().parent / "shared" / "crohme")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def cache_root() -> Path:
    """hmer's cache folder (made on demand): ``$HMER_CACHE``, else ``$XDG_CACHE_HOME/hmer``,
    else ``~/.cache/hmer``. It only holds what hmer can remake, such as ONNX exports."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmer"


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

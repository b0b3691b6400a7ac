"""The ONNX export on disk: its files, its metadata, and the cache of exports (no torch).

An export folder (written by :func:`hmer.runtime.export.export_onnx`) holds ``encoder.onnx``,
``decoder_step.onnx``, ``decoder_score.onnx`` and ``model.json`` (``format``, ``version``, the
vocabulary, the run's config, the decoder's sizes and the special ids). Exports of checkpoint
files live in ``cache_root()/onnx/<sha256 of the file>-v<VERSION>``
(:func:`hmer.paths.cache_root`), so a file is exported once and any later use of the same bytes
finds it without importing torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from hmer.errors import CheckpointError
from hmer.paths import cache_root

__all__ = [
    "CACHED_EXPORTS",
    "FILES",
    "FORMAT",
    "VERSION",
    "cache_folder",
    "is_cached",
    "prune",
    "read_meta",
]

FORMAT = "hmer-onnx"
VERSION = 1
#: What an export folder holds, by role.
FILES = {
    "encoder": "encoder.onnx",
    "step": "decoder_step.onnx",
    "score": "decoder_score.onnx",
    "meta": "model.json",
}
#: Exports the cache keeps (the most recently used; ~22 MB each at BTTR size).
CACHED_EXPORTS = 8


def read_meta(directory: Path) -> dict[str, Any]:
    """An export folder's ``model.json``, checked to be this format and version.

    Raises:
        CheckpointError: unreadable, foreign or from another export version (naming the file).
    """
    path = directory / FILES["meta"]
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read the export's metadata: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hmer ONNX export (format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: export version {meta.get('version')!r}, this code reads {VERSION}"
        )
    return meta


def cache_folder(checkpoint: str | Path) -> Path:
    """Where the export of the file ``checkpoint`` lives in the cache (made or not).

    Raises:
        CheckpointError: the file cannot be read (naming it).
    """
    path = Path(checkpoint)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {error}") from error
    return cache_root() / "onnx" / f"{digest.hexdigest()[:32]}-v{VERSION}"


def is_cached(folder: Path) -> bool:
    """Whether :func:`cache_folder`'s ``folder`` holds a finished export (then marked recently
    used)."""
    if not (folder / FILES["meta"]).is_file():
        return False
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(folder)  # recently used: kept by prune
    return True


def prune(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` most recently used exports in ``folder``, and temporary
    folders that a killed export left there over an hour ago."""

    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # deleted meanwhile by another process
            return 0.0

    entries = [p for p in folder.iterdir() if p.is_dir()]
    exports = sorted((p for p in entries if not p.name.startswith(".")), key=used, reverse=True)
    stale = [p for p in entries if p.name.startswith(".") and used(p) < time.time() - 3600]
    for path in exports[keep:] + stale:
        shutil.rmtree(path, ignore_errors=True)

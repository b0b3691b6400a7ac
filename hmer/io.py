"""THE atomic file writer: every file hmer writes goes through here.

Convention: the new content is written to a temp file beside the target (same folder, so the same
filesystem), flushed, fsync'd and renamed over the target; the folder is then fsync'd where the OS
allows it. A reader sees either the old file or the whole new one, never a partial one, and a
crash or an exception leaves no temp file behind. Missing parent folders are created. New files
get the usual ``0o666 & ~umask`` permissions (what ``open`` would give them).

This module is a leaf: it imports only the standard library and :mod:`hmer.errors`, so that any
module (the config, the data readers, the checkpoint format) can use it without a cycle.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hmer.errors import DataError

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; when the ``with`` body succeeds, replace ``path`` by it.

    ``mode`` is a write mode for :func:`os.fdopen` (``"wb"``, ``"w"``, ...). An exception in the
    body (or while writing) leaves any previous ``path`` untouched and propagates unchanged: the
    body is the caller's code, so its exceptions are the caller's to describe.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _umask() -> int:
    # The only way to read the umask is to set it; put it straight back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``.

    Raises:
        DataError: the file cannot be written (the message names it and the OS reason), so that
            the command line reports it like any other bad path.
    """
    try:
        with atomic_open(path, "wb") as handle:
            handle.write(data)
    except OSError as error:
        raise DataError(f"cannot write ({error.strerror or error})", path) from error
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``. Errors as
    :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))

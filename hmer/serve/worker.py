"""The recognizer behind one thread: every request's reading runs there, one after the other.

A model is not safe to share between threads (PyTorch modules, onnxruntime sessions and the
search's buffers are used in place), and one reading at a time uses the cores best anyway.
Requests wait for the thread without holding one of their own (:meth:`ModelWorker.read` is a
coroutine), so many waiting requests cost only memory.
"""

from __future__ import annotations

import asyncio
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmer.errors import DataError
from hmer.runtime.reading import Prediction

__all__ = ["UPLOAD_SUFFIXES", "ModelWorker", "Upload"]

#: File name endings of uploads that keep their ending: the picture formats hmer reads and
#: InkML (read as ink). Anything else is read by its content as a picture.
UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".inkml")


class ModelWorker:
    """Reads formulas with ``recognizer`` (a :class:`hmer.runtime.recognize.Recognizer` or
    :class:`hmer.runtime.onnx.OnnxRecognizer`) on a single thread of its own."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self._thread: ThreadPoolExecutor | None = None  # started by the first reading

    @property
    def vocab_size(self) -> int:
        return int(self.recognizer.network.vocab_size)

    async def read(self, source: Any, beam: int, count: int) -> list[Prediction]:
        """Up to ``count`` readings of ``source`` (strokes or an :class:`Upload`), best
        first, decoded with a beam of ``beam``.

        Raises:
            DataError: the input cannot be read or shows no ink (the message names it).
        """
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hmer-model")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._read, source, beam, count)

    def _read(self, source: Any, beam: int, count: int) -> list[Prediction]:
        if isinstance(source, Upload):
            return self._read_upload(source, beam, count)
        image = self.recognizer.prepare(source)  # strokes drawn as InkML training ink is
        return self.recognizer.predict_alternatives([image], beam=beam, count=count)[0]

    def _read_upload(self, upload: Upload, beam: int, count: int) -> list[Prediction]:
        """An uploaded file is read from a file, as ``hmer predict`` reads one: through the
        one reader of user input (:mod:`hmer.runtime.inputs`), its limits included. Errors
        name the upload, never the temporary file."""
        with tempfile.TemporaryDirectory(prefix="hmer-serve-") as folder:
            path = Path(folder) / f"upload{upload.suffix}"
            path.write_bytes(upload.data)
            try:
                image = self.recognizer.prepare(path)
            except DataError as error:
                raise DataError(str(error).replace(str(path), upload.name)) from None
        return self.recognizer.predict_alternatives([image], beam=beam, count=count)[0]

    def close(self) -> None:
        """Stop the thread once its current reading is done; waiting ones are dropped. A later
        reading starts a new one (an app can be served again)."""
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
            self._thread = None


@dataclass(frozen=True)
class Upload:
    """An uploaded file: its bytes, and its name as the client gave it (for messages only: the
    file is written under a name of hmer's own, keeping only a known ending)."""

    data: bytes
    name: str

    @property
    def suffix(self) -> str:
        ending = Path(self.name).suffix.lower()
        return ending if ending in UPLOAD_SUFFIXES else ""

"""Stopping a run cleanly on SIGTERM / SIGINT (what a scheduler or Ctrl-C sends)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class StopSignals:
    """SIGTERM / SIGINT set a flag; the loop saves ``last.pt`` and returns at the next step.

    A second SIGINT raises KeyboardInterrupt at once (an impatient Ctrl-C still works).
    Installed only in the main thread (where Python allows handlers).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(128 + SIGTERM)`` (the exit status it gives
    anyway) instead of ending the process where it stands: ``finally`` blocks and the atomic
    writer's cleanup run, so a save that SIGTERM cuts short leaves no temp file behind. SIGINT
    already raises KeyboardInterrupt. :class:`StopSignals` inside the block takes precedence
    there. Main thread only (elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

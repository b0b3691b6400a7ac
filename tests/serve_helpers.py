"""Helpers of the ``hmer serve`` tests: what a page sends, and a real server on a free port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from hmer.serve import LocalServer


def page_strokes(tokens: list[str]) -> list[list[list[float]]]:
    """``tokens`` written by the synthetic generator's first hand (the hand of the fitted
    model's training picture of them, see ``helpers.synthetic_renders``), as the page sends
    strokes: lists of [x, y]."""
    pytest.importorskip("HersheyFonts", reason="synthetic handwriting needs hershey-fonts")
    from hmer.data.synth import draw

    drawing = draw(tokens, np.random.default_rng(0))
    return [trace.tolist() for trace in drawing.traces]


def png(image: np.ndarray) -> bytes:
    """``image`` (uint8) encoded as PNG, as a browser uploads a picture."""
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@contextlib.contextmanager
def running(app: Any, **options: Any) -> Iterator[LocalServer]:
    """``app`` served by :class:`hmer.serve.LocalServer` on 127.0.0.1 and a free port, in a
    thread, until the block ends (``options``: LocalServer's keywords)."""
    server = LocalServer(app, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=30)

"""A local web page to write a formula with a mouse, pen or finger and read it as LaTeX.

    hmer serve [--checkpoint CKPT] [--port 8000]      # then open http://127.0.0.1:8000

``GET /`` is the page (``hmer/assets/draw.html``). It posts the strokes to ``POST /predict`` as
JSON, ``{"strokes": [[[x, y], ...], ...], "beam": 10}``: one list of points per pen stroke, in
page pixels, y pointing down (as InkML). The strokes are drawn by the CROHME ink renderer, the one
that draws every InkML training sample, then prepared and decoded like any other input, so ink
from the page reaches the model as training ink did. The answer is ``{"latex", "tokens", "score",
"svg", "note"}`` (``svg``: the LaTeX rendered by matplotlib mathtext, null when mathtext cannot;
``note``: a sentence when the score is low for this model, as its card measured, else null) or,
with status 400 / 413, ``{"error": message}`` naming the bad field.

The server is the standard library's threading HTTP server, bound to 127.0.0.1 unless told
otherwise; recognitions run one at a time (the model is not shared between threads).
"""

from __future__ import annotations

import io
import json
import math
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.font_manager import FontProperties
from matplotlib.mathtext import math_to_image

from hmer.card import LowScore
from hmer.errors import DataError
from hmer.runtime.reading import Prediction
from hmer.viz import mathtext_ok, mathtext_source

__all__ = ["MAX_BODY_BYTES", "MAX_POINTS", "make_server", "math_svg", "parse_strokes"]

#: Largest request body accepted (bytes); a hand-written formula is a few kilobytes.
MAX_BODY_BYTES = 4 << 20
#: Most points accepted in one request (all strokes together).
MAX_POINTS = 100_000
#: Beam widths a request may ask for.
MAX_BEAM = 32
PAGE = Path(__file__).resolve().parent / "assets" / "draw.html"


def parse_strokes(payload: Any) -> list[np.ndarray]:
    """The ``strokes`` of a request body -> traces, float64 ``(n, 2)`` arrays ``(x, y)``.

    Raises:
        DataError: a body that is not ``{"strokes": [[[x, y], ...], ...]}`` with finite numbers,
            no ink at all, or more than :data:`MAX_POINTS` points (the message names the field).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("strokes"), list):
        raise DataError('the request body must be a JSON object with a "strokes" list')
    traces, points = [], 0
    for i, stroke in enumerate(payload["strokes"]):
        if not isinstance(stroke, list) or not stroke:
            raise DataError(f"strokes[{i}]: expected a non-empty list of [x, y] points")
        for j, point in enumerate(stroke):
            if not (
                isinstance(point, list)
                and len(point) == 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in point)
            ):
                raise DataError(f"strokes[{i}][{j}]: expected [x, y], two finite numbers")
        points += len(stroke)
        if points > MAX_POINTS:
            raise DataError(f"strokes: more than {MAX_POINTS} points")
        traces.append(np.asarray(stroke, dtype=np.float64))
    if not traces:
        raise DataError("strokes: empty, nothing was written")
    return traces


def math_svg(latex: str) -> str | None:
    """``latex`` rendered as an SVG document by matplotlib mathtext, None when it cannot be."""
    if not latex or not mathtext_ok(latex):
        return None
    out = io.BytesIO()
    math_to_image(mathtext_source(latex), out, prop=FontProperties(size=28), format="svg")
    return out.getvalue().decode("utf-8")


def _beam(payload: dict[str, Any], default: int) -> int:
    beam = payload.get("beam", default)
    if isinstance(beam, bool) or not isinstance(beam, int) or not 1 <= beam <= MAX_BEAM:
        raise DataError(f"beam: expected an integer from 1 to {MAX_BEAM}, got {beam!r}")
    return beam


def make_server(
    recognizer: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    beam: int = 10,
    low_score: LowScore | None = None,
) -> ThreadingHTTPServer:
    """An HTTP server for the page and ``POST /predict`` (see the module docstring).

    Args:
        recognizer: a :class:`hmer.runtime.recognize.Recognizer` or
            :class:`hmer.runtime.onnx.OnnxRecognizer`.
        host, port: where to listen (port 0: any free port, see ``server.server_address``).
        beam: the beam width of requests that do not give one.
        low_score: what a low score means for this model (its card), for the answer's ``note``.

    Returns:
        The server, not yet serving: call ``serve_forever()`` (and ``server_close()``).
    """
    lock = threading.Lock()
    page = PAGE.read_bytes()

    def recognize(payload: Any) -> dict[str, Any]:
        traces = parse_strokes(payload)
        width = _beam(payload, beam)
        image = recognizer.prepare(traces)  # drawn as InkML training ink is
        with lock:
            found: Prediction = recognizer.predict_images([image], beam=width)[0]
        return {
            "latex": found.latex,
            "tokens": found.tokens,
            "score": round(found.score, 6),
            "svg": math_svg(found.latex),
            "note": low_score.note(found.score)
            if low_score and low_score.is_low(found.score)
            else None,
        }

    class Handler(BaseHTTPRequestHandler):
        server_version = "hmer"

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, value: dict[str, Any]) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path.split("?")[0] in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"{self.path}: no such page"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"{self.path}: POST /predict only"})
                return
            header = self.headers.get("Content-Length") or "0"
            length = int(header) if header.isdigit() else -1
            if length < 0:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"Content-Length: {header!r}"})
                return
            if length > MAX_BODY_BYTES:
                self._json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"error": f"request body of {length} bytes, the limit is {MAX_BODY_BYTES}"},
                )
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"null")
                answer = recognize(payload)
            except (ValueError, DataError) as error:  # bad JSON, bad strokes, no ink
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            self._json(HTTPStatus.OK, answer)

        def log_message(self, format: str, *args: Any) -> None:
            print(f"hmer serve: {self.address_string()} {format % args}", file=sys.stderr)

    return ThreadingHTTPServer((host, port), Handler)

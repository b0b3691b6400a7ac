"""The routes of ``hmer serve`` (FastAPI), and the answers to requests it refuses.

==========================  ==========================================================
``GET /``                   the writing page (``hmer/assets/draw.html``)
``POST /predict``           strokes (JSON :class:`~hmer.serve.schema.StrokesRequest`)
                            -> :class:`~hmer.serve.schema.Answer`
``POST /predict/image``     a picture or InkML file (multipart field ``image``; fields
                            ``beam``, ``alternatives``) -> :class:`~hmer.serve.schema.Answer`
``GET /model``              the model and the limits (:class:`~hmer.serve.schema.ModelInfo`)
``GET /health``             ``{"status": "ok"}``
``GET /docs``, ``/redoc``   the API, described from ``GET /openapi.json`` (offline)
==========================  ==========================================================

Refusals are JSON :class:`~hmer.serve.schema.Failure` s: 400 a body that is not JSON at all,
404 no such route, 405 a wrong method (with ``Allow``), 408 a body that stopped arriving, 413 a
body over :data:`~hmer.serve.schema.MAX_BODY_BYTES`, 422 a request whose fields are wrong or
whose ink or picture cannot be read (naming the field, e.g. ``strokes[1][0][1]``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from hmer import __version__
from hmer.card import LowScore, ScoreBins
from hmer.errors import DataError
from hmer.runtime.reading import Prediction
from hmer.serve.about import describe_model
from hmer.serve.guard import BodyGuard
from hmer.serve.preview import math_preview
from hmer.serve.schema import (
    DEFAULT_ALTERNATIVES,
    MAX_ALTERNATIVES,
    MAX_BEAM,
    MAX_BODY_BYTES,
    MAX_POINTS,
    Alternatives,
    Answer,
    Beam,
    Failure,
    Health,
    ModelInfo,
    Reading,
    StrokesRequest,
)
from hmer.serve.worker import ModelWorker, Upload

__all__ = ["BODY_TIMEOUT_S", "PAGE", "make_app"]

PAGE = Path(__file__).resolve().parents[1] / "assets" / "draw.html"
#: Seconds a request body may pause before the request is refused (408).
BODY_TIMEOUT_S = 30.0
#: Headers of the page: nothing it shows may load or send anything but to this server.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self'",
}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": Failure, "description": what}
    for code, what in (
        (400, "the body is not JSON, or not a form"),
        (408, "the body stopped arriving"),
        (413, f"the body is over {MAX_BODY_BYTES} bytes"),
        (422, "a field is wrong, or the ink or picture cannot be read (the field is named)"),
    )
}


def _field_name(location: Sequence[Any]) -> str | None:
    """pydantic's error location -> ``strokes[1][0][1]`` (None: the body as a whole)."""
    parts = list(location[1:] if location and location[0] == "body" else location)
    if not parts or not isinstance(parts[0], str):
        return None
    return parts[0] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts[1:])


def _failure(status: int, error: str, field: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(
        Failure(error=error, field=field).model_dump(), status_code=status, headers=headers
    )


def _install_refusals(app: FastAPI) -> None:
    """Every refusal as a :class:`Failure` (FastAPI's own are ``{"detail": ...}``)."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "malformed")
            where = first["loc"][-1]
            return _failure(400, f"the body is not valid JSON: {reason} (at character {where})")
        field = _field_name(first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        more = len(error.errors()) - 1
        also = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        return _failure(422, f"{field or 'body'}: {message}{also}", field)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        if error.status_code == 404:
            message = f"{where}: no such page (the page is /, the API is described at /docs)"
        elif error.status_code == 405:
            message = f"{where}: method not allowed here (allowed: {error.headers['Allow']})"
        else:
            message = f"{where}: {error.detail}"
        return _failure(error.status_code, message, **(error.headers or {}))

    @app.exception_handler(DataError)
    async def unreadable(request: Request, error: DataError) -> JSONResponse:
        field = "image" if request.url.path == "/predict/image" else "strokes"
        return _failure(422, f"{field}: {error}", field)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        # A bug, not bad input; Starlette raises it on after this answer, for the server's log.
        return _failure(500, f"hmer failed on this request ({type(error).__name__}); see its log")


def make_app(
    recognizer: Any,
    *,
    beam: int = 10,
    low_score: LowScore | None = None,
    score_bins: ScoreBins | None = None,
    card: dict[str, Any] | None = None,
    body_timeout: float = BODY_TIMEOUT_S,
) -> FastAPI:
    """The ASGI app of ``hmer serve`` (see the module docstring).

    Args:
        recognizer: a :class:`hmer.runtime.recognize.Recognizer` or
            :class:`hmer.runtime.onnx.OnnxRecognizer`; it reads on one thread of its own
            (:class:`hmer.serve.worker.ModelWorker`).
        beam: the search width of requests that give none.
        low_score: what a low score means for this model (its card), for ``confidence`` and
            ``note``; None: unknown.
        score_bins: how often readings were right by score (its card), for the ``note`` of a
            reading that is not unsure; None: unknown.
        card: the model card (:func:`hmer.card.read_card`), for ``GET /model``; None: it has none.
        body_timeout: seconds a request body may pause (then 408).
    """
    worker = ModelWorker(recognizer)
    widest = min(MAX_BEAM, worker.vocab_size)
    beam = min(beam, widest)
    name, starter, notice = describe_model(card)
    info = ModelInfo(
        name=name,
        starter=starter,
        notice=notice,
        beam=beam,
        more_beam=min(2 * beam, widest),
        max_beam=widest,
        alternatives=DEFAULT_ALTERNATIVES,
        max_alternatives=MAX_ALTERNATIVES,
        max_points=MAX_POINTS,
        max_body_bytes=MAX_BODY_BYTES,
    )
    page = PAGE.read_bytes()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.close()

    # /docs and /redoc with the page scripts of Swagger UI and ReDoc served from the package,
    # not from a CDN: they work without internet.
    app = FastAPIOffline(
        title="hmer serve",
        version=__version__,
        summary="Handwritten formulas (strokes or a picture) read as LaTeX.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyGuard, max_bytes=MAX_BODY_BYTES, timeout=body_timeout)
    _install_refusals(app)

    def reading(found: Prediction) -> Reading:
        score = found.score if math.isfinite(found.score) else None
        unsure = low_score is not None and (score is None or low_score.is_low(score))
        if score is None:
            note = None
        elif unsure:
            note = low_score.note(score)
        else:
            note = None if score_bins is None else score_bins.note(score)
        return Reading(
            latex=found.latex,
            tokens=found.tokens,
            score=None if score is None else round(score, 6),
            confidence=None if low_score is None else "unsure" if unsure else "sure",
            note=note,
            mathml=math_preview(found.latex),
        )

    async def answer(source: Any, width: int | None, count: int) -> Answer:
        width = beam if width is None else width
        if width > widest:
            raise RequestValidationError(
                [{"type": "less_than_equal", "loc": ("body", "beam"), "msg": f"at most {widest}"}]
            )
        readings = [reading(found) for found in await worker.read(source, width, count)]
        return Answer(**readings[0].model_dump(), alternatives=readings)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/index.html", response_class=HTMLResponse, include_in_schema=False)
    async def writing_page() -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """The server is up."""
        return Health(status="ok")

    @app.get("/model", response_model=ModelInfo)
    async def model() -> ModelInfo:
        """The loaded model, as its card describes it, and this server's limits."""
        return info

    @app.post("/predict", response_model=Answer, responses=_REFUSALS)
    async def predict(request: StrokesRequest) -> Answer:
        """Read handwritten strokes: the formula's LaTeX, its preview, and the alternatives."""
        return await answer(request.strokes, request.beam, request.alternatives)

    @app.post("/predict/image", response_model=Answer, responses=_REFUSALS)
    async def predict_image(
        image: Annotated[UploadFile, File(description="a picture (png, jpg, ...) or InkML")],
        beam: Annotated[Beam | None, Form()] = None,
        alternatives: Annotated[Alternatives, Form()] = DEFAULT_ALTERNATIVES,
    ) -> Answer:
        """Read a picture of a formula (a photo, a scan, a screenshot) or an InkML file."""
        upload = Upload(await image.read(), Path(image.filename or "image").name)
        return await answer(upload, beam, alternatives)

    return app

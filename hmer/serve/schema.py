"""What ``hmer serve`` accepts and answers: pydantic models, which FastAPI validates requests
with and describes in the OpenAPI document (``/openapi.json``, read at ``/docs``).

Strokes are page pixels, y pointing down (as InkML): ``[[[x, y], ...], ...]``, one list of
points per pen stroke. Limits are module constants, stated in the schema and on ``GET /model``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_BEAM",
    "MAX_BODY_BYTES",
    "MAX_COORDINATE",
    "MAX_POINTS",
    "Answer",
    "Failure",
    "Health",
    "ModelInfo",
    "Reading",
    "StrokesRequest",
]

#: Largest request body (bytes): a hand-written formula is a few kilobytes of JSON, a phone
#: photo a few megabytes.
MAX_BODY_BYTES = 10 << 20
#: Most points in one request, all strokes together.
MAX_POINTS = 100_000
#: Largest coordinate magnitude (page pixels); beyond it a request is refused, not rendered.
MAX_COORDINATE = 1e6
#: Widest search a request may ask for (the beam width; the page says "more alternatives").
MAX_BEAM = 32
#: Most readings one answer lists.
MAX_ALTERNATIVES = 10
#: Readings listed when a request does not say.
DEFAULT_ALTERNATIVES = 5

Coordinate = Annotated[
    float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False, strict=True)
]
#: ``[x, y]``.
Point = tuple[Coordinate, Coordinate]
Stroke = Annotated[list[Point], Field(min_length=1, description="points [x, y] of one stroke")]
#: The search width (form fields arrive as text: ``"10"`` is 10 there; JSON wants a number).
Beam = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_BEAM,
        description="how many hypotheses the search keeps (wider: more alternatives, slower); "
        "default: the server's --beam",
    ),
]
Alternatives = Annotated[int, Field(ge=1, le=MAX_ALTERNATIVES, description="most readings to list")]


class StrokesRequest(BaseModel):
    """``POST /predict``: ink written on the page."""

    model_config = ConfigDict(extra="ignore")

    strokes: Annotated[list[Stroke], Field(min_length=1, description="one list per stroke")]
    beam: Annotated[Beam, Strict()] | None = None
    alternatives: Annotated[Alternatives, Strict()] = DEFAULT_ALTERNATIVES

    @field_validator("strokes")
    @classmethod
    def _bounded(cls, strokes: list[list[Point]]) -> list[list[Point]]:
        points = sum(len(stroke) for stroke in strokes)
        if points > MAX_POINTS:
            raise ValueError(f"{points} points, at most {MAX_POINTS} are read")
        return strokes


class Reading(BaseModel):
    """One reading of the formula.

    ``score``: the length-normalized log-probability (0 is certain; null when the model failed
    to read anything); ``confidence``: ``"unsure"`` below the model card's low-score threshold,
    else ``"sure"`` (only: not below it), null for a model without a card; ``note``: how often
    readings scoring like this one were right (below the threshold, or in the card's score range
    of this score), null without a card or a score; ``mathml``: the preview, null when the LaTeX
    is not well-formed.
    """

    latex: str
    tokens: list[str]
    score: float | None
    confidence: Literal["sure", "unsure"] | None
    note: str | None
    mathml: str | None


class Answer(Reading):
    """The best reading, and ``alternatives``: every reading listed, best first (the first is
    the best reading itself)."""

    alternatives: list[Reading]


class Failure(BaseModel):
    """A refused request: ``error`` says why, naming the field (``strokes[1][0]``) when one is
    at fault; ``field`` is that name, or null."""

    error: str
    field: str | None = None


class Health(BaseModel):
    status: Literal["ok"]


class ModelInfo(BaseModel):
    """What the page says about the model, and the limits of this server."""

    name: str | None = Field(description="the model card's name; null without a card")
    starter: bool = Field(description="a small demonstration model, as its card says")
    notice: str | None = Field(description="a sentence for people about this model")
    beam: int = Field(description="the search width of requests that give none")
    more_beam: int = Field(description="the width the page asks for 'more alternatives'")
    max_beam: int
    alternatives: int = Field(description="readings listed when a request gives no number")
    max_alternatives: int
    max_points: int
    max_body_bytes: int

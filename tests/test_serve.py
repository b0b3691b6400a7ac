"""``hmer serve``'s API: the page, strokes or a picture in, LaTeX, preview and alternatives out,
and clear refusals (naming the field) of bad requests. Through FastAPI's TestClient; the real
server (uvicorn, sockets, load) is tests/test_serve_http.py."""

from __future__ import annotations

import json

import anyio
import pytest
from fastapi.testclient import TestClient
from helpers import LABELS, paper, write_inkml
from serve_helpers import page_strokes, png

from hmer.card import LowScore, ScoreBin, ScoreBins
from hmer.data.latex import tokens_to_latex
from hmer.serve import PAGE, make_app
from hmer.serve.about import describe_model
from hmer.serve.guard import BodyGuard
from hmer.serve.schema import MAX_BODY_BYTES, MAX_POINTS

pytestmark = pytest.mark.usefixtures("single_thread")

#: A model card as scripts/model_card.py writes it (the parts the server reads).
STARTER_CARD = {
    "name": "hmer CPU starter model",
    "scores": {"beam": {"2014": {"exprate": 15.16}, "2016": {"exprate": 14.04}}},
    "low_score": {
        "threshold": -0.33,
        "exprate": 5.0,
        "count": 621,
        "split": "2014",
        "method": "beam",
    },
}


@pytest.fixture(scope="module")
def client(recognizer) -> TestClient:
    return TestClient(make_app(recognizer, beam=3))


@pytest.fixture(scope="module")
def written(client) -> dict:
    """The answer to LABELS[0] written on the page."""
    reply = client.post("/predict", json={"strokes": page_strokes(LABELS[0])})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_page_is_served_with_its_writing_area(client):
    reply = client.get("/")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "<canvas" in reply.text and "/predict" in reply.text
    assert reply.text == PAGE.read_text(encoding="utf-8")
    # What the page shows may talk to this server only.
    assert "connect-src 'self'" in reply.headers["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/%2e%2e/pyproject.toml",
        "/assets/model.pt",
        "/hmer/assets/draw.html/../model.json",
        "/static-offline-docs/../../serve/app.py",
        "/static-offline-docs/%2e%2e%2f%2e%2e%2fcard.py",
        "/index.html/..%2f..%2fcard.py",
    ],
)
def test_no_path_reaches_a_file_beside_the_page(client, path):
    reply = client.get(path)
    assert reply.status_code == 404
    assert reply.json()["error"].startswith("GET /") and "no such page" in reply.json()["error"]


def test_written_strokes_are_read_as_latex_with_a_preview(written):
    assert written["tokens"] == LABELS[0]
    assert written["latex"] == tokens_to_latex(LABELS[0])
    assert written["score"] <= 0
    assert written["mathml"].startswith("<math") and written["mathml"].endswith("</math>")
    assert written["confidence"] is None and written["note"] is None  # the model has no card


def test_the_alternatives_are_the_searchs_best_readings_best_first(client, recognizer, written):
    strokes = page_strokes(LABELS[0])
    alternatives = written["alternatives"]
    assert alternatives[0] == {k: v for k, v in written.items() if k != "alternatives"}
    expected = recognizer.predict_alternatives([recognizer.prepare(strokes)], beam=3, count=5)[0]
    assert [a["tokens"] for a in alternatives] == [p.tokens for p in expected]
    assert len({a["latex"] for a in alternatives}) == len(alternatives) > 1
    scores = [a["score"] for a in alternatives]
    assert scores == sorted(scores, reverse=True)
    two = client.post("/predict", json={"strokes": strokes, "alternatives": 2, "beam": 3}).json()
    assert [a["tokens"] for a in two["alternatives"]] == [p.tokens for p in expected[:2]]


def test_confidence_is_said_in_words_from_the_model_card(recognizer):
    strokes = {"strokes": page_strokes(LABELS[0])}
    for threshold, confidence in ((0.5, "unsure"), (-50.0, "sure")):
        low = LowScore(threshold, exprate=2.0, count=100, split="2014", method="beam")
        found = TestClient(make_app(recognizer, beam=3, low_score=low)).post(
            "/predict", json=strokes
        )
        assert found.json()["confidence"] == confidence
        if confidence == "unsure":
            assert "2% of the time" in found.json()["note"]
        else:
            assert found.json()["note"] is None  # the card gives no calibration


def test_a_reading_that_is_not_unsure_says_how_often_such_readings_were_right(recognizer):
    strokes = {"strokes": page_strokes(LABELS[0])}
    low = LowScore(-50.0, exprate=2.0, count=100, split="2014", method="beam")
    # One range below every score the model can give, one above: readings fall in the upper one.
    bins = ScoreBins(
        bins=(ScoreBin(-1e9, -100.0, 50, 1.0), ScoreBin(-100.0, 0.0, 50, 37.0)),
        split="2016",
        method="beam",
    )
    app = make_app(recognizer, beam=3, low_score=low, score_bins=bins)
    found = TestClient(app).post("/predict", json=dict(strokes, alternatives=2)).json()
    for reading in [found, *found["alternatives"]]:
        if reading["score"] is None:
            continue
        assert reading["confidence"] == "sure"
        assert reading["note"] == (
            "readings of this model scoring from -100.00 to 0.00 were right 37% of the time on "
            "CROHME 2016"
        )
    unsure = make_app(
        recognizer, beam=3, low_score=LowScore(0.5, 2.0, 100, "2014", "beam"), score_bins=bins
    )
    note = TestClient(unsure).post("/predict", json=strokes).json()["note"]
    assert note.startswith("low score") and "2% of the time" in note  # the threshold's note


def test_the_page_is_told_when_the_model_is_a_small_starter_model(recognizer):
    info = TestClient(make_app(recognizer, card=STARTER_CARD)).get("/model").json()
    assert info["starter"] and info["name"] == "hmer CPU starter model"
    assert "starter model" in info["notice"] and "15% of the CROHME 2014" in info["notice"]
    assert describe_model({"name": "BTTR trained on a GPU"}) == (
        "BTTR trained on a GPU",
        False,
        None,
    )
    name, starter, notice = describe_model(None)
    assert name is None and not starter and "no card" in notice


def test_health_and_model_limits(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["beam"] == 3 and info["more_beam"] > info["beam"]
    assert info["max_points"] == MAX_POINTS and info["max_body_bytes"] == MAX_BODY_BYTES


def test_the_api_is_described_and_its_page_works_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/image", "/health", "/model"} <= spec["paths"].keys()
    refusals = spec["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "422"} <= refusals.keys()
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "cdn." not in docs.text  # Swagger UI is served from the package
    script = docs.text.split('<script src="', 1)[1].split('"', 1)[0]
    assert client.get(script).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "field", "said"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b'{"ink": []}', 422, "strokes", "strokes: Field required"),
        (b'{"strokes": []}', 422, "strokes", "at least 1 item"),
        (b'{"strokes": [[[1, 2]], [[3, "a"]]]}', 422, "strokes[1][0][1]", "valid number"),
        (b'{"strokes": [[[1, 2]], [[3, true]]]}', 422, "strokes[1][0][1]", "valid number"),
        (b'{"strokes": [[[1, 2, 3]]]}', 422, "strokes[0][0]", "at most 2 items"),
        (b'{"strokes": [[]]}', 422, "strokes[0]", "at least 1 item"),
        (b'{"strokes": [[[NaN, 1]]]}', 422, "strokes[0][0][0]", "finite"),
        (b'{"strokes": [[[1e400, 1]]]}', 422, "strokes[0][0][0]", "finite"),
        (b'{"strokes": [[[1' + b"0" * 400 + b", 2]]]}", 422, "strokes[0][0][0]", "number"),
        (b'{"strokes": [[[-2e6, 1]]]}', 422, "strokes[0][0][0]", "greater than or equal"),
        (b'{"strokes": [[[1, 2]]], "beam": 0}', 422, "beam", "greater than or equal to 1"),
        (b'{"strokes": [[[1, 2]]], "beam": 3.5}', 422, "beam", "integer"),
        (b'{"strokes": [[[1, 2]]], "alternatives": 99}', 422, "alternatives", "less than"),
        (b"[" * 100_000 + b"]" * 100_000, 400, None, "error parsing the body"),
        (b"null", 422, None, "body: "),
        (b"", 422, None, "body: Field required"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(client, body, status, field, said):
    reply = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    assert reply.json()["field"] == field
    assert said in reply.json()["error"]
    if field is not None:
        assert reply.json()["error"].startswith(f"{field}: ")


def test_too_many_points_are_refused_before_reading(client):
    strokes = [[[float(i % 100), float(i // 100)] for i in range(MAX_POINTS + 1)]]
    reply = client.post("/predict", json={"strokes": strokes})
    assert reply.status_code == 422 and reply.json()["field"] == "strokes"
    assert str(MAX_POINTS) in reply.json()["error"]


def test_tiny_and_huge_coordinates_are_read_or_refused_never_a_crash(client):
    for strokes in ([[[5e-324, 5e-324], [1e-323, 5e-324]]], [[[-1e6, 0], [1e6, 1]]]):
        reply = client.post("/predict", json={"strokes": strokes, "beam": 1})
        assert reply.status_code in (200, 422), reply.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/predict", "POST"), ("PUT", "/predict/image", "POST"), ("POST", "/health", "GET")],
)
def test_a_wrong_method_is_405_saying_which_are_allowed(client, method, path, allowed):
    reply = client.request(method, path)
    assert reply.status_code == 405
    assert reply.headers["allow"] == allowed and f"allowed: {allowed}" in reply.json()["error"]


def test_a_body_over_the_limit_is_413(client):
    reply = client.post("/predict", content=b" " * (MAX_BODY_BYTES + 1))
    assert reply.status_code == 413 and str(MAX_BODY_BYTES) in reply.json()["error"]


def test_a_body_over_the_limit_without_a_length_is_413_as_it_arrives(client):
    def chunks():  # sent chunked: no Content-Length to judge it by
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 2):
            yield b" " * (1 << 20)

    reply = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and "past that size" in reply.json()["error"]


async def _guarded(headers: list[tuple[bytes, bytes]], receive, timeout: float = 5.0) -> dict:
    """One request through :class:`BodyGuard` in front of an app that reads the whole body."""

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    await BodyGuard(app, max_bytes=100, timeout=timeout)(scope, receive, send)
    return {"status": sent[0]["status"], "body": b"".join(m.get("body", b"") for m in sent[1:])}


def test_a_content_length_that_is_not_a_byte_count_is_400():
    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    for length in ("²", "-5", "1e3", " 12"):
        answer = anyio.run(_guarded, [(b"content-length", length.encode())], receive)
        assert answer["status"] == 400
        assert "Content-Length" in json.loads(answer["body"])["error"]


def test_a_body_that_stops_arriving_is_408():
    async def receive():
        await anyio.sleep_forever()

    answer = anyio.run(_guarded, [], receive, 0.05)
    assert answer["status"] == 408 and "stopped arriving" in json.loads(answer["body"])["error"]


def test_an_uploaded_picture_is_read(client, renders):
    for labels, ink in zip(LABELS, renders, strict=True):
        files = {"image": ("formula.png", png(paper(ink)), "image/png")}
        reply = client.post("/predict/image", files=files, data={"beam": "3"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["tokens"] == labels and reply.json()["mathml"]


def test_an_uploaded_inkml_file_is_read_as_ink(client, tmp_path):
    write_inkml(tmp_path / "a.inkml", 3, None)
    files = {"image": ("a.inkml", (tmp_path / "a.inkml").read_bytes(), "application/xml")}
    reply = client.post("/predict/image", files=files, data={"alternatives": "2"})
    assert reply.status_code == 200, reply.text
    assert 1 <= len(reply.json()["alternatives"]) <= 2


@pytest.mark.parametrize(
    ("files", "data", "field", "said"),
    [
        ({"image": ("photo.png", b"not a picture", "image/png")}, {}, "image", "photo.png: "),
        ({"image": ("../../etc/x.png", b"", "image/png")}, {}, "image", "image: x.png: empty"),
        ({"picture": ("a.png", b"x", "image/png")}, {}, "image", "Field required"),
        ({"image": ("a.png", b"x", "image/png")}, {"beam": "wide"}, "beam", "integer"),
    ],
)
def test_bad_uploads_are_refused_naming_the_field(client, files, data, field, said):
    reply = client.post("/predict/image", files=files, data=data)
    assert reply.status_code == 422
    assert reply.json()["field"] == field and said in reply.json()["error"]


def test_a_json_upload_is_not_a_picture(client):
    reply = client.post("/predict/image", json={"strokes": [[[1, 2]]]})
    assert reply.status_code == 422 and reply.json()["field"] == "image"

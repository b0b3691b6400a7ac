"""``hmer serve``: the drawing page, strokes in and LaTeX out, clear refusals of bad requests."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from helpers import LABELS

from hmer.errors import DataError
from hmer.serve import MAX_BODY_BYTES, make_server, math_svg, parse_strokes

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def url(recognizer) -> Iterator[str]:
    server = make_server(recognizer, "127.0.0.1", 0, beam=3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/predict", body, {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _strokes(tokens: list[str]) -> list[list[list[float]]]:
    """``tokens`` written by the synthetic generator's first hand (the hand of the fitted
    model's training picture of LABELS[0]), as page strokes: lists of [x, y]."""
    pytest.importorskip("HersheyFonts", reason="synthetic handwriting needs hershey-fonts")
    from hmer.data.synth import draw

    drawing = draw(tokens, np.random.default_rng(0))
    return [trace.tolist() for trace in drawing.traces]


def test_the_page_is_served_with_its_writing_area(url):
    with urllib.request.urlopen(f"{url}/", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/html")
        page = answer.read().decode()
    assert "<canvas" in page and "/predict" in page


def test_written_strokes_are_read_as_latex(url):
    status, answer = _post(url, json.dumps({"strokes": _strokes(LABELS[0])}).encode())
    assert status == 200
    assert answer["tokens"] == LABELS[0] and answer["latex"] == " ".join(LABELS[0])
    assert answer["score"] <= 0
    assert answer["svg"].lstrip().startswith("<?xml") and "<svg" in answer["svg"]


def test_a_low_score_comes_with_a_note_for_the_page(recognizer):
    from hmer.card import LowScore

    strokes = json.dumps({"strokes": _strokes(LABELS[0])}).encode()
    for threshold, noted in ((0.5, True), (-50.0, False)):
        low = LowScore(threshold, exprate=2.0, count=100, split="2014", method="beam")
        server = make_server(recognizer, "127.0.0.1", 0, beam=3, low_score=low)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            host, port = server.server_address[:2]
            status, answer = _post(f"http://{host}:{port}", strokes)
        finally:
            server.shutdown()
            server.server_close()
        assert status == 200
        if noted:
            assert "low score" in answer["note"] and "2% of the time" in answer["note"]
        else:
            assert answer["note"] is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "Expecting"),
        (b'{"ink": []}', '"strokes"'),
        (b'{"strokes": []}', "strokes: empty"),
        (b'{"strokes": [[[1, 2]], [[3, "a"]]]}', "strokes[1][0]"),
        (b'{"strokes": [[]]}', "strokes[0]"),
        (b'{"strokes": [[[1, 2]]], "beam": 0}', "beam"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(url, body, named):
    status, answer = _post(url, body)
    assert status == 400
    assert named in answer["error"]


def test_oversized_requests_are_refused_before_reading(url):
    request = urllib.request.Request(
        f"{url}/predict", b"{}", {"Content-Length": str(MAX_BODY_BYTES + 1)}, method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 413


def test_a_bad_content_length_is_refused(url):
    import http.client

    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Length", "-5")
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 400 and "Content-Length" in json.loads(answer.read())["error"]
    connection.close()


def test_strokes_become_float_traces():
    traces = parse_strokes({"strokes": [[[0, 0], [1.5, 2]], [[3, 4]]]})
    assert [t.shape for t in traces] == [(2, 2), (1, 2)]
    assert traces[0].dtype == np.float64
    with pytest.raises(DataError, match=r"strokes\[0\]\[1\]"):
        parse_strokes({"strokes": [[[0, 0], [float("nan"), 1]]]})


def test_latex_is_rendered_as_svg_when_mathtext_can():
    assert "<svg" in math_svg(r"\frac { x } { 2 }")
    assert math_svg(r"\frac { x") is None
    assert math_svg("") is None


def test_the_command_serves_until_stopped(checkpoint, private_cache):
    import os
    import re
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "hmer", "serve", "--checkpoint", str(checkpoint)]
    command += ["--port", "0", "--device", "cpu"]
    env = {**os.environ, "HMER_CACHE": str(private_cache)}
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        said = []  # stderr up to the line with the address (warnings may come first)
        while not (found := re.search(r"http://[\d.]+:\d+", said[-1] if said else "")):
            said.append(server.stderr.readline())
            assert said[-1], f"hmer serve ended before saying where: {''.join(said)}"
        status, answer = _post(
            found.group(0), json.dumps({"strokes": _strokes(LABELS[0])}).encode()
        )
        assert status == 200 and answer["tokens"] == LABELS[0]
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0


def test_the_page_posts_the_strokes_and_shows_the_answer():
    """The page's own script, run by node against a minimal fake DOM (tests/js/draw_page.js):
    two strokes written in quick succession make one request, and the answer is shown."""
    import shutil
    import subprocess
    from pathlib import Path

    from hmer.serve import PAGE

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the page's script cannot be run here")
    driver = Path(__file__).parent / "js" / "draw_page.js"
    run = subprocess.run([node, str(driver), str(PAGE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    # Page pixels relative to the writing area (the fake area's corner is at (10, 20)).
    assert seen["sent"] == [
        {
            "url": "/predict",
            "method": "POST",
            "body": {"strokes": [[[20, 20], [25, 25]], [[50, 20]]], "beam": 10},
        }
    ]
    assert seen["latex"] == "x + 1" and "<svg" in seen["rendered"]
    assert seen["status"].startswith("score -0.250")

"""``hmer serve`` as people and programs reach it: uvicorn on a loopback port. Every request gets
an answer, whatever its bytes; stalled connections are closed; log lines are escaped; 200
requests at once are each answered right; ``hmer serve`` runs until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers import LABELS
from serve_helpers import page_strokes, running

from hmer.serve import LocalServer, make_app
from hmer.serve.logs import EscapedAccessFormatter, escape, log_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def server(recognizer) -> Iterator[LocalServer]:
    with running(make_app(recognizer, beam=3)) as served:
        yield served


def exchange(server: LocalServer, raw: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """Send ``raw`` bytes on a new connection; the answer's status and body (read until the
    server closes or has sent the whole body)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as connection:
        connection.sendall(raw)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if length and len(body) >= length[0]:
                break
    assert answer, "the connection was closed without an answer"
    return int(answer.split(b" ", 2)[1]), answer.partition(b"\r\n\r\n")[2]


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", *headers]
    if not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (post("/predict", b"{}", "Content-Length: ²"), 400),  # a digit to str.isdigit
        (post("/predict", b"{}", "Content-Length: -5"), 400),
        (post("/predict", b"{}", "Content-Length: 2", "Content-Length: 3"), 400),
        (b"POST /predict HTTP/1.1\r\nX-Big: " + b"a" * 20_000, 400),  # a head past 16 KiB
        (b"GET /\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(32), 400),  # TLS to plain HTTP
        (b"GET /static-offline-docs/../../card.py HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"GET /static-offline-docs/..%2f..%2fcard.py HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (post("/predict", b"[" * 100_000 + b"]" * 100_000, "Content-Type: application/json"), 400),
        (
            post(
                "/predict",
                b'{"strokes": [[[1' + b"0" * 400 + b", 2]]]}",
                "Content-Type: application/json",
            ),
            422,
        ),
        (
            post(
                "/predict",
                b'{"strokes": [[[5e-324, 5e-324]]], "beam": 1}',
                "Content-Type: application/json",
            ),
            (200, 422),  # read, or refused as too close to 0 by the reader of user input
        ),
        (post("/predict", b"{}", "Content-Length: 99999999999"), 413),
    ],
)
def test_every_request_gets_an_answer(server, raw, status):
    assert exchange(server, raw)[0] in (status if isinstance(status, tuple) else (status,))


def test_stalled_connections_are_closed_and_others_still_served(recognizer):
    with running(make_app(recognizer), keep_alive=0.5) as server:
        silent = [socket.create_connection((server.host, server.port)) for _ in range(20)]
        dripping = socket.create_connection((server.host, server.port), timeout=10)
        for connection in silent:
            connection.settimeout(10)
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        assert exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        for connection in silent:
            assert connection.recv(100) == b""  # closed by the server, not by the timeout above
            connection.close()
        closed = False
        for _ in range(100):  # a byte every 0.1 s: slower than a head, faster than the timeout
            try:
                dripping.sendall(b"X")
                closed = dripping.recv(100, socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
            if closed:
                break
            time.sleep(0.1)
        dripping.close()
        assert closed, "a client sending a byte now and then kept its connection"


def test_log_lines_are_escaped(recognizer, capfd):
    with running(make_app(recognizer)) as server:
        exchange(server, b"GET /%1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n")
        exchange(server, b"GET /\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n")
        logged = capfd.readouterr().err
    logging.config.dictConfig(log_config())  # the log's stream again, not capfd's
    # uvicorn up to 0.54 logs the path re-quoted (%1B%5B), 0.55 as the client sent it (%1b[)
    assert "hmer serve:" in logged
    assert re.search(r'"GET /%1[bB](\[|%5B)31mred HTTP/1\.1" 404', logged)
    assert "Invalid HTTP request" in logged and "\x1b" not in logged
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', None, None
    )
    record.args = ("127.0.0.1:5", "GET", "/\x1b[2J\nforged line", "1.1", 404)
    line = EscapedAccessFormatter("%(request_line)s", use_colors=False).format(record)
    assert line == "GET /\\x1b[2J\\x0aforged line HTTP/1.1"
    assert escape("é\tß\x9b") == "é\\x09ß\\x9b"  # printable text kept


@pytest.fixture(scope="module")
def command(checkpoint, private_cache) -> Iterator[tuple[subprocess.Popen, str]]:
    """``hmer serve`` of the fitted model, in its own process (ONNX, as on any CPU), and its
    address; stopped with Ctrl-C at the end if a test has not."""
    argv = [sys.executable, "-m", "hmer", "serve", "--checkpoint", str(checkpoint)]
    argv += ["--port", "0", "--device", "cpu"]
    env = {**os.environ, "HMER_CACHE": str(private_cache)}
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    try:
        said = []  # stderr up to the line with the address (warnings may come first)
        while not (found := re.search(r"http://127\.0\.0\.1:\d+", said[-1] if said else "")):
            said.append(process.stderr.readline())
            assert said[-1], f"hmer serve ended before saying where: {''.join(said)}"
        # The rest of its log is read on, so that a full pipe never blocks it.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield process, found.group(0)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def test_two_hundred_requests_at_once_are_each_answered_right(command):
    """200 concurrent requests on loopback to ``hmer serve`` (a real uvicorn, the model behind
    its one thread): every answer is the one the same request gets alone, with its preview."""
    bodies = [{"strokes": page_strokes(tokens), "beam": 1, "alternatives": 2} for tokens in LABELS]

    async def ask_all() -> tuple[list[dict], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=command[1], timeout=600, limits=limits) as client:
            alone = [(await client.post("/predict", json=body)).json() for body in bodies]
            together = await asyncio.gather(
                *(client.post("/predict", json=bodies[i % len(bodies)]) for i in range(200))
            )
        return alone, together

    alone, together = asyncio.run(ask_all())
    assert all(answer["mathml"] for answer in alone)
    assert [reply.status_code for reply in together] == [200] * 200
    assert [reply.json() for reply in together] == [alone[i % len(alone)] for i in range(200)]


def test_the_command_serves_until_ctrl_c(command):
    process, url = command
    reply = httpx.post(f"{url}/predict", json={"strokes": page_strokes(LABELS[0])}, timeout=120)
    assert reply.status_code == 200 and reply.json()["tokens"] == LABELS[0]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0

"""An ASGI middleware that bounds request bodies in size and in time, before the app reads them.

A body larger than ``max_bytes`` is refused with 413: at once when its ``Content-Length`` says
so, else as soon as that many bytes have arrived (a chunked upload has no length). A
``Content-Length`` that is not a byte count is refused with 400. A body that stops arriving for
``timeout`` seconds is refused with 408. Each refusal is a JSON :class:`hmer.serve.schema.Failure`;
the app then sees the client as gone, and what it would still answer is dropped.

Written here rather than taken from Starlette: its body limit exists only in recent versions,
answers in plain text, and has no time limit.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

__all__ = ["BodyGuard"]

_DISCONNECT = {"type": "http.disconnect"}


class BodyGuard:
    """Wraps an ASGI ``app`` (see the module docstring)."""

    def __init__(self, app: Any, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            shown = declared.decode("latin-1")
            if not (declared.isdigit() and declared.isascii()):
                await _refuse(send, 400, f"Content-Length: {shown!r} is not a number of bytes")
                return
            if int(declared) > self.max_bytes:
                await _refuse(send, 413, self._too_large(f"of {int(declared)} bytes"))
                return
        received = 0
        refused = False
        complete = False  # the whole body has arrived: what follows is the wait for disconnect

        async def guarded_receive() -> dict[str, Any]:
            nonlocal received, refused, complete
            if refused:
                return _DISCONNECT
            if complete:
                return await receive()
            try:
                with anyio.fail_after(self.timeout):
                    message = await receive()
            except TimeoutError:
                refused = True
                stalled = f"the request body stopped arriving for {self.timeout:g} s"
                await _refuse(send, 408, stalled)
                return _DISCONNECT
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await _refuse(send, 413, self._too_large("past that size"))
                    return _DISCONNECT
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not refused:  # else: the app answering a body it never got whole
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)

    def _too_large(self, size: str) -> str:
        return f"request body {size}: the limit is {self.max_bytes} bytes"


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message, "field": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

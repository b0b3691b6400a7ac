"""The HTTP server under ``hmer serve``: uvicorn, with its limits set for a page on a laptop.

- Every request gets an answer: a request uvicorn cannot parse (a bad ``Content-Length``, a
  header block over 16 KiB, a malformed request line) is answered 400 by uvicorn itself;
  bodies are bounded by :class:`hmer.serve.guard.BodyGuard`.
- A connection that does not finish its request head within :data:`KEEP_ALIVE_S` seconds is
  closed, as is one idle that long between requests (uvicorn times out only the second; the
  protocol below adds the first, so stalled clients cannot pile up). Connections cost no thread.
- At most :data:`MAX_CONNECTIONS` connections are served at once; requests past that are
  answered 503 until some close.
- Log lines are escaped (:mod:`hmer.serve.logs`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from hmer.serve.logs import log_config

__all__ = ["KEEP_ALIVE_S", "MAX_CONNECTIONS", "LocalServer"]

#: Seconds to wait for a request head on a new connection, or for the next request on an idle one.
KEEP_ALIVE_S = 5
#: Connections served at once (a page makes one or two; the loopback load test makes 200).
MAX_CONNECTIONS = 256
#: Seconds given to requests in flight once the server is asked to stop.
SHUTDOWN_S = 5


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, with its keep-alive timer also running from the moment a
    connection opens until a whole request head has arrived (uvicorn stops it on the first
    byte, so a client sending a byte now and then would hold the connection forever). The timer
    is stopped by the parsed request itself (``H11Protocol.handle_events``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.handle_events()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=MAX_CONNECTIONS)


class LocalServer:
    """``app`` served on ``host``:``port`` (port 0: any free one; :attr:`url` says which).

    The socket is bound here, so the address is known before :meth:`run`. ``run`` blocks until
    Ctrl-C (or :meth:`stop`, from another thread).
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        keep_alive: float = KEEP_ALIVE_S,
        access_log: bool = True,
    ) -> None:
        self.socket = _listen(host, port)
        self.host, self.port = self.socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            http=HeadTimeoutProtocol,
            timeout_keep_alive=keep_alive,
            limit_concurrency=MAX_CONNECTIONS,
            timeout_graceful_shutdown=SHUTDOWN_S,
            log_config=log_config(access_log),
            access_log=access_log,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def started(self) -> bool:
        return self._server.started

    def run(self) -> None:
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        self._server.should_exit = True

"""Listening for HTTP(S) with a deadline on request headers (slow-header clients).

A client that opens a connection and sends its request line and headers a
byte at a time (slowloris) holds a connection, a TLS session and a handler
for as long as it likes unless something bounds the time to a complete
header block. Two bounds, both ``header_timeout`` seconds:

1. the first request: :class:`HeaderDeadline` wraps each connection's
   protocol and closes the connection unless the end of the header block
   (an empty line, CRLF CRLF) arrived within the deadline of it being
   opened (and the TLS handshake is bounded by the same time);
2. every later request on a kept-alive connection: aiohttp's
   ``keepalive_timeout``, which closes a connection that has not sent a
   complete request that long after the last response (bytes of an
   incomplete request do not extend it). :func:`runner` sets it.

(Recent aiohttp versions apply ``keepalive_timeout`` from the opening of a
connection too; older ones do not, hence step 1.) What a handler does after
the headers (reading a body, a WebSocket session) is not bounded here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from aiohttp import web

HEADER_END = b"\r\n\r\n"  # what clients send; a bare-LF one cannot disarm the deadline early
DEFAULT_HEADER_TIMEOUT = 10.0


class HeaderDeadline(asyncio.Protocol):
    """Passes everything to ``inner``; aborts the connection if the first
    request's headers are not complete ``timeout`` seconds after it opened.

    Args:
        inner: the HTTP server's protocol for this connection.
        timeout: seconds from ``connection_made`` to the end of the headers.
        on_timeout: called once per connection closed at the deadline with its
            first request's headers incomplete (by this protocol or, at the
            same moment, by aiohttp's own timer).
    """

    def __init__(
        self,
        inner: asyncio.Protocol,
        timeout: float,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""  # the last bytes seen, for an end of headers split across reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if HEADER_END in seen:
                self._disarm()
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = self._timer
        if timer is not None and timer.when() <= asyncio.get_running_loop().time():
            self._timed_out()  # closed at the deadline by the server's own keep-alive timer
        self._disarm()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._on_timeout is not None:
            self._on_timeout()

    def _expire(self) -> None:
        self._timed_out()
        transport = self._transport
        if isinstance(transport, asyncio.Transport):
            transport.abort()  # a slow client gets no graceful (TLS) shutdown
        elif transport is not None:
            transport.close()


def runner(app: web.Application, header_timeout: float) -> web.AppRunner:
    """An :class:`aiohttp.web.AppRunner` for ``app`` whose kept-alive
    connections must send each next request within ``header_timeout``."""
    return web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=header_timeout
    )


async def listen(
    app_runner: web.AppRunner,
    host: str,
    port: int,
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    on_timeout: Callable[[], None] | None = None,
) -> asyncio.Server:
    """Serve ``app_runner`` (set up) on ``host:port`` with :class:`HeaderDeadline`.

    Returns:
        The listening server; its first socket gives the port (``port`` 0
        picks a free one). Close it before cleaning up the runner.

    Raises:
        OSError: the address cannot be bound.
    """
    server = app_runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    factory = server

    def protocol() -> asyncio.Protocol:
        return HeaderDeadline(factory(), header_timeout, on_timeout)

    loop = asyncio.get_running_loop()
    return await loop.create_server(
        protocol,
        host,
        port,
        ssl=ssl_context,
        ssl_handshake_timeout=header_timeout if ssl_context is not None else None,
    )

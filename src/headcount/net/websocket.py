"""Drive one :class:`~headcount.session.Session` over a WebSocket (aiohttp).

For relays and networks where only HTTP(S) passes. The bytes are exactly the
ones :class:`~headcount.net.stream.StreamPeer` writes to TCP: every ``Send``
effect (one frame: length prefix and body) becomes one binary WebSocket
message, and every binary message received is fed to
:meth:`Session.receive_data`. A text message, a message that does not end on a
frame boundary, or one larger than a frame is a protocol error: the session
says ``Goodbye`` (when the socket still allows it) and the connection closes.

Authentication stays with the caller: both the server route
(:func:`sync_app`) and the dialer (:func:`dial`) hand the peer's TLS
certificate (DER, or None without TLS) to a *session factory*, which returns
the session to run or None to refuse the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from headcount.protocol.session import Close, Send, Session, SyncStatus
from headcount.protocol.wire import DEFAULT_MAX_FRAME

from .driver import DRAIN_TIMEOUT, EffectHandler, SessionDriver

HANDSHAKE_TIMEOUT = 10.0
SYNC_PATH = "/sync"
_FRAME_HEADER = 4  # the wire's length prefix
_QUICK_SEND = 16 * 1024  # below this many buffered bytes a send is not timed

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
SessionFactory = Callable[[bytes | None], Session | None]
"""Peer certificate (DER, None without TLS) -> the session to run, or None to refuse."""


def max_message(max_frame: int) -> int:
    """The largest WebSocket message a session with ``max_frame`` may
    receive: one whole frame (length prefix and body)."""
    return max_frame + _FRAME_HEADER


def peer_certificate(source: Any) -> bytes | None:
    """The peer's TLS certificate (DER) from anything with ``get_extra_info``
    (an aiohttp request transport, a client WebSocket); None without TLS."""
    ssl_object = source.get_extra_info("ssl_object") if source is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object else None


class WebSocketPeer(SessionDriver[aiohttp.WSMessage]):
    """One connection: a session and an open WebSocket (either side).

    Same contract as :class:`~headcount.net.stream.StreamPeer`:
    ``on_effect`` is called for every application effect (``Applied``,
    ``EquivocationFound``, ``PeerIdentified``, ``Close``); the session is
    woken at :meth:`Session.next_deadline` (see
    :class:`~headcount.net.driver.SessionDriver`: after every message too); a
    send that does not complete within ``drain_timeout`` (the peer stopped
    reading) drops the peer.

    Args:
        session: a fresh (IDLE) session.
        ws: a prepared server WebSocket or a connected client one, created
            with ``max_msg_size=max_message(session.config.max_frame)``.
        on_effect: application effect callback.
        clock: monotonic seconds (injectable for tests).
        owner: an HTTP client session to close with the connection (dialer).
    """

    transport_errors = (ConnectionError, OSError, aiohttp.ClientError)

    def __init__(
        self,
        session: Session,
        ws: WebSocket,
        on_effect: EffectHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain_timeout: float = DRAIN_TIMEOUT,
        owner: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(session, on_effect, clock, drain_timeout)
        self.ws = ws
        self.owner = owner
        # awaited with each binary message before the session gets it
        # (settable after construction; see net/preverify.py)
        self.prepare: Callable[[bytes], Awaitable[None]] | None = None

    async def aclose(self) -> None:
        self._finish("closed")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)
        if self.owner is not None:
            with contextlib.suppress(Exception):
                await self.owner.close()

    async def _read(self) -> aiohttp.WSMessage:
        return await self.ws.receive()

    async def _on_read(self, msg: aiohttp.WSMessage) -> None:
        if msg.type is WSMsgType.BINARY:
            if self.prepare is not None:
                await self.prepare(msg.data)  # e.g. signatures checked off the loop
            await self._apply(self.session.receive_data(msg.data, self.clock()))
            if not self.closed.is_set() and self.session.decoder.buffered:
                await self._protocol_error("malformed", "message does not end on a frame")
        elif msg.type is WSMsgType.TEXT:
            await self._protocol_error("malformed", "text message on a binary protocol")
        elif msg.type is WSMsgType.ERROR:
            # aiohttp already closed the socket (e.g. 1009 for an oversized message).
            too_big = getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
            self._fail_closed("too_big" if too_big else "malformed", msg.data)
        else:  # CLOSE, CLOSING, CLOSED: the peer went away
            self._lost("connection closed by peer")

    async def _protocol_error(self, code: str, message: str) -> None:
        """The peer broke the transport's framing: say why, then close."""
        effects = self.session.close(self.clock(), code, message)
        await self._apply([e for e in effects if isinstance(e, Send)])
        self._fail_closed(code, message)

    def _fail_closed(self, code: str, detail: object) -> None:
        self.session.connection_lost(self.clock())
        self.session.status.status = SyncStatus.FAILED  # as the session does for its own errors
        self.session.status.error = f"{code}: {detail}"
        if self.on_effect and not self.closed.is_set():
            self.on_effect(self, Close(code))
        self._finish(f"{code}: {detail}")

    async def _send(self, data: bytes) -> bool:
        """One frame, one message; False (and the peer dropped) if it failed."""
        if self.ws.closed:
            self._lost("connection closed")
            return False
        try:
            transport = _transport(self.ws)
            if transport is not None and transport.get_write_buffer_size() < _QUICK_SEND:
                # The socket is draining: the send cannot wait for long, so it
                # needs no timer (one per message is a measurable cost).
                await self.ws.send_bytes(data)
            else:
                # asyncio.timeout, not wait_for: wait_for runs the send in a
                # new task, two extra turns of the event loop per message.
                async with asyncio.timeout(self.drain_timeout):
                    await self.ws.send_bytes(data)
        except TimeoutError:
            self._lost("peer is not reading (send did not complete)")
            return False
        except (ConnectionError, OSError, aiohttp.ClientError) as exc:
            self._lost(f"connection error: {exc}")
            return False
        return True


def _transport(ws: WebSocket) -> asyncio.WriteTransport | None:
    """The socket transport under an aiohttp WebSocket (its writer's; None
    if this aiohttp keeps it elsewhere: every send is then timed)."""
    transport = getattr(getattr(ws, "_writer", None), "transport", None)
    return transport if isinstance(transport, asyncio.WriteTransport) else None


def sync_app(
    new_session: SessionFactory,
    on_effect: EffectHandler | None = None,
    on_peer: Callable[[WebSocketPeer], None] | None = None,
    path: str = SYNC_PATH,
) -> web.Application:
    """An aiohttp application serving sync sessions at ``path``.

    Serve it with an ``ssl.SSLContext`` requiring client certificates for
    mutual TLS; ``new_session`` receives the client's certificate (DER) and
    returns the session to run, or None to refuse with HTTP 403.
    ``on_peer`` sees each :class:`WebSocketPeer` before it runs.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        session = new_session(peer_certificate(request.transport))
        if session is None:
            raise web.HTTPForbidden(text="peer refused")
        limit = max_message(session.config.max_frame)
        ws = web.WebSocketResponse(max_msg_size=limit, autoping=True)
        await ws.prepare(request)
        peer = WebSocketPeer(session, ws, on_effect)
        if on_peer is not None:
            on_peer(peer)
        await peer.run()
        return ws

    app = web.Application()
    app.router.add_get(path, handler)
    return app


async def dial(
    url: str,
    new_session: SessionFactory,
    on_effect: EffectHandler | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> WebSocketPeer | None:
    """Connect to a :func:`sync_app` route.

    Args:
        url: ``wss://host:port/sync`` (``ws://`` only for tests).
        new_session: gets the server's certificate (DER); returns the
            session to run or None to refuse the server.
        ssl_context: the client TLS context (mutual TLS: with our certificate).
        max_frame: the sessions' frame limit (it bounds incoming messages,
            which must be fixed before the session exists).

    Returns:
        The peer to :meth:`~WebSocketPeer.run`, or None if refused.

    Raises:
        aiohttp.ClientError, OSError, TimeoutError: the connection failed.
    """
    http = aiohttp.ClientSession()
    try:
        ws = await asyncio.wait_for(
            http.ws_connect(
                url,
                ssl=ssl_context if ssl_context is not None else True,
                max_msg_size=max_message(max_frame),
                autoping=True,
            ),
            timeout,
        )
        session = new_session(peer_certificate(ws))
        if session is None:
            await ws.close()
            await http.close()
            return None
        return WebSocketPeer(session, ws, on_effect, owner=http)
    except BaseException:
        await http.close()
        raise

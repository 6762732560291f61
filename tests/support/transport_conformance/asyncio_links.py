"""The asyncio transports under the suite: (a) an in-memory link, (b) TCP,
(c) WebSocket. Their peers are :class:`~headcount.net.driver.SessionDriver`
subclasses, as in a node."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from headcount.net.driver import EffectHandler, SessionDriver
from headcount.net.stream import StreamPeer
from headcount.net.websocket import WebSocketPeer, dial, sync_app
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Session, SessionConfig

from .harness import AsyncioHarness, End, Raw

# -- (a) the in-memory link ---------------------------------------------------------


class _MemoryPeer(SessionDriver[bytes]):
    """The in-memory link: ConnectionPair's perfect link as a transport of
    :class:`~headcount.net.driver.SessionDriver` (httpx's ``MockTransport``
    idea), so the shared run loop runs with no network. One queue item per
    ``Send``; ``b""`` is the end of the stream."""

    def __init__(self, session: Session, inbox: asyncio.Queue[bytes],
                 outbox: asyncio.Queue[bytes], on_effect: EffectHandler) -> None:  # fmt: skip
        super().__init__(session, on_effect)
        self.inbox, self.outbox = inbox, outbox
        self.eof_sent = False

    async def _read(self) -> bytes:
        return await self.inbox.get()

    async def _on_read(self, item: bytes) -> None:
        if item:
            await self._deliver(item)
        else:
            self._lost("connection closed by peer")

    async def _send(self, data: bytes) -> bool:
        self.outbox.put_nowait(data)
        return True

    async def aclose(self) -> None:
        self._finish("closed")
        if not self.eof_sent:  # the end of the stream, once
            self.eof_sent = True
            self.outbox.put_nowait(b"")


class MemoryHarness(AsyncioHarness):
    name = "memory"

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        qa: asyncio.Queue[bytes] = asyncio.Queue()
        qb: asyncio.Queue[bytes] = asyncio.Queue()
        ea, eb = End(self.session(a, config)), End(self.session(b, config))
        self.adopt(ea, _MemoryPeer(ea.session, qa, qb, self.handler(ea)))
        self.adopt(eb, _MemoryPeer(eb.session, qb, qa, self.handler(eb)))
        return ea, eb

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        end = End(self.session(victim, config))
        self.adopt(end, _MemoryPeer(end.session, inbox, asyncio.Queue(), self.handler(end)))

        async def raw(data: bytes) -> None:
            inbox.put_nowait(data)

        return end, raw


# -- (b) TCP -------------------------------------------------------------------------


class TcpHarness(AsyncioHarness):
    name = "tcp"

    def __init__(self) -> None:
        super().__init__()
        self.servers: list[asyncio.Server] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, log: MemLog, config: SessionConfig) -> tuple[End, asyncio.Server]:
        end = End(self.session(log, config))

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.adopt(end, StreamPeer(end.session, reader, writer, self.handler(end)))

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.servers.append(server)
        return end, server

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        eb, server = await self._serve(b, config)
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        ea = End(self.session(a, config))
        self.adopt(ea, StreamPeer(ea.session, reader, writer, self.handler(ea)))
        return ea, eb

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        end, server = await self._serve(victim, config)
        _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        self.writers.append(writer)

        async def raw(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        return end, raw

    async def aclose(self) -> None:
        for writer in self.writers:
            writer.close()
        await super().aclose()
        for server in self.servers:
            server.close()
            await server.wait_closed()


def _port(server: asyncio.Server) -> int:
    return server.sockets[0].getsockname()[1]


# -- (c) WebSocket ---------------------------------------------------------------------


class WebSocketHarness(AsyncioHarness):
    name = "websocket"

    def __init__(self) -> None:
        super().__init__()
        self.runners: list[web.AppRunner] = []
        self.clients: list[Any] = []

    async def _serve(self, log: MemLog, config: SessionConfig) -> tuple[End, str]:
        end = End(self.session(log, config))

        def on_peer(peer: WebSocketPeer) -> None:
            self.track(end, peer)
            self.tasks.append(asyncio.create_task(self._mark_ended(end, peer)))

        app = sync_app(lambda _der: end.session, self.handler(end), on_peer)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        return end, f"http://127.0.0.1:{runner.addresses[0][1]}/sync"

    async def _mark_ended(self, end: End, peer: WebSocketPeer) -> None:
        """The server side runs inside aiohttp's handler: note when it ends."""
        await peer.closed.wait()
        end.ended = True
        self.changed.beat()

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        eb, url = await self._serve(b, config)
        ea = End(self.session(a, config))
        new_session = lambda _der: ea.session  # noqa: E731 (no authentication in conformance)
        peer = await dial(url, new_session, self.handler(ea), max_frame=config.max_frame)
        assert peer is not None
        self.adopt(ea, peer)
        return ea, eb

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        end, url = await self._serve(victim, config)
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(url)
        self.clients.append((http, ws))

        async def raw(data: bytes) -> None:
            await ws.send_bytes(data)

        return end, raw

    async def aclose(self) -> None:
        for http, ws in self.clients:
            await ws.close()
            await http.close()
        await super().aclose()
        for runner in self.runners:
            await runner.cleanup()

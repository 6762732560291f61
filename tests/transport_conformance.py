"""One conformance suite for every transport that carries sessions.

Each transport is wrapped in a :class:`Harness` that joins two sessions
(:meth:`Harness.connect`), or a session and a raw peer that sends whatever
bytes a test wants (:meth:`Harness.connect_raw`), and that waits for a
condition (:meth:`Harness.wait_until`): asyncio transports await a change of
any session with a real timeout; the simulator advances its virtual clock.
The cases in :data:`SUITE` only use this interface, so every transport runs
the very same code (automerge-repo's network-adapter-tests idea).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from headcount.net.stream import StreamPeer
from headcount.net.websocket import WebSocketPeer, dial, sync_app
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    Send,
    Session,
    SessionConfig,
    State,
    SyncStatus,
)
from headcount.sim.network import LAN, Link, Network
from headcount.sim.scheduler import Scheduler

from .protocol_helpers import make_devices

EV = "ev"
FAST = SessionConfig(idle_timeout=0.3, keepalive_interval=0.1, ack_timeout=2.0)


class WatchedSession(Session):
    """A session that reports every input, so tests can await state changes."""

    on_change: Callable[[], None] = staticmethod(lambda: None)

    def receive_data(self, data: bytes, now: float) -> list[Effect]:
        out = super().receive_data(data, now)
        self.on_change()
        return out

    def tick(self, now: float) -> list[Effect]:
        out = super().tick(now)
        self.on_change()
        return out

    def connection_lost(self, now: float) -> list[Effect]:
        out = super().connection_lost(now)
        self.on_change()
        return out


class End:
    """One session end as the suite sees it, whatever drives it."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.closes: list[str | None] = []  # the errors of the Close effects seen
        self.applied = 0
        self.ended = False  # the driver stopped (closed, lost or dropped)
        self._notify: Callable[[str], Awaitable[None]] | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    def effect(self, effect: Effect) -> None:
        if isinstance(effect, Close):
            self.closes.append(effect.error)
        elif isinstance(effect, Applied):
            self.applied += effect.entries

    @property
    def closed(self) -> bool:
        return self.ended or bool(self.closes)

    async def notify(self, event: str) -> None:
        assert self._notify is not None
        await self._notify(event)

    async def close(self) -> None:
        assert self._close is not None
        await self._close()


Raw = Callable[[bytes], Awaitable[None]]
"""Send raw bytes to the victim, as one transport unit (a write, a message)."""


class Harness:
    """A transport under test. Subclasses implement the four primitives."""

    name = "?"

    def __init__(self) -> None:
        self.changed = asyncio.Event()

    def session(self, log: MemLog, config: SessionConfig) -> WatchedSession:
        s = WatchedSession(log, self.now(), config)
        s.on_change = self.changed.set
        return s

    def now(self) -> float:
        return time.monotonic()

    async def connect(
        self, a: MemLog, b: MemLog, config: SessionConfig
    ) -> tuple[End, End]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def connect_raw(
        self, victim: MemLog, config: SessionConfig
    ) -> tuple[End, Raw]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Await until ``predicate()`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: condition not met in {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def aclose(self) -> None:
        pass


class _AsyncioHarness(Harness):
    """Shared by the asyncio transports: peers run as tasks."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[Any]] = []
        self.peers: list[Any] = []

    def end(self, session: Session) -> End:
        return End(session)

    def adopt(self, end: End, peer: Any) -> None:
        """Run ``peer`` (a StreamPeer-like driver) for ``end``."""
        end._notify, end._close = peer.notify, peer.close
        self.peers.append(peer)

        async def run() -> None:
            try:
                await peer.run()
            finally:
                end.ended = True
                self.changed.set()

        self.tasks.append(asyncio.create_task(run()))

    def handler(self, end: End) -> Callable[[Any, Effect], None]:
        def on_effect(_peer: Any, effect: Effect) -> None:
            end.effect(effect)
            self.changed.set()

        return on_effect

    async def aclose(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.aclose(), 2)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# -- (a) the in-memory link ---------------------------------------------------------


class _MemoryPeer:
    """The in-memory link's driver: ConnectionPair's perfect link, run by
    asyncio so that deadlines are real (one queue item per ``Send``; None is
    the end of the stream)."""

    def __init__(self, session: Session, inbox: asyncio.Queue, outbox: asyncio.Queue,
                 on_effect: Callable[[Any, Effect], None]) -> None:  # fmt: skip
        self.session, self.inbox, self.outbox, self.on_effect = session, inbox, outbox, on_effect
        self.done = self.eof_sent = False

    async def run(self) -> None:
        try:
            self._apply(self.session.start(time.monotonic()))
            while not self.done:
                deadline = self.session.next_deadline()
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    data = await asyncio.wait_for(self.inbox.get(), wait)
                except TimeoutError:
                    self._apply(self.session.tick(time.monotonic()))
                    continue
                if data is None:
                    self.session.connection_lost(time.monotonic())
                    break
                self._apply(self.session.receive_data(data, time.monotonic()))
        finally:
            await self.aclose()

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.outbox.put_nowait(effect.data)
            else:
                self.on_effect(self, effect)
                self.done = self.done or isinstance(effect, Close)

    async def notify(self, event: str) -> None:
        if not self.done:
            self._apply(self.session.local_entries(event, time.monotonic()))

    async def close(self) -> None:
        if not self.done:
            self._apply(self.session.close(time.monotonic()))

    async def aclose(self) -> None:
        if not self.eof_sent:  # the end of the stream, once
            self.done = self.eof_sent = True
            self.outbox.put_nowait(None)


class MemoryHarness(_AsyncioHarness):
    name = "memory"

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        qa: asyncio.Queue = asyncio.Queue()
        qb: asyncio.Queue = asyncio.Queue()
        ea, eb = End(self.session(a, config)), End(self.session(b, config))
        self.adopt(ea, _MemoryPeer(ea.session, qa, qb, self.handler(ea)))
        self.adopt(eb, _MemoryPeer(eb.session, qb, qa, self.handler(eb)))
        return ea, eb

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        inbox: asyncio.Queue = asyncio.Queue()
        end = End(self.session(victim, config))
        self.adopt(end, _MemoryPeer(end.session, inbox, asyncio.Queue(), self.handler(end)))

        async def raw(data: bytes) -> None:
            inbox.put_nowait(data)

        return end, raw


# -- (b) TCP -------------------------------------------------------------------------


class TcpHarness(_AsyncioHarness):
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


class WebSocketHarness(_AsyncioHarness):
    name = "websocket"

    def __init__(self) -> None:
        super().__init__()
        self.runners: list[web.AppRunner] = []
        self.clients: list[Any] = []

    async def _serve(self, log: MemLog, config: SessionConfig) -> tuple[End, str]:
        end = End(self.session(log, config))

        def on_peer(peer: WebSocketPeer) -> None:
            end._notify, end._close = peer.notify, peer.close
            self.peers.append(peer)
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
        self.changed.set()

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


# -- (d) the simulator's link ------------------------------------------------------------


class SimHarness(Harness):
    """Sessions joined by the simulator's :class:`~headcount.sim.network.Network`
    (a LAN link, stream transport) in virtual time: waiting runs the scheduler."""

    name = "sim"

    def __init__(self) -> None:
        super().__init__()
        self.sched = Scheduler()
        self.net = Network(self.sched, random.Random(1), "stream")

    def now(self) -> float:
        return self.sched.now

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        if not predicate():
            self.sched.run(self.sched.now + timeout, stop=predicate)
        assert predicate(), f"sim: condition not met in {timeout} virtual s"

    def _end(self, session: Session, link: Link, side: int) -> tuple[End, Callable[[Any], None]]:
        """Drive ``session`` at ``side`` of ``link``; returns its end and its
        delivery function (what the other side's sends arrive at)."""
        end = End(session)
        state: dict[str, Any] = {"peer": None, "timer": None}

        def run(effects: list[Effect]) -> None:
            for effect in effects:
                if isinstance(effect, Send):
                    self.net.send(link, 1 - side, effect.data, len(effect.data), "frame",
                                  state["peer"])  # fmt: skip
                else:
                    end.effect(effect)
                    if isinstance(effect, Close):
                        end.ended = True
                        self.net.send_control(link, 1 - side, None, state["peer"])
            arm()

        def arm() -> None:
            if state["timer"] is not None:
                state["timer"].cancel()
            deadline = session.next_deadline()
            if deadline is not None and not end.ended:
                tick = lambda: run(session.tick(self.sched.now))  # noqa: E731
                state["timer"] = self.sched.at(max(deadline, self.sched.now + 1e-6), tick)

        def deliver(item: Any) -> None:
            if end.ended:
                return
            if item is None:  # the connection closed
                session.connection_lost(self.sched.now)
                end.ended = True
            else:
                run(session.receive_data(item, self.sched.now))

        async def notify(event: str) -> None:
            run(session.local_entries(event, self.sched.now))

        async def close() -> None:
            run(session.close(self.sched.now))

        end._notify, end._close = notify, close
        end.start = lambda: run(session.start(self.sched.now))  # type: ignore[attr-defined]
        end.bind = lambda peer: state.__setitem__("peer", peer)  # type: ignore[attr-defined]
        return end, deliver

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        link = Link(0, 1, LAN)
        ea, deliver_a = self._end(self.session(a, config), link, 0)
        eb, deliver_b = self._end(self.session(b, config), link, 1)
        ea.bind(deliver_b)  # type: ignore[attr-defined]
        eb.bind(deliver_a)  # type: ignore[attr-defined]
        ea.start()  # type: ignore[attr-defined]
        eb.start()  # type: ignore[attr-defined]
        return ea, eb

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        link = Link(0, 1, LAN)
        end, deliver = self._end(self.session(victim, config), link, 1)
        end.bind(lambda _item: None)  # type: ignore[attr-defined]  # the raw peer ignores us
        end.start()  # type: ignore[attr-defined]

        async def raw(data: bytes) -> None:
            self.net.send(link, 1, data, len(data), "raw", deliver)

        return end, raw


HARNESSES: dict[str, Callable[[], Harness]] = {
    "memory": MemoryHarness,
    "tcp": TcpHarness,
    "websocket": WebSocketHarness,
    "sim": SimHarness,
}


# -- the suite ---------------------------------------------------------------------------


def fill(log: MemLog, n: int, start: int = 0) -> None:
    for i in range(n):
        log.append(EV, f"update-{log.device_id}-{start + i}".encode() * 3, hlc=start + i + 1)


def synced(*ends: End) -> Callable[[], bool]:
    return lambda: all(e.session.status.status is SyncStatus.SYNCED for e in ends)


def opened(*ends: End) -> Callable[[], bool]:
    """Both handshakes done (with nothing to sync, no status turns SYNCED)."""
    return lambda: all(e.session.state is State.OPEN for e in ends)


async def converges_both_ways(h: Harness) -> None:
    a, b = make_devices(2)
    fill(a, 30)
    fill(b, 7)
    ea, eb = await h.connect(a, b, SessionConfig())
    want = {a.device_id: 30, b.device_id: 7}
    await h.wait_until(lambda: a.version_vector(EV) == b.version_vector(EV) == want)
    await h.wait_until(synced(ea, eb))
    assert (ea.applied, eb.applied) == (7, 30)
    assert not ea.closed and not eb.closed


async def large_backlog_arrives_in_bounded_batches(h: Harness) -> None:
    a, b = make_devices(2)
    fill(a, 2_000)
    config = SessionConfig(batch_bytes=4_000, window=2)
    sizes: list[int] = []
    original = a.segments_since

    def spy(event: str, vv: Any, max_bytes: int) -> Any:
        segs = original(event, vv, max_bytes)
        sizes.append(sum(s.size for s in segs))
        return segs

    a.segments_since = spy  # type: ignore[method-assign]
    ea, eb = await h.connect(a, b, config)
    await h.wait_until(lambda: b.version_vector(EV) == {a.device_id: 2_000}, 20)
    assert max(sizes) <= 4_000 + 200  # one entry may straddle the budget
    assert len([s for s in sizes if s]) > 20
    assert max(ea.session.in_flight.values()) <= config.window
    assert eb.applied == 2_000


async def new_local_entries_are_pushed(h: Harness) -> None:
    a, b = make_devices(2)
    ea, eb = await h.connect(a, b, SessionConfig())  # anti-entropy every 30 s: not in play
    await h.wait_until(opened(ea, eb))
    fill(a, 3)
    await ea.notify(EV)
    await h.wait_until(lambda: b.version_vector(EV) == {a.device_id: 3})
    fill(b, 2, start=10)
    await eb.notify(EV)
    await h.wait_until(lambda: a.version_vector(EV) == {a.device_id: 3, b.device_id: 2})


async def garbage_closes_with_a_protocol_error(h: Harness) -> None:
    (victim,) = make_devices(1)
    fill(victim, 5)
    before = victim.version_vector(EV)
    end, raw = await h.connect_raw(victim, SessionConfig())
    await raw(struct.pack(">I", 12) + b"\xc1" * 12)  # a frame whose body is no msgpack
    await h.wait_until(lambda: end.closed, 5)
    assert end.closes and end.closes[0] not in (None, "timeout"), end.closes
    assert end.session.status.status is SyncStatus.FAILED
    assert victim.version_vector(EV) == before and victim.entry_count(EV) == 5


async def clean_close_is_seen_by_both_sides(h: Harness) -> None:
    a, b = make_devices(2)
    fill(a, 2)
    ea, eb = await h.connect(a, b, SessionConfig())
    await h.wait_until(synced(ea, eb))
    await ea.close()
    await h.wait_until(lambda: ea.closed and eb.closed, 5)
    assert ea.closes == [None] and eb.closes == [None]
    assert eb.session.status.error is None


async def silent_peer_is_dropped_after_idle_timeout(h: Harness) -> None:
    (victim,) = make_devices(1)
    start = h.now()
    end, _raw = await h.connect_raw(victim, FAST)  # connects, then never says a word
    await h.wait_until(lambda: end.closed, 5)
    elapsed = h.now() - start
    assert end.closes == ["timeout"]
    assert FAST.idle_timeout - 0.05 <= elapsed < FAST.idle_timeout + 2.0, elapsed


SUITE: list[Callable[[Harness], Awaitable[None]]] = [
    converges_both_ways,
    large_backlog_arrives_in_bounded_batches,
    new_local_entries_are_pushed,
    garbage_closes_with_a_protocol_error,
    clean_close_is_seen_by_both_sides,
    silent_peer_is_dropped_after_idle_timeout,
]


async def run_case(make: Callable[[], Harness], case: Callable[[Harness], Awaitable[None]]) -> None:
    """Run one case on a fresh harness, always cleaning up."""
    h = make()
    try:
        await case(h)
    finally:
        await h.aclose()

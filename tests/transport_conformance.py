"""One conformance suite for every transport that carries sessions.

Each transport is wrapped in a :class:`Harness` that joins two sessions
(:meth:`Harness.connect`), or a session and a raw peer that sends whatever
bytes a test wants (:meth:`Harness.connect_raw`), that keeps such a peer
talking (:meth:`Harness.keep_sending`), and that waits for a condition
(:meth:`Harness.wait_until`): asyncio transports await a change of any
session with a real timeout; the simulator advances its virtual clock.
The cases in :data:`SUITE` only use this interface, so every transport runs
the very same code (automerge-repo's network-adapter-tests idea).

Sessions are :class:`WatchedSession`: they record every input and every
message they send with the time, so a case can check not only what a driver
did but when (a driver must honour the session's deadlines on every turn,
not only when its link goes quiet).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from headcount.net.driver import BeforeSend, EffectHandler, SessionDriver
from headcount.net.stream import StreamPeer
from headcount.net.websocket import WebSocketPeer, dial, sync_app
from headcount.protocol.logview import LogView
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
from headcount.protocol.wire import (
    Ack,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Segments,
    Summary,
    decode_body,
    encode,
)
from headcount.sim.network import LAN, Link, Network
from headcount.sim.scheduler import Scheduler, Timer

from .protocol_helpers import make_devices

EV = "ev"
FAST = SessionConfig(idle_timeout=0.3, keepalive_interval=0.1, ack_timeout=2.0)


@dataclass(frozen=True, slots=True)
class Input:
    """One call into a watched session: when, which method, what it returned."""

    at: float
    method: str
    effects: tuple[Effect, ...]


class WatchedSession(Session):
    """A session that reports every input, so tests can await state changes,
    and records every input (:attr:`inputs`) and every message it sends
    (:attr:`sent`, as ``(now, message)``), so tests can check when a driver
    let it act."""

    on_change: Callable[[], None] = staticmethod(lambda: None)

    def __init__(self, log: LogView, now: float, config: SessionConfig) -> None:
        super().__init__(log, now, config)
        self.inputs: list[Input] = []
        self.sent: list[tuple[float, Message]] = []
        self._depth = 0  # inputs call one another (tick -> anti_entropy): record once

    def start(self, now: float) -> list[Effect]:
        return self._watch("start", lambda: Session.start(self, now), now)

    def receive_data(self, data: bytes, now: float) -> list[Effect]:
        return self._watch("receive_data", lambda: Session.receive_data(self, data, now), now)

    def tick(self, now: float) -> list[Effect]:
        return self._watch("tick", lambda: Session.tick(self, now), now)

    def local_entries(self, event: str, now: float) -> list[Effect]:
        return self._watch("local_entries", lambda: Session.local_entries(self, event, now), now)

    def anti_entropy(self, now: float) -> list[Effect]:
        return self._watch("anti_entropy", lambda: Session.anti_entropy(self, now), now)

    def close(self, now: float, code: str = "bye", message: str = "") -> list[Effect]:
        return self._watch("close", lambda: Session.close(self, now, code, message), now)

    def connection_lost(self, now: float) -> list[Effect]:
        return self._watch("connection_lost", lambda: Session.connection_lost(self, now), now)

    def _watch(self, method: str, call: Callable[[], list[Effect]], now: float) -> list[Effect]:
        self._depth += 1
        try:
            effects = call()
        finally:
            self._depth -= 1
        if not self._depth:
            self.inputs.append(Input(now, method, tuple(effects)))
            for effect in effects:
                if isinstance(effect, Send):
                    self.sent.append((now, decode_body(effect.data[4:])))
            self.on_change()
        return effects

    def first_sent(self, kind: type[Message]) -> float | None:
        """When the first ``kind`` message was sent (None: not yet)."""
        return next((t for t, m in self.sent if isinstance(m, kind)), None)

    def first_applied(self) -> float | None:
        """When the first input that applied entries was taken (None: not yet)."""
        applied = (i.at for i in self.inputs if any(isinstance(e, Applied) for e in i.effects))
        return next(applied, None)

    def received_between(self, start: float, end: float) -> int:
        """How many times the driver fed received bytes in ``[start, end)``."""
        return sum(1 for i in self.inputs if i.method == "receive_data" and start <= i.at < end)


class Driver(Protocol):
    """What the suite asks of whatever drives a session: a
    :class:`~headcount.net.driver.SessionDriver`, the simulator's peer."""

    async def notify(self, event: str) -> None: ...

    async def close(self) -> None: ...


class End:
    """One session end as the suite sees it, whatever drives it."""

    def __init__(self, session: WatchedSession) -> None:
        self.session = session
        self.closes: list[str | None] = []  # the errors of the Close effects seen
        self.applied = 0
        self.ended = False  # the driver stopped (closed, lost or dropped)
        self.driver: Driver | None = None  # set by the harness

    def effect(self, effect: Effect) -> None:
        if isinstance(effect, Close):
            self.closes.append(effect.error)
        elif isinstance(effect, Applied):
            self.applied += effect.entries

    @property
    def closed(self) -> bool:
        return self.ended or bool(self.closes)

    async def notify(self, event: str) -> None:
        assert self.driver is not None
        await self.driver.notify(event)

    async def close(self) -> None:
        assert self.driver is not None
        await self.driver.close()


Raw = Callable[[bytes], Awaitable[None]]
"""Send raw bytes to the victim, as one transport unit (a write, a message)."""

BURST = 8  # frames of steady traffic sent on each turn of the event loop (asyncio)
SIM_TRAFFIC_EVERY = 0.01  # virtual seconds between frames of steady traffic


async def next_turn() -> None:
    """Let the event loop run a turn (every other ready task runs once).
    Yields; waits for nothing."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


class Harness:
    """A transport under test. Subclasses implement the primitives
    (``connect``, ``connect_raw``; the simulator also ``now``,
    ``wait_until`` and ``keep_sending``)."""

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

    async def keep_sending(
        self,
        raw: Raw,
        frame: Callable[[int], bytes],
        until: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        """Steady traffic: send ``frame(0)``, ``frame(1)``, ... to a raw
        victim until ``until()`` holds; AssertionError after ``timeout``.

        On the asyncio transports the peer is faster than the victim: a
        burst goes out on every turn of the event loop, whatever the victim
        is doing (as a peer in another process would send).
        """
        deadline = time.monotonic() + timeout
        numbers = itertools.count()
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: condition not met in {timeout} s of traffic")
            for _ in range(BURST):
                await raw(frame(next(numbers)))
            await next_turn()

    async def aclose(self) -> None:
        pass


class _AsyncioHarness(Harness):
    """Shared by the asyncio transports: peers are
    :class:`~headcount.net.driver.SessionDriver` and run as tasks.
    ``before_send`` (settable) is given to every driver, as the node gives
    them its group commit."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[asyncio.Task[Any]] = []
        self.peers: list[SessionDriver[Any]] = []
        self.before_send: BeforeSend | None = None

    def track(self, end: End, peer: SessionDriver[Any]) -> None:
        """``peer`` drives ``end`` (it runs elsewhere: see :meth:`adopt`)."""
        end.driver = peer
        peer.before_send = self.before_send
        self.peers.append(peer)

    def adopt(self, end: End, peer: SessionDriver[Any]) -> None:
        """Run ``peer`` for ``end``."""
        self.track(end, peer)

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


class MemoryHarness(_AsyncioHarness):
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


class _SimPeer:
    """The simulator's driver for one session at one side of a link: sends
    ride the :class:`~headcount.sim.network.Network`, and a scheduler timer
    is armed at :meth:`Session.next_deadline` after every input."""

    def __init__(self, h: SimHarness, end: End, link: Link, side: int) -> None:
        self.h, self.end, self.link, self.side = h, end, link, side
        self.session = end.session
        self.far: Callable[[Any], None] = lambda _item: None  # the other side's deliver
        self.timer: Timer | None = None

    def start(self) -> None:
        self._run(self.session.start(self.h.sched.now))

    def deliver(self, item: Any) -> None:
        """What the other side sent arrives (None: the connection closed)."""
        if self.end.ended:
            return
        if item is None:
            self.session.connection_lost(self.h.sched.now)
            self.end.ended = True
        else:
            self._run(self.session.receive_data(item, self.h.sched.now))

    async def notify(self, event: str) -> None:
        self._run(self.session.local_entries(event, self.h.sched.now))

    async def close(self) -> None:
        self._run(self.session.close(self.h.sched.now))

    def _run(self, effects: list[Effect]) -> None:
        net, to = self.h.net, 1 - self.side
        for effect in effects:
            if isinstance(effect, Send):
                net.send(self.link, to, effect.data, len(effect.data), "frame", self.far)
            else:
                self.end.effect(effect)
                if isinstance(effect, Close):
                    self.end.ended = True
                    net.send_control(self.link, to, None, self.far)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.session.next_deadline()
        if deadline is not None and not self.end.ended:
            sched = self.h.sched
            tick = lambda: self._run(self.session.tick(sched.now))  # noqa: E731
            self.timer = sched.at(max(deadline, sched.now + 1e-6), tick)


class _SimRaw:
    """A raw peer on the simulator's link: sends bytes at once, as one unit."""

    def __init__(self, h: SimHarness, link: Link, victim: _SimPeer) -> None:
        self.h, self.link, self.victim = h, link, victim

    async def __call__(self, data: bytes) -> None:
        self.send(data)

    def send(self, data: bytes) -> None:
        self.h.net.send(self.link, self.victim.side, data, len(data), "raw", self.victim.deliver)


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

    async def keep_sending(
        self,
        raw: Raw,
        frame: Callable[[int], bytes],
        until: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        """Steady traffic in virtual time: a frame every ``SIM_TRAFFIC_EVERY`` s."""
        assert isinstance(raw, _SimRaw)
        numbers = itertools.count()

        def send() -> None:
            if not until():
                raw.send(frame(next(numbers)))
                self.sched.after(SIM_TRAFFIC_EVERY, send)

        send()
        await self.wait_until(until, timeout)

    def _peer(self, log: MemLog, config: SessionConfig, link: Link, side: int) -> _SimPeer:
        end = End(self.session(log, config))
        peer = end.driver = _SimPeer(self, end, link, side)
        return peer

    async def connect(self, a: MemLog, b: MemLog, config: SessionConfig) -> tuple[End, End]:
        link = Link(0, 1, LAN)
        pa, pb = self._peer(a, config, link, 0), self._peer(b, config, link, 1)
        pa.far, pb.far = pb.deliver, pa.deliver
        pa.start()
        pb.start()
        return pa.end, pb.end

    async def connect_raw(self, victim: MemLog, config: SessionConfig) -> tuple[End, Raw]:
        link = Link(0, 1, LAN)
        peer = self._peer(victim, config, link, 1)  # its sends go nowhere: raw peers ignore them
        peer.start()
        return peer.end, _SimRaw(self, link, peer)


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


# -- deadlines: a driver ticks the session on every turn --------------------------------

DUE = 0.2  # the timer under test (seconds)
LATE = 0.5  # how late a timer may fire on a busy machine (the old drivers: never, under traffic)


def _opening(peer: MemLog, *then: Message) -> bytes:
    """A raw peer's first unit: its Hello (speaking ``EV``), then ``then``."""
    return b"".join(encode(m) for m in (Hello(peer.device_id, (EV,)), *then))


def _on_time(session: WatchedSession, due: float, fired: float) -> None:
    """A timer due at ``due`` fired at ``fired``: late by at most the input
    the driver was taking when it fell due (the driver checks the session's
    deadline after every input), never by the traffic behind it."""
    # (the session compares ``now - start >= interval``: allow its rounding)
    assert due - 1e-9 <= fired < due + LATE, f"fired {fired - due:+.3f} s after its deadline"
    late = session.received_between(due, fired)
    assert late <= 1, f"{late} inputs taken after the deadline, before the timer"


async def _delayed_ack_under(h: Harness, traffic: Callable[[MemLog, int], bytes]) -> None:
    """A peer sends a batch, then keeps sending ``traffic(peer, n)``: the
    batch's ``Ack``, delayed by ``ack_delay``, must go out on time."""
    victim, peer = make_devices(2)
    fill(peer, 1)
    batch = Segments(EV, tuple(peer.segments_since(EV, {}, 1 << 16)))
    end, raw = await h.connect_raw(victim, SessionConfig(ack_delay=DUE))
    await raw(_opening(peer, batch))
    acked = lambda: end.session.first_sent(Ack) is not None  # noqa: E731
    await h.keep_sending(raw, lambda n: traffic(peer, n), until=acked, timeout=3)
    applied, ack = end.session.first_applied(), end.session.first_sent(Ack)
    assert applied is not None and ack is not None
    assert victim.version_vector(EV) == {peer.device_id: 1}
    _on_time(end.session, applied + DUE, ack)


async def delayed_ack_is_sent_on_time_under_steady_traffic(h: Harness) -> None:
    """An ``Ack`` delayed by ``ack_delay`` goes out at its deadline while the
    peer keeps talking (pings, faster than the delay), not once it stops."""
    await _delayed_ack_under(h, lambda _peer, n: encode(Ping(n)))


async def keepalive_is_sent_on_time_under_steady_traffic(h: Harness) -> None:
    """The keepalive ``Ping`` goes out ``keepalive_interval`` after the last
    frame sent while the peer keeps talking (pongs, which need no answer)."""
    victim, peer = make_devices(2)
    end, raw = await h.connect_raw(victim, SessionConfig(keepalive_interval=DUE))
    await raw(_opening(peer))
    await h.wait_until(opened(end))
    pinged = lambda: end.session.first_sent(Ping) is not None  # noqa: E731
    await h.keep_sending(raw, lambda n: encode(Pong(n)), until=pinged, timeout=3)
    ping = end.session.first_sent(Ping)
    assert ping is not None
    last_sent = max(t for t, _m in end.session.sent if t < ping)
    _on_time(end.session, last_sent + DUE, ping)


async def retransmission_is_on_time_after_a_local_push(h: Harness) -> None:
    """Entries pushed on a quiet link and never acknowledged are sent again
    ``ack_timeout`` later: a local input (``notify``) that brings the
    session's deadline forward re-arms the driver's timer."""
    victim, peer = make_devices(2)
    config = SessionConfig(ack_timeout=DUE)  # keepalive 10 s, idle 30 s: nothing else due
    end, raw = await h.connect_raw(victim, config)
    await raw(_opening(peer, Summary(EV, {}, False)))  # holds nothing, acknowledges nothing
    await h.wait_until(synced(end))
    fill(victim, 2)
    await end.notify(EV)
    await h.wait_until(lambda: end.session.status.retries > 0, 3)
    first, again = [t for t, m in end.session.sent if isinstance(m, Segments)][:2]
    _on_time(end.session, first + DUE, again)


async def local_close_ends_the_driver_at_once(h: Harness) -> None:
    """``close()`` says ``Goodbye`` and the driver ends at once, without
    waiting for the peer (which here never answers) or for a deadline."""
    victim, peer = make_devices(2)
    end, raw = await h.connect_raw(victim, SessionConfig())  # nothing due for 10 s
    await raw(_opening(peer))
    await h.wait_until(opened(end))
    await end.close()
    await h.wait_until(lambda: end.ended, 2)
    assert isinstance(end.session.sent[-1][1], Goodbye)
    assert end.closes == [None]


async def one_turn(_event: str) -> None:
    """A durability wait as the node's group commit makes one: the frame
    goes out on a later turn of the event loop (for ``before_send``)."""
    await next_turn()


async def delayed_ack_is_sent_on_time_while_replies_wait_for_durability(h: Harness) -> None:
    """As :func:`delayed_ack_is_sent_on_time_under_steady_traffic`, with the
    peer asking for summaries: every reply is about the event, so (with
    ``before_send``) every turn of the driver waits, and more traffic arrives
    meanwhile: no read ever has to wait, on any transport."""
    await _delayed_ack_under(h, lambda peer, _n: encode(Summary(EV, {peer.device_id: 1}, True)))


SUITE: list[Callable[[Harness], Awaitable[None]]] = [
    converges_both_ways,
    large_backlog_arrives_in_bounded_batches,
    new_local_entries_are_pushed,
    garbage_closes_with_a_protocol_error,
    clean_close_is_seen_by_both_sides,
    silent_peer_is_dropped_after_idle_timeout,
    delayed_ack_is_sent_on_time_under_steady_traffic,
    keepalive_is_sent_on_time_under_steady_traffic,
    retransmission_is_on_time_after_a_local_push,
    local_close_ends_the_driver_at_once,
]


async def run_case(make: Callable[[], Harness], case: Callable[[Harness], Awaitable[None]]) -> None:
    """Run one case on a fresh harness, always cleaning up."""
    h = make()
    try:
        await case(h)
    finally:
        await h.aclose()

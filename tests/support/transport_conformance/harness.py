"""What every transport's harness offers the conformance cases.

Sessions are :class:`WatchedSession`: they record every input and every
message they send with the time, so a case can check not only what a driver
did but when. An :class:`End` is one session end as the cases see it,
whatever drives it; a :class:`Harness` joins two ends, or an end and a raw
peer, and waits; :class:`AsyncioHarness` is what the asyncio transports
share.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from headcount.net.driver import BeforeSend, SessionDriver
from headcount.protocol.logview import LogView
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import Applied, Close, Effect, Send, Session, SessionConfig
from headcount.protocol.wire import Message, decode_body

from ..wait import Pulse, await_until


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
        self.changed = Pulse()  # beats on every input of every session, every effect, every end

    def session(self, log: MemLog, config: SessionConfig) -> WatchedSession:
        s = WatchedSession(log, self.now(), config)
        s.on_change = self.changed.beat
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
        """Await until ``predicate()`` holds, checked on every change of a
        session; AssertionError after ``timeout``."""
        await await_until(predicate, timeout, f"{self.name}: the condition", pulse=self.changed)

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


class AsyncioHarness(Harness):
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
                self.changed.beat()

        self.tasks.append(asyncio.create_task(run()))

    def handler(self, end: End) -> Callable[[Any, Effect], None]:
        def on_effect(_peer: Any, effect: Effect) -> None:
            end.effect(effect)
            self.changed.beat()

        return on_effect

    async def aclose(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.aclose(), 2)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_case(make: Callable[[], Harness], case: Callable[[Harness], Awaitable[None]]) -> None:
    """Run one case on a fresh harness, always cleaning up."""
    h = make()
    try:
        await case(h)
    finally:
        await h.aclose()

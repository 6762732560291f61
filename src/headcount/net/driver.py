"""What every transport's session driver shares (stream, WebSocket).

A driver feeds a :class:`~headcount.session.Session` the bytes and the time,
carries out its effects, and ends when the session or the connection does.
:class:`SessionDriver` owns the run loop, and with it the session's timers:

1. It waits for the transport's next input, but never past the session's
   :meth:`~headcount.session.Session.next_deadline`.
2. After every input, and whenever the wait ends at the deadline, it calls
   :meth:`~headcount.session.Session.tick` if the deadline has passed. A link
   with steady inbound traffic (whose reads never time out) still gets its
   delayed acks, retransmissions and keepalives on time, as the simulator
   gives them.
3. A local input from another task (:meth:`notify`, :meth:`anti_entropy`,
   :meth:`close`) may bring the deadline forward, or end the session: the
   pending wait is moved to the new deadline, or ends at once.

Subclasses provide only the transport: :meth:`_read` (wait for one message
or chunk), :meth:`_on_read` (hand it to the session, or act on a transport
event such as the end of the stream), :meth:`_send` (one frame),
:meth:`_flush` and :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    EntryRefused,
    EquivocationFound,
    PeerIdentified,
    RevocationRefused,
    RevocationsLearnt,
    Send,
    Session,
    SnapshotRefused,
)

DRAIN_TIMEOUT = 10.0
# The shortest wait for input: a deadline that a tick did not move (it is
# already served) must not turn the loop into a busy one.
_MIN_WAIT = 1e-3

EffectHandler = Callable[[Any, Effect], None]
BeforeSend = Callable[[str], Awaitable[None]]
Item = TypeVar("Item")
"""What the transport reads at once: a chunk of a stream, a WebSocket message."""


class SessionDriver(Generic[Item]):
    """Args:
    session: a fresh (IDLE) session.
    on_effect: called for every application effect (``Applied``,
        ``EquivocationFound``, ``PeerIdentified``, ``Close``).
    clock: monotonic seconds (injectable for tests).
    drain_timeout: a send that does not complete in this many seconds (the
        peer stopped reading) drops the peer.

    ``before_send(event)`` (settable after construction) is awaited before
    the first frame about each event in a batch of sends: the node's group
    commit, so that nothing is acknowledged or forwarded before it is
    durable. If it raises, the peer is dropped.
    """

    transport_errors: tuple[type[BaseException], ...] = (ConnectionError, OSError)
    """Errors of the transport that drop the peer (``connection error: ...``)."""

    def __init__(
        self,
        session: Session,
        on_effect: EffectHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.session = session
        self.on_effect = on_effect
        self.clock = clock
        self.drain_timeout = drain_timeout
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.before_send: BeforeSend | None = None
        self._wanted: dict[str, None] = {}  # events to push, in request order
        self._pusher: asyncio.Task[None] | None = None
        self._timer: asyncio.Timeout | None = None  # bounds the pending read, while one is

    # -- the transport (subclasses) -------------------------------------------

    async def _read(self) -> Item:  # pragma: no cover - provided by subclasses
        """Wait for the next message or chunk from the peer (never None).
        Cancelled when the session's deadline comes first, so it must lose
        nothing then."""
        raise NotImplementedError

    async def _on_read(self, item: Item) -> None:  # pragma: no cover - by subclasses
        """Act on what :meth:`_read` returned: usually :meth:`_deliver` it."""
        raise NotImplementedError

    async def _send(self, data: bytes) -> bool:  # pragma: no cover - by subclasses
        """Send one frame; False (and the peer dropped) if that failed."""
        raise NotImplementedError

    async def _flush(self) -> None:
        """Called after a batch of sends (streams drain their buffer here)."""

    async def aclose(self) -> None:  # pragma: no cover - provided by subclasses
        """Close the transport (the driver is finished: ``closed`` is set)."""
        raise NotImplementedError

    # -- the run loop ------------------------------------------------------------

    async def run(self) -> None:
        """Run until the session or the connection ends. Never raises for
        anything the peer does."""
        try:
            await self._apply(self.session.start(self.clock()))
            deadline = self.session.next_deadline()
            while not self.closed.is_set():
                # asyncio.timeout, not wait_for: wait_for runs the read in a
                # new task, two extra turns of the loop per message. _rearm
                # moves this timer when another task changes the session.
                timer = asyncio.timeout_at(self._loop_time(deadline))
                item: Item | None = None
                try:
                    async with timer:
                        self._timer = timer
                        item = await self._read()
                except TimeoutError:
                    if not timer.expired():
                        raise  # the transport's own: a connection error
                finally:
                    self._timer = None
                if item is not None:
                    await self._on_read(item)
                # Every turn, whether it brought input or the deadline: steady
                # traffic must not hold the session's timers back.
                deadline = self.session.next_deadline()
                if deadline is not None and deadline <= self.clock():
                    deadline = await self._tick()
        except self.transport_errors as exc:
            self._lost(f"connection error: {exc}")
        finally:
            await self.aclose()

    async def _tick(self) -> float | None:
        """The session's deadline has passed: tick it; its next deadline."""
        await self._apply(self.session.tick(self.clock()))
        return self.session.next_deadline()

    async def _deliver(self, data: bytes) -> None:
        """Hand bytes from the peer to the session and carry out its effects."""
        await self._apply(self.session.receive_data(data, self.clock()))

    def _rearm(self) -> None:
        """Another task changed the session while a read is pending: bring
        its timer forward to the session's deadline, or end the wait if the
        driver finished. (In the run loop's own turn, no read is pending.)
        A deadline that moved later is left alone: the early wake finds
        nothing due and waits again."""
        timer = self._timer
        if timer is None or timer.expired():
            return
        if self.closed.is_set():
            timer.reschedule(asyncio.get_running_loop().time())
            return
        when, current = self._loop_time(self.session.next_deadline()), timer.when()
        if when is not None and (current is None or when < current):
            timer.reschedule(when)

    def _loop_time(self, deadline: float | None) -> float | None:
        """``deadline`` (the session's clock) on the event loop's clock."""
        if deadline is None:
            return None
        wait = max(_MIN_WAIT, deadline - self.clock())
        return asyncio.get_running_loop().time() + wait

    # -- local inputs --------------------------------------------------------------

    async def notify(self, event: str) -> None:
        """New entries of ``event`` are available locally: push them."""
        if not self.closed.is_set():
            await self._apply(self.session.local_entries(event, self.clock()))

    def request_push(self, event: str) -> None:
        """Like :meth:`notify`, without waiting: requests made while a push
        is under way are served together by the next one (under load, one
        message then carries what several notifications would have)."""
        if self.closed.is_set():
            return
        self._wanted[event] = None
        if self._pusher is None:
            self._pusher = asyncio.ensure_future(self._push_wanted())

    async def _push_wanted(self) -> None:
        try:
            while self._wanted and not self.closed.is_set():
                event = next(iter(self._wanted))
                del self._wanted[event]
                await self.notify(event)
        finally:
            self._pusher = None

    async def anti_entropy(self) -> None:
        if not self.closed.is_set():
            await self._apply(self.session.anti_entropy(self.clock()))

    async def close(self) -> None:
        """Close cleanly: the session's ``Goodbye``, then the transport."""
        if not self.closed.is_set():
            await self._apply(self.session.close(self.clock()))

    # -- effects ----------------------------------------------------------------------

    async def _apply(self, effects: list[Effect]) -> None:
        durable: set[str] = set()
        for effect in effects:
            if isinstance(effect, Send):
                event = effect.event
                if self.before_send is not None and event is not None and event not in durable:
                    if not await self._durable(event):
                        return
                    durable.add(event)
                if not await self._send(effect.data):
                    return
            elif isinstance(effect, Close):
                if self.on_effect:
                    self.on_effect(self, effect)
                self._finish(effect.error or "closed")
            elif (
                isinstance(effect, Applied | EquivocationFound | EntryRefused | PeerIdentified)
                or isinstance(effect, RevocationsLearnt | RevocationRefused | SnapshotRefused)
            ) and self.on_effect:
                self.on_effect(self, effect)
        await self._flush()
        self._rearm()

    async def _durable(self, event: str) -> bool:
        assert self.before_send is not None
        try:
            await self.before_send(event)
        except Exception as exc:  # the store failed: acknowledge nothing
            self._lost(f"local store failure: {exc}")
            return False
        return True

    def _lost(self, reason: str) -> None:
        self.session.connection_lost(self.clock())
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            self._rearm()

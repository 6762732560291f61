"""Drive one :class:`~headcount.session.Session` over an asyncio byte stream.

The driver is the only place where the session meets sockets and the clock:
it feeds received bytes and the monotonic time in, writes what the session
says to send, wakes the session at its deadlines, and enforces transport
limits the session cannot see (a peer that stops reading is dropped when the
write buffer does not drain in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from ..session import Applied, Close, Effect, EquivocationFound, PeerIdentified, Send, Session

READ_SIZE = 64 * 1024
DRAIN_TIMEOUT = 10.0

EffectHandler = Callable[["StreamPeer", Effect], None]


class StreamPeer:
    """One connection: a session, a reader and a writer.

    Args:
        session: a fresh (IDLE) session.
        reader, writer: the connected stream.
        on_effect: called for every application effect (``Applied``,
            ``EquivocationFound``, ``PeerIdentified``, ``Close``).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        session: Session,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_effect: EffectHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        drain_timeout: float = DRAIN_TIMEOUT,
    ) -> None:
        self.session = session
        self.reader = reader
        self.writer = writer
        self.on_effect = on_effect
        self.clock = clock
        self.drain_timeout = drain_timeout
        self.closed = asyncio.Event()
        self.close_reason: str | None = None

    async def run(self) -> None:
        """Run until the session or the connection ends. Never raises for
        anything the peer does."""
        try:
            await self._apply(self.session.start(self.clock()))
            while not self.closed.is_set():
                deadline = self.session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    data = await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
                except TimeoutError:
                    await self._apply(self.session.tick(self.clock()))
                    continue
                if not data:
                    self.session.connection_lost(self.clock())
                    self._finish("connection closed by peer")
                    break
                await self._apply(self.session.receive_data(data, self.clock()))
        except (ConnectionError, OSError) as exc:
            self.session.connection_lost(self.clock())
            self._finish(f"connection error: {exc}")
        finally:
            await self.aclose()

    async def notify(self, event: str) -> None:
        """New entries of ``event`` are available locally: push them."""
        if not self.closed.is_set():
            await self._apply(self.session.local_entries(event, self.clock()))

    async def anti_entropy(self) -> None:
        if not self.closed.is_set():
            await self._apply(self.session.anti_entropy(self.clock()))

    async def close(self) -> None:
        if not self.closed.is_set():
            await self._apply(self.session.close(self.clock()))

    async def _apply(self, effects: list[Effect]) -> None:
        wrote = False
        for effect in effects:
            if isinstance(effect, Send):
                self.writer.write(effect.data)
                wrote = True
            elif isinstance(effect, Close):
                if self.on_effect:
                    self.on_effect(self, effect)
                self._finish(effect.error or "closed")
            elif (
                isinstance(effect, Applied | EquivocationFound | PeerIdentified) and self.on_effect
            ):
                self.on_effect(self, effect)
        if wrote:
            try:
                await asyncio.wait_for(self.writer.drain(), self.drain_timeout)
            except TimeoutError:
                self.session.connection_lost(self.clock())
                self._finish("peer is not reading (write buffer did not drain)")
            except (ConnectionError, OSError) as exc:
                self.session.connection_lost(self.clock())
                self._finish(f"connection error: {exc}")

    def _finish(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()

    async def aclose(self) -> None:
        self._finish("closed")
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

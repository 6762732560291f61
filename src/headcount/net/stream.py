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

from headcount.protocol.session import Session

from .driver import DRAIN_TIMEOUT, EffectHandler, SessionDriver

READ_SIZE = 64 * 1024


class StreamPeer(SessionDriver):
    """One connection over an asyncio stream: a session, a reader and a writer.

    Args:
        session: a fresh (IDLE) session.
        reader, writer: the connected stream.
        on_effect, clock, drain_timeout: see :class:`SessionDriver`.
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
        super().__init__(session, on_effect, clock, drain_timeout)
        self.reader = reader
        self.writer = writer
        self._wrote = False

    async def run(self) -> None:
        """Run until the session or the connection ends. Never raises for
        anything the peer does."""
        try:
            await self._apply(self.session.start(self.clock()))
            while not self.closed.is_set():
                deadline = self.session.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self.clock())
                try:
                    # asyncio.timeout, not wait_for: wait_for runs the read in a
                    # new task, two extra turns of the loop per message.
                    async with asyncio.timeout(timeout):
                        data = await self.reader.read(READ_SIZE)
                except TimeoutError:
                    await self._apply(self.session.tick(self.clock()))
                    continue
                if not data:
                    self._lost("connection closed by peer")
                    break
                await self._apply(self.session.receive_data(data, self.clock()))
        except (ConnectionError, OSError) as exc:
            self._lost(f"connection error: {exc}")
        finally:
            await self.aclose()

    async def _send(self, data: bytes) -> bool:
        self.writer.write(data)  # buffered; drained once per batch in _flush
        self._wrote = True
        return True

    async def _flush(self) -> None:
        if not self._wrote:
            return
        self._wrote = False
        try:
            async with asyncio.timeout(self.drain_timeout):
                await self.writer.drain()
        except TimeoutError:
            self._lost("peer is not reading (write buffer did not drain)")
        except (ConnectionError, OSError) as exc:
            self._lost(f"connection error: {exc}")

    async def aclose(self) -> None:
        self._finish("closed")
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

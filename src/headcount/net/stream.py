"""Drive one :class:`~headcount.session.Session` over an asyncio byte stream.

The driver is the only place where the session meets sockets and the clock:
it feeds received bytes and the monotonic time in, writes what the session
says to send, and enforces transport limits the session cannot see (a peer
that stops reading is dropped when the write buffer does not drain in time).
The run loop, and with it the session's deadlines, is
:class:`~headcount.net.driver.SessionDriver`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from headcount.protocol.session import Session

from .driver import DRAIN_TIMEOUT, EffectHandler, SessionDriver

READ_SIZE = 64 * 1024


class StreamPeer(SessionDriver[bytes]):
    """One connection over an asyncio stream: a session, a reader and a writer.
    Each read (at most ``READ_SIZE`` bytes) is one input of the run loop.

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

    async def _read(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    async def _on_read(self, item: bytes) -> None:
        if item:
            await self._deliver(item)
        else:
            self._lost("connection closed by peer")

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

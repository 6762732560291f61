"""What every transport's session driver shares (stream, WebSocket).

A driver feeds a :class:`~headcount.session.Session` the bytes and the time,
carries out its effects, and ends when the session or the connection does.
Subclasses provide the transport: :meth:`run` (the read loop), :meth:`_send`
(one frame) and :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..session import Applied, Close, Effect, EquivocationFound, PeerIdentified, Send, Session

DRAIN_TIMEOUT = 10.0

EffectHandler = Callable[[Any, Effect], None]


class SessionDriver:
    """Args:
    session: a fresh (IDLE) session.
    on_effect: called for every application effect (``Applied``,
        ``EquivocationFound``, ``PeerIdentified``, ``Close``).
    clock: monotonic seconds (injectable for tests).
    drain_timeout: a send that does not complete in this many seconds (the
        peer stopped reading) drops the peer.
    """

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

    async def run(self) -> None:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    async def aclose(self) -> None:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    async def _send(self, data: bytes) -> bool:  # pragma: no cover - by subclasses
        """Send one frame; False (and the peer dropped) if that failed."""
        raise NotImplementedError

    async def _flush(self) -> None:
        """Called after a batch of sends (streams drain their buffer here)."""

    async def notify(self, event: str) -> None:
        """New entries of ``event`` are available locally: push them."""
        if not self.closed.is_set():
            await self._apply(self.session.local_entries(event, self.clock()))

    async def anti_entropy(self) -> None:
        if not self.closed.is_set():
            await self._apply(self.session.anti_entropy(self.clock()))

    async def close(self) -> None:
        """Close cleanly: the session's ``Goodbye``, then the transport."""
        if not self.closed.is_set():
            await self._apply(self.session.close(self.clock()))

    async def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if not await self._send(effect.data):
                    return
            elif isinstance(effect, Close):
                if self.on_effect:
                    self.on_effect(self, effect)
                self._finish(effect.error or "closed")
            elif (
                isinstance(effect, Applied | EquivocationFound | PeerIdentified) and self.on_effect
            ):
                self.on_effect(self, effect)
        await self._flush()

    def _lost(self, reason: str) -> None:
        self.session.connection_lost(self.clock())
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()

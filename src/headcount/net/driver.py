"""What every transport's session driver shares (stream, WebSocket).

A driver feeds a :class:`~headcount.session.Session` the bytes and the time,
carries out its effects, and ends when the session or the connection does.
Subclasses provide the transport: :meth:`run` (the read loop), :meth:`_send`
(one frame) and :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    EquivocationFound,
    PeerIdentified,
    Send,
    Session,
)

DRAIN_TIMEOUT = 10.0

EffectHandler = Callable[[Any, Effect], None]
BeforeSend = Callable[[str], Awaitable[None]]


class SessionDriver:
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
                isinstance(effect, Applied | EquivocationFound | PeerIdentified) and self.on_effect
            ):
                self.on_effect(self, effect)
        await self._flush()

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

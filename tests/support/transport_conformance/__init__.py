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

The package: ``harness`` (sessions, ends, the harness interface),
``asyncio_links`` (the in-memory link, TCP, WebSocket), ``sim_link`` (the
simulator's link), ``cases`` (the suite).
"""

from __future__ import annotations

from collections.abc import Callable

from .asyncio_links import MemoryHarness, TcpHarness, WebSocketHarness
from .cases import (
    EV,
    SUITE,
    delayed_ack_is_sent_on_time_while_replies_wait_for_durability,
    fill,
    one_turn,
)
from .harness import End, Harness, WatchedSession, run_case
from .sim_link import SimHarness

HARNESSES: dict[str, Callable[[], Harness]] = {
    "memory": MemoryHarness,
    "tcp": TcpHarness,
    "websocket": WebSocketHarness,
    "sim": SimHarness,
}

__all__ = [
    "EV",
    "HARNESSES",
    "SUITE",
    "End",
    "Harness",
    "MemoryHarness",
    "SimHarness",
    "TcpHarness",
    "WatchedSession",
    "WebSocketHarness",
    "delayed_ack_is_sent_on_time_while_replies_wait_for_durability",
    "fill",
    "one_turn",
    "run_case",
]

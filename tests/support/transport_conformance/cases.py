"""The cases every transport passes (:data:`SUITE`): each uses only the
:class:`~.harness.Harness` interface, so every transport runs the very same
code."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

from headcount.protocol.memlog import MemLog
from headcount.protocol.session import SessionConfig, State, SyncStatus
from headcount.protocol.wire import (
    Ack,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Segments,
    Summary,
    encode,
)

from ..protocol import make_devices
from .harness import End, Harness, WatchedSession, next_turn

EV = "ev"
FAST = SessionConfig(idle_timeout=0.3, keepalive_interval=0.1, ack_timeout=2.0)


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

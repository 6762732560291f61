"""One event's exchange with one peer (:class:`EventFlow`), and every event's
(:class:`Flows`).

A flow is what a session knows and owes about one event: what the peer
holds, what we sent it that is not acknowledged yet, the acknowledgement we
owe it. (A snapshot the peer is sending us is the session's
:class:`~.snapshot.SnapshotReceiver`'s: it is bounded across events.)
The session reads and writes flows; this
module holds their data and the rules that only touch that data (the
version-vector arithmetic), so that the session's methods say what happens
to a flow, not how its dictionaries change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count

from headcount.core.chain import Head, Segment


@dataclass(slots=True)
class EventFlow:
    """The state of one event's exchange with the peer."""

    event: str
    peer: dict[str, int] = field(default_factory=dict)
    """What the peer holds: what it told us (``Summary``, ``Ack``) and sent us."""
    peer_known: bool = False
    """Whether the peer has told us what it holds (a ``Summary``, an ``Ack``
    or ``Segments``); until then a local change asks for its ``Summary``."""
    sent: dict[str, int] = field(default_factory=dict)
    """``peer`` plus what we sent since: where the next batch starts."""
    in_flight: int = 0
    """Messages (``Segments``, a snapshot) sent and not acknowledged yet."""
    started: int = 0
    """Rank among the flows by when this one first had a batch in flight or
    an ``Ack`` (0: neither yet); lost batches are resent in this order."""
    progress: float | None = None
    """Last ``Ack``, or first send after nothing was in flight: the
    retransmission timer runs from here."""
    resynced: float = float("-inf")
    """When ``sent`` last fell back to ``peer``."""
    pending: int = 0
    """Entries the peer lacks (as of the last recount)."""
    unacked: int = 0
    """``Segments`` messages received and not acknowledged yet."""
    ack_due: float | None = None
    """When the delayed ``Ack`` is due (None: none is owed)."""
    ack_rank: int = 0
    """Rank among the owed ``Ack`` s: those due together go in this order."""

    def heard(self, vv: Mapping[str, int]) -> None:
        """The peer says it holds ``vv`` (a ``Summary`` or an ``Ack``).

        Only ever raises what we believe it holds, so a replayed or late
        message never makes us resend (lost batches are resent by the
        retransmission timer instead).
        """
        self.peer = vmax(self.peer, vv)
        self.sent = vmax(self.sent, vv)
        self.peer_known = True

    def holds(self, segments: Sequence[Segment]) -> None:
        """The peer sent us ``segments``, so it holds them: never echo them
        back (without this, every entry a relay forwards to a gate would
        return with the gate's next push)."""
        self.peer_known = True
        for seg in segments:
            _raise(self.peer, seg.head)
            _raise(self.sent, seg.head)

    def sent_through(self, heads: Iterable[Head]) -> None:
        """We sent everything up to ``heads``: the next batch starts after."""
        for head in heads:
            _raise(self.sent, head)

    def resync(self, now: float, ack_timeout: float) -> None:
        """With nothing in flight, what we sent and the peer does not hold was
        dropped on the way (a lossy or reordering transport, or entries the
        peer discarded): send it again from the peer's own account. At most
        once per ``ack_timeout``, so a peer that refuses entries cannot make
        us loop."""
        if self.in_flight or now - self.resynced < ack_timeout:
            return
        if self.sent != self.peer:
            self.sent = dict(self.peer)
            self.resynced = now

    def lost(self, now: float) -> int:
        """Everything in flight was lost: start again from what the peer
        holds. Returns how many messages were lost."""
        n, self.in_flight = self.in_flight, 0
        self.sent = dict(self.peer)
        self.progress = now
        return n

    def recount(self, mine: Mapping[str, int]) -> None:
        """Recount what the peer lacks, given our version vector ``mine``."""
        peer = self.peer
        if mine == peer:
            self.pending = 0
        else:
            self.pending = sum(max(0, n - peer.get(d, 0)) for d, n in mine.items())


class Flows:
    """Every event's flow with one peer, by event; the questions about all of
    them at once (timers, totals) and the order in which their timers fire."""

    def __init__(self) -> None:
        self._flows: dict[str, EventFlow] = {}
        self._ranks = count(1)

    def get(self, event: str) -> EventFlow | None:
        """The flow of ``event``, if it has begun."""
        return self._flows.get(event)

    def of(self, event: str) -> EventFlow:
        """The flow of ``event``, begun on first use."""
        flow = self._flows.get(event)
        if flow is None:
            flow = self._flows[event] = EventFlow(event)
        return flow

    def dispatched(self, flow: EventFlow, now: float) -> None:
        """One more message of ``flow`` (a batch, a snapshot) awaits its
        ``Ack``; the first of them starts the retransmission clock."""
        if not flow.in_flight:
            flow.progress = now
        flow.in_flight += 1
        self._start(flow)

    def acknowledged(self, flow: EventFlow, messages: int, now: float) -> None:
        """The peer acknowledged ``messages`` of ``flow``'s messages."""
        flow.in_flight = max(0, flow.in_flight - messages)
        flow.progress = now
        self._start(flow)

    def owe_ack(self, flow: EventFlow, due: float) -> None:
        """We owe the peer an ``Ack`` of ``flow`` by ``due`` (unless one is
        already owed: the first message waiting sets the deadline)."""
        if flow.ack_due is None:
            flow.ack_due = due
            flow.ack_rank = next(self._ranks)

    def acks_due(self, now: float) -> list[EventFlow]:
        """Flows whose delayed ``Ack`` is due, in the order they were owed."""
        due = [f for f in self._flows.values() if f.ack_due is not None and f.ack_due <= now]
        return sorted(due, key=_by_ack_rank)

    def timed_out(self, now: float, ack_timeout: float) -> list[EventFlow]:
        """Flows with messages unacknowledged for ``ack_timeout``, in the
        order the flows started."""
        late = [
            f
            for f in self._flows.values()
            if f.in_flight and now - (now if f.progress is None else f.progress) >= ack_timeout
        ]
        return sorted(late, key=_by_start)

    def deadlines(self, ack_timeout: float) -> list[float]:
        """When owed ``Ack`` s fall due and unacknowledged messages time out."""
        out = [f.ack_due for f in self._flows.values() if f.ack_due is not None]
        out += [
            (0.0 if f.progress is None else f.progress) + ack_timeout
            for f in self._flows.values()
            if f.in_flight
        ]
        return out

    def pending(self) -> int:
        """Entries the peer lacks, over every event (as last recounted)."""
        return sum(f.pending for f in self._flows.values())

    def sending(self) -> bool:
        """Whether any message awaits the peer's acknowledgement."""
        return any(f.in_flight for f in self._flows.values())

    def in_flight(self) -> dict[str, int]:
        """Unacknowledged messages per event, for every flow that ever sent
        or was acknowledged, in the order they started."""
        started = sorted((f for f in self._flows.values() if f.started), key=_by_start)
        return {f.event: f.in_flight for f in started}

    def _start(self, flow: EventFlow) -> None:
        if not flow.started:
            flow.started = next(self._ranks)


def vmax(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """The element-wise maximum of two version vectors, as a new dict."""
    out = dict(a)
    for d, n in b.items():
        if n > out.get(d, 0):
            out[d] = n
    return out


def frames(segments: Sequence[Segment], max_frame: int) -> list[list[Segment] | None]:
    """Group segments into messages that fit a frame of ``max_frame`` bytes
    (relayed segments travel whole, so a batch can exceed the byte budget).

    Uses an upper bound of the encoded size: update + 16 bytes per entry, 300
    per segment, 200 per message. ``None`` marks a segment that fits no
    frame; nothing after it is grouped.
    """
    limit = max_frame - 200
    groups: list[list[Segment] | None] = []
    current: list[Segment] = []
    size = 0
    for seg in segments:
        need = 300 + sum(len(e.update) + 16 for e in seg.entries)
        if need > limit:
            return [*groups, current, None] if current else [*groups, None]
        if current and size + need > limit:
            groups.append(current)
            current, size = [], 0
        current.append(seg)
        size += need
    return [*groups, current] if current else groups


def _raise(vv: dict[str, int], head: Head) -> None:
    if head.seq > vv.get(head.device, 0):
        vv[head.device] = head.seq


def _by_start(flow: EventFlow) -> int:
    return flow.started


def _by_ack_rank(flow: EventFlow) -> int:
    return flow.ack_rank


__all__ = ["EventFlow", "Flows", "frames", "vmax"]

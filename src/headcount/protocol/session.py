"""The sync protocol between two peers, as a pure state machine (h11 style).

A :class:`Session` owns no socket, task or clock: the driver feeds it bytes
(:meth:`Session.receive_data`), the time (every call takes ``now``), local
news (:meth:`Session.local_entries`) and timer expiries (:meth:`Session.tick`),
and carries out the effects it returns: bytes to send, a close, and events
for the application. The asyncio transports and the simulator drive this same
code.

The exchange, per event:

1. Each side opens with ``Hello`` and, once it has the peer's, a ``Summary``
   (its version vector) with ``reply=True``.
2. A ``Summary`` is answered with the segments the sender lacks (at most
   ``window`` batches of at most ``batch_bytes`` in flight) and, if it asked
   for a reply, our own ``Summary`` (push-pull).
3. ``Segments`` are verified and applied by the log, then acknowledged with
   ``Ack`` (our version vector), which releases the next batch.
4. New local entries are pushed at once; every ``anti_entropy_interval`` a
   fresh ``Summary`` repairs anything lost; ``Ping`` keeps an idle
   connection alive and a silent peer is dropped after ``idle_timeout``.

Contract: any exception other than :class:`LocalProtocolError` raised by a
method of this class is a bug. Bad peer data never raises out of it: it
becomes a ``Goodbye`` and a :class:`Close` effect, and changes no state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from headcount.core.chain import Head, Segment
from headcount.core.errors import BehindHorizonError, LocalProtocolError, RemoteProtocolError

from .logview import IngestResult, LogView
from .wire import (
    DEFAULT_MAX_FRAME,
    Ack,
    Directory,
    FrameDecoder,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Segments,
    SnapshotPart,
    Summary,
    encode,
    segment_wire_size,
)

# -- effects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Bytes to send: one whole frame. ``event`` names the event whose log
    state the frame reports (segments, acknowledgements, summaries), None
    for the others: a driver with group commit sends it only once that
    event's writes are durable."""

    data: bytes
    event: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection. ``error`` is None for a clean close."""

    error: str | None


@dataclass(frozen=True, slots=True)
class Applied:
    """Entries from this peer were applied to the local log."""

    event: str
    entries: int


@dataclass(frozen=True, slots=True)
class EquivocationFound:
    event: str
    device: str
    seq: int


@dataclass(frozen=True, slots=True)
class PeerIdentified:
    device: str


Effect = Send | Close | Applied | EquivocationFound | PeerIdentified


# -- states (every transition in one table) -------------------------------------------


class State(StrEnum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class SyncStatus(StrEnum):
    """The reference documents' queue states, per peer."""

    PENDING = "pending"
    SENDING = "sending"
    SYNCED = "synced"
    FAILED = "failed"


_ALLOWED: dict[State, frozenset[type]] = {
    State.IDLE: frozenset(),
    State.HANDSHAKE: frozenset({Hello, Goodbye}),
    State.OPEN: frozenset({Summary, Segments, Ack, Ping, Pong, Goodbye, SnapshotPart, Directory}),
    State.CLOSED: frozenset(),
}
_NEXT: dict[tuple[State, type], State] = {
    (State.HANDSHAKE, Hello): State.OPEN,
    (State.HANDSHAKE, Goodbye): State.CLOSED,
    (State.OPEN, Goodbye): State.CLOSED,
}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    batch_bytes: int = 256 * 1024
    window: int = 4
    anti_entropy_interval: float = 30.0
    keepalive_interval: float = 10.0
    idle_timeout: float = 30.0
    max_frame: int = DEFAULT_MAX_FRAME
    eager_push: bool = True
    max_snapshot: int = 512 * 1024 * 1024
    ack_timeout: float = 5.0
    ack_delay: float = 0.0
    """Seconds a received ``Segments`` message may wait for its ``Ack``, so
    that one acknowledgement covers several (0: acknowledge each at once).
    A relay fanning entries out to many gates receives one message per
    acknowledgement: gates delay theirs (``DEFAULT_ACK_DELAY``)."""
    ack_every: int = 4
    """With ``ack_delay``: acknowledge at once when this many are waiting
    (at most ``window``, so that a sender is never stalled by it)."""


DEFAULT_ACK_DELAY = 0.5  # the daemon's and the relay's setting (see SessionConfig.ack_delay)


@dataclass(slots=True)
class PeerStatus:
    """Per-peer sync status for the application (see :class:`SyncStatus`)."""

    peer: str | None = None
    status: SyncStatus = SyncStatus.PENDING
    pending_entries: int = 0
    last_sync: float | None = None
    entries_sent: int = 0
    entries_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    retries: int = 0
    """Batches sent again because they were not acknowledged in time."""
    error: str | None = None


class Session:
    """One sync session with one peer over one ordered byte stream.

    Args:
        log: the local log.
        now: the current time in seconds (any monotonic origin).
        config: limits and intervals.
        expect_peer: if set, the device id the peer must announce (the
            transport authenticated it); anything else is a protocol error.
        scope: which events this session may carry (both devices' certificates
            must allow them); others are never offered, and a peer that sends
            one is in breach (``forbidden_event``). None: every event.
    """

    def __init__(
        self,
        log: LogView,
        now: float,
        config: SessionConfig | None = None,
        expect_peer: str | None = None,
        scope: Callable[[str], bool] | None = None,
    ) -> None:
        self.log = log
        self.config = config or SessionConfig()
        self.expect_peer = expect_peer
        self.scope = scope
        self.state = State.IDLE
        self.decoder = FrameDecoder(self.config.max_frame)
        self.status = PeerStatus()
        self.peer_vv: dict[str, dict[str, int]] = {}  # what the peer has told us it holds
        self.sent_vv: dict[str, dict[str, int]] = {}  # ... plus what we sent since
        self.in_flight: dict[str, int] = {}
        self._last_heard = now
        self._last_sent = now
        self._next_anti_entropy = now + self.config.anti_entropy_interval
        self._ping_nonce = 0
        self._snapshots: dict[str, tuple[bytearray, tuple[Head, ...], int]] = {}
        self._progress: dict[str, float] = {}  # last ack, or first send after idle, per event
        self._resynced: dict[str, float] = {}  # last time sent_vv fell back to peer_vv
        self._pending: dict[str, int] = {}  # entries the peer lacks, per event
        self._certs_sent: set[str] = set()  # devices whose certificate the peer was sent
        self._unacked: dict[str, int] = {}  # Segments received, not yet acknowledged
        self._ack_due: dict[str, float] = {}  # when the delayed Ack of an event is due

    # -- inputs --------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Open the session: send ``Hello``."""
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"start() in state {self.state}")
        self.state = State.HANDSHAKE
        effects = self._send([Hello(self.log.device_id, tuple(self._events()))], now)
        return effects + self.receive_data(b"", now)

    def _events(self) -> list[str]:
        return [e for e in self.log.events() if self._allowed(e)]

    def _allowed(self, event: str) -> bool:
        return self.scope is None or self.scope(event)

    def receive_data(self, data: bytes, now: float) -> list[Effect]:
        """Feed bytes from the peer; returns the effects to carry out."""
        if self.state is State.CLOSED:
            return []
        self._last_heard = now
        self.status.bytes_received += len(data)
        self.decoder.receive_data(data)
        if self.state is State.IDLE:
            return []  # kept until start(): the peer may speak first
        effects: list[Effect] = []
        try:
            while self.state is not State.CLOSED:
                message = self.decoder.next_message()
                if message is None:
                    break
                effects += self._handle(message, now)
        except RemoteProtocolError as exc:
            effects += self._fail(exc.code, exc.message, now)
        return effects

    def local_entries(self, event: str, now: float) -> list[Effect]:
        """New local (or newly received) entries of ``event``: push them."""
        if self.state is not State.OPEN or not self.config.eager_push:
            return []
        if not self._allowed(event):
            return []
        if event not in self.peer_vv:
            return self._send([Summary(event, self.log.version_vector(event), True)], now)
        return self._pump(event, now)

    def anti_entropy(self, now: float) -> list[Effect]:
        """Send a summary of every event now (the driver's gossip round)."""
        if self.state is not State.OPEN:
            return []
        self._next_anti_entropy = now + self.config.anti_entropy_interval
        messages: list[Message] = [
            Summary(e, self.log.version_vector(e), True) for e in self._events()
        ]
        return self._send(messages, now)

    def tick(self, now: float) -> list[Effect]:
        """Timers: idle timeout, keepalive, periodic anti-entropy."""
        if self.state in (State.IDLE, State.CLOSED):
            return []
        if now - self._last_heard >= self.config.idle_timeout:
            return self._fail("timeout", f"peer silent for {now - self._last_heard:.1f} s", now)
        effects: list[Effect] = []
        if self.state is State.OPEN:
            effects += self._due_acks(now)
            effects += self._retransmit(now)
        if self.state is State.OPEN and now >= self._next_anti_entropy:
            effects += self.anti_entropy(now)
        if now - self._last_sent >= self.config.keepalive_interval:
            self._ping_nonce += 1
            effects += self._send([Ping(self._ping_nonce)], now)
        return effects

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None once closed)."""
        if self.state in (State.IDLE, State.CLOSED):
            return None
        deadlines = [
            self._last_heard + self.config.idle_timeout,
            self._last_sent + self.config.keepalive_interval,
        ]
        if self.state is State.OPEN:
            deadlines.append(self._next_anti_entropy)
            deadlines += self._ack_due.values()
            deadlines += [
                self._progress.get(e, 0.0) + self.config.ack_timeout
                for e, n in self.in_flight.items()
                if n
            ]
        return min(deadlines)

    def connection_lost(self, now: float) -> list[Effect]:
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            if self.status.status is not SyncStatus.SYNCED:
                self.status.status = SyncStatus.FAILED
            self.status.error = self.status.error or "connection lost"
        return []

    def close(self, now: float, code: str = "bye", message: str = "") -> list[Effect]:
        """Close cleanly (a ``Goodbye`` then :class:`Close`)."""
        if self.state is State.CLOSED:
            return []
        effects = self._send([Goodbye(code, message)], now)
        self.state = State.CLOSED
        return [*effects, Close(None)]

    # -- message handling ---------------------------------------------------

    def _handle(self, message: Message, now: float) -> list[Effect]:
        kind = type(message)
        event = getattr(message, "event", None)
        if event is not None and not self._allowed(event):
            raise RemoteProtocolError(
                f"event {event!r} is outside this session's scope", code="forbidden_event"
            )
        if kind not in _ALLOWED[self.state]:
            raise RemoteProtocolError(
                f"{kind.__name__} is not allowed in state {self.state}", code="unexpected"
            )
        self.state = _NEXT.get((self.state, kind), self.state)
        if isinstance(message, Hello):
            return self._on_hello(message, now)
        if isinstance(message, Summary):
            return self._on_summary(message, now)
        if isinstance(message, Segments):
            return self._on_segments(message, now)
        if isinstance(message, Ack):
            return self._on_ack(message, now)
        if isinstance(message, SnapshotPart):
            return self._on_snapshot_part(message, now)
        if isinstance(message, Directory):
            self.log.learn_certificates(message.certs)
            return []
        if isinstance(message, Ping):
            return self._send([Pong(message.nonce)], now)
        if isinstance(message, Goodbye):
            if message.code != "bye":
                self.status.status = SyncStatus.FAILED
                self.status.error = f"peer closed: {message.code}: {message.message}"
            return [Close(None if message.code == "bye" else message.code)]
        return []  # Pong: liveness only (already recorded)

    def _on_hello(self, hello: Hello, now: float) -> list[Effect]:
        if self.expect_peer is not None and hello.device != self.expect_peer:
            raise RemoteProtocolError(
                f"peer says it is {hello.device}, authenticated as {self.expect_peer}",
                code="identity",
            )
        if hello.device == self.log.device_id:
            raise RemoteProtocolError("connected to ourselves", code="self")
        self.status.peer = hello.device
        events = sorted(e for e in set(self.log.events()) | set(hello.events) if self._allowed(e))
        summaries: list[Message] = [Summary(e, self.log.version_vector(e), True) for e in events]
        devices = {d for e in events for d in self.log.version_vector(e)}
        certs = self._new_certificates(devices)
        if certs:  # before any segment: the peer may need them to verify relayed entries
            summaries.insert(0, Directory(tuple(certs)))
        return [PeerIdentified(hello.device), *self._send(summaries, now)]

    def _on_summary(self, summary: Summary, now: float) -> list[Effect]:
        event = summary.event
        self._record(event, summary.vv)
        # A summary only ever raises what we know the peer holds: a replayed
        # or late one must not make us resend (lost batches are resent by the
        # retransmission timer in tick()).
        self.peer_vv[event] = _vmax(self.peer_vv.get(event, {}), summary.vv)
        self.sent_vv[event] = _vmax(self.sent_vv.get(event, {}), summary.vv)
        self._resync(event, now)
        effects = self._pump(event, now)
        if summary.reply:
            effects += self._send([Summary(event, self.log.version_vector(event), False)], now)
        self._update_status(now, event)
        return effects

    def _on_segments(self, message: Segments, now: float) -> list[Effect]:
        result = self.log.ingest(message.event, message.segments)
        self._holds(message.event, message.segments)
        received = sum(len(s.entries) for s in message.segments)
        self.status.entries_received += received
        effects: list[Effect] = []
        if result.applied:
            effects.append(Applied(message.event, result.applied))
        for eq in result.equivocations:
            effects.append(EquivocationFound(eq.event, eq.device, eq.seq))
        event = message.event
        self._unacked[event] = self._unacked.get(event, 0) + 1
        waiting = self._unacked[event]
        if self.config.ack_delay <= 0 or waiting >= min(self.config.ack_every, self.config.window):
            return effects + self._ack(event, now)
        self._ack_due.setdefault(event, now + self.config.ack_delay)
        return effects

    def _ack(self, event: str, now: float) -> list[Effect]:
        """Acknowledge every Segments message of ``event`` received so far."""
        count = self._unacked.pop(event, 0)
        self._ack_due.pop(event, None)
        if not count:
            return []
        return self._send([Ack(event, self.log.version_vector(event), count)], now)

    def _due_acks(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for event, due in list(self._ack_due.items()):
            if due <= now:
                effects += self._ack(event, now)
        return effects

    def _holds(self, event: str, segments: Sequence[Segment]) -> None:
        """The peer sent these segments, so it holds them: never echo them
        back (without this, every entry a relay forwards to a gate would
        return with the gate's next push)."""
        if self.state is not State.OPEN:
            return
        peer = self.peer_vv.setdefault(event, {})
        sent = self.sent_vv.setdefault(event, {})
        for seg in segments:
            device, seq = seg.head.device, seg.head.seq
            if seq > peer.get(device, 0):
                peer[device] = seq
            if seq > sent.get(device, 0):
                sent[device] = seq

    def _on_ack(self, ack: Ack, now: float) -> list[Effect]:
        event = ack.event
        self._record(event, ack.vv)
        self.peer_vv[event] = _vmax(self.peer_vv.get(event, {}), ack.vv)
        self.sent_vv[event] = _vmax(self.sent_vv.get(event, {}), ack.vv)
        self.in_flight[event] = max(0, self.in_flight.get(event, 0) - ack.count)
        self._progress[event] = now
        self._resync(event, now)
        effects = self._pump(event, now)
        self._update_status(now, event)
        return effects

    def _record(self, event: str, vv: Mapping[str, int]) -> None:
        if self.status.peer is not None:
            self.log.record_ack(self.status.peer, event, vv)

    def _on_snapshot_part(self, part: SnapshotPart, now: float) -> list[Effect]:
        event = part.event
        if part.offset == 0:
            if part.total > self.config.max_snapshot:
                raise RemoteProtocolError("snapshot larger than the limit", code="too_big")
            self._snapshots[event] = (bytearray(), part.heads, part.total)
        buf, heads, total = self._snapshots.get(event, (bytearray(), (), -1))
        if part.offset != len(buf) or part.total != total:
            raise RemoteProtocolError("snapshot parts out of order", code="malformed")
        buf += part.data
        if len(buf) < total:
            return []
        del self._snapshots[event]
        assert self.status.peer is not None  # OPEN implies a Hello was received
        advanced = self.log.install_snapshot(event, bytes(buf), heads, self.status.peer)
        effects: list[Effect] = [Applied(event, 0)] if advanced else []
        vv = self.log.version_vector(event)
        return effects + self._send([Ack(event, vv), Summary(event, vv, True)], now)

    # -- sending -------------------------------------------------------------

    def _pump(self, event: str, now: float) -> list[Effect]:
        """Send batches the peer lacks, up to the window."""
        effects: list[Effect] = []
        while self.in_flight.get(event, 0) < self.config.window:
            base = self.sent_vv.setdefault(event, {})
            try:
                segments = self.log.segments_since(event, base, self._budget())
            except BehindHorizonError:
                effects += self._send_snapshot(event, now)
                break
            if not segments:
                break
            if not self.in_flight.get(event):
                self._progress[event] = now
            for seg in segments:
                base[seg.head.device] = max(base.get(seg.head.device, 0), seg.head.seq)
                self.status.entries_sent += len(seg.entries)
            certs = self._new_certificates({seg.head.device for seg in segments})
            if certs:  # a device the peer may never have met: vouch for it first
                effects += self._send([Directory(tuple(certs))], now)
            for group in self._frames(segments):
                if group is None:
                    return effects + self._fail(
                        "too_big", "an entry is larger than the frame limit", now
                    )
                self.in_flight[event] = self.in_flight.get(event, 0) + 1
                effects += self._send([Segments(event, tuple(group))], now)
        return effects

    def _new_certificates(self, devices: set[str]) -> list[bytes]:
        """Certificates of ``devices`` not yet sent to this peer (each once)."""
        new = devices - self._certs_sent - {self.status.peer, self.log.device_id}
        if not new:
            return []
        found = self.log.certificates(new)
        self._certs_sent |= found.keys()  # the others may be learnt later
        return [found[d] for d in sorted(found)]

    def _frames(self, segments: list[Segment]) -> list[list[Segment] | None]:
        """Group segments into messages that fit a frame (relayed segments
        travel whole, so a batch can exceed the byte budget). Uses an upper
        bound of the encoded size: update + 16 bytes per entry, 300 per
        segment, 200 per message. ``None`` marks a segment that fits no frame."""
        limit = self.config.max_frame - 200
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

    def _resync(self, event: str, now: float) -> None:
        """With nothing in flight, what we sent and the peer does not hold was
        dropped on the way (a lossy or reordering transport, or entries the
        peer discarded): send it again from the peer's own account. At most
        once per ``ack_timeout``, so a peer that refuses entries cannot make
        us loop."""
        if self.in_flight.get(event):
            return
        if now - self._resynced.get(event, float("-inf")) < self.config.ack_timeout:
            return
        peer = self.peer_vv.get(event, {})
        if self.sent_vv.get(event, {}) != peer:
            self.sent_vv[event] = dict(peer)
            self._resynced[event] = now

    def _retransmit(self, now: float) -> list[Effect]:
        """Batches unacknowledged for ``ack_timeout`` were lost (only an
        unreliable transport loses them): resend from what the peer has."""
        effects: list[Effect] = []
        for event, n in list(self.in_flight.items()):
            if n and now - self._progress.get(event, now) >= self.config.ack_timeout:
                self.status.retries += n
                self.in_flight[event] = 0
                self.sent_vv[event] = dict(self.peer_vv.get(event, {}))
                self._progress[event] = now
                effects += self._pump(event, now)
        return effects

    def _send_snapshot(self, event: str, now: float) -> list[Effect]:
        """The peer lacks folded entries: send the snapshot, then carry on
        from the horizon once it acknowledges."""
        state, heads = self.log.snapshot_for(event)
        step = self._budget()
        parts: list[Message] = []
        for offset in range(0, max(len(state), 1), step):
            first = offset == 0
            parts.append(
                SnapshotPart(
                    event,
                    offset,
                    len(state),
                    state[offset : offset + step],
                    tuple(heads) if first else (),
                )
            )
        base = self.sent_vv.setdefault(event, {})
        for head in heads:
            base[head.device] = max(base.get(head.device, 0), head.seq)
        self.in_flight[event] = self.in_flight.get(event, 0) + 1
        return self._send(parts, now)

    def _budget(self) -> int:
        return min(self.config.batch_bytes, self.config.max_frame // 2)

    def _send(self, messages: list[Message], now: float) -> list[Effect]:
        effects: list[Effect] = []
        for message in messages:
            data = encode(message, self.config.max_frame)
            self.status.bytes_sent += len(data)
            self.status.messages_sent += 1
            effects.append(Send(data, event=getattr(message, "event", None)))
        if effects:
            self._last_sent = now
        return effects

    def _fail(self, code: str, message: str, now: float) -> list[Effect]:
        effects = self._send([Goodbye(code, message[:1024])], now)
        self.state = State.CLOSED
        self.status.status = SyncStatus.FAILED
        self.status.error = f"{code}: {message}"
        return [*effects, Close(code)]

    def _update_status(self, now: float, event: str) -> None:
        """Recount what the peer lacks of ``event`` (the others did not change)."""
        mine = self.log.version_vector(event)
        peer = self.peer_vv.get(event, {})
        if mine == peer:
            self._pending[event] = 0
        else:
            self._pending[event] = sum(max(0, n - peer.get(d, 0)) for d, n in mine.items())
        pending = sum(self._pending.values())
        in_flight = any(self.in_flight.values())
        self.status.pending_entries = pending
        if pending == 0:
            self.status.status = SyncStatus.SYNCED
            self.status.last_sync = now
        else:
            self.status.status = SyncStatus.SENDING if in_flight else SyncStatus.PENDING


def _vmax(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for d, n in b.items():
        if n > out.get(d, 0):
            out[d] = n
    return out


__all__ = [
    "DEFAULT_ACK_DELAY",
    "Applied",
    "Close",
    "Effect",
    "EquivocationFound",
    "IngestResult",
    "LogView",
    "PeerIdentified",
    "PeerStatus",
    "Send",
    "Session",
    "SessionConfig",
    "State",
    "SyncStatus",
    "segment_wire_size",
]

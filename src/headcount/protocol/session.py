"""The sync protocol between two peers, as a pure state machine (h11 style).

A :class:`Session` owns no socket, task or clock: the driver feeds it bytes
(:meth:`Session.receive_data`), the time (every call takes ``now``), local
news (:meth:`Session.local_entries`) and timer expiries (:meth:`Session.tick`),
and carries out the effects it returns (``effects.py``): bytes to send, a
close, and events for the application. The asyncio transports and the
simulator drive this same code.

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
5. The organisation's signed revocation records go with the ``Hello``
   exchange and every gossip round (``gossip.py``), apart from any event.
   Snapshots are taken only from a peer certified admin or relay, within
   the connection's and the node's budgets (``snapshot.py``).

Where things live: every state transition is in ``state.py``'s table, and
the session changes state in one place, :meth:`Session._enter`, which looks
each driver call and each peer message up in it. Each event's exchange with
the peer is an :class:`~.flow.EventFlow` (``flow.py``); the handlers here say
what a message does to a flow, and ``sender.py`` what goes out of it.

Contract: any exception other than :class:`LocalProtocolError` raised by a
method of this class is a bug. Bad peer data never raises out of it: it
becomes a ``Goodbye`` and a :class:`Close` effect, and changes no state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import assert_never

from headcount.core.errors import RemoteProtocolError

from .config import DEFAULT_ACK_DELAY, SessionConfig
from .effects import (
    Applied,
    Close,
    Effect,
    EntryRefused,
    EquivocationFound,
    PeerIdentified,
    RevocationRefused,
    RevocationsLearnt,
    Send,
    SnapshotRefused,
)
from .flow import EventFlow, Flows
from .gossip import RevocationGossip
from .logview import IngestResult, LogView
from .sender import Sender
from .snapshot import SnapshotBudget, SnapshotReceiver
from .state import Input, State, Trigger, accepts, next_state
from .status import PeerStatus, SyncStatus
from .wire import (
    Ack,
    Directory,
    FrameDecoder,
    Goodbye,
    Hello,
    Message,
    Ping,
    Pong,
    Revocations,
    Segments,
    SnapshotPart,
    Summary,
    encode,
)


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
        snapshot_budget: the node's budget for incoming snapshots, shared by
            all its sessions (this session also keeps within
            ``config.max_snapshot``). None: only the session's own limit.
    """

    def __init__(
        self,
        log: LogView,
        now: float,
        config: SessionConfig | None = None,
        expect_peer: str | None = None,
        scope: Callable[[str], bool] | None = None,
        snapshot_budget: SnapshotBudget | None = None,
    ) -> None:
        self.log = log
        self.config = config or SessionConfig()
        self.expect_peer = expect_peer
        self.scope = scope
        self.state = State.IDLE
        self.decoder = FrameDecoder(self.config.max_frame)
        self.status = PeerStatus()
        self._flows = Flows()
        self._last_heard = now
        self._last_sent = now
        self._next_anti_entropy = now + self.config.anti_entropy_interval
        self._ping_nonce = 0
        self._sender = Sender(log, self.config, self.status, self._flows, self._send, self._fail)
        budget = SnapshotBudget(self.config.max_snapshot, parent=snapshot_budget)
        self._snapshots = SnapshotReceiver(budget)
        self._revocations = RevocationGossip(log, self.config)
        self._peer_role: str | None = None  # certified, looked up once known

    # -- queries ---------------------------------------------------------------

    @property
    def in_flight(self) -> dict[str, int]:
        """Messages sent and not acknowledged yet, per event (a copy)."""
        return self._flows.in_flight()

    def peer_holds(self, event: str) -> dict[str, int]:
        """What we know the peer holds of ``event`` (a copy): what it told
        us and what it sent us. It never regresses."""
        flow = self._flows.get(event)
        return {} if flow is None else dict(flow.peer)

    @property
    def snapshot_buffered(self) -> int:
        """Bytes of incoming snapshot parts this session holds."""
        return self._snapshots.buffered

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (None before start and once closed)."""
        if not accepts(self.state, Input.TICK):
            return None
        deadlines = [
            self._last_heard + self.config.idle_timeout,
            self._last_sent + self.config.keepalive_interval,
        ]
        if self.state is State.OPEN:
            deadlines.append(self._next_anti_entropy)
            deadlines += self._flows.deadlines(self.config.ack_timeout)
        return min(deadlines)

    # -- inputs ------------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        """Open the session: send ``Hello``, then handle whatever the peer
        already sent.

        Raises:
            LocalProtocolError: the session was started before.
        """
        self._enter(Input.START)
        effects = self._send([Hello(self.log.device_id, tuple(self._events()))], now)
        return effects + self.receive_data(b"", now)

    def receive_data(self, data: bytes, now: float) -> list[Effect]:
        """Feed bytes from the peer; returns the effects to carry out. Before
        :meth:`start` they wait in the decoder; once closed they are dropped."""
        if not self._enter(Input.DATA):
            return []
        self._last_heard = now
        self.status.bytes_received += len(data)
        self.decoder.receive_data(data)
        if self.state is State.IDLE:
            return []
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

    def receive_message(self, message: Message, size: int, now: float) -> list[Effect]:
        """What :meth:`receive_data` does for one frame, for an in-process
        driver that hands the message over already decoded (the simulator's
        fast wire: decoding rebuilds and re-hashes every entry). ``size`` is
        the frame's encoded length, for the byte counts. A message before
        :meth:`start` is dropped (in-process links join started sessions)."""
        if not self._enter(Input.DATA) or self.state is State.IDLE:
            return []
        self._last_heard = now
        self.status.bytes_received += size
        try:
            return self._handle(message, now)
        except RemoteProtocolError as exc:
            return self._fail(exc.code, exc.message, now)

    def local_entries(self, event: str, now: float) -> list[Effect]:
        """New local (or newly received) entries of ``event``: push them
        (nothing unless the session is open and ``eager_push`` is set)."""
        if not self._enter(Input.LOCAL_ENTRIES):
            return []
        if not self.config.eager_push or not self._allowed(event):
            return []
        flow = self._flows.get(event)
        if flow is None or not flow.peer_known:
            return self._send([Summary(event, self.log.version_vector(event), True)], now)
        return self._sender.pump(flow, now)

    def anti_entropy(self, now: float) -> list[Effect]:
        """Send a summary of every event now (the driver's gossip round), and
        the revocation records the peer was not offered yet."""
        if not self._enter(Input.ANTI_ENTROPY):
            return []
        self._next_anti_entropy = now + self.config.anti_entropy_interval
        messages: list[Message] = [
            Summary(e, self.log.version_vector(e), True) for e in self._events()
        ]
        return self._send([*messages, *self._revocations.offer()], now)

    def tick(self, now: float) -> list[Effect]:
        """Timers: idle timeout, keepalive, and once open delayed
        acknowledgements, retransmission and periodic anti-entropy."""
        if not self._enter(Input.TICK):
            return []
        if now - self._last_heard >= self.config.idle_timeout:
            return self._fail("timeout", f"peer silent for {now - self._last_heard:.1f} s", now)
        effects: list[Effect] = []
        if self.state is State.OPEN:
            effects += self._sender.acks_due(now)
            effects += self._sender.retransmit(now)
        if self.state is State.OPEN and now >= self._next_anti_entropy:
            effects += self.anti_entropy(now)
        if now - self._last_sent >= self.config.keepalive_interval:
            self._ping_nonce += 1
            effects += self._send([Ping(self._ping_nonce)], now)
        return effects

    def connection_lost(self, now: float) -> list[Effect]:
        """The transport is gone: close without a word."""
        if self._enter(Input.CONNECTION_LOST):
            if self.status.status is not SyncStatus.SYNCED:
                self.status.status = SyncStatus.FAILED
            self.status.error = self.status.error or "connection lost"
        return []

    def close(self, now: float, code: str = "bye", message: str = "") -> list[Effect]:
        """Close cleanly (a ``Goodbye`` then :class:`Close`)."""
        if not self._enter(Input.CLOSE):
            return []
        return [*self._send([Goodbye(code, message)], now), Close(None)]

    # -- the table, and message dispatch -------------------------------------

    def _enter(self, trigger: Trigger) -> bool:
        """Take ``trigger`` through the transition table (``state.py``):
        move to the state it leads to. Returns False if it is ignored in
        this state.

        Raises:
            LocalProtocolError: an illegal call in this state.
            RemoteProtocolError: a message the peer may not send now.
        """
        state = next_state(self.state, trigger)
        if state is None:
            return False
        self.state = state
        if state is State.CLOSED:
            self._snapshots.close()  # whatever ended the session releases its budget
        return True

    def _handle(self, message: Message, now: float) -> list[Effect]:
        """Handle one message from the peer.

        Raises:
            RemoteProtocolError: the message breaches the protocol; the
                caller says ``Goodbye`` and closes.
        """
        event = getattr(message, "event", None)
        if event is not None and not self._allowed(event):
            raise RemoteProtocolError(
                f"event {event!r} is outside this session's scope", code="forbidden_event"
            )
        if not self._enter(type(message)):
            return []
        match message:
            case Hello():
                return self._on_hello(message, now)
            case Summary():
                return self._on_summary(message, now)
            case Segments():
                return self._on_segments(message, now)
            case Ack():
                return self._on_ack(message, now)
            case SnapshotPart():
                return self._on_snapshot_part(message, now)
            case Directory():
                self.log.learn_certificates(message.certs)
                return []
            case Revocations():
                effects = self._revocations.receive(message)
                offending = self._revocations.offending
                if offending is None:
                    return effects
                return effects + self._fail("bad_revocations", offending, now)
            case Ping():
                return self._send([Pong(message.nonce)], now)
            case Pong():
                return []  # liveness only (already recorded)
            case Goodbye():
                if message.code == "bye":
                    return [Close(None)]
                self.status.failed(f"peer closed: {message.code}: {message.message}")
                return [Close(message.code)]
            case _:
                assert_never(message)

    # -- message handlers ----------------------------------------------------

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
        certs = self._sender.certificates(devices)
        if certs:  # before any segment: the peer may need them to verify relayed entries
            summaries.insert(0, Directory(tuple(certs)))
        summaries += self._revocations.offer()
        return [PeerIdentified(hello.device), *self._send(summaries, now)]

    def _on_summary(self, summary: Summary, now: float) -> list[Effect]:
        event = summary.event
        flow = self._flows.of(event)
        self._record(event, summary.vv)
        flow.heard(summary.vv)
        flow.resync(now, self.config.ack_timeout)
        effects = self._sender.pump(flow, now)
        if summary.reply:
            effects += self._send([Summary(event, self.log.version_vector(event), False)], now)
        self._update_status(flow, now)
        return effects

    def _on_segments(self, message: Segments, now: float) -> list[Effect]:
        event = message.event
        result = self.log.ingest(event, message.segments)
        flow = self._flows.of(event)
        flow.holds(message.segments)
        self.status.entries_received += sum(len(s.entries) for s in message.segments)
        effects: list[Effect] = [Applied(event, result.applied)] if result.applied else []
        effects += [EquivocationFound(q.event, q.device, q.seq) for q in result.equivocations]
        effects += [EntryRefused(v.event, v.device, v.seq, v.reason) for v in result.violations]
        flow.unacked += 1
        config = self.config
        if config.ack_delay <= 0 or flow.unacked >= min(config.ack_every, config.window):
            return effects + self._sender.ack(flow, now)
        self._flows.owe_ack(flow, now + config.ack_delay)
        return effects

    def _on_ack(self, ack: Ack, now: float) -> list[Effect]:
        flow = self._flows.of(ack.event)
        self._record(ack.event, ack.vv)
        flow.heard(ack.vv)
        self._flows.acknowledged(flow, ack.count, now)
        flow.resync(now, self.config.ack_timeout)
        effects = self._sender.pump(flow, now)
        self._update_status(flow, now)
        return effects

    def _on_snapshot_part(self, part: SnapshotPart, now: float) -> list[Effect]:
        """Checked before a byte is kept (``snapshot.py``): the peer's
        certified role, then the connection's and the node's budgets."""
        event = part.event
        try:
            received = self._snapshots.add(part, self._role())
        except RemoteProtocolError as exc:
            refused = SnapshotRefused(event, exc.code, part.total)
            return [refused, *self._fail(exc.code, exc.message, now)]
        if received.deferred:
            return [SnapshotRefused(event, "deferred", part.total)]
        incoming = received.snapshot
        if incoming is None:
            return []
        assert self.status.peer is not None  # OPEN implies a Hello was received
        try:
            state = bytes(incoming.data)
            advanced = self.log.install_snapshot(event, state, incoming.heads, self.status.peer)
        finally:
            self._snapshots.done(event)
        effects: list[Effect] = [Applied(event, 0)] if advanced else []
        vv = self.log.version_vector(event)
        return effects + self._send([Ack(event, vv), Summary(event, vv, True)], now)

    def _role(self) -> str | None:
        """The peer's certified role (from the log's directory)."""
        if self._peer_role is None and self.status.peer is not None:
            self._peer_role = self.log.role_of(self.status.peer)
        return self._peer_role

    # -- frames out ----------------------------------------------------------------

    def _send(self, messages: list[Message], now: float) -> list[Effect]:
        """Encode ``messages``: exactly one :class:`Send` per message, in
        order (the simulator's fast wire relies on it)."""
        effects: list[Effect] = []
        for message in messages:
            data = encode(message, self.config.max_frame)
            self.status.bytes_sent += len(data)
            self.status.messages_sent += 1
            effects.append(Send(data, event=getattr(message, "event", None), message=message))
        if effects:
            self._last_sent = now
        return effects

    def _fail(self, code: str, message: str, now: float) -> list[Effect]:
        """End the session for a protocol breach: ``Goodbye(code)``, then close."""
        effects = self._send([Goodbye(code, message[:1024])], now)
        self._enter(Input.FAIL)
        self.status.failed(f"{code}: {message}")
        return [*effects, Close(code)]

    # -- bookkeeping -------------------------------------------------------------

    def _update_status(self, flow: EventFlow, now: float) -> None:
        """Recount what the peer lacks of ``flow``'s event (the others did not change)."""
        flow.recount(self.log.version_vector(flow.event))
        self.status.recount(self._flows.pending(), self._flows.sending(), now)

    def _record(self, event: str, vv: Mapping[str, int]) -> None:
        if self.status.peer is not None:
            self.log.record_ack(self.status.peer, event, vv)

    def _events(self) -> list[str]:
        return [e for e in self.log.events() if self._allowed(e)]

    def _allowed(self, event: str) -> bool:
        return self.scope is None or self.scope(event)


# The names other modules import from here (the drivers, the simulator,
# tests) stay importable from this module.
__all__ = [
    "DEFAULT_ACK_DELAY",
    "Applied",
    "Close",
    "Effect",
    "EntryRefused",
    "EquivocationFound",
    "IngestResult",
    "LogView",
    "PeerIdentified",
    "PeerStatus",
    "RevocationRefused",
    "RevocationsLearnt",
    "Send",
    "Session",
    "SessionConfig",
    "SnapshotBudget",
    "SnapshotRefused",
    "State",
    "SyncStatus",
]

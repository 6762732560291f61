"""A simulated node: a durable log, volatile sessions, and a gossip loop.

Each node keeps its :class:`SimLog` (an instrumented ``MemLog``: the durable
state, which survives a crash) and, while it is up, one real
:class:`~headcount.session.Session` per open connection (volatile: a crash
loses them, their timers and whatever was in flight to them).

Every ``round_period`` seconds (its gossip round) a node picks ``fanout``
random neighbours from the topology. Over an open connection it starts a
push-pull anti-entropy exchange (``Session.anti_entropy``: a ``Summary``
asking for a reply); otherwise it opens a connection, whose handshake is
itself a push-pull exchange (both sides send their summaries). A node keeps at
most ``max_connections`` connections and closes the least recently used one
(cleanly, with ``Goodbye``) to make room. With eager push on, new local
entries and entries just received are also pushed at once to every connected
peer (``Session.local_entries``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from headcount.core.chain import Segment, Verifier
from headcount.core.model import LogEntry
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    EquivocationFound,
    IngestResult,
    Send,
    Session,
    SessionConfig,
    State,
)

from .fastwire import frame_type
from .materialize import Materializer
from .memo import MemoHasher
from .network import Link, Network
from .scheduler import Scheduler, Timer, Trace
from .topology import Topology
from .workload import EVENT, Write

_FIN = "fin"  # the transport's "connection closed" signal
_EPSILON = 1e-6


@dataclass(slots=True)
class Counters:
    """Run-wide counters kept by the nodes and their logs."""

    entries_sent: int = 0
    payload_sent: int = 0  # update bytes inside the segments sent
    entries_received: int = 0
    entries_applied: int = 0
    duplicates: int = 0
    gap_segments: int = 0
    equivocations: int = 0
    connections: int = 0
    connect_failures: int = 0
    dropped_closed: int = 0  # messages that reached a closed connection or a down node
    closes: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    restarts: int = 0
    leaves: int = 0
    joins: int = 0


class SimLog(MemLog):
    """A ``MemLog`` that reports what it sends and receives."""

    def __init__(
        self, *args: Any, counters: Counters, on_new: Callable[[int], None], **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.counters = counters
        self.on_new = on_new

    def segments_since(self, event: str, vv: Any, max_bytes: int) -> list[Segment]:
        segments = super().segments_since(event, vv, max_bytes)
        c = self.counters
        for seg in segments:
            c.entries_sent += len(seg.entries)
            c.payload_sent += seg.size
        return segments

    def ingest(self, event: str, segments: Any) -> IngestResult:
        result = super().ingest(event, segments)
        c = self.counters
        c.entries_received += sum(len(s.entries) for s in segments)
        c.entries_applied += result.applied
        c.duplicates += result.duplicates
        c.gap_segments += result.gaps
        c.equivocations += len(result.equivocations)
        if result.applied:
            self.on_new(result.applied)
        return result


@dataclass(slots=True)
class Context:
    """What every node shares: the clock, the network and the run's settings."""

    sched: Scheduler
    net: Network
    topo: Topology
    trace: Trace
    counters: Counters
    session_config: SessionConfig
    directory: dict[str, bytes]
    verify: Verifier
    hasher: MemoHasher
    gossip_rng: random.Random
    on_held: Callable[[int, int], None]
    nodes: list[SimNode] = field(default_factory=list)
    fanout: int = 1
    round_period: float = 1.0
    max_connections: int = 8
    fast_wire: bool = True
    materialize: bool = False


@dataclass(eq=False, slots=True)
class Endpoint:
    """One end of one connection."""

    link: Link
    side: int
    node: SimNode
    session: Session
    last_used: float
    peer: Endpoint | None = None
    closed: bool = False
    timer: Timer | None = None

    def receive(self, item: Any) -> None:
        self.node.deliver(self, item)


class SimNode:
    def __init__(
        self, ctx: Context, index: int, device: str, key: Ed25519PrivateKey, phase: float
    ) -> None:
        self.ctx = ctx
        self.index = index
        self.device = device
        self.phase = phase
        self.log = SimLog(
            device,
            key,
            ctx.directory,
            verify=ctx.verify,
            hasher=ctx.hasher,
            counters=ctx.counters,
            on_new=self._on_new,
        )
        self.held = 0
        self.up = True
        self.conns: dict[int, Endpoint] = {}
        self.round_timer: Timer | None = None
        self.backlog: list[Write] = []  # writes due while down
        self.mat: Materializer | None = None
        if ctx.materialize:
            self.mat = Materializer(device)
            self.log.on_apply = self._materialize

    # -- log ----------------------------------------------------------------

    def _on_new(self, k: int) -> None:
        self.ctx.on_held(self.held, self.held + k)
        self.held += k

    def _materialize(self, entry: LogEntry) -> None:
        if self.mat is not None:
            self.mat.apply(entry)

    def write(self, w: Write) -> None:
        """A local transaction (deferred until restart while the node is down)."""
        if not self.up:
            self.backlog.append(w)
            return
        ctx = self.ctx
        ctx.hasher.learning = True  # shared by reference: hash it once
        try:
            self.log.append(EVENT, w.update, w.hlc)
        finally:
            ctx.hasher.learning = False
        ctx.trace(ctx.sched.now, "write", self.index, w.order)
        self._on_new(1)
        if ctx.session_config.eager_push:
            self._push(None)

    # -- gossip -------------------------------------------------------------

    def schedule_rounds(self) -> None:
        """Start (or resume) the gossip loop at the next round boundary."""
        period = self.ctx.round_period
        k = int(self.ctx.sched.now // period) + 1
        self._schedule_round(k)

    def _schedule_round(self, k: int) -> None:
        when = k * self.ctx.round_period + self.phase
        self.round_timer = self.ctx.sched.at(when, lambda: self._round(k))

    def _round(self, k: int) -> None:
        ctx = self.ctx
        self._schedule_round(k + 1)
        now = ctx.sched.now
        for p in ctx.topo.pick(ctx.gossip_rng, self.index, ctx.fanout):
            ep = self.conns.get(p)
            if ep is None:
                self.connect(ctx.nodes[p])
                continue
            ep.last_used = now
            if ep.session.state is State.OPEN:
                self.run(ep, ep.session.anti_entropy(now))
            # (a connection still in its handshake is already exchanging summaries)

    # -- connections ------------------------------------------------------

    def _session(self, peer: SimNode) -> Session:
        ctx = self.ctx
        return Session(self.log, ctx.sched.now, ctx.session_config, expect_peer=peer.device)

    def connect(self, peer: SimNode) -> None:
        ctx, now = self.ctx, self.ctx.sched.now
        if not peer.up or not ctx.net.reachable(self.index, peer.index):
            ctx.counters.connect_failures += 1
            ctx.trace(now, "connect-failed", self.index, peer.index)
            return
        stale = peer.conns.get(self.index)
        if stale is not None:  # the peer still holds a connection we already dropped
            peer.lost(stale)
        link = Link(self.index, peer.index, ctx.topo.link(self.index, peer.index))
        mine = Endpoint(link, 0, self, self._session(peer), now)
        theirs = Endpoint(link, 1, peer, peer._session(self), now, peer=mine)
        mine.peer = theirs

        def reset() -> None:  # the transport broke the connection (stream transport)
            self.lost(mine)
            peer.lost(theirs)

        link.on_reset = reset
        self.conns[peer.index] = mine
        peer.conns[self.index] = theirs
        ctx.counters.connections += 1
        ctx.trace(now, "connect", self.index, peer.index)
        self.run(mine, mine.session.start(now))
        peer.run(theirs, theirs.session.start(now))
        self._evict(keep=mine)
        peer._evict(keep=theirs)

    def _evict(self, keep: Endpoint) -> None:
        while len(self.conns) > self.ctx.max_connections:
            victim = min((ep for ep in self.conns.values() if ep is not keep),
                         key=lambda ep: ep.last_used)  # fmt: skip
            self.run(victim, victim.session.close(self.ctx.sched.now, "bye", "evicted"))
            self._forget(victim)  # (the Close effect did it, unless the session was closed)

    def _forget(self, ep: Endpoint) -> None:
        ep.closed = True
        if ep.timer is not None:
            ep.timer.cancel()
            ep.timer = None
        peer = ep.link.b if ep.side == 0 else ep.link.a
        if self.conns.get(peer) is ep:
            del self.conns[peer]

    def lost(self, ep: Endpoint) -> None:
        """The transport reports the connection closed."""
        if not ep.closed:
            ep.session.connection_lost(self.ctx.sched.now)
            self._forget(ep)

    def deliver(self, ep: Endpoint, item: Any) -> None:
        """A message (or the transport's close signal) arrives at ``ep``."""
        if ep.closed or not self.up:
            if item is not _FIN:
                self.ctx.counters.dropped_closed += 1
            return
        now = self.ctx.sched.now
        if item is _FIN:
            self.lost(ep)
        elif isinstance(item, bytes):
            self.run(ep, ep.session.receive_data(item, now))
        else:
            message, size = item
            self.run(ep, ep.session.receive_message(message, size, now))

    # -- effects ------------------------------------------------------------

    def run(self, ep: Endpoint, effects: list[Effect]) -> None:
        """Carry out a session's effects."""
        ctx = self.ctx
        for effect in effects:
            if isinstance(effect, Send):
                self._transmit(ep, effect)
            elif isinstance(effect, Close):
                self._close(ep, effect.error)
            elif isinstance(effect, Applied):
                if ctx.session_config.eager_push:
                    self._push(ep)
            elif isinstance(effect, EquivocationFound):
                ctx.trace(ctx.sched.now, "equivocation", self.index, effect.device, effect.seq)
        if not ep.closed:
            self._arm(ep)

    def _transmit(self, ep: Endpoint, effect: Send) -> None:
        ctx, data, peer = self.ctx, effect.data, ep.peer
        assert peer is not None
        kind = frame_type(data)
        fast = ctx.fast_wire and effect.message is not None
        item: Any = (effect.message, len(data)) if fast else data
        ctx.trace(ctx.sched.now, "send", self.index, peer.node.index, kind, len(data))
        ctx.net.send(ep.link, peer.side, item, len(data), kind, peer.receive)

    def _close(self, ep: Endpoint, error: str | None) -> None:
        ctx, peer = self.ctx, ep.peer
        closes = ctx.counters.closes
        closes[error or "clean"] = closes.get(error or "clean", 0) + 1
        ctx.trace(ctx.sched.now, "close", self.index, error)
        self._forget(ep)
        assert peer is not None
        ctx.net.send_control(ep.link, peer.side, _FIN, peer.receive)

    def _push(self, source: Endpoint | None) -> None:
        now = self.ctx.sched.now
        for ep in list(self.conns.values()):
            if ep is not source and not ep.closed:
                self.run(ep, ep.session.local_entries(EVENT, now))

    def _arm(self, ep: Endpoint) -> None:
        deadline = ep.session.next_deadline()
        if deadline is None:
            return
        now = self.ctx.sched.now
        deadline = max(deadline, now + _EPSILON)  # a due tick that did nothing: retry just after
        if ep.timer is not None:
            if not ep.timer.cancelled and ep.timer.at <= deadline:
                return
            ep.timer.cancel()
        ep.timer = self.ctx.sched.at(deadline, lambda: self._tick(ep))

    def _tick(self, ep: Endpoint) -> None:
        ep.timer = None
        if not ep.closed and self.up:
            self.run(ep, ep.session.tick(self.ctx.sched.now))

    # -- crash, restart, churn ------------------------------------------------

    def _stop(self) -> None:
        self.up = False
        if self.round_timer is not None:
            self.round_timer.cancel()
            self.round_timer = None

    def crash(self) -> None:
        """Lose everything volatile; the peers' connections are reset."""
        ctx = self.ctx
        ctx.counters.crashes += 1
        ctx.trace(ctx.sched.now, "crash", self.index)
        for ep in list(self.conns.values()):
            self._forget(ep)
            assert ep.peer is not None
            ctx.net.send_control(ep.link, ep.peer.side, _FIN, ep.peer.receive)
        self._stop()
        if self.mat is not None:
            self.mat = None

    def leave(self) -> None:
        """Leave the network cleanly (every session says goodbye)."""
        ctx = self.ctx
        ctx.counters.leaves += 1
        ctx.trace(ctx.sched.now, "leave", self.index)
        for ep in list(self.conns.values()):
            self.run(ep, ep.session.close(ctx.sched.now, "bye", "leaving"))
        self._stop()

    def restart(self) -> None:
        """Come back (after a crash or a leave) from the durable log."""
        ctx = self.ctx
        ctx.counters.restarts += 1
        ctx.trace(ctx.sched.now, "restart", self.index)
        self.up = True
        if ctx.materialize and self.mat is None:
            self.mat = Materializer(self.device)
            self.mat.rebuild(self.log)
        backlog, self.backlog = self.backlog, []
        for w in backlog:
            self.write(w)
        self.schedule_rounds()

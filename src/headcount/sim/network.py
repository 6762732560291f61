"""Simulated links: latency, jitter, bandwidth, loss, duplication, reordering, partitions.

What travels is one protocol message at a time (one ``Send`` effect of a
session, which is exactly one frame). Deliveries in each direction keep
their sending order even when jitter would reorder them. How faults show
depends on the run's *transport*:

``stream`` (the default; what TCP gives the real session, whose contract is
an ordered, reliable byte stream): a session never sees a lost, duplicated
or reordered frame.

* **loss** breaks the connection (a reset): that frame and everything after
  it on the connection are lost, and both ends are told (``connection_lost``)
  one latency later;
* **duplication** costs bandwidth only (the transport drops the copy);
* **reordering** holds the frame back by a random delay, and everything
  behind it waits (head-of-line blocking);
* a **partition** silently breaks every connection that tries to carry a
  frame across it: nothing more arrives on it, and nobody is told (the
  sessions' idle timeout finds out). New connections across fail.

``datagram`` (an unreliable message link, beyond the session's contract: a
stress test of the protocol's own repair): faults hit *whole messages*. A
lost message is never delivered; a duplicated one arrives twice; a
reordered one is delayed outside the order and may overtake others; a
partition drops messages while it lasts and the connection survives it.
Such faults can break a session (a duplicated ``Hello`` is a protocol
error, which closes it); lost work must then be repaired by
retransmission, later anti-entropy summaries or new sessions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .scheduler import Scheduler


@dataclass(frozen=True, slots=True)
class LinkParams:
    """One link's physics. Times in seconds, bandwidth in bytes per second (0: unlimited)."""

    latency: float = 0.002
    jitter: float = 0.002
    bandwidth: float = 12_500_000.0  # 100 Mbit/s


LAN = LinkParams()
WAN = LinkParams(latency=0.025, jitter=0.010, bandwidth=2_500_000.0)  # 20 Mbit/s


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Per-message fault probabilities (each in [0, 1])."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05
    """A reordered or duplicated copy is delayed by up to this much more (s)."""

    @property
    def any(self) -> bool:
        return bool(self.loss or self.duplicate or self.reorder)


@dataclass(frozen=True, slots=True)
class Partition:
    """Between ``at`` and ``until``, nodes in ``side`` cannot reach the others."""

    at: float
    until: float
    side: frozenset[int]


TRANSPORTS = ("stream", "datagram")


@dataclass(slots=True)
class NetStats:
    messages: int = 0
    bytes: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    dropped_partition: int = 0
    cuts: int = 0  # connections broken by a loss or a partition (stream transport)
    dropped_cut: int = 0  # messages sent on, or in flight over, a broken connection
    by_type: dict[str, list[int]] = field(default_factory=dict)  # name -> [messages, bytes]


@dataclass(eq=False, slots=True)
class Link:
    """The two directions of one connection between nodes ``a`` (side 0) and ``b``."""

    a: int
    b: int
    params: LinkParams
    busy: list[float] = field(default_factory=lambda: [0.0, 0.0])  # per direction
    last: list[float] = field(default_factory=lambda: [0.0, 0.0])  # last in-order arrival
    cut: bool = False  # broken (stream transport): nothing more is carried
    on_reset: Callable[[], None] | None = None  # tells both ends the connection broke


Deliver = Callable[[Any], None]


class Network:
    """Carries messages over links, applying the current faults and partitions."""

    def __init__(self, sched: Scheduler, rng: random.Random, transport: str = "stream") -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        self.sched = sched
        self.rng = rng
        self.stream = transport == "stream"
        self.faults = FaultRates()
        self.partitions: list[Partition] = []
        self.stats = NetStats()

    def reachable(self, a: int, b: int) -> bool:
        for p in self.partitions:
            if (a in p.side) != (b in p.side):
                return False
        return True

    def send(
        self, link: Link, to_side: int, item: Any, size: int, kind: str, deliver: Deliver
    ) -> None:
        """Carry ``item`` (``size`` bytes on the wire) towards side ``to_side``.

        ``deliver(item)`` runs at the arrival time, zero, one or two times.
        """
        st = self.stats
        st.messages += 1
        st.bytes += size
        row = st.by_type.get(kind)
        if row is None:
            row = st.by_type[kind] = [0, 0]
        row[0] += 1
        row[1] += size
        self._carry(link, to_side, item, size, deliver)

    def send_control(self, link: Link, to_side: int, item: Any, deliver: Deliver) -> None:
        """A transport signal (the connection closed): never lost or
        duplicated, kept in order, but stopped by a partition."""
        self._carry(link, to_side, item, 0, deliver, control=True)

    def _carry(
        self,
        link: Link,
        to_side: int,
        item: Any,
        size: int,
        deliver: Deliver,
        control: bool = False,
    ) -> None:
        st, rng, f, now = self.stats, self.rng, self.faults, self.sched.now
        if link.cut:
            st.dropped_cut += 1
            return
        if self.partitions and not self.reachable(link.a, link.b):
            self._partitioned(link)
            return
        if not control and f.loss and rng.random() < f.loss:
            st.lost += 1
            if self.stream:
                self._reset(link)
            return
        p = link.params
        start = max(now, link.busy[to_side])
        tx = size / p.bandwidth if p.bandwidth else 0.0
        arrival = start + tx + p.latency + (p.jitter * rng.random() if p.jitter else 0.0)
        duplicate = not control and f.duplicate and rng.random() < f.duplicate
        if duplicate:
            st.duplicated += 1
            if self.stream:
                tx *= 2  # the copy only costs bandwidth
        link.busy[to_side] = start + tx
        reordered = not control and f.reorder and rng.random() < f.reorder
        if reordered:
            st.reordered += 1
            arrival += f.reorder_delay * rng.random()
        if self.stream or not reordered:  # a reordered datagram is not held in order
            arrival = max(arrival, link.last[to_side])
            link.last[to_side] = arrival
        self._schedule(link, arrival, item, deliver)
        if duplicate and not self.stream:
            self._schedule(link, arrival + f.reorder_delay * rng.random(), item, deliver)

    def _partitioned(self, link: Link) -> None:
        self.stats.dropped_partition += 1
        if self.stream and not link.cut:  # the stream is broken; nobody is told
            link.cut = True
            self.stats.cuts += 1

    def _reset(self, link: Link) -> None:
        link.cut = True
        self.stats.cuts += 1
        if link.on_reset is not None:
            self.sched.after(link.params.latency, link.on_reset)

    def _schedule(self, link: Link, when: float, item: Any, deliver: Deliver) -> None:
        def arrive() -> None:
            if link.cut:
                self.stats.dropped_cut += 1
            elif self.partitions and not self.reachable(link.a, link.b):
                # A partition that started while the message was in flight.
                self._partitioned(link)
            else:
                deliver(item)

        self.sched.at(when, arrive)

"""Simulated links: latency, jitter, bandwidth, loss, duplication, reordering, partitions.

What travels is one protocol message at a time (one ``Send`` effect of a
session, which is exactly one frame). With every fault rate at zero a
connection is an ordered, reliable byte stream (what TCP gives the real
:class:`~headcount.session.Session`): deliveries in each direction are kept in
sending order even when jitter would reorder them. Faults are then applied to
*whole messages*, as on an unreliable datagram link:

* **loss**: the message is never delivered;
* **duplication**: a second copy arrives a little later (outside the order);
* **reordering**: the message is held back by a random extra delay and may
  overtake or be overtaken by others.

The session is written for an ordered stream, so such faults can break a
session (a duplicated ``Hello`` or a ``Summary`` that overtakes the ``Hello``
is a protocol error, which closes it). That is the intended stress: lost work
must be repaired by later anti-entropy summaries and new sessions, never
silently lost. A **partition** drops every message and every new connection
between its two sides while it lasts; it does not tell the endpoints (they
find out by their idle timeout, as over a real network).
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


@dataclass(slots=True)
class NetStats:
    messages: int = 0
    bytes: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    dropped_partition: int = 0
    by_type: dict[str, list[int]] = field(default_factory=dict)  # name -> [messages, bytes]


@dataclass(eq=False, slots=True)
class Link:
    """The two directions of one connection between nodes ``a`` (side 0) and ``b``."""

    a: int
    b: int
    params: LinkParams
    busy: list[float] = field(default_factory=lambda: [0.0, 0.0])  # per direction
    last: list[float] = field(default_factory=lambda: [0.0, 0.0])  # last in-order arrival


Deliver = Callable[[Any], None]


class Network:
    """Carries messages over links, applying the current faults and partitions."""

    def __init__(self, sched: Scheduler, rng: random.Random) -> None:
        self.sched = sched
        self.rng = rng
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
        if self.partitions and not self.reachable(link.a, link.b):
            st.dropped_partition += 1
            return
        if not control and f.loss and rng.random() < f.loss:
            st.lost += 1
            return
        p = link.params
        start = max(now, link.busy[to_side])
        tx = size / p.bandwidth if p.bandwidth else 0.0
        link.busy[to_side] = start + tx
        arrival = start + tx + p.latency + (p.jitter * rng.random() if p.jitter else 0.0)
        if not control and f.reorder and rng.random() < f.reorder:
            st.reordered += 1
            arrival += f.reorder_delay * rng.random()
        else:
            arrival = max(arrival, link.last[to_side])
            link.last[to_side] = arrival
        self._schedule(link, arrival, item, deliver)
        if not control and f.duplicate and rng.random() < f.duplicate:
            st.duplicated += 1
            self._schedule(link, arrival + f.reorder_delay * rng.random(), item, deliver)

    def _schedule(self, link: Link, when: float, item: Any, deliver: Deliver) -> None:
        def arrive() -> None:
            # A partition that started while the message was in flight drops it.
            if self.partitions and not self.reachable(link.a, link.b):
                self.stats.dropped_partition += 1
                return
            deliver(item)

        self.sched.at(when, arrive)

"""Fault plans: when links misbehave, partitions split the network, nodes crash or churn.

A :class:`FaultPlan` is plain data: a run's faults are fixed before it starts,
either written out (tests) or drawn by :func:`random_plan` from the "faults"
random stream (the CLI). After :meth:`FaultPlan.healed_at` nothing is faulty
any more: every rate is zero, every partition healed, every crashed or
departed node back. Every entry written must then reach every node.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .network import FaultRates, Partition


@dataclass(frozen=True, slots=True)
class Crash:
    """``node`` loses its volatile state at ``at`` and restarts ``downtime`` later."""

    node: int
    at: float
    downtime: float


@dataclass(frozen=True, slots=True)
class Leave:
    """``node`` leaves cleanly at ``at`` (churn) and rejoins ``downtime`` later."""

    node: int
    at: float
    downtime: float


@dataclass(frozen=True, slots=True)
class Join:
    """A new node with an empty log joins at ``at`` (wired in by the topology)."""

    at: float


@dataclass(frozen=True, slots=True)
class FaultPlan:
    rates: FaultRates = field(default_factory=FaultRates)
    rates_from: float = 0.0
    rates_until: float = 0.0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    leaves: tuple[Leave, ...] = ()
    joins: tuple[Join, ...] = ()

    def healed_at(self) -> float:
        """The time from which nothing is faulty any more."""
        ends = [self.rates_until if self.rates.any else 0.0]
        ends += [p.until for p in self.partitions]
        ends += [c.at + c.downtime for c in self.crashes]
        ends += [c.at + c.downtime for c in self.leaves]
        ends += [j.at for j in self.joins]
        return max(ends)

    @property
    def empty(self) -> bool:
        return not (self.rates.any or self.partitions or self.crashes or self.leaves or self.joins)


def random_plan(
    rng: random.Random,
    n: int,
    until: float,
    *,
    rates: FaultRates | None = None,
    partitions: int = 0,
    crashes: int = 0,
    churn: int = 0,
    joins: int = 0,
    max_outage: float = 30.0,
) -> FaultPlan:
    """Draw a plan whose faults all start in ``[0, until)``.

    Args:
        n: nodes at the start (crashes and churn pick among them).
        rates: per-message fault rates, active over ``[0, until)``.
        partitions: how many random two-sided partitions.
        crashes: how many crash-and-restart events.
        churn: how many leave-and-rejoin events.
        joins: how many fresh nodes join.
        max_outage: longest partition, crash or absence (seconds).
    """

    def outage() -> tuple[float, float]:
        at = rng.uniform(0, until)
        return at, rng.uniform(1.0, max_outage)

    parts = []
    for _ in range(partitions):
        at, length = outage()
        side = frozenset(i for i in range(n) if rng.random() < 0.5) or frozenset({0})
        parts.append(Partition(at, at + length, side))
    crash_list = [Crash(rng.randrange(n), *outage()) for _ in range(crashes)]
    leave_list = [Leave(rng.randrange(n), *outage()) for _ in range(churn)]
    join_list = [Join(rng.uniform(0, until)) for _ in range(joins)]
    return FaultPlan(
        rates=rates or FaultRates(),
        rates_until=until,
        partitions=tuple(parts),
        crashes=tuple(crash_list),
        leaves=tuple(leave_list),
        joins=tuple(join_list),
    )

"""One simulation run: build the world from a seed, run it, measure it.

The composition root of the simulator: it makes the devices (keys derived
from the seed), the topology, the workload, the nodes and the network,
schedules the writes and the fault plan, tracks convergence and fills in
:class:`~headcount.sim.metrics.Metrics`. Everything random comes from
:class:`~headcount.sim.scheduler.Streams`, so ``Simulation(config).run()`` is a
pure function of ``config`` (``wall_seconds`` aside).
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from headcount.core.identity import device_id_for
from headcount.protocol.session import SessionConfig

from .faults import FaultPlan
from .materialize import oracle
from .memo import MemoHasher, MemoVerifier
from .metrics import Metrics
from .network import Network
from .node import Context, Counters, SimNode
from .scheduler import Scheduler, Streams, Trace
from .topology import Topology
from .workload import EVENT, Workload, make_workload

MODES = ("tracking", "materialized")
WIRES = ("fast", "bytes")
_NEVER = 1e12  # the session's own anti-entropy timer: the gossip rounds drive anti-entropy


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that defines a run. See docs/simulator.md for each knob."""

    n: int = 10
    seed: int = 0
    topology: str = "mesh"
    clusters: int = 4
    degree: int = 6
    fanout: int = 1
    round_period: float = 1.0
    phase_jitter: float = 0.0  # fraction of a round by which nodes' rounds are offset
    workload: str = "checkins"
    updates: int = 100
    writers: int = 10
    window: float = 0.0
    burst: int = 20
    participants: int | None = None
    mode: str = "tracking"
    wire: str = "fast"
    eager_push: bool = False
    transport: str = "stream"
    batch_bytes: int = 256 * 1024
    session_window: int = 4
    keepalive: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 8
    faults: FaultPlan = field(default_factory=FaultPlan)
    idle_rounds: int = 0
    max_time: float = 3600.0
    keep_trace: bool = False

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.wire not in WIRES:
            raise ValueError(f"wire must be one of {WIRES}")
        if self.fanout < 1 or self.round_period <= 0 or not 0 <= self.phase_jitter < 1:
            raise ValueError("fanout >= 1, round_period > 0 and 0 <= phase_jitter < 1")


class Simulation:
    """Build with a config (and optionally a ready workload), then :meth:`run`."""

    def __init__(self, config: SimConfig, workload: Workload | None = None) -> None:
        config.check()
        self.config = c = config
        self.streams = Streams(c.seed)
        self.sched = Scheduler()
        self.trace = Trace(keep=c.keep_trace)
        self.topo = Topology(c.topology, c.n, self.streams("topology"), c.clusters, c.degree)
        total = c.n + len(c.faults.joins)
        keys = [self._key(i) for i in range(total)]
        self.devices = [device_id_for(k.public_key()) for k in keys]
        directory = {d: _raw(k) for d, k in zip(self.devices, keys, strict=True)}
        candidates = self.topo.writers()
        wrng = self.streams("workload")
        writers = wrng.sample(candidates, max(1, min(c.writers, len(candidates))))
        self.workload = workload or make_workload(
            c.workload, c.updates, writers, self.devices, wrng,
            window=c.window, burst=c.burst, participants=c.participants,
        )  # fmt: skip
        session_config = SessionConfig(
            batch_bytes=c.batch_bytes, window=c.session_window, anti_entropy_interval=_NEVER,
            keepalive_interval=c.keepalive, idle_timeout=c.idle_timeout, eager_push=c.eager_push,
        )  # fmt: skip
        self.counters = Counters()
        self.net = Network(self.sched, self.streams("link"), c.transport)
        self.ctx = Context(
            sched=self.sched, net=self.net, topo=self.topo, trace=self.trace,
            counters=self.counters, session_config=session_config, directory=directory,
            verify=MemoVerifier(), hasher=MemoHasher(), gossip_rng=self.streams("gossip"),
            on_held=self._on_held, fanout=c.fanout, round_period=c.round_period,
            max_connections=c.max_connections, fast_wire=c.wire == "fast",
            materialize=c.mode == "materialized",
        )  # fmt: skip
        self._keys = keys
        self._phase_rng = self.streams("phase")
        self.nodes = self.ctx.nodes
        for i in range(c.n):
            self._add_node(i)
        self.hist: dict[int, int] = {0: c.n}  # entries held -> number of nodes
        self.expected = 0
        self.writes_done = 0
        self.last_write = 0.0
        self.converged_at: float | None = None
        self.marked: dict[str, Any] | None = None
        self._outages: dict[int, int] = {}
        self._started = False
        self._healed_at = c.faults.healed_at()

    def _key(self, i: int) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.streams.derive(f"device/{i}"))

    def _add_node(self, i: int) -> SimNode:
        phase = self.config.phase_jitter * self.config.round_period * self._phase_rng.random()
        node = SimNode(self.ctx, i, self.devices[i], self._keys[i], phase)
        self.nodes.append(node)
        return node

    # -- progress -----------------------------------------------------------

    def _on_held(self, old: int, new: int) -> None:
        hist = self.hist
        hist[old] -= 1
        hist[new] = hist.get(new, 0) + 1
        self._check()

    def _on_write(self) -> None:
        self.expected += 1
        self.writes_done += 1
        self.last_write = self.sched.now

    def _check(self) -> None:
        done = self.writes_done == len(self.workload.writes) and self.hist.get(
            self.expected, 0
        ) == len(self.nodes)
        if done and self.converged_at is None:
            self.converged_at = self.sched.now
            self.trace(self.sched.now, "converged")
            period = self.config.round_period
            boundary = (math.floor(self.sched.now / period + 1e-9) + 1) * period
            self.sched.at(boundary - 1e-9, self._mark)
        elif not done and self.converged_at is not None:
            self.converged_at = None
            self.marked = None

    def _snapshot(self) -> dict[str, Any]:
        st = self.net.stats
        return {
            "t": self.sched.now,
            "messages": st.messages,
            "bytes": st.bytes,
            "by_type": {k: list(v) for k, v in sorted(st.by_type.items())},
            "useful": self.counters.entries_applied,
            "received": self.counters.entries_received,
            "duplicates": self.counters.duplicates,
            "entries_sent": self.counters.entries_sent,
            "payload_sent": self.counters.payload_sent,
        }

    def _mark(self) -> None:
        if self.converged_at is not None and self.marked is None:
            self.marked = self._snapshot()

    # -- schedule -------------------------------------------------------------

    def _schedule(self) -> None:
        for w in self.workload.schedule():
            self.sched.at(w.at, partial(self._write, w))
        plan = self.config.faults
        if plan.rates.any:
            self.sched.at(plan.rates_from, lambda: setattr(self.net, "faults", plan.rates))
            self.sched.at(plan.rates_until, self._clear_rates)
        for p in plan.partitions:
            self.sched.at(p.at, partial(self._partition, p, True))
            self.sched.at(p.until, partial(self._partition, p, False))
        for c in plan.crashes:
            self.sched.at(c.at, partial(self._down, c.node, crash=True))
            self.sched.at(c.at + c.downtime, partial(self._up, c.node))
        for lv in plan.leaves:
            self.sched.at(lv.at, partial(self._down, lv.node, crash=False))
            self.sched.at(lv.at + lv.downtime, partial(self._up, lv.node))
        for j in plan.joins:
            self.sched.at(j.at, self._join)
        for node in self.nodes:
            node.schedule_rounds()

    def _write(self, w: Any) -> None:
        node = self.nodes[w.node]
        if node.up:
            self._on_write()
        else:
            node.backlog.append(w)  # written when it restarts (see _up)
            return
        node.write(w)

    def _clear_rates(self) -> None:
        self.net.faults = replace(self.net.faults, loss=0.0, duplicate=0.0, reorder=0.0)
        self.trace(self.sched.now, "faults-off")

    def _partition(self, p: Any, on: bool) -> None:
        if on:
            self.net.partitions.append(p)
        else:
            self.net.partitions.remove(p)
        self.trace(self.sched.now, "partition" if on else "heal", sorted(p.side))

    def _down(self, i: int, crash: bool) -> None:
        if i >= len(self.nodes):
            return
        node = self.nodes[i]
        self._outages[i] = self._outages.get(i, 0) + 1
        if node.up:
            node.crash() if crash else node.leave()
        elif crash:
            node.mat = None  # a crash while away loses the volatile state too

    def _up(self, i: int) -> None:
        if i >= len(self.nodes):
            return
        self._outages[i] -= 1
        if self._outages[i] == 0:
            node = self.nodes[i]
            backlog, node.backlog = node.backlog, []
            for _ in backlog:
                self._on_write()
            node.backlog = backlog
            node.restart()

    def _join(self) -> None:
        i = self.topo.add_node()
        node = self._add_node(i)
        self.hist[0] = self.hist.get(0, 0) + 1
        self.trace(self.sched.now, "join", i)
        node.schedule_rounds()
        self._check()

    # -- run ------------------------------------------------------------------

    def _finished(self) -> bool:
        c = self.config
        if self.marked is None or self.sched.now < self._healed_at:
            return False
        return self.sched.now >= self.marked["t"] + c.idle_rounds * c.round_period

    def start(self) -> None:
        """Schedule the writes, the faults and the gossip rounds (once)."""
        if not self._started:
            self._started = True
            self._schedule()

    def advance(self, until: float) -> None:
        """Run the simulation up to simulated time ``until`` (for tests)."""
        self.start()
        self.sched.run(until)

    def run(self) -> Metrics:
        """Run until converged, healed and ``idle_rounds`` later, or ``max_time``.

        Python's cyclic garbage collector is paused during the run: a large
        run keeps millions of objects alive and creates almost no cycles, and
        the collector's repeated full scans cost a fifth of the wall time.
        """
        started = time.perf_counter()
        self.start()
        paused = gc.isenabled()
        gc.disable()
        try:
            self.sched.run(self.config.max_time, stop=self._finished)
        finally:
            if paused:
                gc.enable()
        metrics = self._metrics()
        metrics.wall_seconds = time.perf_counter() - started
        return metrics

    def _metrics(self) -> Metrics:
        c, st, k = self.config, self.net.stats, self.counters
        m = Metrics(
            seed=c.seed, n=c.n, topology=c.topology, fanout=c.fanout, workload=c.workload,
            entries=len(self.workload.writes), writers=len(self.workload.writers), mode=c.mode,
            wire=c.wire, eager_push=c.eager_push, transport=c.transport,
        )  # fmt: skip
        m.sim_time = self.sched.now
        m.healed_at = c.faults.healed_at()
        m.nodes_final = len(self.nodes)
        m.converged = self.converged_at is not None and self.complete()
        snap = self.marked or self._snapshot()
        if self.converged_at is not None:
            period = c.round_period
            m.converged_at = self.converged_at
            m.time_to_converge = self.converged_at - self.last_write
            if not c.faults.empty:
                m.time_after_heal = max(0.0, self.converged_at - self._healed_at)
            m.rounds = math.floor(self.converged_at / period + 1e-9) - math.floor(
                self.last_write / period + 1e-9
            )
        m.messages, m.bytes, m.by_type = snap["messages"], snap["bytes"], snap["by_type"]
        m.useful, m.received, m.duplicates = snap["useful"], snap["received"], snap["duplicates"]
        m.redundant = m.received - m.useful
        m.entries_sent, m.payload_bytes = snap["entries_sent"], snap["payload_sent"]
        if m.useful:
            m.bytes_per_useful = m.bytes / m.useful
        if self.workload.writes:
            m.payload_per_entry = self.workload.update_bytes / len(self.workload.writes)
        seg_bytes = snap["by_type"].get("segments", [0, 0])[1]
        if m.entries_sent:
            m.framing_per_entry = (seg_bytes - snap["payload_sent"]) / m.entries_sent
        if self.marked is not None and c.idle_rounds:
            m.idle_rounds = c.idle_rounds
            m.idle_bytes = st.bytes - snap["bytes"]
            m.idle_bytes_per_node_round = m.idle_bytes / (len(self.nodes) * c.idle_rounds)
        m.lost, m.duplicated, m.reordered = st.lost, st.duplicated, st.reordered
        m.cuts, m.dropped_cut = st.cuts, st.dropped_cut
        m.dropped_partition, m.dropped_closed = st.dropped_partition, k.dropped_closed
        m.connections, m.connect_failures = k.connections, k.connect_failures
        m.closes = dict(sorted(k.closes.items()))
        m.crashes, m.restarts, m.leaves, m.joins = k.crashes, k.restarts, k.leaves, k.joins
        m.equivocations = k.equivocations
        if c.mode == "materialized":
            m.semantic_converged, m.conflicts = self.semantic_check()
        verify = self.ctx.verify
        if isinstance(verify, MemoVerifier):
            m.verifications, m.verifications_real = verify.calls, verify.real
        m.hashes_real = self.ctx.hasher.real
        m.events = self.sched.executed
        m.trace_digest = self.trace.digest
        return m

    # -- checks ---------------------------------------------------------------

    def complete(self) -> bool:
        """Every node holds exactly the origins' chains (same hashes, once each)."""
        origins: dict[str, list[bytes]] = {}
        for node in self.nodes:
            for device, chain in node.log.chains.get(EVENT, {}).items():
                if device == node.device:
                    origins[device] = chain.hashes
        for node in self.nodes:
            chains = node.log.chains.get(EVENT, {})
            if set(chains) != set(origins):
                return False
            for device, hashes in origins.items():
                if chains[device].hashes != hashes:
                    return False
        return sum(len(h) for h in origins.values()) == len(self.workload.writes)

    def semantic_check(self) -> tuple[bool, int]:
        """Whether every node reads the same as the oracle; the oracle's conflicts."""
        expected = oracle(self.workload)
        same = all(node.mat is not None and node.mat.snapshot() == expected for node in self.nodes)
        return same, len(expected["conflicts"])


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def run(config: SimConfig) -> Metrics:
    """Run one simulation."""
    return Simulation(config).run()

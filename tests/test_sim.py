"""The deterministic network simulator: determinism, faults, crashes, semantics.

Every randomized check names its seed in the assertion message; hypothesis
also prints a reproduction blob (``print_blob``). A failing run can be
replayed with ``headcount sim`` or ``Simulation(config)`` from that seed.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount.cli.main import main
from headcount.protocol.session import Send, Session, SessionConfig
from headcount.sim import (
    Crash,
    FaultPlan,
    FaultRates,
    Join,
    Leave,
    Partition,
    SimConfig,
    Simulation,
    run,
)
from headcount.sim.fastwire import frame_type
from headcount.sim.network import Link, LinkParams, Network
from headcount.sim.scheduler import Scheduler, Streams
from headcount.sim.topology import KINDS, Topology
from headcount.sim.workload import EVENT

from .support.protocol import make_devices

# -- helpers -------------------------------------------------------------------


def assert_exactly_once(sim: Simulation, seed: int) -> None:
    """Every node holds every written entry, once, with the origin's hashes."""
    want = Counter((sim.devices[w.node], w.update) for w in sim.workload.writes)
    origin_hashes = {
        sim.devices[i]: sim.nodes[i].log.chains[EVENT][sim.devices[i]].hashes
        for i in sorted({w.node for w in sim.workload.writes})
    }
    for node in sim.nodes:
        chains = node.log.chains.get(EVENT, {})
        got = Counter((d, e.update) for d, ch in chains.items() for e in ch.entries)
        missing, extra = want - got, got - want
        assert not missing and not extra, (
            f"seed {seed}: node {node.index} lacks {sum(missing.values())} entries "
            f"and holds {sum(extra.values())} extra"
        )
        for device, hashes in origin_hashes.items():
            chain = chains[device]
            assert [e.seq for e in chain.entries] == list(range(1, len(hashes) + 1)), seed
            assert chain.hashes == hashes, f"seed {seed}: node {node.index} diverges on {device}"


SMALL = dict(n=6, updates=40, writers=3, window=5.0)

# -- scheduler, streams, links, topologies ----------------------------------------


def test_scheduler_runs_in_time_then_scheduling_order_and_skips_cancelled():
    sched, seen = Scheduler(), []
    sched.at(2.0, lambda: seen.append("c"))
    sched.at(1.0, lambda: seen.append("a"))
    sched.at(1.0, lambda: seen.append("b"))
    sched.at(1.5, lambda: seen.append("x")).cancel()
    sched.run(10.0)
    assert seen == ["a", "b", "c"] and sched.now == 10.0


def test_streams_are_independent_per_concern():
    a, b = Streams(7), Streams(7)
    a("link").random()  # drawing from one concern ...
    assert a("gossip").random() == b("gossip").random()  # ... does not shift another
    assert Streams(8)("gossip").random() != Streams(7)("gossip").random()


def test_reliable_link_keeps_order_despite_jitter():
    sched = Scheduler()
    net = Network(sched, Streams(1)("link"))
    link = Link(0, 1, LinkParams(latency=0.01, jitter=0.5, bandwidth=0))
    got: list[int] = []
    for i in range(200):
        net.send(link, 1, i, 10, "x", got.append)
    sched.run(100.0)
    assert got == list(range(200))


def test_reordering_link_reorders_and_lossy_link_loses():
    sched = Scheduler()
    net = Network(sched, Streams(1)("link"), "datagram")
    net.faults = FaultRates(loss=0.2, duplicate=0.1, reorder=0.5, reorder_delay=1.0)
    link = Link(0, 1, LinkParams(latency=0.01, jitter=0.0, bandwidth=0))
    got: list[int] = []
    for i in range(500):
        net.send(link, 1, i, 10, "x", got.append)
    sched.run(100.0)
    assert got != sorted(got)
    assert len(set(got)) == 500 - net.stats.lost
    assert len(got) == 500 - net.stats.lost + net.stats.duplicated
    assert 50 < net.stats.lost < 150


@pytest.mark.parametrize("kind", KINDS)
def test_topologies_are_connected_and_clusters_meet_only_at_the_relay(kind):
    topo = Topology(kind, 40, Streams(3)("topology"), clusters=4, degree=4)
    seen, todo = {0}, [0]
    while todo:
        for j in topo.neighbours(todo.pop()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    assert seen == set(range(40))
    if kind == "clusters":
        for i in range(1, 40):
            assert all(
                j == 0 or topo.cluster_of[j] == topo.cluster_of[i] for j in topo.neighbours(i)
            )
    joined = topo.add_node()
    assert joined == 40 and topo.neighbours(40)


# -- determinism ---------------------------------------------------------------------

FAULTY = FaultPlan(
    rates=FaultRates(loss=0.05, duplicate=0.05, reorder=0.1),
    rates_until=10.0,
    partitions=(Partition(2.0, 9.0, frozenset({0, 1})),),
    crashes=(Crash(2, 3.0, 5.0),),
    leaves=(Leave(4, 1.0, 4.0),),
    joins=(Join(6.0),),
)


def test_same_seed_gives_identical_metrics_and_trace():
    config = SimConfig(seed=11, faults=FAULTY, keep_trace=True, idle_rounds=3, **SMALL)
    first, second = Simulation(config), Simulation(config)
    m1, m2 = first.run(), second.run()
    assert m1.converged, "seed 11"
    assert m1.deterministic() == m2.deterministic()
    assert first.trace.records == second.trace.records and m1.trace_digest == m2.trace_digest
    assert run(SimConfig(seed=12, faults=FAULTY, **SMALL)).trace_digest != m1.trace_digest


def test_fast_wire_and_byte_wire_give_the_same_run():
    """Skipping the decoder changes nothing but the work done."""
    config = SimConfig(seed=5, faults=FAULTY, workload="mixed", **SMALL)
    fast = run(config).deterministic()
    slow = run(SimConfig(**{**_fields(config), "wire": "bytes"})).deterministic()
    for key in ("wire", "hashes_real"):
        fast.pop(key), slow.pop(key)
    assert fast == slow


def _fields(config: SimConfig) -> dict:
    return {f: getattr(config, f) for f in config.__dataclass_fields__}


# -- faults then heal: no entry lost, none duplicated ------------------------------------


@st.composite
def faulty_configs(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(3, 7))
    t = st.floats(0.0, 20.0, allow_nan=False)
    outage = st.floats(0.5, 15.0, allow_nan=False)
    rate = st.sampled_from([0.0, 0.02, 0.1, 0.3])
    transport = draw(st.sampled_from(["stream", "datagram"]))
    rates = FaultRates(loss=draw(rate), duplicate=draw(rate), reorder=draw(rate))
    parts = draw(st.lists(st.tuples(t, outage, st.integers(1, 2**n - 2)), max_size=3))
    plan = FaultPlan(
        rates=rates,
        rates_until=20.0,
        partitions=tuple(
            Partition(at, at + d, frozenset(i for i in range(n) if mask >> i & 1))
            for at, d, mask in parts
        ),
        crashes=tuple(
            Crash(i, at, d)
            for i, at, d in draw(st.lists(st.tuples(st.integers(0, n - 1), t, outage), max_size=3))
        ),
        leaves=tuple(
            Leave(i, at, d)
            for i, at, d in draw(st.lists(st.tuples(st.integers(0, n - 1), t, outage), max_size=2))
        ),
        joins=tuple(Join(at) for at in draw(st.lists(t, max_size=2))),
    )
    return SimConfig(
        n=n,
        seed=seed,
        topology=draw(st.sampled_from(KINDS)),
        workload=draw(st.sampled_from(["checkins", "mixed", "critical"])),
        updates=draw(st.integers(1, 40)),
        writers=draw(st.integers(1, n)),
        window=draw(t),
        eager_push=draw(st.booleans()),
        wire=draw(st.sampled_from(["fast", "bytes"])),
        batch_bytes=draw(st.sampled_from([200, 4096, 256 * 1024])),
        transport=transport,
        faults=plan,
        max_time=600.0,
    )


@settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(faulty_configs())
def test_any_faults_followed_by_a_healed_period_converge_exactly_once(config):
    """Over the stream transport (the session's contract: faults become
    delays, broken connections and silent partitions), any mix of loss,
    duplication, reordering, partitions, crashes, churn and joins; over the
    datagram transport, loss or duplication of whole messages."""
    sim = Simulation(config)
    m = sim.run()
    assert m.converged, f"seed {config.seed}: not converged by t={m.sim_time:.1f} ({config})"
    assert sim.sched.now >= config.faults.healed_at(), config.seed
    assert_exactly_once(sim, config.seed)


# -- crash and restart --------------------------------------------------------------------


def test_crash_keeps_the_log_and_loses_sessions_timers_and_in_flight_messages():
    plan = FaultPlan(crashes=(Crash(2, 4.003, 7.0),))  # mid-exchange: round 4 began at 4.0
    config = SimConfig(seed=3, n=5, updates=100, writers=5, window=8.0, burst=5, faults=plan)
    sim = Simulation(config)
    node = sim.nodes[2]
    sim.advance(4.0029)
    assert node.up and node.conns, "seed 3: node 2 should be talking before its crash"
    before = {d: list(c.entries) for d, c in node.log.chains.get(EVENT, {}).items()}
    assert sum(map(len, before.values())) > 10, "seed 3: node 2 should hold entries by now"
    dropped = sim.counters.dropped_closed
    sim.advance(4.0031)
    assert not node.up and not node.conns and node.round_timer is None
    after = {d: c.entries[: len(before.get(d, []))] for d, c in node.log.chains[EVENT].items()}
    assert after == before  # durable: nothing of the log was lost
    sim.advance(10.4)
    assert not node.up and node.backlog  # its own writes wait for the restart
    assert sim.counters.dropped_closed > dropped  # what was in flight to it was lost
    m = sim.run()
    assert m.converged and m.crashes == 1 and m.restarts == 1, "seed 3"
    assert_exactly_once(sim, 3)


def test_partition_stops_traffic_across_until_it_heals():
    side = frozenset({0, 1, 2})
    config = SimConfig(
        seed=9, n=6, updates=30, writers=6, window=1.0,
        faults=FaultPlan(partitions=(Partition(0.0, 30.0, side),)),
    )  # fmt: skip
    sim = Simulation(config)
    sim.advance(29.0)
    for node in sim.nodes:
        devices = set(node.log.chains.get(EVENT, {}))
        other = {sim.devices[i] for i in range(6) if (i in side) != (node.index in side)}
        assert not devices & other, f"seed 9: node {node.index} got entries across the partition"
    m = sim.run()
    assert m.converged and m.connect_failures > 0, "seed 9"
    assert_exactly_once(sim, 9)


# -- materialising mode ---------------------------------------------------------------------


def test_materialized_run_converges_semantically_with_conflicts():
    plan = FaultPlan(
        rates=FaultRates(loss=0.05, reorder=0.2), rates_until=8.0, crashes=(Crash(1, 2.0, 4.0),)
    )
    config = SimConfig(
        seed=21, n=6, workload="mixed", updates=120, writers=4, window=6.0,
        mode="materialized", faults=plan,
    )  # fmt: skip
    sim = Simulation(config)
    m = sim.run()
    assert m.converged and m.semantic_converged, "seed 21"
    assert m.conflicts and m.conflicts > 0, "seed 21: the critical edits must conflict"
    snapshots = [node.mat.snapshot() for node in sim.nodes if node.mat]
    assert len(snapshots) == 6 and all(s == snapshots[0] for s in snapshots)
    assert snapshots[0]["attendance"] and snapshots[0]["participants"]
    # The check can fail: one more scan on one node only breaks it.
    extra = sim.nodes[0].mat
    assert extra is not None
    extra.event.record_scan(
        __import__("headcount").ScanKind.IN, "p1", gate="g", method="qr",
        wall_ms=1_780_000_100_000, allow_unknown=True,
    )  # fmt: skip
    assert sim.semantic_check()[0] is False


# -- the command line --------------------------------------------------------------------------


def test_cli_runs_a_simulation(capsys):
    code = main(["sim", "-n", "12", "--updates", "50", "--writers", "3", "--seed", "4", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    import json

    data = json.loads(out)
    assert data["converged"] and data["n"] == 12 and data["entries"] == 50
    assert data["useful"] == 11 * 50


def test_cli_rejects_a_bad_configuration(capsys):
    assert main(["sim", "-n", "1"]) == 1
    assert "at least two nodes" in capsys.readouterr().err


# -- protocol findings (session.py; see docs/simulator.md, "Findings") --------------------------


def _sends(effects) -> list[bytes]:
    return [e.data for e in effects if isinstance(e, Send)]


def _run_link(sessions, queues, now, hold=None) -> list[bytes]:
    """Deliver frames until the link is quiet; frames ``hold(i, data)``
    selects are set aside and returned instead of delivered."""
    held: list[bytes] = []
    while any(queues):
        for i in (0, 1):
            while queues[i]:
                data = queues[i].pop(0)
                if hold is not None and hold(i, data):
                    held.append(data)
                else:
                    queues[1 - i] += _sends(sessions[i].receive_data(data, now))
    return held


def test_a_batch_discarded_after_reordering_is_resent_by_anti_entropy():
    a, b = make_devices(2)
    for i in range(3):
        a.append("ev", b"x" * 50, i + 1)
    config = SessionConfig(batch_bytes=50)  # one entry per batch, three batches in flight
    sessions = [Session(a, 0.0, config), Session(b, 0.0, config)]
    queues: list[list[bytes]] = [[], []]  # frames travelling towards side i
    for i, s in enumerate(sessions):
        queues[1 - i] += _sends(s.start(0.0))
    held = _run_link(
        sessions, queues, 0.0, hold=lambda i, d: i == 1 and frame_type(d) == "segments"
    )
    assert len(held) == 3
    queues[1] += [held[1], held[0], held[2]]  # the second batch overtakes the first
    _run_link(sessions, queues, 0.0)
    # Batches 2 and 3 arrived as gaps and were discarded; once nothing is in
    # flight the sender falls back to what b acknowledged and resends them.
    assert b.version_vector("ev") == {a.device_id: 3}
    for now in (1.0, 1.0 + config.ack_timeout + 1):  # anti-entropy, then the retransmit timer
        for i, s in enumerate(sessions):
            queues[1 - i] += _sends(s.anti_entropy(now)) + _sends(s.tick(now))
        _run_link(sessions, queues, now)
    assert b.version_vector("ev") == {a.device_id: 3}  # the discarded batches were resent
    assert sessions[0].status.pending_entries == 0


def test_datagram_reordering_then_a_healed_period_converges():
    plan = FaultPlan(rates=FaultRates(reorder=0.3), rates_until=20.0)
    config = SimConfig(
        n=3, seed=0, updates=9, writers=1, batch_bytes=200, transport="datagram",
        faults=plan, max_time=300.0,
    )  # fmt: skip
    sim = Simulation(config)
    m = sim.run()
    assert m.converged, "seed 0: stalled sessions never resend the discarded entries"
    assert_exactly_once(sim, 0)

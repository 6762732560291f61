"""Snapshots are taken only from a peer certified admin or relay, and bounded
before a byte is kept (issue 11, attack 5: a gate could make a relay buffer
512 MiB per session before its role was checked).

1. A gate's first snapshot part closes the session (``unauthorised``) with
   nothing buffered; the refusal is an effect the node counts and logs.
2. A snapshot larger than a connection may hold, or than the node's whole
   budget, is refused at its first part (``too_big``).
3. Two admins' snapshots beyond the node's budget: the second is deferred
   (its parts dropped unread) and arrives whole once the first is installed,
   when its sender times out and sends it again.
4. Every reservation is released when the snapshot is installed or refused,
   and when the connection ends, however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from headcount import Role
from headcount.core.chain import Head
from headcount.core.errors import BehindHorizonError
from headcount.pki.org import init_org
from headcount.protocol.memlog import MemLog
from headcount.protocol.session import (
    Applied,
    Close,
    Effect,
    Send,
    Session,
    SessionConfig,
    SnapshotBudget,
    SnapshotRefused,
)
from headcount.protocol.wire import FrameDecoder, Goodbye, Hello, SnapshotPart, encode
from headcount.replica.log import ReplicaLog

from .support.devices import enrolled_replica
from .support.nodes import effect_pulse, tls_node
from .support.protocol import make_devices
from .support.wait import await_until

EV = "ev"
MIB = 1 << 20


def goodbyes(effects: list[Effect]) -> list[str]:
    decoder = FrameDecoder()
    for effect in effects:
        if isinstance(effect, Send):
            decoder.receive_data(effect.data)
    out = []
    while (m := decoder.next_message()) is not None:
        if isinstance(m, Goodbye):
            out.append(m.code)
    return out


def opened(log: Any, peer: str, budget: SnapshotBudget, config: SessionConfig | None = None):
    """A session of ``log`` with ``peer``, past the Hello exchange."""
    session = Session(log, 0.0, config, expect_peer=peer, snapshot_budget=budget)
    session.start(0.0)
    session.receive_data(encode(Hello(peer, (EV,))), 0.0)
    return session


# -- the role, before anything is buffered --------------------------------------------


def test_a_gate_sending_snapshot_parts_is_cut_off_before_a_byte_is_buffered():
    relay, gate = make_devices(2)
    relay.roles[gate.device_id] = "gate"
    budget = SnapshotBudget(128 * MIB)
    session = opened(relay, gate.device_id, budget)
    part = SnapshotPart(EV, 0, 500 * MIB, b"x" * 500_000, ())
    effects = session.receive_data(encode(part), 1.0)
    assert SnapshotRefused(EV, "unauthorised", 500 * MIB) in effects
    assert goodbyes(effects) == ["unauthorised"] and effects[-1] == Close("unauthorised")
    assert session.snapshot_buffered == 0 and budget.used == 0
    assert session.state.value == "closed"
    assert session.receive_data(encode(SnapshotPart(EV, 500_000, 500 * MIB, b"y", ())), 2.0) == []


@pytest.mark.parametrize("role", [None, "gate", "bogus"])
def test_only_admins_and_relays_may_send_snapshots(role):
    me, peer = make_devices(2)
    if role is not None:
        me.roles[peer.device_id] = role
    session = opened(me, peer.device_id, SnapshotBudget(MIB))
    effects = session.receive_data(encode(SnapshotPart(EV, 0, 10, b"12345", ())), 1.0)
    assert effects[-1] == Close("unauthorised") and session.snapshot_buffered == 0


@pytest.mark.parametrize("role", ["admin", "relay"])
def test_an_authority_s_snapshot_is_buffered(role):
    me, peer = make_devices(2)
    me.roles[peer.device_id] = role
    budget = SnapshotBudget(MIB)
    session = opened(me, peer.device_id, budget)
    assert session.receive_data(encode(SnapshotPart(EV, 0, 10, b"12345", ())), 1.0) == []
    assert session.snapshot_buffered == 5 and budget.used == 10  # the whole size is reserved


def test_the_role_comes_from_the_replicas_certified_directory(tmp_path, clock):
    org = init_org(tmp_path / "org", "Example Events")
    relay = enrolled_replica(tmp_path, org, "relay", Role.RELAY, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    for peer, role in ((gate, "gate"), (admin, "admin")):
        relay.trust(peer.device_id, peer.identity.public_key_raw, role)
    log = ReplicaLog(relay)
    part = encode(SnapshotPart(EV, 0, 10, b"12345", ()))
    budget = SnapshotBudget(MIB)
    from_gate = opened(log, gate.device_id, budget)
    assert from_gate.receive_data(part, 1.0)[-1] == Close("unauthorised")
    from_admin = opened(log, admin.device_id, budget)
    assert from_admin.receive_data(part, 1.0) == [] and from_admin.snapshot_buffered == 5
    for r in (relay, gate, admin):
        r.close()


# -- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "node"),
    [(801, 10_000), (700, 600)],
    ids=["beyond the connection's limit", "beyond the node's budget"],
)
def test_a_snapshot_that_could_never_fit_is_refused_at_its_first_part(total, node):
    me, admin = make_devices(2)
    me.roles[admin.device_id] = "admin"
    budget = SnapshotBudget(node)
    session = opened(me, admin.device_id, budget, SessionConfig(max_snapshot=800))
    effects = session.receive_data(encode(SnapshotPart(EV, 0, total, b"x" * 100, ())), 1.0)
    assert SnapshotRefused(EV, "too_big", total) in effects
    assert effects[-1] == Close("too_big")
    assert session.snapshot_buffered == 0 and budget.used == 0


def test_the_default_limits_hold_a_large_events_snapshot_twice_but_not_512_mib():
    assert SessionConfig().max_snapshot == 64 * MIB
    from headcount.net.node import DEFAULT_SNAPSHOT_BUDGET

    assert DEFAULT_SNAPSHOT_BUDGET == 128 * MIB  # 19 MiB for 50,000 people, 100,000 scans


# -- two admins, one budget --------------------------------------------------------------


class Source(MemLog):
    """An admin holding a compacted event: every peer is behind its horizon."""

    state: bytes = b""

    def events(self) -> list[str]:
        return [EV]

    def version_vector(self, event: str) -> dict[str, int]:
        return {self.device_id: 1}

    def segments_since(self, event: str, vv: Mapping[str, int], max_bytes: int) -> list:
        if vv.get(self.device_id, 0) < 1:
            raise BehindHorizonError("folded")
        return []

    def snapshot_for(self, event: str) -> tuple[bytes, list[Head]]:
        # The horizon's head: what the peer holds once it installs this.
        return self.state, [Head(event, self.device_id, 1, bytes(32), bytes(64))]


class Sink(MemLog):
    """A device behind the horizon: installs what it is sent."""

    installed: list[tuple[str, int]]

    def events(self) -> list[str]:
        return [EV]

    def install_snapshot(self, event: str, state: bytes, heads: Sequence[Head], sender: str) -> int:
        self.installed.append((sender, len(state)))
        self._vv.setdefault(event, {})[sender] = 1
        return 1


class Link:
    """Two sessions and the frames in flight between them, delivered on demand."""

    def __init__(self, a: Session, b: Session) -> None:
        self.sessions = (a, b)
        self.queues: tuple[list[bytes], list[bytes]] = ([], [])  # towards a, towards b
        self.effects: list[Effect] = []
        self.now = 0.0
        for i, session in enumerate(self.sessions):
            self.carry(i, session.start(0.0))

    def carry(self, i: int, effects: list[Effect]) -> None:
        self.effects += effects
        for effect in effects:
            if isinstance(effect, Send):
                self.queues[1 - i].append(effect.data)

    def deliver(self, i: int, n: int = 1 << 30) -> None:
        """Deliver up to ``n`` frames to side ``i``."""
        queue = self.queues[i]
        for _ in range(min(n, len(queue))):
            self.carry(i, self.sessions[i].receive_data(queue.pop(0), self.now))

    def settle(self) -> None:
        while any(self.queues):
            self.deliver(0)
            self.deliver(1)

    def tick(self, now: float) -> None:
        self.now = now
        for i, session in enumerate(self.sessions):
            self.carry(i, session.tick(now))


def _admin(devices: list[MemLog], state: bytes) -> Source:
    log = devices.pop()
    source = Source(log.device_id, log.key, log.directory)
    source.state = state
    return source


def test_two_admins_snapshots_beyond_the_node_budget_the_second_waits_its_turn():
    logs = make_devices(3)
    one, two = _admin(logs, b"1" * 600), _admin(logs, b"2" * 600)
    sink = Sink(logs[0].device_id, logs[0].key, logs[0].directory)
    sink.installed = []
    sink.roles = {one.device_id: "admin", two.device_id: "admin"}
    node = SnapshotBudget(1000)  # one 600-byte snapshot at a time
    config = SessionConfig(batch_bytes=100, max_snapshot=800, ack_timeout=5.0)

    def link(source: Source) -> Link:
        mine = Session(sink, 0.0, config, expect_peer=source.device_id, snapshot_budget=node)
        return Link(Session(source, 0.0, config), mine)

    first, second = link(one), link(two)
    for lk in (first, second):  # Hello and Summary both ways: the sources start sending
        lk.deliver(1, 1)
        lk.deliver(0)
    first.deliver(1, 3)  # Summary, then the first 200 bytes of one's snapshot
    assert node.used == 600
    second.deliver(1)  # all of two's snapshot: deferred, dropped unread
    assert SnapshotRefused(EV, "deferred", 600) in second.effects
    assert not any(isinstance(e, Close) for e in second.effects)
    assert second.sessions[1].snapshot_buffered == 0 and node.used == 600
    first.settle()
    assert sink.installed == [(one.device_id, 600)] and node.used == 0
    second.settle()  # two waits for its acknowledgement ...
    assert sink.installed == [(one.device_id, 600)]
    second.tick(6.0)  # ... which does not come: it sends the snapshot again
    second.settle()
    assert sink.installed == [(one.device_id, 600), (two.device_id, 600)]
    assert node.used == 0
    assert any(isinstance(e, Applied) for e in second.effects)


# -- releases ---------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["connection lost", "closed", "bad part", "idle", "replaced"])
def test_the_reservation_is_released_however_the_snapshot_ends(end):
    me, admin = make_devices(2)
    me.roles[admin.device_id] = "admin"
    node = SnapshotBudget(1000)
    session = opened(me, admin.device_id, node)
    session.receive_data(encode(SnapshotPart(EV, 0, 600, b"x" * 100, ())), 1.0)
    assert node.used == 600 and session.snapshot_buffered == 100
    if end == "connection lost":
        session.connection_lost(2.0)
    elif end == "closed":
        session.close(2.0)
    elif end == "bad part":  # out of order: malformed, the session ends
        effects = session.receive_data(encode(SnapshotPart(EV, 300, 600, b"x", ())), 2.0)
        assert SnapshotRefused(EV, "malformed", 600) in effects
    elif end == "idle":
        session.tick(1000.0)
    else:  # the peer starts again: the old one's reservation is given back
        session.receive_data(encode(SnapshotPart(EV, 0, 300, b"y", ())), 2.0)
        assert node.used == 300 and session.snapshot_buffered == 1
        return
    assert session.state.value == "closed"
    assert node.used == 0 and session.snapshot_buffered == 0


@st.composite
def traffic(draw):
    """Parts and ends from four peers (two admins, a relay, a gate)."""
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        peer = draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["start", "next", "next", "lost"]))
        total = draw(st.integers(0, 900))
        steps.append((peer, kind, total, draw(st.integers(1, 300))))
    return steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=traffic())
def test_the_node_budget_bounds_every_interleaving_and_is_released_at_the_end(steps):
    logs = make_devices(5)
    me, peers = logs[0], logs[1:]
    for peer, role in zip(peers, ["admin", "admin", "relay", "gate"], strict=True):
        me.roles[peer.device_id] = role
    node = SnapshotBudget(1000)
    config = SessionConfig(max_snapshot=800)
    sessions = [opened(me, p.device_id, node, config) for p in peers]
    offsets = [0] * 4
    totals = [0] * 4
    for peer, kind, total, size in steps:
        session = sessions[peer]
        if kind == "lost":
            session.connection_lost(1.0)
            sessions[peer] = opened(me, peers[peer].device_id, node, config)
            continue
        if kind == "start":
            offsets[peer], totals[peer] = 0, total
        data = b"z" * max(0, min(size, totals[peer] - offsets[peer]))
        part = SnapshotPart(EV, offsets[peer], totals[peer], data, ())
        offsets[peer] += len(data)
        session.receive_data(encode(part), 1.0)
        assert 0 <= node.used <= node.limit
        assert sum(s.snapshot_buffered for s in sessions) <= node.used
        assert sessions[3].snapshot_buffered == 0  # the gate never buffers
    for session in sessions:
        session.connection_lost(2.0)
    assert node.used == 0


# -- a node: the refusal is logged and counted ---------------------------------------------


def test_a_modified_gate_sending_a_snapshot_to_a_node_is_cut_off_and_counted(
    tmp_path, clock, caplog
):
    org = init_org(tmp_path / "org", "Example Events")
    admin = enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)
    gate = enrolled_replica(tmp_path, org, "gate", Role.GATE, clock)
    admin.create_event(EV, "Conf")

    def behind(*_args: Any) -> list:
        raise BehindHorizonError("a forged horizon")

    async def main() -> Any:
        a = tls_node(admin, [])
        pulse = effect_pulse(a)
        await a.start()
        g = tls_node(gate, [("127.0.0.1", a.port)])
        g.log.segments_since = behind  # a modified client: "you are behind my horizon"
        g.log.snapshot_for = lambda event: (b"s" * 3 * MIB, [])
        await g.start()
        await await_until(
            lambda: a.refusals["snapshot:unauthorised"] >= 1,
            10,
            lambda: f"the node refused the gate's snapshot ({a.refusals})",
            pulse=pulse,
        )
        used = a.snapshot_budget.used
        await g.stop()
        await a.stop()
        return used

    with caplog.at_level("WARNING", logger="headcount.net"):
        used = asyncio.run(asyncio.wait_for(main(), 30))
    assert used == 0
    assert any(
        "unauthorised" in r.getMessage() and gate.device_id in r.getMessage()
        for r in caplog.records
    )
    assert admin.store.snapshot(EV) is None or admin.store.horizon(EV) == {}
    admin.close()
    gate.close()


def test_a_daemon_takes_its_snapshot_limits_from_its_configuration(tmp_path):
    from headcount.core.errors import InputError
    from headcount.service.daemon import Daemon, load_config

    from .support.devices import enrolled_dir

    org = init_org(tmp_path / "org", "Example Events")
    data = enrolled_dir(tmp_path, org, "gate", Role.GATE)
    path = tmp_path / "gate.toml"
    path.write_text("[sync]\nmax_snapshot = 1048576\nsnapshot_budget = 3145728\n")
    daemon = Daemon(load_config(path, data))
    try:
        assert daemon.node.config.session.max_snapshot == MIB
        assert daemon.node.snapshot_budget.limit == 3 * MIB
    finally:
        daemon.replica.close()
    path.write_text("[sync]\nsnapshot_budget = 0\n")
    with pytest.raises(InputError, match="snapshot_budget"):
        load_config(path, data)

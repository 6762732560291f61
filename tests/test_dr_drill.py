"""Disaster-recovery drill: during a multi-gate run over mutual TLS on
127.0.0.1, gate A's data directory is destroyed. A is restored from its latest
scheduled backup (identity included), refuses check-ins until it has caught up
with its own entries from its peers, then accepts them again. Afterwards every
device holds the same state, no acknowledged check-in is lost (not even those
A made after its backup) and none is counted twice; nobody saw equivocation."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

import pytest

from headcount import HeadcountError, Replica, Role
from headcount.backup import Catalog, Kind, restore_backup
from headcount.backup.schedule import BackupSchedule
from headcount.net.node import Node
from headcount.pki.org import init_org
from headcount.replica.replica import wall_clock_ms
from headcount.service.housekeeping import Housekeeping

from .support.devices import enrolled_replica
from .support.nodes import tls_node
from .support.wait import Pulse, await_until

EV = "ev"
PEOPLE = 30
DEADLINE_S = 30.0


def _state(r: Replica) -> dict:
    ev = r.event(EV)
    return {
        "scans": sorted(ev.doc.scans),
        "attendance": [a.to_dict() for a in ev.attendance_list()],
        "participants": [p.to_dict() for p in ev.participants(include_deleted=True)],
        "vv": r.version_vector(EV),
        "counts": ev.counts(),
    }


class Drill:
    """The devices, their nodes, and every check-in acknowledged to a gate."""

    def __init__(self, replicas: dict[str, Replica]) -> None:
        self.replicas = replicas
        self.nodes: dict[str, Node] = {}
        self.changed = Pulse()  # beats on every effect of every node
        self.acked: list[str] = []
        self.after_backup: list[str] = []

    async def start(self, name: str, peers: list[str]) -> None:
        addresses = [("127.0.0.1", self.nodes[p].port) for p in peers]
        node = tls_node(self.replicas[name], addresses)
        node.effect_observers.append(self.changed.beat)
        await node.start()
        self.nodes[name] = node

    def scan(self, gate: str, who: str) -> str:
        """A check-in at ``gate``: acknowledged once it returns (durable), then pushed."""
        result = self.replicas[gate].check_in(EV, who)
        self.nodes[gate].local_write(EV)
        self.acked.append(result.scan.id)
        return result.scan.id

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait until ``predicate()`` holds, checked on every effect of every node
        (a replica's state changes only with one)."""
        await await_until(predicate, DEADLINE_S, what, pulse=self.changed)

    def converged(self) -> bool:
        vvs = [r.version_vector(EV) if EV in r.events() else {} for r in self.replicas.values()]
        return all(vv == vvs[0] for vv in vvs) and len(vvs[0]) == len(self.replicas)


def test_a_destroyed_gate_is_restored_from_its_backup_and_resyncs_without_loss(tmp_path):
    clock = wall_clock_ms  # certificates are checked on the real clock: so are the replicas
    org = init_org(tmp_path / "org", "Example Events")
    replicas = {"admin": enrolled_replica(tmp_path, org, "admin", Role.ADMIN, clock)}
    for name in ("a", "b", "c"):
        replicas[name] = enrolled_replica(tmp_path, org, name, Role.GATE, clock)
    admin = replicas["admin"]
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"P{i}", "name": f"N{i}"} for i in range(PEOPLE)])
    a_dir, a_id = replicas["a"].data_dir, replicas["a"].device_id
    dest = tmp_path / "offsite"  # backups kept off the gate: they survive its disk
    schedule = BackupSchedule(3600, dest, Kind.INCREMENTAL)
    drill = Drill(replicas)

    async def run() -> dict:
        await drill.start("admin", [])
        await drill.start("a", ["admin"])
        await drill.start("b", ["admin", "a"])
        await drill.start("c", ["admin", "a", "b"])
        gates = [replicas[g] for g in "abc"]
        await drill.until(
            lambda: all(EV in g.events() and g.status(EV).participants == PEOPLE for g in gates),
            "every gate has the event",
        )
        for i, gate in enumerate("abc" * 3):  # round 1, and P0 at two gates
            drill.scan(gate, f"P{i}")
        drill.scan("b", "P0")
        await drill.until(drill.converged, "round 1 reached everyone")

        jobs = Housekeeping(replicas["a"], schedule, None)  # A's scheduled backups, run now
        full = await jobs.jobs["backup"].run_once()
        for i, gate in enumerate("abc" * 2, start=9):  # round 2
            drill.scan(gate, f"P{i}")
        await drill.until(drill.converged, "round 2 reached everyone")
        incremental = await jobs.jobs["backup"].run_once()

        for i in range(15, 20):  # at A after its last backup: only its peers keep them
            drill.after_backup.append(drill.scan("a", f"P{i}"))
        await drill.until(drill.converged, "A's last check-ins reached its peers")
        lost_seq = replicas["a"].version_vector(EV)[a_id]

        await drill.nodes.pop("a").stop()  # the disaster: A's disk is gone
        replicas.pop("a").close()
        shutil.rmtree(a_dir)
        drill.scan("b", "P20")  # the others keep working meanwhile
        drill.scan("c", "P21")

        latest = Catalog(dest).latest(a_id)
        assert latest is not None and latest.id == incremental.detail["backup"]
        report = await asyncio.to_thread(restore_backup, latest.id, dest, a_dir)
        assert report.rebuilt and report.rejoin == [EV] and "device.key" in report.identity_restored
        a = replicas["a"] = Replica.open(a_dir, wall_clock=clock)
        assert a.device_id == a_id and a.version_vector(EV)[a_id] < lost_seq
        assert not set(drill.after_backup) & set(a.event(EV).doc.scans)  # not in the backup
        with pytest.raises(HeadcountError) as refused:
            a.check_in(EV, "P29")
        assert refused.value.code == "rejoin_pending"

        await drill.start("a", ["admin", "b", "c"])
        await drill.until(lambda: EV not in a.rejoin_pending, "A caught up with its own chain")
        assert a.version_vector(EV)[a_id] >= lost_seq
        new = a.check_in(EV, "P22")  # accepted again, continuing its chain
        drill.nodes["a"].local_write(EV)
        drill.acked.append(new.scan.id)
        await drill.until(drill.converged, "everyone converged after the restore")
        for node in drill.nodes.values():
            await node.stop()
        return {
            "backups": (full.detail["kind"], incremental.detail["kind"]),
            "new_seq": new.entry.seq if new.entry else None,
            "lost_seq": lost_seq,
        }

    try:
        result = asyncio.run(asyncio.wait_for(run(), DEADLINE_S * 3))
    finally:
        for r in replicas.values():
            r.close()
    assert result["backups"] == ("full", "incremental")
    assert result["new_seq"] == result["lost_seq"] + 1  # no sequence number reused
    states = {}
    for name, path in (("admin", "admin"), ("a", "a"), ("b", "b"), ("c", "c")):
        with Replica.open(tmp_path / path, read_only=True) as r:
            states[name] = _state(r)
            assert not r.store.quarantined(EV), f"{name} saw equivocation"
    first = states["admin"]
    for name, state in states.items():
        assert state == first, f"{name} differs from the admin"
    assert len(drill.acked) == len(set(drill.acked))
    assert set(first["scans"]) == set(drill.acked)  # nothing lost, nothing extra
    assert set(drill.after_backup) <= set(first["scans"])
    participants = [att["participant"] for att in first["attendance"]]
    assert len(participants) == len(set(participants)) == 23  # one record per participant
    assert first["counts"]["scans"] == len(drill.acked) == 24
    [p0] = [att for att in first["attendance"] if att["participant"] == "P0"]
    assert len(p0["scans"]) == 2  # two gates scanned P0: one record, both scans kept

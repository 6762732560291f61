"""A device restored from an older backup rejoins sync without equivocating
(reusing a sequence number its peers already hold) or duplicating a scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from headcount import HeadcountError, Replica
from headcount.backup import Kind, create_backup, restore_backup
from headcount.replica.log import ReplicaLog

from .support.backup import open_pair
from .support.clock import FakeClock
from .support.protocol import ConnectionPair

EV = "ev"


def _state(r: Replica) -> tuple[list[str], dict[str, int], int]:
    ev = r.event(EV)
    return sorted(ev.doc.scans), r.version_vector(EV), ev.counts()["scans"]


def test_a_restored_device_waits_for_its_own_entries_then_continues_its_chain(
    tmp_path: Path, clock: FakeClock
) -> None:
    a, b = open_pair(tmp_path, clock)
    b.create_event(EV, "Conf")  # the admin creates the event; the gate a receives it
    ConnectionPair(ReplicaLog(b), ReplicaLog(a)).run()
    a.import_participants(EV, [{"id": f"P{i}", "qr_token": f"Q{i}"} for i in range(5)])
    ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    backup = create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")
    for i in range(3):  # written after the backup; only b keeps them
        clock.advance(1000)
        a.check_in(EV, f"Q{i}")
    ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    lost_seq = a.version_vector(EV)[a.device_id]
    a.close()

    restore_backup(backup.id, tmp_path / "dest", tmp_path / "a")
    a = Replica.open(tmp_path / "a", wall_clock=clock)
    assert a.version_vector(EV)[a.device_id] < lost_seq
    assert a.rejoin_pending == {EV}
    with pytest.raises(HeadcountError) as exc:
        a.check_in(EV, "Q4")
    assert exc.value.code == "rejoin_pending"

    pair = ConnectionPair(ReplicaLog(a), ReplicaLog(b))
    pair.run()
    pair.carry_out(1, pair.sides[1].session.anti_entropy(pair.now))  # b's next gossip round
    pair.run()
    assert a.rejoin_pending == frozenset()
    assert a.version_vector(EV)[a.device_id] == lost_seq

    clock.advance(1000)
    result = a.check_in(EV, "Q4")
    assert result.entry is not None and result.entry.seq == lost_seq + 1  # no reused seq
    [p0_scan] = [s.id for s in a.event(EV).doc.scans.values() if s.participant == "P0"]
    assert not a.check_in(EV, "Q0", scan_id=p0_scan).recorded  # a repeat: a no-op
    pair = ConnectionPair(ReplicaLog(a), ReplicaLog(b))
    pair.run()
    assert not any(side.equivocations for side in pair.sides)
    assert not b.store.quarantined(EV) and not a.store.quarantined(EV)
    assert _state(a) == _state(b)
    assert _state(a)[2] == 4  # three lost check-ins came back once, plus the new one
    a.close()
    b.close()


def test_a_peer_that_lacks_later_entries_lets_the_device_rejoin_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    a, b = open_pair(tmp_path, clock)
    b.create_event(EV, "Conf")  # the admin creates the event; the gate a receives it
    ConnectionPair(ReplicaLog(b), ReplicaLog(a)).run()
    a.import_participants(EV, [{"id": "P0"}])
    ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    backup = create_backup(tmp_path / "a", Kind.FULL, dest=tmp_path / "dest")
    a.close()
    restore_backup(backup.id, tmp_path / "dest", tmp_path / "a")
    a = Replica.open(tmp_path / "a", wall_clock=clock)
    log = ReplicaLog(a)
    log.record_ack("0" * 20, EV, {a.device_id: 0})  # an unknown device proves nothing
    assert a.rejoin_pending == {EV}
    log.record_ack(b.device_id, EV, b.version_vector(EV))
    assert a.rejoin_pending == frozenset()
    a.check_in(EV, "P0")
    a.close()
    with Replica.open(tmp_path / "a") as again:  # durable
        assert again.rejoin_pending == frozenset()
    b.close()

"""Replicas syncing through real sessions (the protocol core over SQLite stores)."""

from __future__ import annotations

import pytest

from headcount import InputError, Role
from headcount.core.event import Event
from headcount.core.eventdoc import EventDoc
from headcount.core.hlc import HybridClock
from headcount.protocol.session import SessionConfig, SyncStatus
from headcount.replica.log import ReplicaLog

from .support.protocol import ConnectionPair
from .support.replicas import EV, introduce, view


@pytest.fixture
def trio(make_replica):
    admin, north, south = make_replica("admin", Role.ADMIN), make_replica("n"), make_replica("s")
    introduce(admin, north, south)
    admin.create_event(EV, "Conf")
    admin.import_participants(
        EV, [{"id": f"p{i}", "name": f"N{i}", "allergies": "none"} for i in range(30)]
    )
    return admin, north, south


def test_sessions_converge_replicas_and_reach_synced(trio):
    admin, north, _ = trio
    pair = ConnectionPair(ReplicaLog(admin), ReplicaLog(north))
    pair.run()
    north.check_in(EV, "p1")
    north.upsert_participant(EV, "p2", {"allergies": "nuts"})
    pair.push(1, EV)
    assert view(admin) == view(north)
    assert all(s.session.status.status is SyncStatus.SYNCED for s in pair.sides)


def test_entries_relayed_through_a_third_replica_verify_and_conflicts_match(trio):
    admin, north, south = trio
    ConnectionPair(ReplicaLog(admin), ReplicaLog(north)).run()
    north.upsert_participant(EV, "p3", {"allergies": "fish"})
    ConnectionPair(ReplicaLog(admin), ReplicaLog(south)).run()
    south.upsert_participant(EV, "p3", {"allergies": "gluten"})  # concurrent with north's
    ConnectionPair(ReplicaLog(north), ReplicaLog(admin)).run()
    ConnectionPair(ReplicaLog(south), ReplicaLog(admin)).run()
    ConnectionPair(
        ReplicaLog(admin), ReplicaLog(north)
    ).run()  # south's edit reaches north via admin
    ConnectionPair(ReplicaLog(admin), ReplicaLog(south)).run()
    assert view(admin) == view(north) == view(south)
    [c] = north.conflicts(EV)
    assert {x.value for x in c.candidates} == {"fish", "gluten"}


def test_offline_backlog_syncs_in_bounded_batches(trio):
    admin, north, _ = trio
    ConnectionPair(ReplicaLog(admin), ReplicaLog(north)).run()
    for i in range(300):
        north.check_in(EV, f"p{i % 30}")
    pair = ConnectionPair(ReplicaLog(north), ReplicaLog(admin), SessionConfig(batch_bytes=4000))
    pair.run()
    assert view(admin) == view(north)
    assert pair.sides[0].session.status.messages_sent > 10


def test_unknown_device_is_a_protocol_error_and_changes_nothing(make_replica):
    a, stranger = make_replica("a", Role.ADMIN), make_replica("x", Role.ADMIN)
    a.create_event(EV)
    stranger.trust(a.device_id, a.identity.public_key_raw, a.role)  # one-sided trust
    stranger.create_event(EV)
    before = a.version_vector(EV)
    pair = ConnectionPair(ReplicaLog(stranger), ReplicaLog(a))
    pair.run()
    assert pair.sides[1].closed == "unknown_device"
    assert a.version_vector(EV) == before


def test_restart_continues_the_chain(trio, tmp_path, clock):
    from headcount import Replica

    admin, north, _ = trio
    ConnectionPair(ReplicaLog(admin), ReplicaLog(north)).run()
    north.check_in(EV, "p0")
    ConnectionPair(ReplicaLog(north), ReplicaLog(admin)).run()
    north.close()
    north = Replica.open(tmp_path / "n", wall_clock=clock)
    north.check_in(EV, "p1")  # seq continues, prev = hash of the last entry before restart
    ConnectionPair(ReplicaLog(north), ReplicaLog(admin)).run()
    assert view(admin) == view(north)
    north.close()


def test_trust_rejects_bad_keys(make_replica):
    a = make_replica("a")
    with pytest.raises(InputError, match="32 raw"):
        a.trust("abcd", b"short", "gate")
    with pytest.raises(InputError, match="unknown role"):
        a.trust("abcd", b"x" * 32, "emperor")


def test_entries_from_a_role_that_may_not_write_them_are_refused_everywhere(make_replica):
    """A gate that claims to be an admin (its own identity file says so) still
    holds a gate certificate: its resolution and deletion are refused at apply
    time by every replica that knows its certified role (the device
    quarantined, nothing of it in the document), and a document that already
    holds them (stored before the check existed) ignores them when read."""
    admin, north = make_replica("admin", Role.ADMIN), make_replica("n")
    rogue = make_replica("rogue", Role.ADMIN)  # locally it believes it is an admin ...
    introduce(admin, north)
    for r in (admin, north):  # ... but its certificate says gate
        r.trust(rogue.device_id, rogue.identity.public_key_raw, Role.GATE)
    rogue.trust(admin.device_id, admin.identity.public_key_raw, admin.role)
    rogue.trust(north.device_id, north.identity.public_key_raw, north.role)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": "p1", "name": "Ann", "allergies": "none"}])
    for a, b in ((admin, north), (admin, rogue)):
        ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    north.upsert_participant(EV, "p1", {"allergies": "nuts"})
    admin.upsert_participant(EV, "p1", {"allergies": "fish"})
    for a, b in ((north, admin), (admin, rogue), (north, rogue)):
        ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    [conflict] = rogue.conflicts(EV)
    rogue.resolve_conflict(EV, conflict.id, value="none", use_value=True)
    rogue.delete_participant(EV, "p1")
    forged = [e for e in rogue.export_since(EV, {}) if e.device == rogue.device_id]
    assert [e.seq for e in forged] == [1, 2]
    for a, b in ((rogue, admin), (rogue, north)):
        ConnectionPair(ReplicaLog(a), ReplicaLog(b)).run()
    for r in (admin, north):
        assert [c.id for c in r.conflicts(EV)] == [conflict.id]  # still open
        assert not r.participant(EV, "p1").deleted
        assert r.store.quarantined(EV) == {rogue.device_id}
        assert rogue.device_id not in r.version_vector(EV)  # neither applied nor kept
        assert r.store.pending(EV) == []
        assert r.event(EV).doc.refused == 0  # nothing of it reached the document
        assert dict(r.refused) == {"forged_role": 1}  # it claims the admin role
    # Read time: a document already holding the forged entries ignores them.
    old = EventDoc(EV, "ef" * 10, "gate", HybridClock(), role_of=admin.roles.get)
    old.load([admin.event(EV).doc.encode_state()])
    for entry in forged:
        assert old.apply_remote(entry.update)
    held = Event(old)
    assert old.refused == 2
    assert [c.id for c in held.conflicts()] == [conflict.id]
    assert not held.participant("p1").deleted

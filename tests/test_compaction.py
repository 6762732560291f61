"""Compaction: when entries may be folded, and what a peer behind the horizon gets."""

from __future__ import annotations

from headcount import Replica, Role
from headcount.replica.compaction import compact, compaction_horizon
from headcount.replica.log import ReplicaLog

from .protocol_helpers import ConnectionPair
from .test_replica_sync import EV, introduce, view


def _exchange(a, b):
    pair = ConnectionPair(ReplicaLog(a), ReplicaLog(b))
    pair.run()
    return pair


def _setup(make_replica):
    admin, north, south = make_replica("admin", Role.ADMIN), make_replica("n"), make_replica("s")
    introduce(admin, north, south)
    admin.create_event(EV, "Conf")
    admin.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(20)])
    return admin, north, south


def test_nothing_is_folded_until_every_known_peer_acknowledged(make_replica):
    admin, north, south = _setup(make_replica)
    _exchange(admin, north)
    for i in range(10):
        north.check_in(EV, f"p{i}")
    _exchange(north, admin)
    assert compaction_horizon(north, EV) == {}  # south has acknowledged nothing
    assert compact(north, EV) == 0
    _exchange(north, south)
    horizon = compaction_horizon(north, EV)
    assert horizon[north.device_id].seq == 10 and horizon[admin.device_id].seq >= 1


def test_folded_log_reopens_and_keeps_syncing(make_replica, tmp_path, clock):
    admin, north, south = _setup(make_replica)
    _exchange(admin, north)
    _exchange(admin, south)
    for i in range(15):
        north.check_in(EV, f"p{i}")
    _exchange(north, admin)
    _exchange(north, south)
    before = view(north)
    rows = north.store.log_count(EV)
    folded = compact(north, EV)
    assert folded > 0 and north.store.log_count(EV) == rows - folded
    assert view(north) == before
    north.close()
    north = Replica.open(tmp_path / "n", wall_clock=clock)
    assert view(north) == before
    north.check_in(EV, "p19")  # the chain continues past the horizon
    _exchange(north, south)
    _exchange(north, admin)
    assert view(north) == view(south) == view(admin)
    north.close()


def test_a_peer_behind_the_horizon_gets_the_snapshot_from_an_authority_only(make_replica):
    admin, north, south = _setup(make_replica)
    _exchange(admin, north)
    _exchange(admin, south)
    for i in range(12):
        north.check_in(EV, f"p{i}")
    for a, b in ((north, admin), (north, south), (admin, south)):
        _exchange(a, b)
    assert compact(admin, EV) > 0 and compact(north, EV) > 0
    late = make_replica("late")  # a new gate, unknown when the others compacted
    introduce(admin, north, south, late)
    refused = _exchange(north, late)  # a gate's snapshot is not acceptable
    assert refused.sides[1].closed == "unauthorised"
    assert EV not in late.events() or late.version_vector(EV) == {}
    _exchange(admin, late)
    assert view(late)[:3] == view(admin)[:3]
    assert late.version_vector(EV) == admin.version_vector(EV)
    late.check_in(EV, "p5")
    _exchange(late, north)
    assert view(north)[:3] == view(late)[:3]

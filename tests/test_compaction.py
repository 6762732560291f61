"""Compaction: when entries may be folded, and what a peer behind the horizon gets."""

from __future__ import annotations

from headcount import Replica, Role
from headcount.core.chain import entry_hash, sign_head
from headcount.replica.compaction import compact, compaction_horizon
from headcount.replica.log import ReplicaLog

from .support.protocol import ConnectionPair
from .support.replicas import EV, introduce, view


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


def _signed_heads(replica, entries):
    """The heads a relay would have received with these entries (one per entry)."""
    return [
        sign_head(replica.identity.private_key, e.event, e.device, e.seq, entry_hash(e))
        for e in entries
    ]


def test_a_lazy_relay_folds_no_entry_its_document_still_holds_back(make_replica, tmp_path):
    """A lazy relay logs an entry whose Y items hang off an entry it lacks;
    yrs holds it back, so the snapshot would not contain it: it must stay
    in the log until the dependency arrives (else it is lost on reopen)."""
    admin, north, south = _setup(make_replica)
    relay = make_replica("relay", Role.RELAY)
    relay.lazy_apply = True
    introduce(admin, north, south, relay)
    for a, b in ((admin, north), (admin, south)):
        _exchange(a, b)
    south.check_in(EV, "p1")
    _exchange(south, north)
    north.check_in(EV, "p2")  # appended after south's scan: depends on it
    by = {r.device_id: r for r in (admin, north, south)}
    entries = [e for e in north.export_since(EV, {}) if e.device != south.device_id]
    relay.apply_entries(entries)
    relay.store.add_heads([h for e in entries for h in _signed_heads(by[e.device], [e])])
    everything = north.version_vector(EV)
    for peer in by:
        relay.store.record_ack(peer, EV, everything, 0)
    assert compact(relay, EV) > 0  # the admin's entries
    assert north.device_id not in relay.store.horizon(EV)  # its scan waits for south's
    relay.close()  # a restart before south's scan arrives: only the disk remains
    relay = make_replica("relay", Role.RELAY)
    relay.lazy_apply = True
    late = south.export_since(EV, relay.version_vector(EV))
    relay.apply_entries(late)
    relay.store.add_heads(_signed_heads(south, late))
    assert compact(relay, EV) > 0
    assert relay.store.horizon(EV)[north.device_id][0] == everything[north.device_id]
    assert len(north.event(EV).doc.scans) == 2
    assert sorted(relay.event(EV).doc.scans) == sorted(north.event(EV).doc.scans)
    relay.close()
    assert sorted(make_replica("relay").event(EV).doc.scans) == sorted(north.event(EV).doc.scans)


def test_a_lazy_relays_snapshot_keeps_an_entry_its_document_holds_back(make_replica):
    """The same held-back entry and a periodic snapshot instead of a fold:
    the snapshot stands for the log up to it on reload, so it must carry the
    held-back update, or the scan is missing once its dependency arrives."""
    admin, north, south = _setup(make_replica)
    relay = make_replica("relay", Role.RELAY)
    relay.lazy_apply = True
    introduce(admin, north, south, relay)
    for a, b in ((admin, north), (admin, south)):
        _exchange(a, b)
    south.check_in(EV, "p1")
    _exchange(south, north)
    north.check_in(EV, "p2")  # depends on south's scan, which the relay lacks
    relay.apply_entries([e for e in north.export_since(EV, {}) if e.device != south.device_id])
    relay.event(EV)  # a read applies what was logged: north's scan is held back
    assert relay.maybe_snapshot(EV, every=1)
    relay.close()
    relay = make_replica("relay", Role.RELAY)
    relay.lazy_apply = True
    relay.apply_entries(south.export_since(EV, relay.version_vector(EV)))
    assert sorted(relay.event(EV).doc.scans) == sorted(north.event(EV).doc.scans)
    assert len(relay.event(EV).doc.scans) == 2

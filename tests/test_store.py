"""The store: durability plumbing, snapshots, migrations, restart behaviour."""

from __future__ import annotations

import sqlite3

import pycrdt
import pytest

from headcount import LogEntry, Replica, Role, StoreError
from headcount.core.yclient import client_of
from headcount.store.sqlite import DB_FILE, MIGRATIONS

from .support.replicas import introduce
from .support.sync import sync

EV = "ev"


def _fill(r: Replica, n: int) -> None:
    r.create_event(EV, "Conf")
    r.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(n)])
    for i in range(n):
        r.check_in(EV, f"p{i}")


def _view(r: Replica) -> tuple:
    ev = r.event(EV)
    return (
        sorted(ev.doc.scans),
        [p.to_dict() for p in ev.participants()],
        [a.to_dict() for a in ev.attendance_list()],
        r.version_vector(EV),
    )


def test_wal_mode_and_schema_version(make_replica):
    r = make_replica("a")
    on_disk = sqlite3.connect(f"{r.store.path.resolve().as_uri()}?mode=ro", uri=True)
    try:  # the journal mode is part of the file's format: read it there
        assert on_disk.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        on_disk.close()
    assert r.store.schema_version == len(MIGRATIONS)


def test_reopen_from_snapshot_plus_tail_equals_full_replay(make_replica, tmp_path, clock):
    r = make_replica("a", Role.ADMIN)
    _fill(r, 30)
    assert r.maybe_snapshot(EV, every=10)
    for i in range(5):  # a tail after the snapshot
        r.check_out(EV, f"p{i}")
    expected = _view(r)
    r.close()
    again = Replica.open(tmp_path / "a", wall_clock=clock)
    assert again.store.snapshot(EV) is not None
    assert _view(again) == expected
    again.close()


def test_corrupt_snapshot_falls_back_to_the_full_log(make_replica, tmp_path, clock):
    r = make_replica("a", Role.ADMIN)
    _fill(r, 20)
    r.maybe_snapshot(EV, every=1)
    expected = _view(r)
    r.close()
    db = sqlite3.connect(tmp_path / "a" / DB_FILE)
    db.execute("UPDATE snapshots SET state = X'00ff00ff'")
    db.commit()
    db.close()
    again = Replica.open(tmp_path / "a", wall_clock=clock)
    assert again.store.snapshot(EV) is None  # checksum mismatch: ignored
    assert _view(again) == expected
    again.close()


def test_a_store_from_a_newer_version_is_refused(make_replica, tmp_path, clock):
    make_replica("a").close()
    db = sqlite3.connect(tmp_path / "a" / DB_FILE)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="upgrade headcount"):
        Replica.open(tmp_path / "a", wall_clock=clock)


def _state(sv: bytes) -> dict[int, int]:
    """A Y state vector (a varuint count, then client and clock varuints) as
    ``{client: clock}``."""
    values, n, shift = [], 0, 0
    for byte in sv:
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            values.append(n)
            n = shift = 0
    count, pairs = values[0], values[1:]
    assert len(pairs) == 2 * count and n == shift == 0, sv
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def _written_under(r: Replica, entries: list[LogEntry]) -> set[int]:
    """The Y client ids ``entries`` of ``r`` write under, each checked bound to
    ``r``'s device for the entry's sequence number."""
    clients = set()
    for entry in entries:
        assert entry.device == r.device_id
        for client in _state(pycrdt.get_state(entry.update)):
            assert client_of(client, r.device_id, EV, entry.seq), (client, entry.seq)
            clients.add(client)
    return clients


def test_a_reopened_replica_writes_under_a_fresh_client_id_bound_to_its_device(
    make_replica, tmp_path, clock
):
    """A document's Y client id is derived from the sequence number of the
    first entry it will write (core/yclient.py): after writes, a reopened
    replica writes under a new id, never one already in the document."""
    r = make_replica("a", Role.ADMIN)
    _fill(r, 2)
    first = r.event(EV).doc.doc.client_id
    assert _written_under(r, r.export_since(EV, {})) == {first}
    r.close()
    again = Replica.open(tmp_path / "a", wall_clock=clock)
    doc = again.event(EV).doc.doc
    held = _state(doc.get_state())
    assert first in held
    fresh = doc.client_id
    assert fresh != first and fresh not in held
    written = again.version_vector(EV)[again.device_id]
    for i in range(2):
        again.check_in(EV, f"p{i}")
    again.upsert_participant(EV, "p0", {"name": "Renamed"})
    entries = again.export_since(EV, {again.device_id: written})
    assert [e.seq for e in entries] == [written + 1, written + 2, written + 3]
    assert _written_under(again, entries) == {fresh}
    again.close()
    # Two opens with no write in between take the same id: nothing was written under it.
    ids = []
    for _ in range(2):
        with Replica.open(tmp_path / "a", wall_clock=clock) as third:
            doc = third.event(EV).doc.doc
            assert doc.client_id not in _state(doc.get_state())
            ids.append(doc.client_id)
    assert ids[0] == ids[1] and ids[0] not in (first, fresh)


def test_clock_never_runs_backwards_across_restarts(make_replica, tmp_path, clock):
    r = make_replica("a", Role.ADMIN)
    _fill(r, 3)
    last = r.clock.last
    r.close()
    clock.advance(-3_600_000)  # the wall clock was set back an hour while we were down
    again = Replica.open(tmp_path / "a", wall_clock=clock)
    assert again.check_in(EV, "p0").scan.hlc > last
    again.close()


def test_out_of_order_entries_wait_durably_until_their_gap_fills(make_replica, tmp_path, clock):
    a = make_replica("a", Role.ADMIN)
    _fill(a, 5)
    b = make_replica("b")
    introduce(a, b)
    entries = a.export_since(EV, {})
    head, tail = entries[:2], entries[2:]
    result = b.apply_entries(tail)
    assert (result.applied, result.pending) == (0, len(tail))
    b.close()
    b = Replica.open(tmp_path / "b", wall_clock=clock)  # pending entries survived
    result = b.apply_entries(head)
    assert result.applied == len(entries)
    assert _view(b)[:3] == _view(a)[:3]
    assert b.store.pending(EV) == []
    b.close()


def test_own_entries_returned_by_a_peer_advance_the_sequence(make_replica, tmp_path, clock):
    """A device restored from an old copy must not reuse sequence numbers."""
    a = make_replica("a", Role.ADMIN)
    _fill(a, 3)
    old = a.store.log_count(EV)
    peer = make_replica("peer")
    sync(a, peer)
    # Simulate losing a's last entries: delete them from its log and reload.
    a.close()
    db = sqlite3.connect(tmp_path / "a" / DB_FILE)
    db.execute("DELETE FROM log WHERE seq > 2")
    db.execute("DELETE FROM snapshots")
    db.commit()
    db.close()
    a = Replica.open(tmp_path / "a", wall_clock=clock)
    sync(peer, a)
    assert a.store.log_count(EV) == old
    res = a.check_in(EV, "p1")
    assert res.entry is not None and res.entry.seq == old + 1
    a.close()


def test_durability_off_buffers_but_close_flushes(make_replica, tmp_path, clock):
    r = make_replica("a", Role.ADMIN, durability="off")
    _fill(r, 10)
    expected = _view(r)
    r.close()
    again = Replica.open(tmp_path / "a", wall_clock=clock)
    assert _view(again) == expected
    again.close()


def test_entries_depending_on_another_devices_entries_wait_until_it_arrives(
    make_replica, tmp_path, clock
):
    """Out-of-order delivery across devices: yrs holds an update whose items
    hang off another device's items; we detect it did not integrate, keep it
    pending, and integrate it when the dependency arrives."""
    a = make_replica("a", Role.ADMIN)
    b = make_replica("b")
    c = make_replica("c")
    introduce(a, b, c)
    a.create_event(EV)
    a.import_participants(EV, [{"id": "p1", "name": "Ann", "allergies": "none"}])
    sync(a, b)
    b.upsert_participant(EV, "p1", {"allergies": "nuts"})  # b's entry builds on a's
    b.check_in(EV, "p1")
    b_entries = [e for e in b.export_since(EV, {}) if e.device == b.device_id]
    first = c.apply_entries(b_entries)  # a's entries have not reached c
    assert first.applied == 0 and first.pending == len(b_entries)
    assert c.version_vector(EV).get(b.device_id) is None
    second = c.apply_entries(a.export_since(EV, {}))
    assert second.applied == len(a.export_since(EV, {})) + len(b_entries)
    assert c.store.pending(EV) == []
    assert _view(c)[:3] == _view(b)[:3]


def test_migration_from_schema_1_chains_existing_entries(tmp_path):
    from headcount.core.chain import ZERO_HASH, entry_hash
    from headcount.core.model import LogEntry
    from headcount.store.sqlite import Store

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    db.executemany(
        "INSERT INTO log(event, device, seq, hlc, upd) VALUES (?, ?, ?, ?, ?)",
        [("e", "d1", 1, 10, b"one"), ("e", "d1", 2, 11, b"two"), ("e", "d2", 1, 12, b"x")],
    )
    db.commit()
    db.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    one = LogEntry("e", "d1", 1, 10, b"one", ZERO_HASH)
    two = LogEntry("e", "d1", 2, 11, b"two", entry_hash(one))
    assert store.hash_of("e", "d1", 1) == entry_hash(one)
    assert store.hash_of("e", "d1", 2) == entry_hash(two)
    assert store.entries_since("e", {"d1": 1, "d2": 1}) == [two]
    store.close()

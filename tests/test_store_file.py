"""A store's file opened directly (StoreFile): what backups and archives read and write."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from headcount import Replica, Role, StoreError
from headcount.store import Store, StoreFile, copy_store, is_disk_full

from .support.replicas import ReplicaFactory

EV = "ev"


def _filled(make_replica: ReplicaFactory, n: int = 4) -> Replica:
    r = make_replica("a", Role.ADMIN)
    r.create_event(EV, "Conf")
    r.import_participants(EV, [{"id": f"p{i}", "name": f"N{i}"} for i in range(n)])
    for i in range(n):
        r.check_in(EV, f"p{i}")
    return r


def test_a_read_only_file_needs_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as exc:
        StoreFile.open_read_only(tmp_path / "none.db")
    assert exc.value.code == "not_initialised"


def test_a_writable_file_is_never_created(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(StoreError):
        StoreFile.open_writable(path)
    assert not path.exists()


def test_its_reads_agree_with_the_writer(make_replica: ReplicaFactory) -> None:
    r = _filled(make_replica)
    me = r.device_id
    with StoreFile.open_read_only(r.store.path) as f:
        assert f.events() == r.events() == [EV]
        assert f.event_states() == r.store.event_states()
        assert f.event_states()[EV].vv == r.version_vector(EV)
        seq = r.version_vector(EV)[me]
        assert f.chain_tip(EV, me) == (seq, r.store.hash_of(EV, me, seq))
        assert f.chain_tip(EV, "nobody") == (0, bytes(32))
        assert f.hash_at(EV, me, seq + 1) is None
        assert f.public_key(me) == r.store.public_key(me) is not None
        assert f.public_key("nobody") is None
        assert f.meta("hlc") == r.store.get_meta("hlc") is not None
        assert f.meta("no such key", "default") == "default"
        assert f.acks(EV) == {} and f.archived() == {} and f.horizons() == {}
        rows = f.event_rows(EV)
        assert rows.vv == r.version_vector(EV)
        assert len(rows.log) == r.store.log_count(EV)
        assert f.newest_hlc(EV) == max(row[2] for row in rows.log)
        assert f.newest_hlc("nope") == 0
        with pytest.raises(StoreError) as exc:
            f.event_rows("nope")
        assert exc.value.code == "not_found"


def test_a_delta_replayed_onto_an_empty_store_reproduces_it(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    r = _filled(make_replica)
    target = tmp_path / "empty.db"
    Store(target).close()  # the schema, no rows
    with StoreFile.open_read_only(r.store.path) as src, src.snapshot():
        rows = src.delta_since({})
        want = src.event_states()
        assert src.delta_since({e: s.vv for e, s in want.items()}).log == []
        hlc = src.meta("hlc")
    with StoreFile.open_writable(target) as dst:
        with dst.write_transaction():
            dst.apply_delta(rows)
        assert dst.event_states() == want
        assert dst.meta("hlc") == hlc
        with pytest.raises(StoreError) as exc, dst.write_transaction():
            dst.set_meta("hlc", 1)
            dst.apply_delta(rows)  # the entries are there already
        assert exc.value.code == "constraint_failed"
        assert dst.event_states() == want  # rolled back, the meta write too
        assert dst.meta("hlc") == hlc


def test_a_copy_is_one_self_contained_file(make_replica: ReplicaFactory, tmp_path: Path) -> None:
    r = _filled(make_replica)
    copy = tmp_path / "copy.db"
    assert copy_store(r.store.path, copy) == r.store.schema_version
    with StoreFile.open_read_only(copy) as f:
        assert f.event_states() == r.store.event_states()
        assert f.integrity_check() == "ok"
    assert not Path(f"{copy}-wal").exists()


def test_integrity_check_names_what_is_wrong(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 256)
    with StoreFile.open_writable(junk) as f:
        result = f.integrity_check()
    assert result != "ok" and "not a database" in result


def test_a_checkpoint_empties_the_write_ahead_log(make_replica: ReplicaFactory) -> None:
    r = _filled(make_replica)
    wal = Path(f"{r.store.path}-wal")
    assert wal.stat().st_size > 0
    with StoreFile.open_writable(r.store.path) as f:
        assert f.checkpoint()
    assert wal.stat().st_size == 0
    assert r.version_vector(EV) == r.store.event_states()[EV].vv  # the writer reads on


def _sqlite_full() -> sqlite3.OperationalError:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("PRAGMA max_page_count=4")
        db.execute("CREATE TABLE t (b BLOB)")
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (randomblob(4096))")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        db.close()
    raise AssertionError("max_page_count did not fill the database")


def test_is_disk_full_knows_sqlite_full_and_nothing_else() -> None:
    assert is_disk_full(_sqlite_full())
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_disk_full(OSError(errno.ENOSPC, "No space left on device"))

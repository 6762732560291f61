"""One conformance suite for every store configuration (the LogStore interface).

A :class:`Harness` opens a store in one configuration (:data:`HARNESSES`):
how a gate runs it (synchronous commits), how a relay runs it (writes
deferred into groups, committed without fsync, the write-ahead log synced
separately), with ``synchronous=NORMAL``, and buffered (durability ``off``).
``harness.commit()`` makes what was written durable the way that
configuration does; ``harness.fresh()`` opens a second store on the same
file, which sees only what is committed. Every case in :data:`SUITE` uses only
this interface, so each configuration runs the very same checks, and each
check compares the store's cached answers with a fresh store's.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from headcount.core.chain import ZERO_HASH, Head, entry_hash
from headcount.core.errors import BehindHorizonError
from headcount.core.model import LogEntry
from headcount.store.interface import LogStore
from headcount.store.sqlite import DB_FILE, Durability, Store

EV = "ev1"


class Harness:
    """A store in one configuration, on a file in ``tmp``."""

    durability = Durability.FULL
    grouped = False  # writes inside deferred(), committed by commit()

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / DB_FILE
        self.store: LogStore = self.open()

    def open(self) -> Store:
        store = Store(self.path, self.durability)
        if self.grouped:
            assert store.use_background_sync()
        return store

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """How this configuration writes (a relay: inside a commit group)."""
        if self.grouped:
            with self.store.deferred():
                yield
        else:
            yield

    def commit(self) -> None:
        self.store.flush()
        if self.grouped:
            self.store.commit_group()
            self.store.sync_wal()
            assert self.store.synced_gen == self.store.commit_gen

    def fresh(self) -> Store:
        """Another store on the same file: it sees only committed data."""
        return Store(self.path, Durability.FULL)

    def reopen(self) -> None:
        self.store.close()
        self.store = self.open()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.store.close()


class GroupedHarness(Harness):
    grouped = True


class NormalHarness(Harness):
    durability = Durability.NORMAL


class BufferedHarness(Harness):
    durability = Durability.OFF


HARNESSES: dict[str, type[Harness]] = {
    "gate": Harness,
    "relay-grouped": GroupedHarness,
    "normal": NormalHarness,
    "buffered": BufferedHarness,
}

Case = Callable[[Harness], None]


def chain(device: str, n: int, first: int = 1, prev: bytes = ZERO_HASH, event: str = EV) -> list:
    """``n`` chained entries of ``device`` starting at ``first``."""
    out = []
    for seq in range(first, first + n):
        entry = LogEntry(event, device, seq, (1_780_000_000_000 + seq) << 16, b"u%d" % seq, prev)
        out.append(entry)
        prev = entry_hash(entry)
    return out


def head(entry: LogEntry) -> Head:
    return Head(entry.event, entry.device, entry.seq, entry_hash(entry), b"s" * 64)


def same_as_fresh(h: Harness, events: tuple[str, ...] = (EV,)) -> None:
    """What the store answers (caches) equals what the committed file says."""
    fresh = h.fresh()
    try:
        assert sorted(h.store.events()) == sorted(fresh.events())
        for ev in events:
            assert h.store.version_vector(ev) == fresh.version_vector(ev)
            assert h.store.pending_keys(ev) == fresh.pending_keys(ev)
            assert h.store.horizon(ev) == fresh.horizon(ev)
            assert h.store.quarantined(ev) == fresh.quarantined(ev)
            folded = {d: seq for d, (seq, _) in fresh.horizon(ev).items()}
            assert h.store.entries_since(ev, folded) == fresh.entries_since(ev, folded)
        assert h.store.devices() == fresh.devices()
        assert h.store.archived() == fresh.archived()
    finally:
        fresh.close()


# -- the cases ------------------------------------------------------------------------


def append_then_read(h: Harness) -> None:
    a, b = chain("dev-a", 3), chain("dev-b", 2)
    with h.writing():
        h.store.append(a[:2] + b, hlc=a[1].hlc)
        h.store.append(a[2:], hlc=a[2].hlc)
    h.commit()
    assert h.store.version_vector(EV) == {"dev-a": 3, "dev-b": 2}
    assert h.store.entries_since(EV, {}) == a[:2] + b + a[2:]  # log order
    assert h.store.entries_since(EV, {"dev-a": 2, "dev-b": 2}) == a[2:]
    assert h.store.entries_range(EV, "dev-a", 2, 3) == a[1:]
    assert h.store.hash_of(EV, "dev-a", 2) == entry_hash(a[1])
    assert h.store.hash_of(EV, "dev-a", 0) == ZERO_HASH
    assert h.store.hash_of(EV, "dev-a", 9) is None
    assert h.store.log_count(EV) == 5
    assert h.store.has_event(EV) and EV in h.store.events()
    assert int(h.store.get_meta("hlc")) == a[2].hlc
    same_as_fresh(h)
    h.reopen()
    assert h.store.version_vector(EV) == {"dev-a": 3, "dev-b": 2}


def pending_lifecycle(h: Harness) -> None:
    a = chain("dev-a", 3)
    with h.writing():
        h.store.add_pending(a[2:])
    h.commit()
    assert h.store.pending_keys(EV) == {("dev-a", 3)}
    assert h.store.pending(EV) == a[2:]
    assert h.store.hash_of(EV, "dev-a", 3) == entry_hash(a[2])  # pending entries count
    assert h.store.version_vector(EV) == {}  # not part of the version vector
    same_as_fresh(h)
    with h.writing():
        h.store.append(a, hlc=a[2].hlc, force=True)
    h.commit()
    assert h.store.pending_keys(EV) == set()
    assert h.store.pending(EV) == []
    same_as_fresh(h)


def heads_by_position(h: Harness) -> None:
    a = chain("dev-a", 5)
    with h.writing():
        h.store.append(a, hlc=a[-1].hlc)
        h.store.add_heads([head(a[1]), head(a[3])])
    h.commit()
    assert h.store.head_at_or_after(EV, "dev-a", 1) == head(a[1])
    assert h.store.head_at_or_after(EV, "dev-a", 3) == head(a[3])
    assert h.store.head_at_or_after(EV, "dev-a", 5) is None
    assert h.store.head_at_or_below(EV, "dev-a", 5) == head(a[3])  # heads at 2 and 4
    assert h.store.head_at_or_below(EV, "dev-a", 3) == head(a[1])
    assert h.store.head_at_or_below(EV, "dev-a", 1) is None


def device_directory(h: Harness) -> None:
    with h.writing():
        h.store.trust("dev-a", b"k" * 32, "gate", 1, b"cert-a")
        h.store.trust("dev-b", b"j" * 32, "relay", 1)
    h.commit()
    assert h.store.public_key("dev-a") == b"k" * 32
    assert h.store.public_key("nobody") is None
    assert h.store.devices() == {"dev-a": "gate", "dev-b": "relay"}
    assert h.store.certificates() == {"dev-a": b"cert-a"}
    assert h.store.certificates(["dev-a", "dev-b", "x"]) == {"dev-a": b"cert-a"}
    with h.writing():  # a new key and role; the certificate is kept when none is given
        h.store.trust("dev-a", b"n" * 32, "admin", 2)
    h.commit()
    assert h.store.public_key("dev-a") == b"n" * 32  # not the cached old key
    assert h.store.devices()["dev-a"] == "admin"
    assert h.store.certificates(["dev-a"]) == {"dev-a": b"cert-a"}
    same_as_fresh(h)


def quarantine_is_remembered(h: Harness) -> None:
    with h.writing():
        h.store.quarantine(EV, "dev-x", 4, 1)
    h.commit()
    assert h.store.quarantined(EV) == {"dev-x"}
    assert h.store.quarantined("other") == set()
    same_as_fresh(h)


def acknowledgements(h: Harness) -> None:
    h.store.record_ack("peer-1", EV, {"dev-a": 2}, 10)
    h.store.record_ack("peer-1", EV, {"dev-a": 3}, 20)  # the latest wins
    h.store.record_ack("peer-2", "other", {"dev-b": 1}, 30)
    assert h.store.acks(EV) == {"peer-1": {"dev-a": 3}}
    assert h.store.ack_times(EV) == {"peer-1": 20}
    h.store.save_acks()
    h.commit()
    fresh = h.fresh()
    try:
        assert fresh.acks(EV) == {"peer-1": {"dev-a": 3}}
        assert fresh.ack_times("other") == {"peer-2": 30}
    finally:
        fresh.close()
    h.store.record_ack("peer-1", EV, {"dev-a": 4}, 40)
    h.reopen()  # close saves what is held
    assert h.store.acks(EV) == {"peer-1": {"dev-a": 4}}


def folding_keeps_the_version_vector(h: Harness) -> None:
    a, b = chain("dev-a", 4), chain("dev-b", 2)
    with h.writing():
        h.store.append(a + b, hlc=a[-1].hlc)
    h.commit()
    deleted = h.store.fold(EV, {"dev-a": (3, entry_hash(a[2]))}, b"state", 5)
    h.commit()
    assert deleted == 3
    assert h.store.horizon(EV) == {"dev-a": (3, entry_hash(a[2]))}
    assert h.store.version_vector(EV) == {"dev-a": 4, "dev-b": 2}
    assert h.store.hash_of(EV, "dev-a", 3) == entry_hash(a[2])  # the anchor
    assert h.store.entries_since(EV, {"dev-a": 3}) == [a[3], *b]
    with pytest.raises(BehindHorizonError):
        h.store.entries_since(EV, {})
    snap = h.store.snapshot(EV)
    assert snap is not None and snap.state == b"state"
    same_as_fresh(h)


def corrupt_snapshot_is_ignored(h: Harness) -> None:
    with h.writing():
        h.store.append(chain("dev-a", 1), hlc=1)
        h.store.save_snapshot(EV, 1, b"good state", 1)
    h.commit()
    h.store.close()
    db = sqlite3.connect(h.path)
    db.execute("UPDATE snapshots SET state=? WHERE event=?", (b"evil state", EV))
    db.commit()
    db.close()
    h.store = h.open()
    assert h.store.snapshot(EV) is None  # the checksum fails: replay the log instead


def archived_events_keep_their_vector(h: Harness) -> None:
    a = chain("dev-a", 2)
    other = chain("dev-b", 1, event="ev2")
    with h.writing():
        h.store.append(a + other, hlc=a[-1].hlc)
        h.store.add_heads([head(a[1])])
        h.store.add_pending(chain("dev-c", 1, first=2))
    h.commit()
    h.store.remove_event(EV, 99, "archive/ev1")
    h.commit()
    assert not h.store.has_event(EV)
    assert h.store.events() == ["ev2"]
    assert h.store.version_vector(EV) == {"dev-a": 2}  # what the archive holds
    assert h.store.entries_range(EV, "dev-a", 1, 2) == []
    assert h.store.pending_keys(EV) == set()
    assert h.store.head_at_or_after(EV, "dev-a", 1) is None
    assert h.store.archived()[EV][:2] == (99, "archive/ev1")
    assert h.store.version_vector("ev2") == {"dev-b": 1}  # other events untouched
    same_as_fresh(h, (EV, "ev2"))
    h.store.unarchive(EV)
    h.commit()
    assert EV not in h.store.archived()
    assert h.store.version_vector(EV) == {}


def failed_write_changes_nothing(h: Harness) -> None:
    a = chain("dev-a", 3)
    with h.writing():
        h.store.append(a[:1], hlc=a[0].hlc)
    h.commit()
    before = h.store.version_vector(EV)
    with h.writing(), pytest.raises(RuntimeError), h.store.transaction():
        h.store.append(a[1:], hlc=a[2].hlc, force=True)
        h.store.add_pending(chain("dev-b", 1, first=2))
        raise RuntimeError("the operation fails half-way")
    h.commit()
    assert h.store.version_vector(EV) == before
    assert h.store.pending_keys(EV) == set()
    same_as_fresh(h)


def group_commit_semantics(h: Harness) -> None:
    a = chain("dev-a", 2)
    other = chain("dev-b", 1, event="ev2")
    with h.writing():
        h.store.append(other, hlc=1, force=True)
    h.commit()
    assert h.store.needs_sync("ev2") == 0
    with h.store.deferred():
        h.store.append(a, hlc=a[-1].hlc, force=True)
    assert h.store.version_vector(EV) == {"dev-a": 2}  # visible here at once
    assert h.store.dirty(EV) and h.store.uncommitted
    assert not h.store.dirty("ev2")  # per event: ev2's writes are durable
    assert h.store.needs_sync(EV) > h.store.synced_gen
    fresh = h.fresh()
    try:
        assert fresh.version_vector(EV) == {}  # not committed yet
    finally:
        fresh.close()
    h.store.commit_group()
    assert not h.store.uncommitted
    h.commit()  # a relay's store syncs the log separately
    assert h.store.needs_sync(EV) == 0
    same_as_fresh(h, (EV, "ev2"))


def ordinary_write_commits_an_open_group(h: Harness) -> None:
    """A write outside any group is durable when it returns, and so is
    everything the open group held before it."""
    with h.store.deferred():
        h.store.append(chain("dev-a", 1), hlc=1, force=True)
    h.store.add_event("ev9", 5)  # an ordinary (synchronous) write
    assert not h.store.uncommitted
    assert h.store.needs_sync(EV) == 0
    same_as_fresh(h, (EV, "ev9"))


def revocation_records_are_kept_in_order(h: Harness) -> None:
    """Verified revocation records: kept once each, in the order added, never
    dropped, and durable at once (they may be forwarded as soon as added)."""
    rows = [
        (bytes([i]) * 32, b"body%d" % i, bytes(64), b"" if i % 2 else b"cert") for i in range(3)
    ]
    with h.writing():
        assert h.store.add_revocations(rows[:2], 1) == 2
    assert h.store.add_revocations([rows[1], rows[2], rows[0]], 2) == 1  # the repeats ignored
    assert h.store.revocations() == rows
    fresh = h.fresh()
    try:
        assert fresh.revocations() == rows
    finally:
        fresh.close()


SUITE: list[Case] = [
    append_then_read,
    pending_lifecycle,
    heads_by_position,
    device_directory,
    quarantine_is_remembered,
    acknowledgements,
    folding_keeps_the_version_vector,
    corrupt_snapshot_is_ignored,
    archived_events_keep_their_vector,
    failed_write_changes_nothing,
    group_commit_semantics,
    ordinary_write_commits_an_open_group,
    revocation_records_are_kept_in_order,
]

"""The local store: SQLite in WAL mode.

Holds every event's log (local and remote entries, numbered per device),
snapshots for fast start-up, entries waiting for missing dependencies, and a
little metadata (the hybrid clock's high-water mark). The schema and its
migrations are in :mod:`headcount.storeschema`.

Three things keep a busy relay off the disk's critical path:

1. Version vectors, horizons, quarantine sets and the event list are cached
   in memory (they are read on every message of every session) and kept in
   step by the writes; any rollback drops the caches.
2. Peer acknowledgements (compaction input, advisory) are held in memory and
   written by :meth:`Store.save_acks` (the node calls it every gossip round)
   and at close; a crash loses only acknowledgements, which peers repeat on
   their next exchange.
3. Group commit: transactions inside :meth:`Store.deferred` join one open
   SQLite transaction that :meth:`Store.commit_group` makes durable with a
   single fsync. The network driver commits before it sends anything (see
   ``net/groupcommit.py``), so nothing is acknowledged or forwarded before it
   is on disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import msgpack

from .chain import ZERO_HASH, Head, entry_hash
from .errors import BehindHorizonError, StoreError
from .model import LogEntry
from .storeschema import FIXUPS, MIGRATIONS

DB_FILE = "headcount.db"

__all__ = ["DB_FILE", "MIGRATIONS", "Durability", "Snapshot", "Store"]


class Durability(StrEnum):
    """How hard the store works before an operation returns.

    ``full``: every operation is fsynced before it returns (the default).
    ``normal``: survives a process crash, not a power cut (WAL, no fsync per commit).
    ``off``: operations are buffered and written in groups; a crash loses the
    unflushed tail. Only for benchmarks and bulk loads.
    """

    FULL = "full"
    NORMAL = "normal"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class Snapshot:
    upto: int
    state: bytes


Horizon = dict[str, tuple[int, bytes]]


class Store:
    """One device's SQLite database.

    Raises:
        StoreError: the database cannot be opened, is corrupt, or was written
            by a newer version of headcount.
    """

    def __init__(self, path: Path, durability: Durability = Durability.FULL) -> None:
        self.path = path
        self.durability = durability
        self.on_rollback: list[Callable[[], None]] = []  # called when written state is undone
        self._buffer: list[LogEntry] = []
        self._buffer_hlc = 0
        self._buffer_vv: dict[str, dict[str, int]] = {}
        self._buffer_hash: dict[tuple[str, str, int], LogEntry] = {}
        self._vv: dict[str, dict[str, int]] = {}  # per event: highest logged seq per device
        self._horizons: dict[str, Horizon] = {}
        self._quarantined: dict[str, set[str]] = {}
        self._events: set[str] | None = None
        self._acks: dict[tuple[str, str], tuple[dict[str, int], int]] = {}  # not yet written
        self._deferring = 0
        self._depth = 0  # transaction() nesting
        self._group_open = False
        self._pending: dict[str, set[tuple[str, int]]] = {}  # per event, (device, seq) pending
        self._keys: dict[str, bytes | None] = {}  # public keys by device
        self._hlc: int | None = None  # the clock high-water mark stored
        self._archived: dict[str, tuple[int, str, dict[str, int]]] | None = None
        self._dirty: set[str | None] = set()  # events written in the open group (None: others)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            sync = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}[durability.value]
            self.db.execute(f"PRAGMA synchronous={sync}")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store {self.path} has schema version {version}; this headcount "
                f"knows up to {len(MIGRATIONS)}: upgrade headcount",
                code="store_too_new",
            )
        for number in range(version, len(MIGRATIONS)):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                if number + 1 in FIXUPS:
                    FIXUPS[number + 1](self.db)
                self.db.execute(f"PRAGMA user_version={number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # -- transactions and group commit ----------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic SQLite transaction, durable (per the durability setting)
        when it returns -- unless inside :meth:`deferred`, where it joins the
        open group that :meth:`commit_group` makes durable. A transaction
        opened inside another is part of it (one savepoint, not two)."""
        if self._depth:
            yield self.db
            return
        self._depth += 1
        try:
            if not self._group_open and not self._deferring:
                with self._top_level():
                    yield self.db
                return
            if not self._group_open:
                self.db.execute("BEGIN IMMEDIATE")
                self._group_open = True
            self.db.execute("SAVEPOINT op")
            try:
                yield self.db
            except BaseException:
                self._rollback("ROLLBACK TO op")
                self.db.execute("RELEASE op")
                raise
            self.db.execute("RELEASE op")
        finally:
            self._depth -= 1
        if not self._deferring:
            self.commit_group()  # an ordinary write is durable when it returns

    @contextmanager
    def _top_level(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._rollback("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Transactions inside join one group; nothing is durable until
        :meth:`commit_group` (the caller must make sure it is called before
        anything written here is reported to anyone)."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Like :meth:`deferred`, committed (one fsync) when the block ends."""
        try:
            with self.deferred():
                yield
        finally:
            if not self._deferring:
                self.commit_group()

    @property
    def uncommitted(self) -> bool:
        """Writes of a group are waiting for :meth:`commit_group`."""
        return self._group_open

    def dirty(self, event: str) -> bool:
        """The open group holds writes to ``event`` (or writes of unknown scope)."""
        return self._group_open and (event in self._dirty or None in self._dirty)

    def _touch(self, *events: str | None) -> None:
        if self._group_open:
            self._dirty.update(events)

    def commit_group(self) -> None:
        """Make the open group durable (one fsync); a no-op without one.

        Raises:
            StoreError: the commit failed; the group was rolled back, the
                caches dropped and the ``on_rollback`` hooks called.
        """
        if not self._group_open:
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            with _suppress_sqlite():
                self.db.execute("ROLLBACK")
            self._group_open = False
            self._dirty.clear()
            self._dropped(group=True)
            raise StoreError(f"could not commit to the store: {exc}") from exc
        self._group_open = False
        self._dirty.clear()

    def _rollback(self, statement: str) -> None:
        """Undo one failed operation (its caller handles its own in-memory state)."""
        with _suppress_sqlite():
            self.db.execute(statement)
        self._dropped(group=False)

    def _dropped(self, group: bool) -> None:
        """Written state was undone: forget every cache; if a whole commit
        group was lost, tell the owners (``on_rollback``) too."""
        self._vv.clear()
        self._horizons.clear()
        self._quarantined.clear()
        self._pending.clear()
        self._keys.clear()
        self._events = None
        self._hlc = None
        self._archived = None
        if group:
            for hook in self.on_rollback:
                hook()

    # -- metadata -------------------------------------------------------

    def get_meta(self, key: str, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- events and log -----------------------------------------------------

    def _event_set(self) -> set[str]:
        if self._events is None:
            self._events = {r[0] for r in self.db.execute("SELECT event FROM events")}
        return self._events

    def events(self) -> list[str]:
        return sorted(self._event_set() | set(self._buffer_vv))

    def has_event(self, event: str) -> bool:
        return event in self._event_set() or event in self._buffer_vv

    def add_event(self, event: str, created_ms: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO events(event, created_ms) VALUES (?, ?)", (event, created_ms)
            )
            self._event_set().add(event)
            self._touch(event)

    def append(self, entries: Iterable[LogEntry], hlc: int, *, force: bool = False) -> None:
        """Append entries to the log and record the clock, atomically.

        With durability ``off`` the entries are buffered until :meth:`flush`
        (or until the buffer is large), unless ``force``.
        """
        entries = list(entries)
        if self.durability is Durability.OFF and not force:
            for e in entries:
                vv = self._buffer_vv.setdefault(e.event, {})
                vv[e.device] = max(vv.get(e.device, 0), e.seq)
                self._buffer_hash[(e.event, e.device, e.seq)] = e
            self._buffer.extend(entries)
            self._buffer_hlc = max(self._buffer_hlc, hlc)
            if len(self._buffer) >= 4096:
                self.flush()
            return
        with self.transaction():
            self._write(entries, hlc)

    def flush(self) -> None:
        """Write buffered entries (durability ``off``) so that queries see
        them. Inside an open group they join it (it stays open)."""
        if not self._buffer:
            return
        buffered, self._buffer = self._buffer, []
        self._buffer_vv.clear()
        self._buffer_hash.clear()
        if self._group_open:
            with self.deferred(), self.transaction():
                self._write(buffered, self._buffer_hlc)
        else:
            with self.transaction():
                self._write(buffered, self._buffer_hlc)

    def _write(self, entries: list[LogEntry], hlc: int) -> None:
        self._add_events({(e.event, e.hlc >> 16) for e in entries})
        self._touch(*{e.event for e in entries})
        self.db.executemany(
            "INSERT INTO log(event, device, seq, hlc, upd, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.event, e.device, e.seq, e.hlc, e.update, e.prev, entry_hash(e)) for e in entries],
        )
        waiting = [e for e in entries if (e.device, e.seq) in self.pending_keys(e.event)]
        if waiting:
            self.db.executemany(
                "DELETE FROM pending WHERE event=? AND device=? AND seq=?",
                [(e.event, e.device, e.seq) for e in waiting],
            )
            for e in waiting:
                self._pending[e.event].discard((e.device, e.seq))
        if self._hlc is None:
            self._hlc = int(self.get_meta("hlc", 0) or 0)
        if hlc > self._hlc:
            self._set_meta("hlc", hlc)
            self._hlc = hlc
        for e in entries:
            vv = self._vv.get(e.event)
            if vv is not None and e.seq > vv.get(e.device, 0):
                vv[e.device] = e.seq

    def _add_events(self, rows: set[tuple[str, int]]) -> None:
        known = self._event_set()
        new = {(event, ms) for event, ms in rows if event not in known}
        if new:
            self.db.executemany(
                "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING", new
            )
            known.update(event for event, _ in new)

    def add_pending(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        with self.transaction():
            self._add_events({(e.event, e.hlc >> 16) for e in entries})
            self._touch(*{e.event for e in entries})
            self.db.executemany(
                "INSERT OR IGNORE INTO pending(event, device, seq, hlc, upd, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.event, e.device, e.seq, e.hlc, e.update, e.prev, entry_hash(e))
                    for e in entries
                ],
            )
            for e in entries:
                self._pending.pop(e.event, None)  # reloaded on next use

    def pending_keys(self, event: str) -> set[tuple[str, int]]:
        """The (device, seq) of the entries of ``event`` waiting for their
        dependencies (do not modify the result)."""
        keys = self._pending.get(event)
        if keys is None:
            rows = self.db.execute("SELECT device, seq FROM pending WHERE event=?", (event,))
            keys = self._pending[event] = {(d, s) for d, s in rows}
        return keys

    def pending(self, event: str) -> list[LogEntry]:
        if not self.pending_keys(event):
            return []
        rows = self.db.execute(
            "SELECT device, seq, hlc, upd, prev FROM pending WHERE event=? ORDER BY device, seq",
            (event,),
        )
        return [_entry(event, d, s, h, u, p) for d, s, h, u, p in rows]

    def _log_vv(self, event: str) -> dict[str, int]:
        vv = self._vv.get(event)
        if vv is None:
            rows = self.db.execute(
                "SELECT device, max(seq) FROM log WHERE event=? GROUP BY device", (event,)
            )
            vv = self._vv[event] = {d: s for d, s in rows}
        return vv

    def version_vector(self, event: str) -> dict[str, int]:
        """Per device, the highest sequence number held (logged, folded or
        buffered; for an archived event, what the archive holds)."""
        vv = dict(self._log_vv(event))
        if not vv and event in self.archived():
            return dict(self.archived()[event][2])
        for device, (seq, _) in self.horizon(event).items():
            if seq > vv.get(device, 0):
                vv[device] = seq
        for device, seq in self._buffer_vv.get(event, {}).items():
            if seq > vv.get(device, 0):
                vv[device] = seq
        return vv

    def entries_since(self, event: str, vv: Mapping[str, int]) -> list[LogEntry]:
        """Every logged entry of ``event`` that ``vv`` does not cover, in log order."""
        self.flush()
        out: list[tuple[int, LogEntry]] = []
        folded = self.horizon(event)
        for device, high in self.version_vector(event).items():
            have = int(vv.get(device, 0))
            if have >= high:
                continue
            if have < folded.get(device, (0, b""))[0]:
                raise BehindHorizonError(
                    f"entries of {device} up to {folded[device][0]} were folded into a snapshot"
                )
            rows = self.db.execute(
                "SELECT id, seq, hlc, upd, prev FROM log WHERE event=? AND device=? AND seq>? "
                "ORDER BY seq",
                (event, device, have),
            )
            out.extend((i, _entry(event, device, s, h, u, p)) for i, s, h, u, p in rows)
        out.sort(key=lambda pair: pair[0])
        return [e for _, e in out]

    def log_count(self, event: str) -> int:
        return int(
            self.db.execute("SELECT count(*) FROM log WHERE event=?", (event,)).fetchone()[0]
        )

    def log_bytes(self, event: str) -> int:
        row = self.db.execute("SELECT sum(length(upd)) FROM log WHERE event=?", (event,)).fetchone()
        return int(row[0] or 0)

    # -- snapshots ------------------------------------------------------

    def snapshot(self, event: str) -> Snapshot | None:
        """The event's latest snapshot, or None if there is none or it fails
        its checksum (the full log is then replayed instead)."""
        row = self.db.execute(
            "SELECT upto, state, sha256 FROM snapshots WHERE event=?", (event,)
        ).fetchone()
        if row is None or hashlib.sha256(row[1]).digest() != bytes(row[2]):
            return None
        return Snapshot(int(row[0]), bytes(row[1]))

    def save_snapshot(self, event: str, upto: int, state: bytes, created_ms: int) -> None:
        with self.transaction():
            self._put_snapshot(event, upto, state, created_ms)

    def _put_snapshot(self, event: str, upto: int, state: bytes, created_ms: int) -> None:
        self._touch(event)
        self.db.execute(
            "INSERT OR REPLACE INTO snapshots(event, upto, state, sha256, created_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (event, upto, state, hashlib.sha256(state).digest(), created_ms),
        )

    def log_tail(self, event: str, after: int) -> list[LogEntry]:
        rows = self.db.execute(
            "SELECT device, seq, hlc, upd, prev FROM log WHERE event=? AND id>? ORDER BY id",
            (event, after),
        )
        return [_entry(event, d, s, h, u, p) for d, s, h, u, p in rows]

    def tail_count(self, event: str, after: int) -> int:
        row = self.db.execute("SELECT count(*) FROM log WHERE event=? AND id>?", (event, after))
        return int(row.fetchone()[0])

    def last_log_id(self, event: str) -> int:
        row = self.db.execute("SELECT max(id) FROM log WHERE event=?", (event,)).fetchone()
        return int(row[0] or 0)

    # -- chains, heads, devices ---------------------------------------------

    def hash_of(self, event: str, device: str, seq: int) -> bytes | None:
        """The hash of an entry held here (logged or pending); zeros for seq 0."""
        if seq == 0:
            return ZERO_HASH
        buffered = self._buffer_hash.get((event, device, seq))
        if buffered is not None:
            return entry_hash(buffered)
        anchor = self.horizon(event).get(device)
        if anchor is not None and anchor[0] == seq:
            return anchor[1]
        for table in ("log", "pending"):
            row = self.db.execute(
                f"SELECT hash FROM {table} WHERE event=? AND device=? AND seq=?",
                (event, device, seq),
            ).fetchone()
            if row is not None:
                return bytes(row[0])
        return None

    def entries_range(self, event: str, device: str, first: int, last: int) -> list[LogEntry]:
        self.flush()
        rows = self.db.execute(
            "SELECT seq, hlc, upd, prev FROM log "
            "WHERE event=? AND device=? AND seq BETWEEN ? AND ? "
            "ORDER BY seq",
            (event, device, first, last),
        )
        return [_entry(event, device, s, h, u, p) for s, h, u, p in rows]

    def add_heads(self, heads: Iterable[Head]) -> None:
        heads = list(heads)
        with self.transaction():
            self._touch(*{h.event for h in heads})
            self.db.executemany(
                "INSERT OR IGNORE INTO heads(event, device, seq, hash, sig) VALUES (?, ?, ?, ?, ?)",
                [(h.event, h.device, h.seq, h.hash, h.sig) for h in heads],
            )

    def head_at_or_after(self, event: str, device: str, seq: int) -> Head | None:
        row = self.db.execute(
            "SELECT seq, hash, sig FROM heads WHERE event=? AND device=? AND seq>=? "
            "ORDER BY seq LIMIT 1",
            (event, device, seq),
        ).fetchone()
        return None if row is None else Head(event, device, row[0], bytes(row[1]), bytes(row[2]))

    def trust(
        self, device: str, public_key: bytes, role: str, now_ms: int, cert: bytes | None = None
    ) -> None:
        """Record a device's public key (the directory used to verify heads),
        and the certificate that vouched for it, if any."""
        with self.transaction():
            self._touch(None)
            self.db.execute(
                "INSERT INTO devices(device, public_key, role, added_ms, cert) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(device) DO UPDATE SET public_key=excluded.public_key, "
                "role=excluded.role, cert=coalesce(excluded.cert, devices.cert)",
                (device, public_key, role, now_ms, cert),
            )
            self._keys.pop(device, None)

    def certificates(self) -> list[bytes]:
        rows = self.db.execute("SELECT cert FROM devices WHERE cert IS NOT NULL ORDER BY device")
        return [bytes(r[0]) for r in rows]

    def public_key(self, device: str) -> bytes | None:
        if device not in self._keys:
            row = self.db.execute(
                "SELECT public_key FROM devices WHERE device=?", (device,)
            ).fetchone()
            self._keys[device] = None if row is None else bytes(row[0])
        return self._keys[device]

    def devices(self) -> dict[str, str]:
        """Every known device and its role."""
        return dict(self.db.execute("SELECT device, role FROM devices").fetchall())

    def quarantine(self, event: str, device: str, seq: int, now_ms: int) -> None:
        with self.transaction():
            self._touch(event)
            self.db.execute(
                "INSERT OR IGNORE INTO quarantine(event, device, seq, detected_ms) "
                "VALUES (?, ?, ?, ?)",
                (event, device, seq, now_ms),
            )
            self.quarantined(event).add(device)

    def quarantined(self, event: str) -> set[str]:
        """The devices whose entries of ``event`` are refused (do not modify)."""
        known = self._quarantined.get(event)
        if known is None:
            rows = self.db.execute("SELECT device FROM quarantine WHERE event=?", (event,))
            known = self._quarantined[event] = {r[0] for r in rows}
        return known

    # -- compaction ---------------------------------------------------------

    def record_ack(self, peer: str, event: str, vv: Mapping[str, int], now_ms: int) -> None:
        """Remember what ``peer`` told us it holds (the input of compaction).
        Held in memory until :meth:`save_acks` (see the module docstring):
        it is advice, and peers repeat it."""
        self._acks[(peer, event)] = (dict(vv), now_ms)

    def save_acks(self) -> None:
        """Write the acknowledgements held in memory now (the drivers call
        this now and then, and :meth:`close` does)."""
        if self._acks:
            with self.transaction():
                self._write_acks()

    def _write_acks(self) -> None:
        if self._acks:
            self._touch(None)
            rows = [(p, e, msgpack.packb(vv), ms) for (p, e), (vv, ms) in self._acks.items()]
            self.db.executemany(
                "INSERT OR REPLACE INTO peer_acks(peer, event, vv, at_ms) VALUES (?, ?, ?, ?)",
                rows,
            )
            self._acks.clear()

    def acks(self, event: str) -> dict[str, dict[str, int]]:
        """Per peer, the version vector it last acknowledged for ``event``."""
        rows = self.db.execute("SELECT peer, vv FROM peer_acks WHERE event=?", (event,))
        out = {peer: msgpack.unpackb(vv) for peer, vv in rows}
        out.update({p: dict(vv) for (p, e), (vv, _) in self._acks.items() if e == event})
        return out

    def ack_times(self, event: str) -> dict[str, int]:
        """Per peer, when (wall ms) it last acknowledged ``event``."""
        rows = self.db.execute("SELECT peer, at_ms FROM peer_acks WHERE event=?", (event,))
        out = {str(peer): int(at) for peer, at in rows}
        out.update({p: ms for (p, e), (_, ms) in self._acks.items() if e == event})
        return out

    def horizon(self, event: str) -> Horizon:
        """Per device, the sequence number up to which entries were folded, and
        its hash (do not modify the result)."""
        known = self._horizons.get(event)
        if known is None:
            rows = self.db.execute("SELECT device, seq, hash FROM horizons WHERE event=?", (event,))
            known = self._horizons[event] = {d: (s, bytes(h)) for d, s, h in rows}
        return known

    def fold(
        self, event: str, anchors: Mapping[str, tuple[int, bytes]], state: bytes, created_ms: int
    ) -> int:
        """Snapshot ``state`` (covering the whole log) and delete the entries
        at or below ``anchors``, atomically. Returns the entries deleted."""
        self.flush()
        upto = self.last_log_id(event)
        deleted = 0
        with self.transaction():
            self._put_snapshot(event, upto, state, created_ms)
            for device, (seq, digest) in anchors.items():
                self.db.execute(
                    "INSERT INTO horizons(event, device, seq, hash) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(event, device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash "
                    "WHERE excluded.seq > horizons.seq",
                    (event, device, seq, digest),
                )
                cur = self.db.execute(
                    "DELETE FROM log WHERE event=? AND device=? AND seq<=?", (event, device, seq)
                )
                deleted += cur.rowcount
                self.db.execute(
                    "DELETE FROM pending WHERE event=? AND device=? AND seq<=?",
                    (event, device, seq),
                )
            self._horizons.pop(event, None)
            self._vv.pop(event, None)
            self._pending.pop(event, None)
        return deleted

    # -- archive ------------------------------------------------------------

    def remove_event(self, event: str, archived_ms: int, location: str) -> None:
        """Delete every row of ``event`` and remember it as archived at
        ``location`` with its version vector, atomically. The event is then
        unknown here (:meth:`events`, :meth:`has_event`); its version vector
        stays what it was, so peers offer nothing of it that was archived,
        and what they send of it is ignored by the replica."""
        self.flush()
        vv = self.version_vector(event)
        with self.transaction():
            self._touch(event)
            for table in ("log", "snapshots", "pending", "heads", "quarantine", "peer_acks"):
                self.db.execute(f"DELETE FROM {table} WHERE event=?", (event,))
            self.db.execute("DELETE FROM horizons WHERE event=?", (event,))
            self.db.execute("DELETE FROM events WHERE event=?", (event,))
            self.db.execute(
                "INSERT OR REPLACE INTO archived(event, archived_ms, location, vv) "
                "VALUES (?, ?, ?, ?)",
                (event, archived_ms, location, msgpack.packb(vv)),
            )
            self._acks = {k: v for k, v in self._acks.items() if k[1] != event}
            for cache in (self._vv, self._horizons, self._quarantined, self._pending):
                cache.pop(event, None)
            self._event_set().discard(event)
            self._archived = None

    def archived(self) -> dict[str, tuple[int, str, dict[str, int]]]:
        """Archived events: ``event -> (archived_ms, location, version vector)``
        (do not modify the result)."""
        if self._archived is None:
            rows = self.db.execute("SELECT event, archived_ms, location, vv FROM archived")
            self._archived = {
                e: (int(ms), str(loc), msgpack.unpackb(vv)) for e, ms, loc, vv in rows
            }
        return self._archived

    def unarchive(self, event: str) -> None:
        """Forget that ``event`` was archived (before restoring it from its archive)."""
        with self.transaction():
            self._touch(event)
            self.db.execute("DELETE FROM archived WHERE event=?", (event,))
            self._archived = None

    def close(self) -> None:
        """Write everything held (buffer, acknowledgements, an open group) and close."""
        try:
            self.flush()
            self.save_acks()
            self.commit_group()
        finally:
            self.db.close()


@contextmanager
def _suppress_sqlite() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error:
        pass


def _entry(event: str, device: str, seq: int, hlc: int, upd: bytes, prev: bytes | None) -> LogEntry:
    return LogEntry(event, device, seq, hlc, bytes(upd), bytes(prev) if prev else ZERO_HASH)

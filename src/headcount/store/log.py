"""The log side of the store: events, log entries, pending entries, version
vectors, snapshots and signed heads (a mixin of :class:`~headcount.store.Store`,
which owns the connection, the transactions and the caches used here, as
declared in :class:`~headcount.store.base.StoreBase`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from headcount.core.chain import ZERO_HASH, Head, entry_hash
from headcount.core.errors import BehindHorizonError
from headcount.core.model import LogEntry

from .base import StoreBase
from .eventstate import EventState, event_states
from .meta import read_int_meta


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


class LogTables(StoreBase):
    """Events, the log, pending entries, snapshots and heads."""

    # -- events and log -----------------------------------------------------

    def _event_set(self) -> set[str]:
        if self._events is None:
            self._events = {r[0] for r in self._db.execute("SELECT event FROM events")}
        return self._events

    def events(self) -> list[str]:
        return sorted(self._event_set() | set(self._buffer_vv))

    def has_event(self, event: str) -> bool:
        return event in self._event_set() or event in self._buffer_vv

    def add_event(self, event: str, created_ms: int) -> None:
        with self.transaction():
            self._db.execute(
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
        self._db.executemany(
            "INSERT INTO log(event, device, seq, hlc, upd, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.event, e.device, e.seq, e.hlc, e.update, e.prev, entry_hash(e)) for e in entries],
        )
        waiting = [e for e in entries if (e.device, e.seq) in self.pending_keys(e.event)]
        if waiting:
            self._db.executemany(
                "DELETE FROM pending WHERE event=? AND device=? AND seq=?",
                [(e.event, e.device, e.seq) for e in waiting],
            )
            for e in waiting:
                self._pending[e.event].discard((e.device, e.seq))
        if self._hlc is None:
            self._hlc = read_int_meta(self._db, "hlc")
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
            self._db.executemany(
                "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING", new
            )
            known.update(event for event, _ in new)

    def add_pending(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        with self.transaction():
            self._add_events({(e.event, e.hlc >> 16) for e in entries})
            self._touch(*{e.event for e in entries})
            self._db.executemany(
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
            rows = self._db.execute("SELECT device, seq FROM pending WHERE event=?", (event,))
            keys = self._pending[event] = {(d, s) for d, s in rows}
        return keys

    def pending(self, event: str) -> list[LogEntry]:
        if not self.pending_keys(event):
            return []
        rows = self._db.execute(
            "SELECT device, seq, hlc, upd, prev FROM pending WHERE event=? ORDER BY device, seq",
            (event,),
        )
        return [_entry(event, d, s, h, u, p) for d, s, h, u, p in rows]

    def _log_vv(self, event: str) -> dict[str, int]:
        vv = self._vv.get(event)
        if vv is None:
            rows = self._db.execute(
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
            rows = self._db.execute(
                "SELECT id, seq, hlc, upd, prev FROM log WHERE event=? AND device=? AND seq>? "
                "ORDER BY seq",
                (event, device, have),
            )
            out.extend((i, _entry(event, device, s, h, u, p)) for i, s, h, u, p in rows)
        out.sort(key=lambda pair: pair[0])
        return [e for _, e in out]

    def event_states(self) -> dict[str, EventState]:
        """Every event's version vector and chain tips as a backup records them
        (folded entries included; buffered entries are written first)."""
        self.flush()
        return event_states(self._db)

    def log_count(self, event: str) -> int:
        return int(
            self._db.execute("SELECT count(*) FROM log WHERE event=?", (event,)).fetchone()[0]
        )

    def log_bytes(self, event: str) -> int:
        row = self._db.execute("SELECT sum(length(upd)) FROM log WHERE event=?", (event,))
        return int(row.fetchone()[0] or 0)

    # -- snapshots ------------------------------------------------------

    def snapshot(self, event: str) -> Snapshot | None:
        """The event's latest snapshot, or None if there is none or it fails
        its checksum (the full log is then replayed instead)."""
        row = self._db.execute(
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
        self._db.execute(
            "INSERT OR REPLACE INTO snapshots(event, upto, state, sha256, created_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            (event, upto, state, hashlib.sha256(state).digest(), created_ms),
        )

    def log_tail(self, event: str, after: int) -> list[LogEntry]:
        rows = self._db.execute(
            "SELECT device, seq, hlc, upd, prev FROM log WHERE event=? AND id>? ORDER BY id",
            (event, after),
        )
        return [_entry(event, d, s, h, u, p) for d, s, h, u, p in rows]

    def tail_count(self, event: str, after: int) -> int:
        row = self._db.execute("SELECT count(*) FROM log WHERE event=? AND id>?", (event, after))
        return int(row.fetchone()[0])

    def last_log_id(self, event: str) -> int:
        row = self._db.execute("SELECT max(id) FROM log WHERE event=?", (event,)).fetchone()
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
            row = self._db.execute(
                f"SELECT hash FROM {table} WHERE event=? AND device=? AND seq=?",
                (event, device, seq),
            ).fetchone()
            if row is not None:
                return bytes(row[0])
        return None

    def entries_range(self, event: str, device: str, first: int, last: int) -> list[LogEntry]:
        self.flush()
        rows = self._db.execute(
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
            self._db.executemany(
                "INSERT OR IGNORE INTO heads(event, device, seq, hash, sig) VALUES (?, ?, ?, ?, ?)",
                [(h.event, h.device, h.seq, h.hash, h.sig) for h in heads],
            )

    def head_at_or_below(self, event: str, device: str, seq: int) -> Head | None:
        """The highest signed head of ``device`` at or below ``seq``."""
        row = self._db.execute(
            "SELECT seq, hash, sig FROM heads WHERE event=? AND device=? AND seq<=? "
            "ORDER BY seq DESC LIMIT 1",
            (event, device, seq),
        ).fetchone()
        return None if row is None else Head(event, device, row[0], bytes(row[1]), bytes(row[2]))

    def head_at_or_after(self, event: str, device: str, seq: int) -> Head | None:
        row = self._db.execute(
            "SELECT seq, hash, sig FROM heads WHERE event=? AND device=? AND seq>=? "
            "ORDER BY seq LIMIT 1",
            (event, device, seq),
        ).fetchone()
        return None if row is None else Head(event, device, row[0], bytes(row[1]), bytes(row[2]))


def _entry(event: str, device: str, seq: int, hlc: int, upd: bytes, prev: bytes | None) -> LogEntry:
    return LogEntry(event, device, seq, hlc, bytes(upd), bytes(prev) if prev else ZERO_HASH)

"""The peer side of the store: the device directory, quarantined devices,
peer acknowledgements, compaction horizons and archived events (a mixin of
:class:`~headcount.store.Store`, which owns the connection, the transactions
and the caches used here, as declared in :class:`~headcount.store.base.StoreBase`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping

import msgpack

from .base import StoreBase

Horizon = dict[str, tuple[int, bytes]]
Archived = dict[str, tuple[int, str, dict[str, int]]]

UPSERT_DEVICE = (
    "INSERT INTO devices(device, public_key, role, added_ms, cert) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(device) DO UPDATE SET public_key=excluded.public_key, "
    "role=excluded.role, cert=coalesce(excluded.cert, devices.cert)"
)
"""Add a device or update its key and role; a certificate once known is kept."""


class PeerTables(StoreBase):
    """Devices, quarantine, acknowledgements, horizons and archived events."""

    def trust(
        self, device: str, public_key: bytes, role: str, now_ms: int, cert: bytes | None = None
    ) -> None:
        """Record a device's public key (the directory used to verify heads),
        and the certificate that vouched for it, if any."""
        with self.transaction():
            self._touch(None)
            self._db.execute(UPSERT_DEVICE, (device, public_key, role, now_ms, cert))
            self._keys.pop(device, None)
            self._certs = None

    def certificates(self, devices: Collection[str] | None = None) -> dict[str, bytes]:
        """The certificates that vouched for known devices (of ``devices``
        only, if given): device id -> DER."""
        if self._certs is None:
            rows = self._db.execute("SELECT device, cert FROM devices WHERE cert IS NOT NULL")
            self._certs = {d: bytes(c) for d, c in rows}
        if devices is None:
            return dict(self._certs)
        return {d: self._certs[d] for d in devices if d in self._certs}

    def public_key(self, device: str) -> bytes | None:
        if device not in self._keys:
            self._keys[device] = read_public_key(self._db, device)
        return self._keys[device]

    def devices(self) -> dict[str, str]:
        """Every known device and its role."""
        return dict(self._db.execute("SELECT device, role FROM devices").fetchall())

    def quarantine(self, event: str, device: str, seq: int, now_ms: int) -> None:
        with self.transaction():
            self._touch(event)
            self._db.execute(
                "INSERT OR IGNORE INTO quarantine(event, device, seq, detected_ms) "
                "VALUES (?, ?, ?, ?)",
                (event, device, seq, now_ms),
            )
            self.quarantined(event).add(device)

    def quarantined(self, event: str) -> set[str]:
        """The devices whose entries of ``event`` are refused (do not modify)."""
        known = self._quarantined.get(event)
        if known is None:
            rows = self._db.execute("SELECT device FROM quarantine WHERE event=?", (event,))
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
            self._db.executemany(
                "INSERT OR REPLACE INTO peer_acks(peer, event, vv, at_ms) VALUES (?, ?, ?, ?)",
                rows,
            )
            self._acks.clear()

    def acks(self, event: str) -> dict[str, dict[str, int]]:
        """Per peer, the version vector it last acknowledged for ``event``."""
        out = read_acks(self._db, event)
        out.update({p: dict(vv) for (p, e), (vv, _) in self._acks.items() if e == event})
        return out

    def ack_times(self, event: str) -> dict[str, int]:
        """Per peer, when (wall ms) it last acknowledged ``event``."""
        rows = self._db.execute("SELECT peer, at_ms FROM peer_acks WHERE event=?", (event,))
        out = {str(peer): int(at) for peer, at in rows}
        out.update({p: ms for (p, e), (_, ms) in self._acks.items() if e == event})
        return out

    def horizon(self, event: str) -> Horizon:
        """Per device, the sequence number up to which entries were folded, and
        its hash (do not modify the result)."""
        known = self._horizons.get(event)
        if known is None:
            rows = self._db.execute(
                "SELECT device, seq, hash FROM horizons WHERE event=?", (event,)
            )
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
                self._db.execute(
                    "INSERT INTO horizons(event, device, seq, hash) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(event, device) DO UPDATE SET seq=excluded.seq, hash=excluded.hash "
                    "WHERE excluded.seq > horizons.seq",
                    (event, device, seq, digest),
                )
                cur = self._db.execute(
                    "DELETE FROM log WHERE event=? AND device=? AND seq<=?", (event, device, seq)
                )
                deleted += cur.rowcount
                self._db.execute(
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
                self._db.execute(f"DELETE FROM {table} WHERE event=?", (event,))
            self._db.execute("DELETE FROM horizons WHERE event=?", (event,))
            self._db.execute("DELETE FROM events WHERE event=?", (event,))
            self._db.execute(
                "INSERT OR REPLACE INTO archived(event, archived_ms, location, vv) "
                "VALUES (?, ?, ?, ?)",
                (event, archived_ms, location, msgpack.packb(vv)),
            )
            self._acks = {k: v for k, v in self._acks.items() if k[1] != event}
            for cache in (self._vv, self._horizons, self._quarantined, self._pending):
                cache.pop(event, None)
            self._event_set().discard(event)
            self._archived = None

    def archived(self) -> Archived:
        """Archived events: ``event -> (archived_ms, location, version vector)``
        (do not modify the result)."""
        if self._archived is None:
            self._archived = read_archived(self._db)
        return self._archived

    def unarchive(self, event: str) -> None:
        """Forget that ``event`` was archived (before restoring it from its archive)."""
        with self.transaction():
            self._touch(event)
            self._db.execute("DELETE FROM archived WHERE event=?", (event,))
            self._archived = None


def read_public_key(db: sqlite3.Connection, device: str) -> bytes | None:
    """The public key of ``device`` in the store ``db`` (None: unknown)."""
    row = db.execute("SELECT public_key FROM devices WHERE device=?", (device,)).fetchone()
    return None if row is None else bytes(row[0])


def read_acks(db: sqlite3.Connection, event: str) -> dict[str, dict[str, int]]:
    """Per peer, the version vector of ``event`` it acknowledged, as written to ``db``."""
    rows = db.execute("SELECT peer, vv FROM peer_acks WHERE event=?", (event,))
    return {str(peer): msgpack.unpackb(vv) for peer, vv in rows}


def read_archived(db: sqlite3.Connection) -> Archived:
    """The events ``db`` remembers as archived: ``event -> (archived_ms,
    location, version vector)``, ordered by event."""
    rows = db.execute("SELECT event, archived_ms, location, vv FROM archived ORDER BY event")
    return {e: (int(ms), str(loc), msgpack.unpackb(vv)) for e, ms, loc, vv in rows}

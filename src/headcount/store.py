"""The local store: SQLite in WAL mode.

Holds every event's log (local and remote entries, numbered per device),
snapshots for fast start-up, entries waiting for missing dependencies, and a
little metadata (the hybrid clock's high-water mark). The schema is versioned
with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` on open.
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

DB_FILE = "headcount.db"

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE events (event TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE log (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hlc INTEGER NOT NULL,
        upd BLOB NOT NULL,
        UNIQUE (event, device, seq)
    );
    CREATE TABLE snapshots (
        event TEXT PRIMARY KEY,
        upto INTEGER NOT NULL,
        state BLOB NOT NULL,
        sha256 BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pending (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hlc INTEGER NOT NULL,
        upd BLOB NOT NULL,
        PRIMARY KEY (event, device, seq)
    ) WITHOUT ROWID;
    """,
    # 2: hash chains, signed heads, known devices, quarantined equivocators
    """
    ALTER TABLE log ADD COLUMN prev BLOB;
    ALTER TABLE log ADD COLUMN hash BLOB;
    ALTER TABLE pending ADD COLUMN prev BLOB;
    ALTER TABLE pending ADD COLUMN hash BLOB;
    CREATE TABLE heads (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        sig BLOB NOT NULL,
        PRIMARY KEY (event, device, seq)
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        device TEXT PRIMARY KEY,
        public_key BLOB NOT NULL,
        role TEXT NOT NULL,
        added_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE quarantine (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        detected_ms INTEGER NOT NULL,
        PRIMARY KEY (event, device)
    ) WITHOUT ROWID;
    """,
    # 3: compaction: what peers acknowledged, and what was folded into snapshots
    """
    CREATE TABLE peer_acks (
        peer TEXT NOT NULL,
        event TEXT NOT NULL,
        vv BLOB NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (peer, event)
    ) WITHOUT ROWID;
    CREATE TABLE horizons (
        event TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (event, device)
    ) WITHOUT ROWID;
    """,
    # 4: the certificate that vouched for each known device (relayed to peers)
    """
    ALTER TABLE devices ADD COLUMN cert BLOB;
    """,
]


def _chain_existing_log(db: sqlite3.Connection) -> None:
    """Migration 2: give entries written before hash chains their prev/hash."""
    last: dict[tuple[str, str], bytes] = {}
    rows = db.execute(
        "SELECT id, event, device, seq, hlc, upd FROM log ORDER BY event, device, seq"
    )
    for row_id, event, device, seq, hlc, upd in rows.fetchall():
        prev = last.get((event, device), ZERO_HASH)
        entry = LogEntry(event, device, seq, hlc, bytes(upd), prev)
        digest = entry_hash(entry)
        db.execute("UPDATE log SET prev=?, hash=? WHERE id=?", (prev, digest, row_id))
        last[(event, device)] = digest


_FIXUPS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _chain_existing_log}


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


class Store:
    """One device's SQLite database.

    Raises:
        StoreError: the database cannot be opened, is corrupt, or was written
            by a newer version of headcount.
    """

    def __init__(self, path: Path, durability: Durability = Durability.FULL) -> None:
        self.path = path
        self.durability = durability
        self._buffer: list[LogEntry] = []
        self._buffer_hlc = 0
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
                if number + 1 in _FIXUPS:
                    _FIXUPS[number + 1](self.db)
                self.db.execute(f"PRAGMA user_version={number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable (per the durability setting) SQLite transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- metadata -------------------------------------------------------

    def get_meta(self, key: str, default: object = None) -> object:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, key: str, value: object) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- events and log -----------------------------------------------------

    def events(self) -> list[str]:
        stored = {r[0] for r in self.db.execute("SELECT event FROM events")}
        return sorted(stored | {e.event for e in self._buffer})

    def add_event(self, event: str, created_ms: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO events(event, created_ms) VALUES (?, ?)", (event, created_ms)
            )

    def append(self, entries: Iterable[LogEntry], hlc: int, *, force: bool = False) -> None:
        """Append entries to the log and record the clock, atomically.

        With durability ``off`` the entries are buffered until :meth:`flush`
        (or until the buffer is large), unless ``force``.
        """
        entries = list(entries)
        if self.durability is Durability.OFF and not force:
            self._buffer.extend(entries)
            self._buffer_hlc = max(self._buffer_hlc, hlc)
            if len(self._buffer) >= 4096:
                self.flush()
            return
        with self.transaction():
            self._write(entries, hlc)

    def flush(self) -> None:
        """Write buffered entries (durability ``off``) in one transaction."""
        if self._buffer:
            buffered, self._buffer = self._buffer, []
            with self.transaction():
                self._write(buffered, self._buffer_hlc)

    def _write(self, entries: list[LogEntry], hlc: int) -> None:
        self.db.executemany(
            "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
            {(e.event, e.hlc >> 16) for e in entries},
        )
        self.db.executemany(
            "INSERT INTO log(event, device, seq, hlc, upd, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e.event, e.device, e.seq, e.hlc, e.update, e.prev, entry_hash(e)) for e in entries],
        )
        self.db.executemany(
            "DELETE FROM pending WHERE event=? AND device=? AND seq=?",
            [(e.event, e.device, e.seq) for e in entries],
        )
        self._set_meta("hlc", max(hlc, int(self.get_meta("hlc", 0) or 0)))

    def add_pending(self, entries: Iterable[LogEntry]) -> None:
        entries = list(entries)
        with self.transaction():
            self.db.executemany(
                "INSERT INTO events(event, created_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                {(e.event, e.hlc >> 16) for e in entries},
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO pending(event, device, seq, hlc, upd, prev, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.event, e.device, e.seq, e.hlc, e.update, e.prev, entry_hash(e))
                    for e in entries
                ],
            )

    def pending_keys(self, event: str) -> set[tuple[str, int]]:
        rows = self.db.execute("SELECT device, seq FROM pending WHERE event=?", (event,))
        return {(d, s) for d, s in rows}

    def pending(self, event: str) -> list[LogEntry]:
        rows = self.db.execute(
            "SELECT device, seq, hlc, upd, prev FROM pending WHERE event=? ORDER BY device, seq",
            (event,),
        )
        return [_entry(event, d, s, h, u, p) for d, s, h, u, p in rows]

    def version_vector(self, event: str) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT device, max(seq) FROM log WHERE event=? GROUP BY device", (event,)
        )
        vv = {d: s for d, s in rows}
        for device, (seq, _) in self.horizon(event).items():
            vv[device] = max(vv.get(device, 0), seq)
        for e in self._buffer:
            if e.event == event:
                vv[e.device] = max(vv.get(e.device, 0), e.seq)
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
        for e in self._buffer:
            if (e.event, e.device, e.seq) == (event, device, seq):
                return entry_hash(e)
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
        with self.transaction():
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
            self.db.execute(
                "INSERT INTO devices(device, public_key, role, added_ms, cert) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(device) DO UPDATE SET public_key=excluded.public_key, "
                "role=excluded.role, cert=coalesce(excluded.cert, devices.cert)",
                (device, public_key, role, now_ms, cert),
            )

    def certificates(self) -> list[bytes]:
        rows = self.db.execute("SELECT cert FROM devices WHERE cert IS NOT NULL ORDER BY device")
        return [bytes(r[0]) for r in rows]

    def public_key(self, device: str) -> bytes | None:
        row = self.db.execute("SELECT public_key FROM devices WHERE device=?", (device,)).fetchone()
        return None if row is None else bytes(row[0])

    def quarantine(self, event: str, device: str, seq: int, now_ms: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO quarantine(event, device, seq, detected_ms) "
                "VALUES (?, ?, ?, ?)",
                (event, device, seq, now_ms),
            )

    def quarantined(self, event: str) -> set[str]:
        rows = self.db.execute("SELECT device FROM quarantine WHERE event=?", (event,))
        return {r[0] for r in rows}

    # -- compaction ---------------------------------------------------------

    def record_ack(self, peer: str, event: str, vv: Mapping[str, int], now_ms: int) -> None:
        """Remember what ``peer`` told us it holds (the input of compaction)."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO peer_acks(peer, event, vv, at_ms) VALUES (?, ?, ?, ?)",
                (peer, event, msgpack.packb(dict(vv)), now_ms),
            )

    def acks(self, event: str) -> dict[str, dict[str, int]]:
        rows = self.db.execute("SELECT peer, vv FROM peer_acks WHERE event=?", (event,))
        return {peer: msgpack.unpackb(vv) for peer, vv in rows}

    def devices(self) -> dict[str, str]:
        """Every known device and its role."""
        return dict(self.db.execute("SELECT device, role FROM devices").fetchall())

    def horizon(self, event: str) -> dict[str, tuple[int, bytes]]:
        """Per device, the sequence number up to which entries were folded, and its hash."""
        rows = self.db.execute("SELECT device, seq, hash FROM horizons WHERE event=?", (event,))
        return {d: (s, bytes(h)) for d, s, h in rows}

    def fold(
        self, event: str, anchors: Mapping[str, tuple[int, bytes]], state: bytes, created_ms: int
    ) -> int:
        """Snapshot ``state`` (covering the whole log) and delete the entries
        at or below ``anchors``, atomically. Returns the entries deleted."""
        self.flush()
        upto = self.last_log_id(event)
        deleted = 0
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots(event, upto, state, sha256, created_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (event, upto, state, hashlib.sha256(state).digest(), created_ms),
            )
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
        return deleted

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()


def _entry(event: str, device: str, seq: int, hlc: int, upd: bytes, prev: bytes | None) -> LogEntry:
    return LogEntry(event, device, seq, hlc, bytes(upd), bytes(prev) if prev else ZERO_HASH)
